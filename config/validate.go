package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
	"github.com/edgeprobe/edgeprobe/probes"
)

// Defaults of the agent's settings. The scheduler's adaptive timeout and the detection
// timings are tuned around these; change them only together with docs/architecture.md.
const (
	DefaultInterval        = time.Second
	DefaultTimeoutMin      = 20 * time.Millisecond
	DefaultTimeoutMaxCap   = time.Second // timeout_max defaults to min(interval, this)
	DefaultConfirmInterval = 100 * time.Millisecond
	DefaultFailThreshold   = 3
	// DefaultLatenessAllowance: see agent/README.md, "Lateness", for how it was chosen.
	DefaultLatenessAllowance = 5 * time.Millisecond
	MaxLatenessAllowance     = time.Second
	DefaultStateDir          = "/var/lib/edgeprobe"
)

// Defaults of the exporters' settings: filled in by Load, and by SetDefaults for a
// setting built in code.
const (
	DefaultStdoutSummary  = 10 * time.Second
	DefaultPrometheusAddr = "127.0.0.1:9469"
	DefaultPrometheusPath = "/metrics"
	DefaultPushInterval   = time.Second
	DefaultPushTimeout    = 5 * time.Second
	DefaultQueueSize      = 1000
	DefaultSpoolMaxBytes  = 64 << 20
	DefaultSpoolMaxAge    = time.Hour
)

// The stdout exporter's formats and result selections, as written in [exporters.stdout].
const (
	FormatText     = "text"
	FormatJSON     = "json"
	ResultsChanges = "changes"
	ResultsAll     = "all"
)

var (
	nameChars      = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	receiverChars  = regexp.MustCompile(`^[A-Za-z0-9._:\[\]-]+$`)
	labelNameChars = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	httpToken      = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// reservedHeaders belong to the remote_write protocol or to the auth settings.
var reservedHeaders = []string{"Authorization", "Content-Encoding", "Content-Length", "Content-Type",
	"Host", "User-Agent", "X-Prometheus-Remote-Write-Version"}

const nameRule = "letters, digits, '.', '_', '-'"

// normalize fills defaults and checks every value, recording each problem.
func (l *loader) normalize(c *Config) {
	l.agent(&c.Agent)
	siteNames := map[string]sitePlace{}
	for i := range c.Sites {
		l.site(&c.Sites[i], tomlconf.IndexPath("site", i), &c.Agent, siteNames)
	}
	l.includes(c, siteNames)
	switch {
	case len(c.Sites) == 0 && len(c.Include) > 0:
		l.Errf("site", "no sites, here or in the %d files include matches; add at least one [[site]] with a name and targets", len(includeFiles(c.Include, c.Path)))
	case len(c.Sites) == 0:
		l.Errf("site", "no sites; add at least one [[site]] with a name and targets")
	}
	if c.Control != nil {
		if c.Control.empty() {
			l.Errf("control", "has no targets; add [[control.icmp]], [[control.dns]], [[control.http]] or [[control.tcp]], or remove [control]")
		}
		l.targets("control", c.Control, &c.Agent)
	}
	l.exporters(c)
}

func (l *loader) agent(a *AgentConfig) {
	switch {
	case a.Name == "":
		host, err := os.Hostname()
		if err != nil {
			l.Errf("agent.name", "not set, and the host name is unknown (%v); set a name of %s", err, nameRule)
		}
		a.Name = host
	case !nameChars.MatchString(a.Name):
		l.Errf("agent.name", "%q has characters outside %s", a.Name, nameRule)
	case len(a.Name) > contract.MaxNameBytes:
		l.Errf("agent.name", "%d bytes long; allowed: at most %d", len(a.Name), contract.MaxNameBytes)
	}
	a.Interval.Duration = a.Interval.Or(DefaultInterval)
	if !a.Timeout.isSet() {
		a.Timeout = Timeout{Auto: true}
	}
	if !a.Timeout.Auto && a.Timeout.Fixed > a.Interval.Duration {
		l.Errf("agent.timeout", "%s is above agent.interval %s; allowed: \"auto\" or a duration up to the interval",
			a.Timeout, a.Interval)
	}
	a.TimeoutMin.Duration = a.TimeoutMin.Or(DefaultTimeoutMin)
	maxNote := ""
	if a.TimeoutMax.Duration == 0 {
		a.TimeoutMax.Duration = min(a.Interval.Duration, DefaultTimeoutMaxCap)
		maxNote = " (its default, min(interval, 1s))"
	}
	if a.TimeoutMin.Duration > a.TimeoutMax.Duration {
		l.Errf("agent.timeout_min", "%s is above agent.timeout_max %s%s; allowed: at most timeout_max",
			a.TimeoutMin, a.TimeoutMax, maxNote)
	}
	a.ConfirmInterval.Duration = a.ConfirmInterval.Or(DefaultConfirmInterval)
	if a.ConfirmInterval.Duration >= a.Interval.Duration {
		l.Errf("agent.confirm_interval", "%s is not shorter than agent.interval %s; allowed: less than the interval",
			a.ConfirmInterval, a.Interval)
	}
	atLeast(l, "agent.fail_threshold", &a.FailThreshold, DefaultFailThreshold, 1)
	if !l.Defined("agent.lateness_allowance") {
		a.LatenessAllowance.Duration = DefaultLatenessAllowance
	} else if a.LatenessAllowance.Duration > MaxLatenessAllowance {
		l.Errf("agent.lateness_allowance", "%s is above %s; allowed: \"0s\" (off) or a duration up to %s",
			a.LatenessAllowance, MaxLatenessAllowance, MaxLatenessAllowance)
	}
	if a.ICMPMode == "" {
		a.ICMPMode = probes.ICMPAuto
	}
	l.oneOf("agent.icmp_mode", string(a.ICMPMode), string(probes.ICMPAuto), string(probes.ICMPRaw), string(probes.ICMPDatagram))
	switch {
	case !l.Defined("agent.state_dir"):
		a.StateDir = DefaultStateDir
	case a.StateDir != "":
		a.StateDir = l.Resolve(a.StateDir)
	}
	l.labels("agent.labels", a.Labels)
}

// site checks the site s written at path of l's file. seen holds the names of the sites
// checked before, of every file, and where each was written.
func (l *loader) site(s *SiteConfig, path string, a *AgentConfig, seen map[string]sitePlace) {
	first, dup := seen[s.Name]
	switch {
	case s.Name == "":
		l.Errf(path+".name", "missing; every site needs a name of %s", nameRule)
	case !nameChars.MatchString(s.Name):
		l.Errf(path+".name", "%q has characters outside %s", s.Name, nameRule)
	case len(s.Name) > contract.MaxNameBytes:
		l.Errf(path+".name", "%d bytes long; allowed: at most %d", len(s.Name), contract.MaxNameBytes)
	case dup && first.file == l.File():
		l.Errf(path+".name", "%q is already the name of %s; site names must be unique", s.Name, first.path)
	case dup:
		l.Errf(path+".name", "%q is already the name of %s in %s:%d; site names must be unique, across included files too",
			s.Name, first.path, first.file, first.line)
	default:
		seen[s.Name] = sitePlace{file: l.File(), path: path, line: l.Line(path + ".name")}
	}
	l.labels(path+".labels", s.Labels)
	if s.empty() {
		l.Errf(path, "site %q has no targets; add [[site.icmp]], [[site.dns]], [[site.http]] or [[site.tcp]]", s.Name)
	}
	l.targets(path, &s.TargetSet, a)
}

func (ts *TargetSet) empty() bool {
	return len(ts.ICMP)+len(ts.DNS)+len(ts.HTTP)+len(ts.TCP) == 0
}

// spec is what every probe spec of probes/ offers: its defaults and its bounds.
type spec interface {
	Complete(probes.Written)
	Validate() probes.FieldErrors
}

// targets checks one site's (or the control set's) targets. Specs come first because
// their canonical form (a fully qualified query, an upper-case type) is part of the
// default name.
func (l *loader) targets(prefix string, ts *TargetSet, a *AgentConfig) {
	names := map[string]string{}
	check := func(kind probes.Kind, j int, o *TargetOptions, s spec, tls *probes.TLSSpec) {
		path := tomlconf.IndexPath(prefix+"."+string(kind), j)
		l.spec(path, s)
		l.tlsFiles(path+".tls", tls)
		l.targetOptions(path, o, s, a, names)
	}
	for j := range ts.ICMP {
		t := &ts.ICMP[j]
		check(probes.KindICMP, j, &t.TargetOptions, &t.ICMPSpec, nil)
	}
	for j := range ts.DNS {
		t := &ts.DNS[j]
		check(probes.KindDNS, j, &t.TargetOptions, &t.DNSSpec, &t.TLS)
	}
	for j := range ts.HTTP {
		t := &ts.HTTP[j]
		check(probes.KindHTTP, j, &t.TargetOptions, &t.HTTPSpec, &t.TLS)
	}
	for j := range ts.TCP {
		t := &ts.TCP[j]
		check(probes.KindTCP, j, &t.TargetOptions, &t.TCPSpec, &t.TLS)
	}
}

// spec completes a probe spec written at path and records its field errors there.
func (l *loader) spec(path string, s spec) {
	s.Complete(func(key string) bool { return l.Defined(path + "." + key) })
	for _, fe := range s.Validate() {
		key := path
		if fe.Key != "" {
			key += "." + fe.Key
		}
		l.Errf(key, "%s", fe.Msg)
	}
}

func (l *loader) targetOptions(path string, o *TargetOptions, s spec, a *AgentConfig, names map[string]string) {
	switch {
	case o.Name == "":
		o.Name = defaultTargetName(s)
	case strings.TrimSpace(o.Name) != o.Name || strings.IndexFunc(o.Name, unicode.IsControl) >= 0:
		l.Errf(path+".name", "%q has leading or trailing blanks or control characters", o.Name)
	}
	if len(o.Name) > contract.MaxNameBytes {
		l.Errf(path+".name", "%d bytes long (the name defaults to the address or URL); allowed: at most %d: set a shorter name = \"...\"", len(o.Name), contract.MaxNameBytes)
	}
	if first, dup := names[o.Name]; dup {
		l.Errf(path+".name", "%q is already the name of %s; target names must be unique within a site (set name = \"...\")",
			o.Name, first)
	} else {
		names[o.Name] = path
	}
	o.Interval.Duration = o.Interval.Or(a.Interval.Duration)
	inherited := ""
	if !o.Timeout.isSet() {
		o.Timeout = a.Timeout
		inherited = " (from agent.timeout)"
	}
	if !o.Timeout.Auto && o.Timeout.Fixed > o.Interval.Duration {
		l.Errf(path+".timeout", "%s%s is above the target's interval %s; allowed: \"auto\" or a duration up to the interval",
			o.Timeout, inherited, o.Interval)
	}
	// The auto timeout's ceiling is the target's interval; below the floor it has no room.
	if o.Timeout.Auto && l.Defined(path+".interval") && o.Interval.Duration < a.TimeoutMin.Duration {
		l.Errf(path+".interval", "%s is below agent.timeout_min %s, the floor of the auto timeout; allowed: at least timeout_min, or set a fixed timeout",
			o.Interval, a.TimeoutMin)
	}
	l.labels(path+".labels", o.Labels)
}

// SetDefaults fills what a [exporters.prometheus] section left out.
func (p *PrometheusConfig) SetDefaults() {
	if p.Listen == "" {
		p.Listen = DefaultPrometheusAddr
	}
	if p.Path == "" {
		p.Path = DefaultPrometheusPath
	}
}

// SetDefaults fills what a [[exporters.remote_write]] entry left out (zero fields).
func (rw *RemoteWriteConfig) SetDefaults() {
	if rw.Name == "" {
		if u, err := url.Parse(rw.URL); err == nil && u.Hostname() != "" {
			rw.Name = hostPort(u)
		}
	}
	rw.PushInterval.Duration = rw.PushInterval.Or(DefaultPushInterval)
	rw.Timeout.Duration = rw.Timeout.Or(DefaultPushTimeout)
	if rw.QueueSize == 0 {
		rw.QueueSize = DefaultQueueSize
	}
	if sp := rw.Spool; sp != nil {
		if sp.MaxBytes == 0 {
			sp.MaxBytes = DefaultSpoolMaxBytes
		}
		sp.MaxAge.Duration = sp.MaxAge.Or(DefaultSpoolMaxAge)
	}
}

func (l *loader) exporters(c *Config) {
	e := &c.Exporters
	if e.Stdout == nil {
		e.Stdout = &StdoutConfig{}
	}
	if e.Stdout.Format == "" {
		e.Stdout.Format = FormatText
	}
	l.oneOf("exporters.stdout.format", e.Stdout.Format, FormatText, FormatJSON)
	if e.Stdout.Results == "" {
		e.Stdout.Results = ResultsChanges
	}
	l.oneOf("exporters.stdout.results", e.Stdout.Results, ResultsChanges, ResultsAll)
	if !l.Defined("exporters.stdout.summary") {
		e.Stdout.Summary.Duration = DefaultStdoutSummary
	}
	if p := e.Prometheus; p != nil {
		p.SetDefaults()
		l.check("exporters.prometheus.listen", netcheck.Listen(p.Listen, DefaultPrometheusAddr))
		if !strings.HasPrefix(p.Path, "/") {
			l.Errf("exporters.prometheus.path", "%q does not start with '/'; allowed e.g. \"/metrics\"", p.Path)
		}
		l.WebConfigFile("exporters.prometheus.web_config", &p.WebConfig)
	}
	names := map[string]string{}
	for i := range e.RemoteWrite {
		l.remoteWrite(tomlconf.IndexPath("exporters.remote_write", i), &e.RemoteWrite[i], c.Agent.StateDir, names)
	}
}

func (l *loader) remoteWrite(path string, rw *RemoteWriteConfig, stateDir string, names map[string]string) {
	l.check(path+".url", netcheck.URL(rw.URL))
	if rw.Name != "" && !receiverChars.MatchString(rw.Name) {
		l.Errf(path+".name", "%q has characters outside %s, ':', '[', ']'", rw.Name, nameRule)
	}
	atLeast(l, path+".queue_size", &rw.QueueSize, DefaultQueueSize, 1)
	if sp := rw.Spool; sp != nil {
		atLeast(l, path+".spool.max_bytes", &sp.MaxBytes, DefaultSpoolMaxBytes, 1)
		if stateDir == "" {
			l.Errf(path+".spool", "needs agent.state_dir, which is set to \"\"; set a state directory or remove the spool")
		}
	}
	rw.SetDefaults()
	if first, dup := names[rw.Name]; dup && rw.Name != "" {
		l.Errf(path+".name", "%q is already the name of %s; receiver names must be unique (set name = \"...\")", rw.Name, first)
	} else {
		names[rw.Name] = path
	}
	l.headers(path+".headers", rw.Headers, reservedHeaders)
	l.ReadableFile(path+".bearer_token_file", &rw.BearerTokenFile)
	if ba := rw.BasicAuth; ba != nil {
		if rw.BearerTokenFile != "" {
			l.Errf(path+".basic_auth", "set together with bearer_token_file; allowed: one of the two")
		}
		if ba.Username == "" {
			l.Errf(path+".basic_auth.username", "missing; basic_auth needs a username and a password_file")
		}
		if ba.PasswordFile == "" {
			l.Errf(path+".basic_auth.password_file", "missing; basic_auth needs a username and a password_file")
		}
		l.ReadableFile(path+".basic_auth.password_file", &ba.PasswordFile)
	}
	for _, fe := range rw.TLS.Validate() {
		l.Errf(path+"."+fe.Key, "%s", fe.Msg)
	}
	l.tlsFiles(path+".tls", &rw.TLS)
}

// hostPort is host:port of a URL, with the scheme's port when the URL has none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// check records msg at path unless it is empty (the netcheck convention).
func (l *loader) check(path, msg string) {
	if msg != "" {
		l.Errf(path, "%s", msg)
	}
}

// tlsFiles resolves the files of TLS settings and checks that they can be read.
func (l *loader) tlsFiles(path string, t *probes.TLSSpec) {
	if t == nil {
		return
	}
	l.ReadableFile(path+".ca_file", &t.CAFile)
	l.ReadableFile(path+".cert_file", &t.CertFile)
	l.ReadableFile(path+".key_file", &t.KeyFile)
}

func (l *loader) headers(path string, h map[string]string, reserved []string) {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		switch {
		case !httpToken.MatchString(name):
			l.Errf(tomlconf.JoinKey(path, name), "%q is not a valid header name", name)
		case slices.ContainsFunc(reserved, func(r string) bool { return strings.EqualFold(r, name) }):
			l.Errf(tomlconf.JoinKey(path, name), "is set by edgeprobe; reserved: %s", strings.Join(reserved, ", "))
		}
	}
}

func (l *loader) labels(path string, labels map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(labels)) {
		key := tomlconf.JoinKey(path, name)
		switch {
		case !labelNameChars.MatchString(name):
			l.Errf(key, "%q is not a Prometheus label name; allowed: letters, digits and '_', not starting with a digit", name)
		case strings.HasPrefix(name, "__"):
			l.Errf(key, "names starting with \"__\" are reserved for Prometheus")
		case slices.Contains(contract.ReservedLabels, name):
			l.Errf(key, "is set by edgeprobe itself; reserved: %s", strings.Join(contract.ReservedLabels, ", "))
		case labels[name] == "":
			l.Errf(key, "empty value; Prometheus treats an empty label as absent, so remove it instead")
		}
	}
}

// oneOf checks an enumerated value and reports false when it is not allowed.
func (l *loader) oneOf(path, v string, allowed ...string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	l.Errf(path, "%q is not allowed; allowed: %s", v, strings.Join(quoted, ", "))
	return false
}

// atLeast fills the default of an unset integer and checks the lower bound of a set one
// (a zero the file writes is a mistake, not a request for the default).
func atLeast[T int | int64](l *loader, path string, v *T, def, lowest T) {
	if *v == 0 && !l.Defined(path) {
		*v = def
		return
	}
	if *v < lowest {
		l.Errf(path, "%d is too small; allowed: %d or more", *v, lowest)
	}
}

// defaultTargetName is "<kind>:<endpoint>", the name a target gets when it has none. An
// HTTP URL is named without its query string and password, which often carry secrets:
// the name goes to stdout, /metrics and every push.
func defaultTargetName(s spec) string {
	switch s := s.(type) {
	case *probes.ICMPSpec:
		return fmt.Sprintf("%s:%s", probes.KindICMP, s.Address)
	case *probes.DNSSpec:
		return fmt.Sprintf("%s:%s/%s/%s", probes.KindDNS, s.Server, s.Query, s.Type)
	case *probes.HTTPSpec:
		return fmt.Sprintf("%s:%s", probes.KindHTTP, urlName(s.URL))
	case *probes.TCPSpec:
		return fmt.Sprintf("%s:%s", probes.KindTCP, s.Address)
	}
	return ""
}

// urlName is a URL without its user information, query and fragment.
func urlName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return netcheck.Redact(raw)
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
