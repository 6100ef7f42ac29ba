package agent

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/probes"
)

// Defaults. The scheduler's adaptive timeout and the detection timings are tuned
// around these; change them only together with DESIGN.md.
const (
	DefaultInterval        = time.Second
	DefaultTimeoutMin      = 20 * time.Millisecond
	DefaultTimeoutMaxCap   = time.Second // timeout_max defaults to min(interval, this)
	DefaultConfirmInterval = 100 * time.Millisecond
	DefaultFailThreshold   = 3
	DefaultStateDir        = "/var/lib/edgeprobe"
	DefaultStdoutSummary   = 10 * time.Second
	DefaultPrometheusAddr  = "127.0.0.1:9469"
	DefaultPrometheusPath  = "/metrics"
	DefaultPushInterval    = time.Second
	DefaultPushTimeout     = 5 * time.Second
	DefaultQueueSize       = 1000
	DefaultSpoolMaxBytes   = 64 << 20
	DefaultSpoolMaxAge     = time.Hour
	DefaultICMPSize        = 56
)

// ICMP payload bounds: the probes put a timestamp and a tracker (24 bytes) in every
// echo, and an IPv6 packet without jumbograms holds at most 65487 bytes of payload.
const (
	minICMPSize = 24
	maxICMPSize = 65487
	maxRedirect = 20
)

var (
	nameChars      = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	receiverChars  = regexp.MustCompile(`^[A-Za-z0-9._:\[\]-]+$`)
	labelNameChars = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	httpToken      = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	statusCode     = regexp.MustCompile(`^[1-5]([0-9][0-9]|xx)$`)
)

// reservedLabels are set by edgeprobe on every series or by Prometheus on scrape.
var reservedLabels = []string{"agent", "site", "target", "kind", "state", "instance", "job"}

// reservedHeaders belong to the remote_write protocol or to the auth settings.
var reservedHeaders = []string{"Authorization", "Content-Encoding", "Content-Length", "Content-Type",
	"Host", "User-Agent", "X-Prometheus-Remote-Write-Version"}

const nameRule = "letters, digits, '.', '_', '-'"

// normalize fills defaults and checks every value, recording each problem.
func (l *loader) normalize(c *Config) {
	l.agent(&c.Agent)
	if len(c.Sites) == 0 {
		l.errAt("site", "no sites; add at least one [[site]] with a name and targets")
	}
	siteNames := map[string]string{}
	for i := range c.Sites {
		l.site(c, i, siteNames)
	}
	if c.Control != nil {
		if c.Control.empty() {
			l.errAt("control", "has no targets; add [[control.icmp]], [[control.dns]], [[control.http]] or [[control.tcp]], or remove [control]")
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
			l.errAt("agent.name", "not set, and the host name is unknown (%v); set a name of %s", err, nameRule)
		}
		a.Name = host
	case !nameChars.MatchString(a.Name):
		l.errAt("agent.name", "%q has characters outside %s", a.Name, nameRule)
	}
	defaultDuration(&a.Interval, DefaultInterval)
	if !a.Timeout.isSet() {
		a.Timeout = Timeout{Auto: true}
	}
	if !a.Timeout.Auto && a.Timeout.Fixed > a.Interval.Duration {
		l.errAt("agent.timeout", "%s is above agent.interval %s; allowed: \"auto\" or a duration up to the interval",
			a.Timeout, a.Interval)
	}
	defaultDuration(&a.TimeoutMin, DefaultTimeoutMin)
	maxNote := ""
	if a.TimeoutMax.Duration == 0 {
		a.TimeoutMax.Duration = min(a.Interval.Duration, DefaultTimeoutMaxCap)
		maxNote = " (its default, min(interval, 1s))"
	}
	if a.TimeoutMin.Duration > a.TimeoutMax.Duration {
		l.errAt("agent.timeout_min", "%s is above agent.timeout_max %s%s; allowed: at most timeout_max",
			a.TimeoutMin, a.TimeoutMax, maxNote)
	}
	defaultDuration(&a.ConfirmInterval, DefaultConfirmInterval)
	if a.ConfirmInterval.Duration >= a.Interval.Duration {
		l.errAt("agent.confirm_interval", "%s is not shorter than agent.interval %s; allowed: less than the interval",
			a.ConfirmInterval, a.Interval)
	}
	atLeast(l, "agent.fail_threshold", &a.FailThreshold, DefaultFailThreshold, 1)
	if a.ICMPMode == "" {
		a.ICMPMode = probes.ICMPAuto
	}
	l.oneOf("agent.icmp_mode", string(a.ICMPMode), string(probes.ICMPAuto), string(probes.ICMPRaw), string(probes.ICMPDatagram))
	switch {
	case !l.defined["agent.state_dir"]:
		a.StateDir = DefaultStateDir
	case a.StateDir != "":
		a.StateDir = l.resolve(a.StateDir)
	}
	l.labels("agent.labels", a.Labels)
}

func (l *loader) site(c *Config, i int, seen map[string]string) {
	s := &c.Sites[i]
	path := indexPath("site", i)
	switch {
	case s.Name == "":
		l.errAt(path+".name", "missing; every site needs a name of %s", nameRule)
	case !nameChars.MatchString(s.Name):
		l.errAt(path+".name", "%q has characters outside %s", s.Name, nameRule)
	case seen[s.Name] != "":
		l.errAt(path+".name", "%q is already the name of %s; site names must be unique", s.Name, seen[s.Name])
	default:
		seen[s.Name] = path
	}
	l.labels(path+".labels", s.Labels)
	if s.empty() {
		l.errAt(path, "site %q has no targets; add [[site.icmp]], [[site.dns]], [[site.http]] or [[site.tcp]]", s.Name)
	}
	l.targets(path, &s.TargetSet, &c.Agent)
}

func (ts *TargetSet) empty() bool {
	return len(ts.ICMP)+len(ts.DNS)+len(ts.HTTP)+len(ts.TCP) == 0
}

// targets checks one site's (or the control set's) targets. Specs come first because
// their canonical form (a fully qualified query, an upper-case type) is part of the
// default name.
func (l *loader) targets(prefix string, ts *TargetSet, a *AgentConfig) {
	names := map[string]string{}
	for j := range ts.ICMP {
		t := &ts.ICMP[j]
		path := indexPath(prefix+".icmp", j)
		l.icmp(path, &t.ICMPSpec)
		l.targetOptions(path, &t.TargetOptions, t.ICMPSpec, a, names)
	}
	for j := range ts.DNS {
		t := &ts.DNS[j]
		path := indexPath(prefix+".dns", j)
		l.dns(path, &t.DNSSpec)
		l.targetOptions(path, &t.TargetOptions, t.DNSSpec, a, names)
	}
	for j := range ts.HTTP {
		t := &ts.HTTP[j]
		path := indexPath(prefix+".http", j)
		l.http(path, &t.HTTPSpec)
		l.targetOptions(path, &t.TargetOptions, t.HTTPSpec, a, names)
	}
	for j := range ts.TCP {
		t := &ts.TCP[j]
		path := indexPath(prefix+".tcp", j)
		l.tcp(path, &t.TCPSpec)
		l.targetOptions(path, &t.TargetOptions, t.TCPSpec, a, names)
	}
}

func (l *loader) targetOptions(path string, o *TargetOptions, spec any, a *AgentConfig, names map[string]string) {
	switch {
	case o.Name == "":
		o.Name = defaultTargetName(spec)
	case strings.TrimSpace(o.Name) != o.Name || strings.IndexFunc(o.Name, unicode.IsControl) >= 0:
		l.errAt(path+".name", "%q has leading or trailing blanks or control characters", o.Name)
	}
	if first, dup := names[o.Name]; dup {
		l.errAt(path+".name", "%q is already the name of %s; target names must be unique within a site (set name = \"...\")",
			o.Name, first)
	} else {
		names[o.Name] = path
	}
	defaultDuration(&o.Interval, a.Interval.Duration)
	inherited := ""
	if !o.Timeout.isSet() {
		o.Timeout = a.Timeout
		inherited = " (from agent.timeout)"
	}
	if !o.Timeout.Auto && o.Timeout.Fixed > o.Interval.Duration {
		l.errAt(path+".timeout", "%s%s is above the target's interval %s; allowed: \"auto\" or a duration up to the interval",
			o.Timeout, inherited, o.Interval)
	}
	// The auto timeout's ceiling is the target's interval; below the floor it has no room.
	if o.Timeout.Auto && l.defined[path+".interval"] && o.Interval.Duration < a.TimeoutMin.Duration {
		l.errAt(path+".interval", "%s is below agent.timeout_min %s, the floor of the auto timeout; allowed: at least timeout_min, or set a fixed timeout",
			o.Interval, a.TimeoutMin)
	}
	l.labels(path+".labels", o.Labels)
}

func (l *loader) icmp(path string, s *probes.ICMPSpec) {
	l.host(path+".address", s.Address)
	l.family(path+".family", s.Family, s.Address)
	if s.Size == 0 && !l.defined[path+".size"] {
		s.Size = DefaultICMPSize
	} else if s.Size < minICMPSize || s.Size > maxICMPSize {
		l.errAt(path+".size", "%d is out of range; allowed: %d to %d bytes", s.Size, minICMPSize, maxICMPSize)
	}
}

func (l *loader) dns(path string, s *probes.DNSSpec) {
	if s.Server == "" {
		l.errAt(path+".server", "missing; allowed: an IP address or host name, with an optional :port")
	} else {
		host := s.Server
		if _, err := netip.ParseAddr(s.Server); err != nil {
			if h, port, err := net.SplitHostPort(s.Server); err == nil {
				host = h
				l.port(path+".server", port)
			}
		}
		l.host(path+".server", host)
	}
	if s.Transport == "" {
		s.Transport = "udp"
	}
	l.oneOf(path+".transport", s.Transport, "udp", "tcp", "tls")
	if s.Query == "" {
		l.errAt(path+".query", "missing; allowed: a domain name such as \"www.example.test.\"")
	} else if _, ok := dns.IsDomainName(s.Query); !ok {
		l.errAt(path+".query", "%q is not a domain name", s.Query)
	} else {
		s.Query = dns.Fqdn(s.Query)
	}
	if s.Type == "" {
		s.Type = "A"
	}
	s.Type = strings.ToUpper(s.Type)
	if _, ok := dns.StringToType[s.Type]; !ok {
		l.errAt(path+".type", "%q is not a DNS record type; allowed: a mnemonic such as A, AAAA, CNAME, MX, NS, SOA, TXT", s.Type)
	}
	if len(s.Rcodes) == 0 && !l.defined[path+".rcodes"] {
		s.Rcodes = []string{"NOERROR"}
	} else if len(s.Rcodes) == 0 {
		l.errAt(path+".rcodes", "empty; list at least one accepted rcode, e.g. [\"NOERROR\"]")
	}
	for k, rc := range s.Rcodes {
		s.Rcodes[k] = strings.ToUpper(rc)
		if _, ok := dns.StringToRcode[s.Rcodes[k]]; !ok {
			l.errAt(indexPath(path+".rcodes", k), "%q is not an rcode; allowed: a mnemonic such as NOERROR, NXDOMAIN, SERVFAIL, REFUSED", rc)
		}
	}
	for k, re := range s.Answers {
		l.regexp(indexPath(path+".answers", k), re)
	}
	if s.Recursion == nil {
		recursion := true
		s.Recursion = &recursion
	}
	l.tls(path+".tls", &s.TLS, false)
}

func (l *loader) http(path string, s *probes.HTTPSpec) {
	l.url(path+".url", s.URL)
	if u, err := url.Parse(s.URL); err == nil {
		l.family(path+".family", s.Family, u.Hostname())
	}
	if s.Method == "" {
		s.Method = "GET"
	} else if !httpToken.MatchString(s.Method) {
		l.errAt(path+".method", "%q is not an HTTP method; allowed: a token such as GET, HEAD or POST", s.Method)
	}
	l.headers(path+".headers", s.Headers, nil)
	if s.Redirects < 0 || s.Redirects > maxRedirect {
		l.errAt(path+".redirects", "%d is out of range; allowed: 0 (do not follow) to %d", s.Redirects, maxRedirect)
	}
	switch {
	case len(s.Status) == 0 && l.defined[path+".status"]:
		l.errAt(path+".status", "empty; list at least one accepted code, e.g. [\"2xx\"]")
	case len(s.Status) == 0 && s.Redirects > 0:
		s.Status = []string{"2xx"}
	case len(s.Status) == 0:
		s.Status = []string{"2xx", "3xx"}
	}
	for k, code := range s.Status {
		s.Status[k] = strings.ToLower(code)
		if !statusCode.MatchString(s.Status[k]) {
			l.errAt(indexPath(path+".status", k), "%q is not a status code; allowed: a code from 100 to 599 (\"204\") or a class (\"2xx\")", code)
		}
	}
	if s.BodyMatch != "" {
		l.regexp(path+".body_match", s.BodyMatch)
	}
	atLeast(l, path+".body_limit", &s.BodyLimit, probes.DefaultBodyLimit, 1)
	l.tls(path+".tls", &s.TLS, false)
}

func (l *loader) tcp(path string, s *probes.TCPSpec) {
	key := path + ".address"
	host, port, err := net.SplitHostPort(s.Address)
	switch {
	case s.Address == "":
		l.errAt(key, "missing; allowed: host:port, e.g. \"198.51.100.13:443\" or \"[2001:db8::13]:443\"")
	case err != nil:
		l.errAt(key, "%q is not host:port; allowed e.g. \"198.51.100.13:443\" or \"[2001:db8::13]:443\"", s.Address)
	default:
		l.host(key, host)
		l.port(key, port)
	}
	l.family(path+".family", s.Family, host)
	l.tls(path+".tls", &s.TLS, true)
}

func (l *loader) exporters(c *Config) {
	e := &c.Exporters
	if e.Stdout == nil {
		e.Stdout = &StdoutConfig{}
	}
	if e.Stdout.Format == "" {
		e.Stdout.Format = "text"
	}
	l.oneOf("exporters.stdout.format", e.Stdout.Format, "text", "json")
	if e.Stdout.Results == "" {
		e.Stdout.Results = "changes"
	}
	l.oneOf("exporters.stdout.results", e.Stdout.Results, "changes", "all")
	if !l.defined["exporters.stdout.summary"] {
		e.Stdout.Summary.Duration = DefaultStdoutSummary
	}
	if p := e.Prometheus; p != nil {
		if p.Listen == "" {
			p.Listen = DefaultPrometheusAddr
		}
		if host, port, err := net.SplitHostPort(p.Listen); err != nil {
			l.errAt("exporters.prometheus.listen", "%q is not host:port; allowed e.g. \"127.0.0.1:9469\" or \":9469\" (all addresses)", p.Listen)
		} else {
			if host != "" {
				l.host("exporters.prometheus.listen", host)
			}
			l.port("exporters.prometheus.listen", port)
		}
		if p.Path == "" {
			p.Path = DefaultPrometheusPath
		} else if !strings.HasPrefix(p.Path, "/") {
			l.errAt("exporters.prometheus.path", "%q does not start with '/'; allowed e.g. \"/metrics\"", p.Path)
		}
		l.readableFile("exporters.prometheus.web_config", &p.WebConfig)
	}
	names := map[string]string{}
	for i := range e.RemoteWrite {
		l.remoteWrite(indexPath("exporters.remote_write", i), &e.RemoteWrite[i], c.Agent.StateDir, names)
	}
}

func (l *loader) remoteWrite(path string, rw *RemoteWriteConfig, stateDir string, names map[string]string) {
	l.url(path+".url", rw.URL)
	if rw.Name == "" {
		if u, err := url.Parse(rw.URL); err == nil && u.Hostname() != "" {
			rw.Name = hostPort(u)
		}
	} else if !receiverChars.MatchString(rw.Name) {
		l.errAt(path+".name", "%q has characters outside %s, ':', '[', ']'", rw.Name, nameRule)
	}
	if first, dup := names[rw.Name]; dup && rw.Name != "" {
		l.errAt(path+".name", "%q is already the name of %s; receiver names must be unique (set name = \"...\")", rw.Name, first)
	} else {
		names[rw.Name] = path
	}
	defaultDuration(&rw.PushInterval, DefaultPushInterval)
	defaultDuration(&rw.Timeout, DefaultPushTimeout)
	atLeast(l, path+".queue_size", &rw.QueueSize, DefaultQueueSize, 1)
	l.headers(path+".headers", rw.Headers, reservedHeaders)
	l.readableFile(path+".bearer_token_file", &rw.BearerTokenFile)
	if ba := rw.BasicAuth; ba != nil {
		if rw.BearerTokenFile != "" {
			l.errAt(path+".basic_auth", "set together with bearer_token_file; allowed: one of the two")
		}
		if ba.Username == "" {
			l.errAt(path+".basic_auth.username", "missing; basic_auth needs a username and a password_file")
		}
		if ba.PasswordFile == "" {
			l.errAt(path+".basic_auth.password_file", "missing; basic_auth needs a username and a password_file")
		}
		l.readableFile(path+".basic_auth.password_file", &ba.PasswordFile)
	}
	l.tls(path+".tls", &rw.TLS, true)
	if sp := rw.Spool; sp != nil {
		atLeast(l, path+".spool.max_bytes", &sp.MaxBytes, DefaultSpoolMaxBytes, 1)
		defaultDuration(&sp.MaxAge, DefaultSpoolMaxAge)
		if stateDir == "" {
			l.errAt(path+".spool", "needs agent.state_dir, which is set to \"\"; set a state directory or remove the spool")
		}
	}
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

func (l *loader) url(path, raw string) {
	if raw == "" {
		l.errAt(path, "missing; allowed: an http:// or https:// URL")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		l.errAt(path, "%q is not a URL: %v", raw, urlErrText(err))
	case u.Scheme != "http" && u.Scheme != "https":
		l.errAt(path, "%q has scheme %q; allowed: http or https", raw, u.Scheme)
	case u.Hostname() == "":
		l.errAt(path, "%q has no host; allowed e.g. \"http://198.51.100.13/healthz\"", raw)
	default:
		l.host(path, u.Hostname())
		if u.Port() != "" {
			l.port(path, u.Port())
		}
	}
}

// urlErrText drops the url package's repetition of the URL from its error text.
func urlErrText(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

// host checks an IP literal (with an optional IPv6 zone) or a DNS host name.
func (l *loader) host(path, h string) {
	if h == "" {
		l.errAt(path, "missing; allowed: an IP address or a host name")
		return
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return
	}
	if !isHostName(h) {
		l.errAt(path, "%q is neither an IP address nor a host name", h)
	}
}

// isHostName accepts names of letters, digits, '-' and '_' labels. A name whose last
// label is numeric is refused: no top-level domain is, so it is a mistyped address.
func isHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	_, err := strconv.Atoi(labels[len(labels)-1])
	return err != nil
}

func (l *loader) port(path, port string) {
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		l.errAt(path, "port %q is not a number from 1 to 65535", port)
	}
}

// family checks a family setting and that it does not contradict an IP literal.
func (l *loader) family(path, fam, host string) {
	if !l.oneOf(path, fam, "", "ip4", "ip6") {
		return
	}
	addr, err := netip.ParseAddr(host)
	if fam == "" || err != nil {
		return
	}
	if addr.Unmap().Is4() != (fam == "ip4") {
		l.errAt(path, "%q contradicts the address %s", fam, host)
	}
}

// tls checks TLS settings. Enable means something only for TCP targets (and is ignored
// for remote_write, which follows its URL's scheme).
func (l *loader) tls(path string, t *probes.TLSSpec, enableAllowed bool) {
	if t.Enable && !enableAllowed {
		l.errAt(path+".enable", "applies to tcp targets only; http uses TLS for https URLs, dns for transport = \"tls\"")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		l.errAt(path, "cert_file and key_file go together; set both for a client certificate, or neither")
	}
	l.readableFile(path+".ca_file", &t.CAFile)
	l.readableFile(path+".cert_file", &t.CertFile)
	l.readableFile(path+".key_file", &t.KeyFile)
}

// readableFile checks that a file named in the config can be opened now, so a missing
// CA bundle or password file is a config error at check time rather than a failure in
// the middle of the night. Relative names are relative to the config file, and are
// rewritten so that the rest of the program need not know where that was.
func (l *loader) readableFile(path string, name *string) {
	if *name == "" {
		return
	}
	*name = l.resolve(*name)
	f, err := os.Open(*name)
	if err != nil {
		l.errAt(path, "%v; allowed: an existing, readable file", err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		l.errAt(path, "%s is a directory; allowed: an existing, readable file", *name)
	}
}

// resolve makes a file name from the config absolute, so that the effective config means
// the same files wherever it is read from.
func (l *loader) resolve(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if abs, err := filepath.Abs(filepath.Join(l.dir, name)); err == nil {
		return abs
	}
	return filepath.Join(l.dir, name)
}

func (l *loader) regexp(path, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		l.errAt(path, "%q is not a valid regular expression: %v", expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

func (l *loader) headers(path string, h map[string]string, reserved []string) {
	for _, name := range sortedMapKeys(h) {
		switch {
		case !httpToken.MatchString(name):
			l.errAt(joinKey(path, name), "%q is not a valid header name", name)
		case containsFold(reserved, name):
			l.errAt(joinKey(path, name), "is set by edgeprobe; reserved: %s", strings.Join(reserved, ", "))
		}
	}
}

func (l *loader) labels(path string, labels map[string]string) {
	for _, name := range sortedMapKeys(labels) {
		key := joinKey(path, name)
		switch {
		case !labelNameChars.MatchString(name):
			l.errAt(key, "%q is not a Prometheus label name; allowed: letters, digits and '_', not starting with a digit", name)
		case strings.HasPrefix(name, "__"):
			l.errAt(key, "names starting with \"__\" are reserved for Prometheus")
		case slices.Contains(reservedLabels, name):
			l.errAt(key, "is set by edgeprobe itself; reserved: %s", strings.Join(reservedLabels, ", "))
		case labels[name] == "":
			l.errAt(key, "empty value; Prometheus treats an empty label as absent, so remove it instead")
		}
	}
}

// oneOf checks an enumerated value and reports false when it is not allowed.
func (l *loader) oneOf(path, v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	l.errAt(path, "%q is not allowed; allowed: %s", v, strings.Join(quoted, ", "))
	return false
}

// atLeast fills the default of an unset integer and checks the lower bound of a set one
// (a zero the file writes is a mistake, not a request for the default).
func atLeast[T int | int64](l *loader, path string, v *T, def, lowest T) {
	if *v == 0 && !l.defined[path] {
		*v = def
		return
	}
	if *v < lowest {
		l.errAt(path, "%d is too small; allowed: %d or more", *v, lowest)
	}
}

func defaultDuration(d *Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func sortedMapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// defaultTargetName is "<kind>:<endpoint>", the name a target gets when it has none.
func defaultTargetName(spec any) string {
	switch s := spec.(type) {
	case probes.ICMPSpec:
		return fmt.Sprintf("%s:%s", probes.KindICMP, s.Address)
	case probes.DNSSpec:
		return fmt.Sprintf("%s:%s/%s/%s", probes.KindDNS, s.Server, s.Query, s.Type)
	case probes.HTTPSpec:
		return fmt.Sprintf("%s:%s", probes.KindHTTP, s.URL)
	case probes.TCPSpec:
		return fmt.Sprintf("%s:%s", probes.KindTCP, s.Address)
	}
	return ""
}
