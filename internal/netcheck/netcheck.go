// Package netcheck validates the network names a configuration holds: host names, IP
// literals, ports, host:port and http(s) URLs. Each check returns "" when the value is
// fine, or what is wrong and what is allowed, worded for a config error; the agent's
// probe specs, the agent's exporters and the view's config all use these, so that one
// address is accepted or refused the same way everywhere.
package netcheck

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Host checks an IP literal (with an optional IPv6 zone) or a DNS host name.
func Host(h string) string {
	if h == "" {
		return "missing; allowed: an IP address or a host name"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if !IsHostName(h) {
		return fmt.Sprintf("%q is neither an IP address nor a host name", h)
	}
	return ""
}

// IsHostName accepts names of letters, digits, '-' and '_' labels. A name whose last
// label is numeric is refused: no top-level domain is, so it is a mistyped address.
func IsHostName(h string) bool {
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

// Port checks a port number written as text.
func Port(port string) string {
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 1 to 65535", port)
	}
	return ""
}

// HostPort checks host:port with a host (IP literal or name) and a port.
func HostPort(addr string) string {
	if addr == "" {
		return "missing; allowed: host:port, e.g. \"198.51.100.13:443\" or \"[2001:db8::13]:443\""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port; allowed e.g. \"198.51.100.13:443\" or \"[2001:db8::13]:443\"", addr)
	}
	if msg := Host(host); msg != "" {
		return msg
	}
	return Port(port)
}

// Listen checks a listen address: host:port, where the host may be empty (every
// address). The message's example is the listener's default, def.
func Listen(addr, def string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		_, defPort, _ := net.SplitHostPort(def)
		return fmt.Sprintf("%q is not host:port; allowed e.g. %q, or \":%s\" for all addresses", addr, def, defPort)
	}
	if host != "" {
		if msg := Host(host); msg != "" {
			return msg
		}
	}
	return Port(port)
}

// URL checks an http:// or https:// URL with a valid host and, if given, port.
func URL(raw string) string {
	if raw == "" {
		return "missing; allowed: an http:// or https:// URL"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL: %v", Redact(raw), urlErrText(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q has scheme %q; allowed: http or https", u.Redacted(), u.Scheme)
	case u.Hostname() == "":
		return fmt.Sprintf("%q has no host; allowed e.g. \"http://198.51.100.13/healthz\"", u.Redacted())
	}
	if msg := Host(u.Hostname()); msg != "" {
		return msg
	}
	if u.Port() != "" {
		return Port(u.Port())
	}
	return ""
}

// Mask is what Redact puts in place of a secret.
const Mask = "xxxxx"

// Redact is a URL as it may be shown: the password replaced (url.URL.Redacted) and the
// query string's values too, which often carry an API key. Text that does not parse as
// a URL is shown up to its first '?' and without anything before an '@'.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			raw = raw[:i] + "?" + Mask
		}
		if i := strings.LastIndexByte(raw, '@'); i >= 0 {
			if j := strings.Index(raw, "//"); j >= 0 && j < i {
				raw = raw[:j+2] + Mask + raw[i:]
			}
		}
		return raw
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{Mask}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// urlErrText drops the url package's repetition of the URL from its error text.
func urlErrText(err error) string {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return err.Error()
}
