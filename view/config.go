package view

import (
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/internal/damp"
	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
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
	DefaultPushRate                 = 10
	DefaultPushBurst                = 100
	DefaultMaxEventClients          = 256
	DefaultMaxEventClientsPerClient = 16
	// Each agent keeps one connection to the view; with the header limit a connection
	// costs at most about connMemory, and the pushes in flight at most
	// DefaultMaxPushMemory: view/README.md, "Hostile input", adds up what they bound.
	DefaultMaxConnections = 1024
	DefaultMaxPushMemory  = 64 << 20
	connMemory            = 50<<10 + maxShapeBytes // and the previous push's shape (shape.go)
	// What the engine keeps: twice the 10,000 agents that make bench-view-load measures,
	// as many sites, and a million reports (10,000 agents x 20 sites x 2 targets is
	// 600,000), about 100 MiB at the heap per report that BenchmarkTargetMemory measures.
	DefaultMaxAgents  = 20000
	DefaultMaxSites   = 20000
	DefaultMaxReports = 1000000
	// defaultSoftMemoryLimit is the Go runtime's soft memory limit that `edgeprobe view`
	// sets at the default limits unless GOMEMLIMIT says otherwise (Config.SoftMemoryLimit):
	// what the limits above let the view hold is live memory, and without a limit the
	// collector lets the heap grow to twice the live size before it runs.
	defaultSoftMemoryLimit = 192 << 20
	// A notifier's attempt times out after DefaultNotifyTimeout and is retried
	// DefaultNotifyRetries times; Alertmanager alerts are re-sent every DefaultResend.
	DefaultNotifyTimeout = 5 * time.Second
	DefaultNotifyRetries = 5
	DefaultResend        = time.Minute
	// DefaultMaxUpFraction is the share of witnesses that may see a site up while it is
	// still lost (Route 53 calls an endpoint healthy while more than 18% of its checkers
	// do); beyond it the site is partitioned.
	DefaultMaxUpFraction = 0.18
	DefaultForgetAfter   = 10 * time.Minute
	// DefaultEventRing is how many verdict changes a view keeps for clients that
	// reconnect (Last-Event-ID) and, with a state_dir, across restarts.
	DefaultEventRing   = 4096
	defaultStaleFactor = contract.StalePushes
	minStaleAfter      = time.Second
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
	// QuorumBy names an agent label (region, asn, uplink): witnesses are then counted by
	// its distinct values, so agents sharing a failure domain are one witness.
	QuorumBy string `toml:"quorum_by"`
	// MaxUpFraction is the share of witnesses that may report a site up while it is
	// lost; more make it partitioned.
	MaxUpFraction float64 `toml:"max_up_fraction"`
	// ForgetAfter drops agents silent for this long, and sites no agent reports for as
	// long; "0s" keeps them for ever.
	ForgetAfter Duration `toml:"forget_after"`
	// StateDir keeps what a restart must not lose: silences, the last verdict changes,
	// the failover audit log and state. "" keeps them in memory only.
	StateDir string `toml:"state_dir"`
	// Silences are maintenance windows: the site keeps its verdict, marked silenced,
	// and notifies and acts on nothing.
	Silences []SilenceConfig `toml:"silence"`
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
	// ReadTokens, when set, are required to read the view (the page, the API, the event
	// stream, /metrics); without them reads are open. AdminTokens guard what changes the
	// view (silences, the failover hold and failback); without them that API is off.
	// An admin token also reads.
	ReadTokens  []string  `toml:"read_tokens"`
	AdminTokens []string  `toml:"admin_tokens"`
	Notifiers   Notifiers `toml:"notifiers"`
	// AllowUnauthenticated lets the view listen beyond loopback with no authentication
	// (no tokens, no client certificates, no basic auth in web_config). Without it such a
	// view refuses to start: anyone who reaches it could forge a site loss.
	AllowUnauthenticated bool `toml:"allow_unauthenticated"`
	// PushRate and PushBurst bound each agent's pushes (a token bucket per agent: PushRate
	// a second on average, PushBurst at once); beyond them a push gets 429 with Retry-After.
	PushRate  float64 `toml:"push_rate"`
	PushBurst int     `toml:"push_burst"`
	// MaxEventClients caps the concurrent /api/v1/events subscribers, and
	// MaxEventClientsPerClient those from one client address; more get 503.
	MaxEventClients          int `toml:"max_event_clients"`
	MaxEventClientsPerClient int `toml:"max_event_clients_per_client"`
	// Actions are what the view does about a lost site (package failover).
	Actions failover.Config `toml:"actions"`
	// AllowedHosts are the names, besides IP literals, localhost, the listen host and
	// the machine's host name, that a request's Host header may carry (DNS rebinding);
	// "*" allows any.
	AllowedHosts []string `toml:"allowed_hosts"`
	// MaxConnections caps the open connections; MaxPushMemory the bytes that pushes
	// being read and decoded may hold at once (guard.go).
	MaxConnections int   `toml:"max_connections"`
	MaxPushMemory  int64 `toml:"max_push_memory"`
	// MaxAgents, MaxSites and MaxReports bound what the engine keeps (Engine.Fits): a
	// push beyond them gets 507, until forget_after frees room.
	MaxAgents  int `toml:"max_agents"`
	MaxSites   int `toml:"max_sites"`
	MaxReports int `toml:"max_reports"`

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
	if len(c.Tokens)+len(c.ReadTokens)+len(c.AdminTokens) > 0 && c.Path != "" && worldReadable(c.Path) {
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
	data, err := tomlconf.ReadFile(c.WebConfig)
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

// SilenceConfig is one [[silence]] of view.toml.
type SilenceConfig struct {
	Site    string    `toml:"site"`
	Start   time.Time `toml:"start"` // TOML date-time; default: from the start of the view
	End     time.Time `toml:"end"`
	Comment string    `toml:"comment"`
}

// Damping is the delay a notifier (or action) waits before it acts on a loss and before
// it resolves (docs/architecture.md, "Acting on a verdict").
type Damping struct {
	LostFor    Duration `toml:"lost_for"`    // the loss must hold this long; default 0
	RecoverFor Duration `toml:"recover_for"` // up this long before resolving; default 10s
}

// Notifiers lists where lost sites and their recoveries are announced.
type Notifiers struct {
	Webhook      []WebhookConfig      `toml:"webhook"`
	Alertmanager []AlertmanagerConfig `toml:"alertmanager"`
}

// WebhookConfig is one JSON POST receiver.
type WebhookConfig struct {
	URL string `toml:"url"`
	// SecretFile holds a key with which every body is signed (HMAC-SHA256, header
	// X-Edgeprobe-Signature), so that a receiver can trust it.
	SecretFile string `toml:"secret_file"`
	Damping
	Timeout    Duration `toml:"timeout"`     // per attempt, default 5s
	MaxRetries int      `toml:"max_retries"` // after the first attempt, default 5
}

// AlertmanagerConfig is one Alertmanager, spoken to with its API v2.
type AlertmanagerConfig struct {
	URL string `toml:"url"` // base URL, e.g. http://127.0.0.1:9093
	Damping
	Timeout Duration `toml:"timeout"` // per attempt, default 5s
	// Resend repeats firing alerts so that Alertmanager does not resolve them on its own
	// resolve_timeout; default 1m.
	Resend     Duration `toml:"resend"`
	MaxRetries int      `toml:"max_retries"`
}

// Duration is a TOML string with a unit ("3s"); a bare number is refused so that nobody
// configures nanoseconds by accident.
type Duration = tomlconf.Duration

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

// SoftMemoryLimit is the Go runtime's soft memory limit for a view with c's limits: 192
// MiB at the defaults, plus what raising max_connections or max_push_memory lets the view
// hold beyond them (connMemory a connection). A limit below the live memory those allow
// would have the collector run without pause (at 10,000 agents' connections it took
// half the view's CPU) rather than bound anything: the limits bound the memory, this
// only keeps garbage from doubling it (view/README.md, "Hostile input").
// Unset limits count as their defaults.
func (c *Config) SoftMemoryLimit() int64 {
	extraConns := int64(max(0, c.MaxConnections-DefaultMaxConnections))
	return defaultSoftMemoryLimit + extraConns*connMemory + max(0, c.MaxPushMemory-DefaultMaxPushMemory)
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
	if c.MaxEventClientsPerClient == 0 {
		c.MaxEventClientsPerClient = DefaultMaxEventClientsPerClient
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxAgents == 0 {
		c.MaxAgents = DefaultMaxAgents
	}
	if c.MaxSites == 0 {
		c.MaxSites = DefaultMaxSites
	}
	if c.MaxReports == 0 {
		c.MaxReports = DefaultMaxReports
	}
	if c.MaxPushMemory == 0 {
		c.MaxPushMemory = DefaultMaxPushMemory
	}
	for i := range c.Notifiers.Webhook {
		w := &c.Notifiers.Webhook[i]
		w.Timeout.Duration = w.Timeout.Or(DefaultNotifyTimeout)
		if w.MaxRetries == 0 {
			w.MaxRetries = DefaultNotifyRetries
		}
	}
	for i := range c.Notifiers.Alertmanager {
		a := &c.Notifiers.Alertmanager[i]
		a.Timeout.Duration = a.Timeout.Or(DefaultNotifyTimeout)
		a.Resend.Duration = a.Resend.Or(DefaultResend)
		if a.MaxRetries == 0 {
			a.MaxRetries = DefaultNotifyRetries
		}
	}
}

// newConfig is a Config holding the defaults of the settings whose zero means
// something (no check, strict, never): decoding a file overwrites only what it writes.
func newConfig() *Config {
	return &Config{
		MaxSampleAge:  Duration{Duration: DefaultMaxSampleAge},
		MaxUpFraction: DefaultMaxUpFraction,
		ForgetAfter:   Duration{Duration: DefaultForgetAfter},
	}
}

// DefaultConfig is the config of a view started without a file.
func DefaultConfig() *Config {
	c := newConfig()
	c.Defaults()
	return c
}

// LoadConfig reads, decodes and validates a view.toml file. Errors reading the file come
// back as the *fs.PathError the os package gives; problems with its content as
// *tomlconf.Errors, one per problem, each FILE:LINE: KEY: what is allowed.
func LoadConfig(path string) (*Config, error) {
	data, err := tomlconf.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data, path)
}

// ParseConfig decodes and validates view.toml content read from path (used in messages,
// and as the directory relative file names are resolved against).
func ParseConfig(data []byte, path string) (*Config, error) {
	c := newConfig()
	doc, ok := tomlconf.Decode(data, path, c, tomlconf.Options{ZeroAllowed: viewZeroAllowed})
	if !ok {
		return nil, doc.Err()
	}
	c.Path = path
	c.Defaults()
	c.notifierDefaults(doc)
	c.validate(doc)
	if err := doc.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// viewZeroAllowed names the durations where "0s" means something: no sample age check,
// never forget, no damping, act on a loss at once.
func viewZeroAllowed(path string) bool {
	switch {
	case path == "max_sample_age", path == "forget_after", failover.ZeroAllowed("actions", path):
		return true
	case strings.HasPrefix(path, "notifiers."):
		return strings.HasSuffix(path, ".lost_for") || strings.HasSuffix(path, ".recover_for")
	}
	return false
}

// notifierDefaults gives each notifier the default recover_for unless the file writes
// one (zero included: resolve at once).
func (c *Config) notifierDefaults(doc *tomlconf.Doc) {
	for i := range c.Notifiers.Webhook {
		if !doc.Defined(tomlconf.IndexPath("notifiers.webhook", i) + ".recover_for") {
			c.Notifiers.Webhook[i].RecoverFor.Duration = damp.DefaultRecoverFor
		}
	}
	for i := range c.Notifiers.Alertmanager {
		if !doc.Defined(tomlconf.IndexPath("notifiers.alertmanager", i) + ".recover_for") {
			c.Notifiers.Alertmanager[i].RecoverFor.Duration = damp.DefaultRecoverFor
		}
	}
}

func (c *Config) validate(doc *tomlconf.Doc) {
	bad := doc.Errf
	if msg := netcheck.Listen(c.Listen, DefaultListen); msg != "" {
		bad("listen", "%s", msg)
	}
	doc.WebConfigFile("web_config", &c.WebConfig)
	if doc.OK() {
		if err := web.Validate(c.WebConfig); err != nil {
			bad("web_config", "%s: %v", c.WebConfig, err)
		}
	}
	if c.MaxBodyBytes < 1024 {
		bad("max_body_bytes", "%d is too small; allowed: 1024 or more", c.MaxBodyBytes)
	}
	if c.PushRate <= 0 || math.IsNaN(c.PushRate) || math.IsInf(c.PushRate, 0) {
		bad("push_rate", "%v is not allowed; allowed: a positive number of pushes a second per agent", c.PushRate)
	}
	if c.PushBurst < 1 {
		bad("push_burst", "%d is too small; allowed: 1 or more", c.PushBurst)
	}
	if c.MaxEventClients < 1 {
		bad("max_event_clients", "%d is too small; allowed: 1 or more", c.MaxEventClients)
	}
	if c.MaxEventClientsPerClient < 1 {
		bad("max_event_clients_per_client", "%d is too small; allowed: 1 or more", c.MaxEventClientsPerClient)
	}
	for _, l := range []struct {
		key      string
		n, least int
	}{{"max_agents", c.MaxAgents, 2}, {"max_sites", c.MaxSites, 1}, {"max_reports", c.MaxReports, 1}} {
		if l.n < l.least {
			bad(l.key, "%d is too small; allowed: %d or more", l.n, l.least)
		}
	}
	if c.MaxUpFraction < 0 || c.MaxUpFraction >= 1 || math.IsNaN(c.MaxUpFraction) {
		bad("max_up_fraction", "%v is out of range; allowed: from 0 (any witness that sees the site up makes it partitioned) to below 1", c.MaxUpFraction)
	}
	if c.QuorumBy != "" && !labelName.MatchString(c.QuorumBy) {
		bad("quorum_by", "%q is not a label name; allowed: an agent label such as \"region\", \"asn\" or \"uplink\"", c.QuorumBy)
	}
	if f := c.ForgetAfter.Duration; f > 0 && f < time.Minute {
		bad("forget_after", "%s is too short; allowed: 1m or more, or \"0s\" to keep agents and sites for ever", c.ForgetAfter)
	}
	if c.StateDir != "" {
		c.StateDir = doc.Resolve(c.StateDir)
	}
	for i := range c.Silences {
		c.Silences[i].check(doc, tomlconf.IndexPath("silence", i))
	}
	c.Actions.Check(doc, "actions", c.StateDir)
	c.validateHardening(doc)
	if c.StaleAfter.Duration != 0 && c.StaleAfter.Duration < 100*time.Millisecond {
		bad("stale_after", "%s is too short; allowed: 100ms or more", c.StaleAfter)
	}
	for _, list := range []struct {
		key    string
		tokens []string
	}{{"tokens", c.Tokens}, {"read_tokens", c.ReadTokens}, {"admin_tokens", c.AdminTokens}} {
		for i, t := range list.tokens {
			if strings.TrimSpace(t) == "" {
				bad(tomlconf.IndexPath(list.key, i), "empty; allowed: a secret of at least one character")
			}
		}
	}
	seen := map[string]string{}
	for i := range c.AgentTokens {
		at := &c.AgentTokens[i]
		key := tomlconf.IndexPath("agent_tokens", i)
		switch {
		case at.Agent == "":
			bad(key+".agent", "missing; allowed: the name of the agent the token belongs to")
		case seen[at.Agent] != "":
			bad(key+".agent", "agent %q has a token already in %s", at.Agent, seen[at.Agent])
		default:
			seen[at.Agent] = key
		}
		if at.TokenFile == "" {
			bad(key+".token_file", "missing; allowed: a file holding the token")
			continue
		}
		b, ok := doc.ReadSecretFile(key+".token_file", &at.TokenFile)
		if !ok {
			continue
		}
		if at.token = strings.TrimSpace(string(b)); at.token == "" {
			bad(key+".token_file", "%s is empty; allowed: a file holding the token", at.TokenFile)
		}
	}
	for i := range c.Notifiers.Webhook {
		w := &c.Notifiers.Webhook[i]
		key := tomlconf.IndexPath("notifiers.webhook", i)
		if w.SecretFile != "" {
			doc.ReadableFile(key+".secret_file", &w.SecretFile)
		}
		if msg := netcheck.URL(w.URL); msg != "" {
			bad(key+".url", "%s", msg)
		}
		if w.MaxRetries < 0 {
			bad(key+".max_retries", "%d is negative; allowed: 0 or more", w.MaxRetries)
		}
	}
	for i, a := range c.Notifiers.Alertmanager {
		key := tomlconf.IndexPath("notifiers.alertmanager", i)
		if msg := netcheck.URL(a.URL); msg != "" {
			bad(key+".url", "%s", msg)
		}
		if a.MaxRetries < 0 {
			bad(key+".max_retries", "%d is negative; allowed: 0 or more", a.MaxRetries)
		}
	}
}

// labelName is a Prometheus label name.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// check validates one [[silence]] at key.
func (sc *SilenceConfig) check(doc *tomlconf.Doc, key string) {
	if sc.Site == "" {
		doc.Errf(key+".site", "missing; allowed: the name of the site in maintenance")
	}
	if sc.End.IsZero() {
		doc.Errf(key+".end", "missing; allowed: a TOML date-time such as 2026-12-01T22:00:00Z")
	} else if !sc.Start.IsZero() && !sc.End.After(sc.Start) {
		doc.Errf(key+".end", "%s is not after start %s", sc.End.Format(time.RFC3339), sc.Start.Format(time.RFC3339))
	}
}

// validateHardening checks the HTTP-level defences' settings (guard.go).
func (c *Config) validateHardening(doc *tomlconf.Doc) {
	for i, h := range c.AllowedHosts {
		if h == "*" {
			continue
		}
		if msg := netcheck.Host(strings.TrimSuffix(h, ".")); msg != "" {
			doc.Errf(tomlconf.IndexPath("allowed_hosts", i), "%s; allowed: a host name, an IP address or \"*\" (any)", msg)
		}
	}
	if c.MaxConnections < 16 {
		doc.Errf("max_connections", "%d is too small; allowed: 16 or more (each agent keeps a connection)", c.MaxConnections)
	}
	if least := max(4*c.MaxBodyBytes, 4<<20); c.MaxPushMemory < least {
		doc.Errf("max_push_memory", "%d is too small; allowed: at least 4 x max_body_bytes and 4 MiB (%d): a quarter of it is the most one body may take", c.MaxPushMemory, least)
	}
}
