package probes

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/netcheck"
)

// Each spec owns its defaults and its bounds: Complete fills the defaults (and the
// canonical forms, such as a fully qualified query), Validate names every field that
// is out of bounds. The agent's config calls both and adds FILE:LINE to each FieldError;
// New calls them too, so a spec built in code meets exactly the rules a file does.

// FieldError is one field of a spec that is wrong. Key is the field's TOML key relative
// to the spec ("size", "rcodes[1]", "tls.cert_file"), or "" for the spec as a whole.
type FieldError struct {
	Key string
	Msg string
}

// FieldErrors are the problems of one spec, in field order.
type FieldErrors []FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		if fe.Key == "" {
			parts[i] = fe.Msg
		} else {
			parts[i] = fe.Key + ": " + fe.Msg
		}
	}
	return strings.Join(parts, "; ")
}

// err is e as an error, nil when empty.
func (e FieldErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func (e *FieldErrors) add(key, format string, args ...any) {
	*e = append(*e, FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// check adds msg under key unless it is empty (the netcheck convention).
func (e *FieldErrors) check(key, msg string) {
	if msg != "" {
		*e = append(*e, FieldError{Key: key, Msg: msg})
	}
}

// Written says whether a configuration file spelled out a field, by its key relative to
// the spec. Complete fills the default of a zero field only when it was not written: a
// zero the file writes is a mistake, not a request for the default. nil means nothing
// was written, as for a spec built in code.
type Written func(key string) bool

func (w Written) has(key string) bool { return w != nil && w(key) }

// IntBound is the range an integer field of a spec must lie in.
type IntBound struct {
	Kind     Kind
	Key      string
	Min, Max int64
}

// The integer bounds of the specs. An echo request carries the probe's token in its
// first icmpTokenLen payload bytes; an IPv6 packet without jumbograms holds at most
// 65487 bytes of ICMP payload (IPv4 a little more), so that bound serves both families.
var (
	ICMPSize      = IntBound{KindICMP, "size", icmpTokenLen, 65487}
	HTTPRedirects = IntBound{KindHTTP, "redirects", 0, 20}
	HTTPBodyLimit = IntBound{KindHTTP, "body_limit", 1, math.MaxInt64}
)

// Bounds lists every integer bound above: what the tests walk to prove that a config
// file and a spec built in code are held to the same limits.
var Bounds = []IntBound{ICMPSize, HTTPRedirects, HTTPBodyLimit}

func (b IntBound) check(errs *FieldErrors, v int64) {
	if v >= b.Min && v <= b.Max {
		return
	}
	if b.Max == math.MaxInt64 {
		errs.add(b.Key, "%d is too small; allowed: %d or more", v, b.Min)
		return
	}
	errs.add(b.Key, "%d is out of range; allowed: %d to %d", v, b.Min, b.Max)
}

// Complete fills the defaults.
func (s *ICMPSpec) Complete(written Written) {
	if s.Size == 0 && !written.has("size") {
		s.Size = DefaultICMPSize
	}
}

// Validate checks every field.
func (s *ICMPSpec) Validate() FieldErrors {
	var errs FieldErrors
	errs.check("address", netcheck.Host(s.Address))
	checkFamily(&errs, s.Family, s.Address)
	ICMPSize.check(&errs, int64(s.Size))
	return errs
}

// Complete fills the defaults and canonical forms: a fully qualified query, an
// upper-case type and rcodes.
func (s *DNSSpec) Complete(written Written) {
	if s.Transport == "" {
		s.Transport = "udp"
	}
	if _, ok := dns.IsDomainName(s.Query); ok && s.Query != "" {
		s.Query = dns.Fqdn(s.Query)
	}
	if s.Type == "" {
		s.Type = "A"
	}
	s.Type = strings.ToUpper(s.Type)
	if len(s.Rcodes) == 0 && !written.has("rcodes") {
		s.Rcodes = []string{"NOERROR"}
	}
	for i, rc := range s.Rcodes {
		s.Rcodes[i] = strings.ToUpper(rc)
	}
	if s.Recursion == nil {
		recursion := true
		s.Recursion = &recursion
	}
}

// Validate checks every field.
func (s *DNSSpec) Validate() FieldErrors {
	var errs FieldErrors
	if s.Server == "" {
		errs.add("server", "missing; allowed: an IP address or host name, with an optional :port")
	} else {
		host := s.Server
		if _, err := netip.ParseAddr(s.Server); err != nil {
			if h, port, err := net.SplitHostPort(s.Server); err == nil {
				host = h
				errs.check("server", netcheck.Port(port))
			}
		}
		errs.check("server", netcheck.Host(host))
	}
	oneOf(&errs, "transport", s.Transport, "udp", "tcp", "tls")
	if s.Query == "" {
		errs.add("query", "missing; allowed: a domain name such as \"www.example.test.\"")
	} else if _, ok := dns.IsDomainName(s.Query); !ok {
		errs.add("query", "%q is not a domain name", s.Query)
	}
	if _, ok := dns.StringToType[s.Type]; !ok {
		errs.add("type", "%q is not a DNS record type; allowed: a mnemonic such as A, AAAA, CNAME, MX, NS, SOA, TXT", s.Type)
	}
	if len(s.Rcodes) == 0 {
		errs.add("rcodes", "empty; list at least one accepted rcode, e.g. [\"NOERROR\"]")
	}
	for k, rc := range s.Rcodes {
		if _, ok := dns.StringToRcode[rc]; !ok {
			errs.add(fmt.Sprintf("rcodes[%d]", k), "%q is not an rcode; allowed: a mnemonic such as NOERROR, NXDOMAIN, SERVFAIL, REFUSED", rc)
		}
	}
	for k, re := range s.Answers {
		checkRegexp(&errs, fmt.Sprintf("answers[%d]", k), re)
	}
	s.TLS.validate(&errs, "applies to tcp targets only; dns uses TLS for transport = \"tls\"")
	return errs
}

// Complete fills the defaults: GET, the accepted status codes (2xx and 3xx when
// redirects are not followed, else 2xx) and the body limit.
func (s *HTTPSpec) Complete(written Written) {
	if s.Method == "" {
		s.Method = "GET"
	}
	switch {
	case len(s.Status) > 0 || written.has("status"):
	case s.Redirects > 0:
		s.Status = []string{"2xx"}
	default:
		s.Status = []string{"2xx", "3xx"}
	}
	for k, code := range s.Status {
		s.Status[k] = strings.ToLower(code)
	}
	if s.BodyLimit == 0 && !written.has("body_limit") {
		s.BodyLimit = DefaultBodyLimit
	}
}

var (
	httpToken  = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	statusCode = regexp.MustCompile(`^[1-5]([0-9][0-9]|xx)$`)
)

// Validate checks every field.
func (s *HTTPSpec) Validate() FieldErrors {
	var errs FieldErrors
	errs.check("url", netcheck.URL(s.URL))
	if u, err := url.Parse(s.URL); err == nil {
		checkFamily(&errs, s.Family, u.Hostname())
	}
	if !httpToken.MatchString(s.Method) {
		errs.add("method", "%q is not an HTTP method; allowed: a token such as GET, HEAD or POST", s.Method)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Headers)) {
		if !httpToken.MatchString(name) {
			errs.add(headerKey(name), "%q is not a valid header name", name)
		}
	}
	HTTPRedirects.check(&errs, int64(s.Redirects))
	if len(s.Status) == 0 {
		errs.add("status", "empty; list at least one accepted code, e.g. [\"2xx\"]")
	}
	for k, code := range s.Status {
		if !statusCode.MatchString(code) {
			errs.add(fmt.Sprintf("status[%d]", k), "%q is not a status code; allowed: a code from 100 to 599 (\"204\") or a class (\"2xx\")", code)
		}
	}
	if s.BodyMatch != "" {
		checkRegexp(&errs, "body_match", s.BodyMatch)
	}
	HTTPBodyLimit.check(&errs, s.BodyLimit)
	s.TLS.validate(&errs, "applies to tcp targets only; http uses TLS for https URLs")
	return errs
}

// headerKey is the key of one header under headers, quoted when it is not a bare key.
func headerKey(name string) string {
	for _, r := range name {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return "headers." + strconv.Quote(name)
		}
	}
	return "headers." + name
}

// Complete fills the defaults (a TCP spec has none).
func (s *TCPSpec) Complete(Written) {}

// Validate checks every field.
func (s *TCPSpec) Validate() FieldErrors {
	var errs FieldErrors
	errs.check("address", netcheck.HostPort(s.Address))
	host, _, _ := net.SplitHostPort(s.Address)
	checkFamily(&errs, s.Family, host)
	s.TLS.validate(&errs, "")
	return errs
}

// Validate checks the TLS settings that do not depend on files: a client certificate
// needs its key and the key its certificate. Whether the files can be read is the
// config's check (it knows where relative names start).
func (t TLSSpec) Validate() FieldErrors {
	var errs FieldErrors
	t.validate(&errs, "")
	return errs
}

// validate adds the TLS problems under "tls"; noEnable, when set, is the message for a
// kind on which Enable means nothing.
func (t TLSSpec) validate(errs *FieldErrors, noEnable string) {
	if t.Enable && noEnable != "" {
		errs.add("tls.enable", "%s", noEnable)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs.add("tls", "cert_file and key_file go together; set both for a client certificate, or neither")
	}
}

// checkFamily checks a family setting and that it does not contradict an IP literal.
func checkFamily(errs *FieldErrors, fam, host string) {
	if !oneOf(errs, "family", fam, "", "ip4", "ip6") {
		return
	}
	addr, err := netip.ParseAddr(host)
	if fam == "" || err != nil {
		return
	}
	if addr.Unmap().Is4() != (fam == "ip4") {
		errs.add("family", "%q contradicts the address %s", fam, host)
	}
}

// oneOf checks an enumerated value and reports false when it is not allowed.
func oneOf(errs *FieldErrors, key, v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	errs.add(key, "%q is not allowed; allowed: %s", v, strings.Join(quoted, ", "))
	return false
}

func checkRegexp(errs *FieldErrors, key, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		errs.add(key, "%q is not a valid regular expression: %v", expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}
