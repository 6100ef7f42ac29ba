package view

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// Defaults for a view started with no config file.
const (
	DefaultListen       = "127.0.0.1:9470"
	DefaultQuorum       = 2
	DefaultMaxBodyBytes = 4 << 20
	DefaultMaxSampleAge = time.Minute
	// An agent pushes once per push interval (1 s at the fastest that is sensible) and at
	// once on every state change: 10 a second on average with bursts of 100 leaves room
	// for a storm of changes while stopping a runaway or hostile sender.
	DefaultPushRate        = 10
	DefaultPushBurst       = 100
	DefaultMaxEventClients = 256
	defaultStaleFactor     = 3
	minStaleAfter          = time.Second
)

// Config is view.toml. The zero value (after Defaults) is a working view on loopback
// with a quorum of two and no authentication.
type Config struct {
	Listen string `toml:"listen"`
	// WebConfig is an exporter-toolkit web config file: TLS (and client certificates) for
	// every endpoint. Its basic_auth_users would also guard /api/v1/write, where agents
	// authenticate with tokens instead; use it for TLS.
	WebConfig string `toml:"web_config"`
	// Quorum is how many fresh, non-isolated witnesses must report a site down before
	// it is lost: a number (at least 1) or "majority" of the agents that report the site.
	Quorum Quorum `toml:"quorum"`
	// StaleAfter fixes how long an agent stays a witness without a push. Zero means
	// 3 x the push interval the agent announces (at least 1 s).
	StaleAfter Duration `toml:"stale_after"`
	// MaxSampleAge drops the state carried by pushes whose samples are older than this
	// (a spool flushed after an outage says nothing about now). Zero disables the check.
	MaxSampleAge Duration `toml:"max_sample_age"`
	MaxBodyBytes int64    `toml:"max_body_bytes"`
	// Tokens are bearer tokens any agent may present; AgentTokens bind a token to one
	// agent name. With neither set, pushes need no token.
	Tokens      []string     `toml:"tokens"`
	AgentTokens []AgentToken `toml:"agent_tokens"`
	Notifiers   Notifiers    `toml:"notifiers"`
	// AllowUnauthenticated lets the view listen beyond loopback with no authentication
	// (no tokens, no client certificates, no basic auth in web_config). Without it such a
	// view refuses to start: anyone who reaches it could forge a site loss.
	AllowUnauthenticated bool `toml:"allow_unauthenticated"`
	// PushRate and PushBurst bound each agent's pushes (a token bucket per agent: PushRate
	// a second on average, PushBurst at once); beyond them a push gets 429 with Retry-After.
	PushRate  float64 `toml:"push_rate"`
	PushBurst int     `toml:"push_burst"`
	// MaxEventClients caps the concurrent /api/v1/events subscribers; more get 503.
	MaxEventClients int `toml:"max_event_clients"`

	// Path is the file the config came from, "" for defaults; used in messages.
	Path string `toml:"-"`
}

// Warnings lists what is allowed but risky: secrets that other users can read, and
// pushes accepted without a token on an address beyond loopback, where anyone who can
// reach it could forge a site loss.
func (c *Config) Warnings() []string {
	var out []string
	worldReadable := func(path string) bool {
		fi, err := os.Stat(path)
		return err == nil && fi.Mode().Perm()&0o004 != 0
	}
	if len(c.Tokens) > 0 && c.Path != "" && worldReadable(c.Path) {
		out = append(out, fmt.Sprintf("%s holds tokens and is readable by every user; chmod o-r it", c.Path))
	}
	for _, at := range c.AgentTokens {
		if worldReadable(at.TokenFile) {
			out = append(out, fmt.Sprintf("token file %s (agent %s) is readable by every user; chmod o-r it", at.TokenFile, at.Agent))
		}
	}
	if c.AllowUnauthenticated && !loopback(c.Listen) && !c.authenticated() {
		out = append(out, fmt.Sprintf("listening on %s without authentication (allow_unauthenticated): anyone who reaches it can push verdicts", c.Listen))
	}
	return out
}

// CheckExposure refuses a view that would listen on listen (host:port) beyond loopback
// with no authentication at all, unless AllowUnauthenticated says so: anyone who reaches
// such a view could push a forged site loss. Authentication is tokens or agent_tokens,
// or a web_config that requires verified client certificates or basic auth.
func (c *Config) CheckExposure(listen string) error {
	if c.AllowUnauthenticated || loopback(listen) || c.authenticated() {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s beyond loopback without authentication: anyone who reaches it could forge a site loss; "+
		"set tokens or agent_tokens (or client_auth_type: RequireAndVerifyClientCert in web_config), "+
		"or accept the risk with allow_unauthenticated = true (flag --allow-unauthenticated)", listen)
}

// authenticated says whether pushes need a credential: a token, or what web_config asks.
func (c *Config) authenticated() bool {
	if len(c.Tokens) > 0 || len(c.AgentTokens) > 0 {
		return true
	}
	if c.WebConfig == "" {
		return false
	}
	data, err := os.ReadFile(c.WebConfig)
	if err != nil {
		return false
	}
	var wc struct {
		TLS struct {
			ClientAuth string `yaml:"client_auth_type"`
		} `yaml:"tls_server_config"`
		Users map[string]string `yaml:"basic_auth_users"`
	}
	if yaml.Unmarshal(data, &wc) != nil {
		return false
	}
	return wc.TLS.ClientAuth == "RequireAndVerifyClientCert" || len(wc.Users) > 0
}

// loopback says whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AgentToken binds the token read from TokenFile to the agent Agent: a push presenting
// it may carry only that agent's series, so one agent cannot forge another's reports.
type AgentToken struct {
	Agent     string `toml:"agent"`
	TokenFile string `toml:"token_file"`
	token     string
}

// Notifiers lists where lost sites and their recoveries are announced.
type Notifiers struct {
	Webhook      []WebhookConfig      `toml:"webhook"`
	Alertmanager []AlertmanagerConfig `toml:"alertmanager"`
}

// WebhookConfig is one JSON POST receiver.
type WebhookConfig struct {
	URL        string   `toml:"url"`
	Timeout    Duration `toml:"timeout"`     // per attempt, default 5s
	MaxRetries int      `toml:"max_retries"` // after the first attempt, default 5
}

// AlertmanagerConfig is one Alertmanager, spoken to with its API v2.
type AlertmanagerConfig struct {
	URL     string   `toml:"url"`     // base URL, e.g. http://127.0.0.1:9093
	Timeout Duration `toml:"timeout"` // per attempt, default 5s
	// Resend repeats firing alerts so that Alertmanager does not resolve them on its own
	// resolve_timeout; default 1m.
	Resend     Duration `toml:"resend"`
	MaxRetries int      `toml:"max_retries"`
}

// Duration is a TOML string with a unit ("3s"); a bare number is rejected so that
// nobody configures nanoseconds by accident.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a number with a unit, e.g. \"3s\")", text)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: negative", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText keeps Duration round-trippable.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Quorum is a fixed number of witnesses, or Majority.
type Quorum struct {
	N        int
	Majority bool
}

// UnmarshalTOML accepts an integer >= 1 or the string "majority".
func (q *Quorum) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 1 || x > math.MaxInt32 {
			return fmt.Errorf("quorum %d out of range: want a number >= 1 or \"majority\"", x)
		}
		*q = Quorum{N: int(x)}
	case string:
		if x != "majority" {
			return fmt.Errorf("quorum %q: want a number >= 1 or \"majority\"", x)
		}
		*q = Quorum{Majority: true}
	default:
		return fmt.Errorf("quorum has type %T: want a number >= 1 or \"majority\"", v)
	}
	return nil
}

// String is how the effective quorum is logged.
func (q Quorum) String() string {
	if q.Majority {
		return "majority"
	}
	return fmt.Sprint(q.N)
}

// need is the quorum for a site that known agents report (stale and isolated ones
// included, so that a majority cannot shrink by losing witnesses). A majority is never
// less than two: one agent alone cannot tell a fire from its own trouble.
func (q Quorum) need(known int) int {
	if q.Majority {
		return max(2, known/2+1)
	}
	return q.N
}

// Defaults fills what the file left out.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Quorum == (Quorum{}) {
		c.Quorum = Quorum{N: DefaultQuorum}
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.PushRate == 0 {
		c.PushRate = DefaultPushRate
	}
	if c.PushBurst == 0 {
		c.PushBurst = DefaultPushBurst
	}
	if c.MaxEventClients == 0 {
		c.MaxEventClients = DefaultMaxEventClients
	}
	for i := range c.Notifiers.Webhook {
		w := &c.Notifiers.Webhook[i]
		if w.Timeout == 0 {
			w.Timeout = Duration(5 * time.Second)
		}
		if w.MaxRetries == 0 {
			w.MaxRetries = 5
		}
	}
	for i := range c.Notifiers.Alertmanager {
		a := &c.Notifiers.Alertmanager[i]
		if a.Timeout == 0 {
			a.Timeout = Duration(5 * time.Second)
		}
		if a.Resend == 0 {
			a.Resend = Duration(time.Minute)
		}
		if a.MaxRetries == 0 {
			a.MaxRetries = 5
		}
	}
}

// DefaultConfig is the config of a view started without a file.
func DefaultConfig() *Config {
	c := &Config{MaxSampleAge: Duration(DefaultMaxSampleAge)}
	c.Defaults()
	return c
}

// ConfigError is one problem in a config file.
type ConfigError struct {
	Path string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// LoadConfig reads, decodes and validates a view.toml file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read view config: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig decodes and validates view.toml content; path names it in errors. On bad
// input the error joins one *ConfigError per problem.
func ParseConfig(data []byte, path string) (*Config, error) {
	c := &Config{MaxSampleAge: Duration(DefaultMaxSampleAge)}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &ConfigError{Path: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		return nil, &ConfigError{Path: path, Msg: err.Error()}
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, &ConfigError{Path: path, Line: keyLine(data, k), Key: k.String(),
			Msg: "unknown key (" + allowedKeys(k) + ")"})
	}
	c.Path = path
	c.Defaults()
	errs = append(errs, c.validate(data)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// allowedKeys names the keys allowed beside an unknown one, for its error message.
func allowedKeys(k toml.Key) string {
	switch {
	case len(k) == 1:
		return "allowed: listen, web_config, quorum, stale_after, max_sample_age, max_body_bytes, tokens, agent_tokens, allow_unauthenticated, push_rate, push_burst, max_event_clients, notifiers"
	case k[0] == "agent_tokens":
		return "allowed: agent, token_file"
	case len(k) == 2 && k[0] == "notifiers":
		return "allowed: webhook, alertmanager"
	case k[0] == "notifiers" && k[1] == "webhook":
		return "allowed: url, timeout, max_retries"
	case k[0] == "notifiers" && k[1] == "alertmanager":
		return "allowed: url, timeout, resend, max_retries"
	}
	return "see view/README.md"
}

func (c *Config) validate(data []byte) []error {
	var errs []error
	// bad reports a problem with key; for "table[i].name" the line is that of the
	// (i+1)-th assignment of name, which is right for the usual one-key-per-table files.
	bad := func(key, format string, args ...any) {
		name, nth := key, 0
		if open := strings.LastIndex(key, "["); open >= 0 {
			fmt.Sscanf(key[open:], "[%d]", &nth)
			name = key[strings.LastIndex(key, ".")+1:]
		}
		errs = append(errs, &ConfigError{Path: c.Path, Line: assignmentLine(data, name, nth), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if err := web.Validate(c.WebConfig); err != nil {
		bad("web_config", "%s: %v", c.WebConfig, err)
	}
	if c.MaxBodyBytes < 1024 {
		bad("max_body_bytes", "%d is too small: want at least 1024", c.MaxBodyBytes)
	}
	if c.PushRate < 0 || math.IsNaN(c.PushRate) || math.IsInf(c.PushRate, 0) {
		bad("push_rate", "%v: want a positive number of pushes a second per agent", c.PushRate)
	}
	if c.PushBurst < 1 {
		bad("push_burst", "%d: want at least 1", c.PushBurst)
	}
	if c.MaxEventClients < 1 {
		bad("max_event_clients", "%d: want at least 1", c.MaxEventClients)
	}
	if c.StaleAfter != 0 && time.Duration(c.StaleAfter) < 100*time.Millisecond {
		bad("stale_after", "%s is too short: want at least 100ms", time.Duration(c.StaleAfter))
	}
	for i, t := range c.Tokens {
		if strings.TrimSpace(t) == "" {
			bad("tokens", "token %d is empty", i+1)
		}
	}
	seen := map[string]bool{}
	for i := range c.AgentTokens {
		at := &c.AgentTokens[i]
		key := fmt.Sprintf("agent_tokens[%d]", i)
		if at.Agent == "" {
			bad(key+".agent", "missing: the agent name the token belongs to")
		} else if seen[at.Agent] {
			bad(key+".agent", "agent %q has a token already", at.Agent)
		}
		seen[at.Agent] = true
		if at.TokenFile == "" {
			bad(key+".token_file", "missing: a file holding the token")
			continue
		}
		b, err := os.ReadFile(at.TokenFile)
		if err != nil {
			bad(key+".token_file", "read token: %v", err)
			continue
		}
		at.token = strings.TrimSpace(string(b))
		if at.token == "" {
			bad(key+".token_file", "%s is empty", at.TokenFile)
		}
	}
	checkURL := func(key, raw string) {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(key, "%q is not an http(s) URL", raw)
		}
	}
	for i, w := range c.Notifiers.Webhook {
		checkURL(fmt.Sprintf("notifiers.webhook[%d].url", i), w.URL)
		if w.MaxRetries < 0 {
			bad(fmt.Sprintf("notifiers.webhook[%d].max_retries", i), "must not be negative")
		}
	}
	for i, a := range c.Notifiers.Alertmanager {
		checkURL(fmt.Sprintf("notifiers.alertmanager[%d].url", i), a.URL)
		if a.MaxRetries < 0 {
			bad(fmt.Sprintf("notifiers.alertmanager[%d].max_retries", i), "must not be negative")
		}
	}
	return errs
}

// keyLine finds the line where the undecoded key k is assigned or opened as a table.
// The TOML decoder keeps key positions to itself, so this scans the text; 0 when unsure.
func keyLine(data []byte, k toml.Key) int {
	if len(k) == 0 {
		return 0
	}
	if n := assignmentLine(data, k[len(k)-1], 0); n > 0 {
		return n
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Trim(strings.TrimSpace(line), "[]") == k.String() {
			return i + 1
		}
	}
	return 0
}

// assignmentLine is the line of the (nth+1)-th "name = ..." in data, or 0.
func assignmentLine(data []byte, name string, nth int) int {
	for i, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), name)
		if !ok || !strings.HasPrefix(strings.TrimSpace(rest), "=") {
			continue
		}
		if nth == 0 {
			return i + 1
		}
		nth--
	}
	return 0
}
