package probes

// Name resolution for targets. A target named by host name must follow its DNS records:
// when an operator moves a service to another address, the probe must follow within the
// record's TTL, not keep probing the address it saw at start. The Go resolver hides TTLs,
// so DNS names are asked with miekg/dns and cached for exactly their TTL. Names in
// /etc/hosts have no TTL; they go through the Go resolver restricted to the hosts file
// and are kept for hostsTTL, so an edit to the file is seen within seconds.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	hostsTTL    = 5 * time.Second // cache time of /etc/hosts answers
	maxCacheTTL = time.Hour       // cap on a DNS record's TTL
	resolvConf  = "/etc/resolv.conf"
)

// ResolveError says that a host name did not resolve; probes report it as ReasonResolve.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("resolve %s: %v", e.Host, e.Err) }
func (e *ResolveError) Unwrap() error { return e.Err }

// Resolver resolves host names to one address, caching each answer for its TTL.
// It is safe for concurrent use.
type Resolver struct {
	servers []string // host:port of DNS servers; empty: read resolv.conf on each cache miss
	hosts   *net.Resolver
	client  dns.Client

	mu    sync.Mutex
	cache map[resolveKey]resolveEntry
}

type resolveKey struct{ host, network string }

type resolveEntry struct {
	addr    netip.Addr
	expires time.Time
}

var errNotInHosts = errors.New("not in the hosts file")

// NewResolver returns a Resolver that asks servers (host:port), or the servers of
// /etc/resolv.conf when servers is empty.
func NewResolver(servers []string) *Resolver {
	return &Resolver{
		servers: servers,
		// A Go resolver that cannot reach any DNS server answers from /etc/hosts only.
		hosts: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errNotInHosts
		}},
		cache: make(map[resolveKey]resolveEntry),
	}
}

var defaultResolver = sync.OnceValue(func() *Resolver { return NewResolver(nil) })

// LookupAddr returns one address of host for network ("ip": IPv4 preferred, else IPv6;
// "ip4"; "ip6"). IP literals are returned as they are. Errors are *ResolveError.
func (r *Resolver) LookupAddr(ctx context.Context, host, network string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if (network == "ip4" && !ip.Is4()) || (network == "ip6" && !ip.Is6()) {
			return netip.Addr{}, &ResolveError{host, fmt.Errorf("address is not of family %s", network)}
		}
		return ip, nil
	}
	key := resolveKey{host, network}
	now := time.Now()
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.addr, nil
	}
	addr, ttl, err := r.lookup(ctx, host, network)
	if err != nil {
		return netip.Addr{}, &ResolveError{host, err}
	}
	r.mu.Lock()
	r.cache[key] = resolveEntry{addr, now.Add(ttl)}
	r.mu.Unlock()
	return addr, nil
}

func (r *Resolver) lookup(ctx context.Context, host, network string) (netip.Addr, time.Duration, error) {
	if addrs, err := r.hosts.LookupNetIP(ctx, network, host); err == nil {
		if addr, ok := pick(addrs, network); ok {
			return addr, hostsTTL, nil
		}
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA}
	switch network {
	case "ip4":
		types = types[:1]
	case "ip6":
		types = types[1:]
	}
	servers, err := r.dnsServers()
	if err != nil {
		return netip.Addr{}, 0, err
	}
	var lastErr error
	for _, qtype := range types {
		addr, ttl, err := r.query(ctx, servers, host, qtype)
		if err == nil {
			return addr, ttl, nil
		}
		lastErr = err
	}
	return netip.Addr{}, 0, lastErr
}

func pick(addrs []netip.Addr, network string) (netip.Addr, bool) {
	for _, want4 := range []bool{true, false} {
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is4() == want4 && (network == "ip" || (network == "ip4") == a.Is4()) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

func (r *Resolver) dnsServers() ([]string, error) {
	if len(r.servers) > 0 {
		return r.servers, nil
	}
	conf, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("read DNS servers: %w", err)
	}
	if len(conf.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", resolvConf)
	}
	servers := make([]string, len(conf.Servers))
	for i, s := range conf.Servers {
		servers[i] = net.JoinHostPort(s, conf.Port)
	}
	return servers, nil
}

// query asks the servers in turn until one answers. The TTL is the smallest along the
// answer's chain (CNAMEs included): when any link changes, the address may change.
func (r *Resolver) query(ctx context.Context, servers []string, host string, qtype uint16) (netip.Addr, time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), qtype)
	var lastErr error
	for _, server := range servers {
		in, err := exchange(ctx, &r.client, m, server)
		if err != nil {
			lastErr = fmt.Errorf("ask %s: %w", server, err)
			continue
		}
		if mismatch := replyMismatch(m, in); mismatch != "" {
			lastErr = fmt.Errorf("ask %s: %s", server, mismatch)
			continue
		}
		if in.Rcode != dns.RcodeSuccess {
			return netip.Addr{}, 0, fmt.Errorf("%s %s: %s from %s", host, dns.TypeToString[qtype], rcodeString(in.Rcode), server)
		}
		addr, ttl := answerAddr(in.Answer, m.Question[0].Name, qtype)
		if !addr.IsValid() {
			return netip.Addr{}, 0, fmt.Errorf("%s: no %s record at %s", host, dns.TypeToString[qtype], server)
		}
		return addr, ttl, nil
	}
	return netip.Addr{}, 0, lastErr
}

// maxCNAMEChain bounds the CNAME links followed within one answer.
const maxCNAMEChain = 16

// answerAddr follows the answer section from name along its CNAMEs to the first record of
// qtype (A or AAAA) and returns its address and the smallest TTL along the way. Records
// for other names are ignored: a server, honest or not, cannot slip in an address for a
// name that was not asked. A CNAME loop or a chain longer than maxCNAMEChain gives no
// address.
func answerAddr(answer []dns.RR, name string, qtype uint16) (netip.Addr, time.Duration) {
	ttl := maxCacheTTL
	for range maxCNAMEChain + 1 {
		next := ""
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			var addr netip.Addr
			switch v := rr.(type) {
			case *dns.CNAME:
				if next == "" {
					next = v.Target
					ttl = min(ttl, time.Duration(h.Ttl)*time.Second)
				}
				continue
			case *dns.A:
				if qtype == dns.TypeA {
					addr, _ = netip.AddrFromSlice(v.A.To4())
				}
			case *dns.AAAA:
				if qtype == dns.TypeAAAA {
					addr, _ = netip.AddrFromSlice(v.AAAA)
				}
			}
			if addr.IsValid() {
				return addr, min(ttl, time.Duration(h.Ttl)*time.Second)
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return netip.Addr{}, 0
}

// exchange sends m over UDP and retries over TCP when the answer was truncated. The
// resolver and the DNS prober both use it.
func exchange(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	udp := *c
	udp.Net = "udp"
	in, _, err := udp.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, err
	}
	if !in.Truncated {
		return in, nil
	}
	tcp := *c
	tcp.Net = "tcp"
	in, _, err = tcp.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("over TCP after a truncated answer: %w", err)
	}
	return in, nil
}

// dialContext resolves the host of address (host:port) with r and connects to it; it
// reports how long resolution took.
func (r *Resolver) dialContext(ctx context.Context, d *net.Dialer, network, family, address string) (net.Conn, time.Duration, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	ip, err := r.LookupAddr(ctx, strings.Trim(host, "[]"), family)
	resolved := time.Since(start)
	if err != nil {
		return nil, resolved, err
	}
	conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
	return conn, resolved, err
}
