package failover

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/damp"
	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// Defaults and bounds of the [actions] table (README.md lists them for people).
const (
	DefaultMaxConcurrentFailovers = 1
	DefaultMaxFailoversPerHour    = 2
	DefaultMaxAttempts            = 20
	DefaultRetryMin               = time.Second
	DefaultRetryMax               = time.Minute
	DefaultAuditMaxBytes          = 16 << 20
	minAuditMaxBytes              = 64 << 10

	DefaultTTL        = 60 * time.Second
	minTTL            = time.Second
	maxTTL            = 24 * time.Hour
	DefaultDNSTimeout = 2 * time.Second
	maxDNSTimeout     = time.Minute
	DefaultTransport  = "tcp"

	DefaultExecTimeout = 30 * time.Second
	maxExecTimeout     = time.Hour

	FailbackManual = "manual"
	FailbackAuto   = "auto"
)

// What an action does: the values of EDGEPROBE_ACTION, of exec's on, and of the audit's
// action field.
const (
	ActionFailover = "failover"
	ActionFailback = "failback"
)

// Duration is a TOML duration string with a unit.
type Duration = tomlconf.Duration

// Config is the [actions] table of view.toml (docs/architecture.md, "Failover").
type Config struct {
	// DryRun decides and audits ("dry_run") but changes nothing and runs no runbook.
	DryRun bool `toml:"dry_run"`
	// MaxConcurrentFailovers bounds the sites failed over or failing over at once; one
	// more lost site engages the global hold and alerts.
	MaxConcurrentFailovers int `toml:"max_concurrent_failovers"`
	// MaxFailoversPerHour bounds the failovers of one site in any 60 minutes.
	MaxFailoversPerHour int `toml:"max_failovers_per_hour"`
	// LostFor is how long a site must have been lost without a break before it is
	// failed over (internal/damp); "0s" acts at once.
	LostFor Duration `toml:"lost_for"`
	// MaxAttempts bounds the attempts of one DNS update in one incident; RetryMin and
	// RetryMax bound the exponential backoff between them.
	MaxAttempts int      `toml:"max_attempts"`
	RetryMin    Duration `toml:"retry_min"`
	RetryMax    Duration `toml:"retry_max"`
	// AuditMaxBytes is the size past which audit.log is rotated to audit.log.1.
	AuditMaxBytes int64 `toml:"audit_max_bytes"`

	DNS  []DNSAction  `toml:"dns"`
	Exec []ExecAction `toml:"exec"`

	// StateDir is the view's state directory, where the audit log and the failover
	// state live; Check sets it.
	StateDir string `toml:"-"`
}

// DNSAction rewrites one RRset by RFC 2136 dynamic update on failover and failback.
type DNSAction struct {
	Site     string   `toml:"site"`
	Server   string   `toml:"server"` // host:port of the primary name server
	Zone     string   `toml:"zone"`
	Name     string   `toml:"name"`
	Type     string   `toml:"type"` // A, AAAA or CNAME
	Primary  []string `toml:"primary"`
	Failover []string `toml:"failover"`
	TTL      Duration `toml:"ttl"`
	// TSIGKeyFile is a BIND key file (tsig-keygen's output); TSIGKey names the key to use
	// when the file holds several.
	TSIGKeyFile string `toml:"tsig_key_file"`
	TSIGKey     string `toml:"tsig_key"`
	// Failback is "manual" (API or CLI only) or "auto": back to primary once the site
	// has been up for RecoverFor.
	Failback   string   `toml:"failback"`
	RecoverFor Duration `toml:"recover_for"`
	Timeout    Duration `toml:"timeout"`   // per attempt
	Transport  string   `toml:"transport"` // tcp or udp

	key      Key
	rrtype   uint16
	primary  []string // canonical record data
	failover []string
}

// ExecAction runs a runbook command when its site fails over or back.
type ExecAction struct {
	Site    string   `toml:"site"`
	Command []string `toml:"command"` // argv; the program's path is relative to the config file
	// On lists the events that run it: "failover", "failback" or both.
	On      []string `toml:"on"`
	Timeout Duration `toml:"timeout"`
}

// ZeroAllowed says whether the key at path may hold a zero duration, for the view's
// tomlconf.Options: lost_for = "0s" means act at once.
func ZeroAllowed(prefix, path string) bool { return path == prefix+".lost_for" }

// Check fills the defaults of the table at prefix (e.g. "actions") and records every
// problem in doc at its indexed key. stateDir is the view's state directory; actions
// need one (the audit log lives there).
func (c *Config) Check(doc *tomlconf.Doc, prefix string, stateDir string) {
	bad := doc.Errf
	key := func(k string) string { return prefix + "." + k }
	c.StateDir = stateDir
	written := len(c.DNS)+len(c.Exec) > 0
	for _, k := range []string{"dry_run", "max_concurrent_failovers", "max_failovers_per_hour", "lost_for", "max_attempts", "retry_min", "retry_max", "audit_max_bytes"} {
		written = written || doc.Defined(key(k))
	}
	if written && stateDir == "" {
		bad(prefix, "needs the view's state_dir, which is not set: the audit log and the failover state live there")
	}
	positive := func(k string, v *int, def int) {
		switch {
		case !doc.Defined(key(k)):
			*v = def
		case *v < 1:
			bad(key(k), "%d is not allowed; allowed: 1 or more", *v)
		}
	}
	positive("max_concurrent_failovers", &c.MaxConcurrentFailovers, DefaultMaxConcurrentFailovers)
	positive("max_failovers_per_hour", &c.MaxFailoversPerHour, DefaultMaxFailoversPerHour)
	positive("max_attempts", &c.MaxAttempts, DefaultMaxAttempts)
	if c.LostFor.Duration < 0 {
		bad(key("lost_for"), "%s is negative; allowed: zero (act at once) or a positive duration", c.LostFor)
	}
	c.RetryMin.Duration = c.RetryMin.Or(DefaultRetryMin)
	c.RetryMax.Duration = c.RetryMax.Or(DefaultRetryMax)
	if c.RetryMax.Duration < c.RetryMin.Duration {
		bad(key("retry_max"), "%s is shorter than retry_min %s", c.RetryMax, c.RetryMin)
	}
	switch {
	case !doc.Defined(key("audit_max_bytes")):
		c.AuditMaxBytes = DefaultAuditMaxBytes
	case c.AuditMaxBytes < minAuditMaxBytes:
		bad(key("audit_max_bytes"), "%d is too small; allowed: %d or more", c.AuditMaxBytes, minAuditMaxBytes)
	}

	rrsets := map[string]string{} // server name type -> the key of the action that writes it
	for i := range c.DNS {
		c.DNS[i].check(doc, tomlconf.IndexPath(key("dns"), i), rrsets)
	}
	c.checkPolicies(doc, key("dns"))
	for i := range c.Exec {
		c.Exec[i].check(doc, tomlconf.IndexPath(key("exec"), i))
	}
}

// checkPolicies requires the DNS actions of one site to agree on failback and
// recover_for: a site fails over and back as one (README.md, "Sites").
func (c *Config) checkPolicies(doc *tomlconf.Doc, key string) {
	first := map[string]int{}
	for i, a := range c.DNS {
		j, seen := first[a.Site]
		if !seen {
			first[a.Site] = i
			continue
		}
		b := c.DNS[j]
		if a.Failback != b.Failback {
			doc.Errf(tomlconf.IndexPath(key, i)+".failback", "%q differs from %q in %s, an action of the same site; a site fails back as one", a.Failback, b.Failback, tomlconf.IndexPath(key, j))
		}
		if a.RecoverFor != b.RecoverFor {
			doc.Errf(tomlconf.IndexPath(key, i)+".recover_for", "%s differs from %s in %s, an action of the same site; a site fails back as one", a.RecoverFor, b.RecoverFor, tomlconf.IndexPath(key, j))
		}
	}
}

func (a *DNSAction) check(doc *tomlconf.Doc, key string, rrsets map[string]string) {
	bad := doc.Errf
	checkSite(doc, key, a.Site)

	if a.Server != "" {
		if _, _, err := net.SplitHostPort(a.Server); err != nil && netcheck.Host(a.Server) == "" {
			a.Server = net.JoinHostPort(a.Server, "53") // a bare address: the DNS port
		}
	}
	if msg := netcheck.HostPort(a.Server); msg != "" {
		bad(key+".server", "%s", msg)
	}

	written := a.Name
	zoneOK := a.checkName(doc, key+".zone", &a.Zone)
	nameOK := a.checkName(doc, key+".name", &a.Name)
	if zoneOK && nameOK && !dns.IsSubDomain(a.Zone, a.Name) {
		hint := ""
		if !strings.HasSuffix(written, ".") {
			hint = fmt.Sprintf(" (names are absolute, with or without the final dot: did you mean %q?)", strings.TrimSuffix(a.Name, ".")+"."+a.Zone)
		}
		bad(key+".name", "%s is not inside zone %s%s", a.Name, a.Zone, hint)
	}

	typeOK := true
	switch strings.ToUpper(a.Type) {
	case "A":
		a.rrtype = dns.TypeA
	case "AAAA":
		a.rrtype = dns.TypeAAAA
	case "CNAME":
		a.rrtype = dns.TypeCNAME
		if zoneOK && nameOK && a.Name == a.Zone {
			bad(key+".name", "a CNAME cannot stand at the zone's apex %s (it holds SOA and NS)", a.Zone)
		}
	case "":
		bad(key+".type", "missing; allowed: A, AAAA, CNAME")
		typeOK = false
	default:
		bad(key+".type", "%q is not allowed; allowed: A, AAAA, CNAME", a.Type)
		typeOK = false
	}
	a.Type = strings.ToUpper(a.Type)
	if typeOK {
		a.primary = a.checkRecords(doc, key+".primary", a.Primary)
		a.failover = a.checkRecords(doc, key+".failover", a.Failover)
		if a.primary != nil && a.failover != nil && sameSet(a.primary, a.failover) {
			bad(key+".failover", "the same records as primary: a failover would change nothing")
		}
	}
	if zoneOK && nameOK && typeOK {
		id := a.Server + " " + a.Name + " " + a.Type
		if prev, dup := rrsets[id]; dup {
			bad(key+".name", "%s %s on %s is rewritten by %s already; one RRset, one action", a.Name, a.Type, a.Server, prev)
		} else {
			rrsets[id] = key
		}
	}

	if !doc.Defined(key + ".ttl") {
		a.TTL.Duration = DefaultTTL
	} else if d := a.TTL.Duration; d < minTTL || d > maxTTL || d%time.Second != 0 {
		bad(key+".ttl", "%s is not allowed; allowed: whole seconds from %s to %s", a.TTL, minTTL, maxTTL)
	}

	a.checkKey(doc, key)

	switch a.Failback {
	case "":
		a.Failback = FailbackManual
	case FailbackManual, FailbackAuto:
	default:
		bad(key+".failback", "%q is not allowed; allowed: manual, auto", a.Failback)
	}
	a.RecoverFor.Duration = a.RecoverFor.Or(damp.DefaultRecoverFor)
	a.Timeout.Duration = a.Timeout.Or(DefaultDNSTimeout)
	if a.Timeout.Duration > maxDNSTimeout {
		bad(key+".timeout", "%s is too long; allowed: up to %s", a.Timeout, maxDNSTimeout)
	}
	switch a.Transport {
	case "":
		a.Transport = DefaultTransport
	case "tcp", "udp":
	default:
		bad(key+".transport", "%q is not allowed; allowed: tcp, udp", a.Transport)
	}
}

// checkName makes a zone or record name fully qualified and lower case, and says
// whether it is a valid name.
func (a *DNSAction) checkName(doc *tomlconf.Doc, key string, name *string) bool {
	if *name == "" {
		doc.Errf(key, "missing; allowed: a domain name, e.g. \"www.example.com.\"")
		return false
	}
	n := strings.ToLower(dns.Fqdn(*name))
	if !isDomainName(n) {
		doc.Errf(key, "%q is not a domain name", *name)
		return false
	}
	*name = n
	return true
}

// isDomainName accepts a fully qualified host name, or a wildcard ("*.") before one.
func isDomainName(n string) bool {
	return netcheck.IsHostName(strings.TrimPrefix(n, "*.")) && n != "."
}

// checkRecords parses the record data of one list for the action's type and returns it
// in canonical form, or nil when it is not valid.
func (a *DNSAction) checkRecords(doc *tomlconf.Doc, key string, values []string) []string {
	if len(values) == 0 {
		doc.Errf(key, "missing; allowed: the %s records, e.g. %s", a.Type, exampleRecords(a.rrtype))
		return nil
	}
	if a.rrtype == dns.TypeCNAME && len(values) != 1 {
		doc.Errf(key, "%d records; a CNAME RRset holds exactly one", len(values))
		return nil
	}
	out := make([]string, 0, len(values))
	ok := true
	for i, v := range values {
		c, err := canonicalRecord(a.rrtype, v)
		if err != nil {
			doc.Errf(tomlconf.IndexPath(key, i), "%v", err)
			ok = false
			continue
		}
		if slices.Contains(out, c) {
			doc.Errf(tomlconf.IndexPath(key, i), "%s is listed twice", v)
			ok = false
			continue
		}
		out = append(out, c)
	}
	if !ok {
		return nil
	}
	return out
}

func exampleRecords(t uint16) string {
	switch t {
	case dns.TypeAAAA:
		return `["2001:db8::13"]`
	case dns.TypeCNAME:
		return `["standby.example.com."]`
	}
	return `["198.51.100.13"]`
}

// canonicalRecord is the record data as the comparison with a server's answer needs it.
func canonicalRecord(t uint16, v string) (string, error) {
	switch t {
	case dns.TypeA:
		ip, err := netip.ParseAddr(v)
		if err != nil || !ip.Is4() {
			return "", fmt.Errorf("%q is not an IPv4 address (an A record)", v)
		}
		return ip.String(), nil
	case dns.TypeAAAA:
		ip, err := netip.ParseAddr(v)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("%q is not an IPv6 address (an AAAA record)", v)
		}
		return ip.String(), nil
	case dns.TypeCNAME:
		n := strings.ToLower(dns.Fqdn(v))
		if !netcheck.IsHostName(n) {
			return "", fmt.Errorf("%q is not a domain name (a CNAME's target)", v)
		}
		return n, nil
	}
	return "", fmt.Errorf("type %s has no record syntax here", dns.TypeToString[t])
}

func (a *DNSAction) checkKey(doc *tomlconf.Doc, key string) {
	k := key + ".tsig_key_file"
	if a.TSIGKeyFile == "" {
		doc.Errf(k, "missing; allowed: a BIND key file (tsig-keygen's output): updates are signed with TSIG")
		return
	}
	a.TSIGKeyFile = doc.Resolve(a.TSIGKeyFile)
	data, err := tomlconf.ReadFileLimit(a.TSIGKeyFile, tomlconf.MaxSecretBytes)
	if err != nil {
		doc.Errf(k, "%v; allowed: an existing, readable regular file of at most %d bytes", err, tomlconf.MaxSecretBytes)
		return
	}
	keys, err := ParseKeyFile(data)
	if err != nil {
		var ke *KeyFileError
		if errors.As(err, &ke) {
			doc.Errf(k, "%s:%d: %s", a.TSIGKeyFile, ke.Line, ke.Msg)
		} else {
			doc.Errf(k, "%s: %v", a.TSIGKeyFile, err)
		}
		return
	}
	sel, err := SelectKey(keys, a.TSIGKey)
	if err != nil {
		kk := k
		if a.TSIGKey != "" {
			kk = key + ".tsig_key"
		}
		doc.Errf(kk, "%s: %v", a.TSIGKeyFile, err)
		return
	}
	a.key = sel
}

func (e *ExecAction) check(doc *tomlconf.Doc, key string) {
	checkSite(doc, key, e.Site)
	if len(e.Command) == 0 || e.Command[0] == "" {
		doc.Errf(key+".command", "missing; allowed: the program and its arguments, e.g. [\"/usr/local/bin/runbook\", \"failover\"]")
	} else {
		e.Command[0] = doc.Resolve(e.Command[0])
		fi, err := os.Stat(e.Command[0])
		switch {
		case err != nil:
			doc.Errf(tomlconf.IndexPath(key+".command", 0), "%v; allowed: an executable file", err)
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			doc.Errf(tomlconf.IndexPath(key+".command", 0), "%s is not an executable regular file", e.Command[0])
		}
	}
	if !doc.Defined(key + ".on") {
		e.On = []string{ActionFailover}
	} else if len(e.On) == 0 {
		doc.Errf(key+".on", "empty; allowed: failover, failback or both")
	}
	for i, on := range e.On {
		switch {
		case on != ActionFailover && on != ActionFailback:
			doc.Errf(tomlconf.IndexPath(key+".on", i), "%q is not allowed; allowed: failover, failback", on)
		case slices.Index(e.On, on) < i:
			doc.Errf(tomlconf.IndexPath(key+".on", i), "%q is listed twice", on)
		}
	}
	e.Timeout.Duration = e.Timeout.Or(DefaultExecTimeout)
	if e.Timeout.Duration > maxExecTimeout {
		doc.Errf(key+".timeout", "%s is too long; allowed: up to %s", e.Timeout, maxExecTimeout)
	}
}

// runsOn says whether the runbook runs for action (failover or failback).
func (e *ExecAction) runsOn(action string) bool { return slices.Contains(e.On, action) }

func checkSite(doc *tomlconf.Doc, key, site string) {
	switch {
	case site == "":
		doc.Errf(key+".site", "missing; allowed: the name of a site, as the agents report it")
	case strings.IndexFunc(site, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) >= 0:
		doc.Errf(key+".site", "%q holds a space, a control character or a '/'; allowed: a site name as the agents report it", site)
	}
}

// sameSet reports whether a and b hold the same values, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}

// Sites lists the sites that have actions, in the order the config first names them.
func (c *Config) Sites() []string {
	var out []string
	for _, a := range c.DNS {
		if !slices.Contains(out, a.Site) {
			out = append(out, a.Site)
		}
	}
	for _, e := range c.Exec {
		if !slices.Contains(out, e.Site) {
			out = append(out, e.Site)
		}
	}
	return out
}

// policy is how a site fails back: its DNS actions agree on it (checkPolicies); a site
// with runbooks only fails back by hand, after the default recover_for.
func (c *Config) policy(site string) (failback string, recoverFor time.Duration) {
	for _, a := range c.DNS {
		if a.Site == site {
			return a.Failback, a.RecoverFor.Duration
		}
	}
	return FailbackManual, damp.DefaultRecoverFor
}
