//go:build linux

package probes

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// movingZone answers moving.example.test with whatever address the test set last,
// with a TTL of one second, and counts the queries it gets.
type movingZone struct {
	mu      sync.Mutex
	a       string
	queries atomic.Int64
}

func (z *movingZone) set(a string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.a = a
}

func (z *movingZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.queries.Add(1)
	z.mu.Lock()
	a := z.a
	z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	add := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	switch {
	case q.Name == "moving.example.test." && q.Qtype == dns.TypeA:
		add("moving.example.test. 1 IN A " + a)
	case q.Name == "alias.example.test." && q.Qtype == dns.TypeA:
		add("alias.example.test. 1 IN CNAME stable.example.test.")
		add("stable.example.test. 300 IN A 198.51.100.7")
	case q.Name == "v6only.example.test." && q.Qtype == dns.TypeAAAA:
		add("v6only.example.test. 300 IN AAAA 2001:db8::7")
	case q.Name == "dual.example.test." && q.Qtype == dns.TypeA:
		add("dual.example.test. 300 IN A 127.0.0.1")
	case q.Name == "dual.example.test." && q.Qtype == dns.TypeAAAA:
		add("dual.example.test. 300 IN AAAA ::1")
	case q.Name == "v6only.example.test.":
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

func TestResolverFollowsTTL(t *testing.T) {
	zone := &movingZone{a: "198.51.100.1"}
	r := NewResolver([]string{startDNSPair(t, zone)})
	ctx := context.Background()
	lookup := func(want string) {
		t.Helper()
		got, err := r.LookupAddr(ctx, "moving.example.test", "ip4")
		if err != nil || got != netip.MustParseAddr(want) {
			t.Fatalf("lookup: %v, %v; want %s", got, err, want)
		}
	}
	lookup("198.51.100.1")
	zone.set("198.51.100.2")
	lookup("198.51.100.1") // cached for the record's TTL
	if n := zone.queries.Load(); n != 1 {
		t.Errorf("%d queries within the TTL, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	lookup("198.51.100.2")
	if n := zone.queries.Load(); n != 2 {
		t.Errorf("%d queries after the TTL, want 2", n)
	}
}

func TestResolverLookups(t *testing.T) {
	zone := &movingZone{a: "198.51.100.1"}
	r := NewResolver([]string{startDNSPair(t, zone)})
	tests := []struct {
		host, network string
		want          string // address, or "error: <substring>"
	}{
		{"198.51.100.3", "ip", "198.51.100.3"},
		{"::ffff:198.51.100.3", "ip4", "198.51.100.3"},
		{"2001:db8::1", "ip4", "error: not of family ip4"},
		{"localhost", "ip4", "127.0.0.1"}, // /etc/hosts, never asked of DNS
		{"alias.example.test", "ip", "198.51.100.7"},
		{"v6only.example.test", "ip", "2001:db8::7"},
		{"v6only.example.test", "ip4", "error: no A record"},
		{"missing.example.test", "ip", "error: NXDOMAIN"},
	}
	for _, tt := range tests {
		before := zone.queries.Load()
		got, err := r.LookupAddr(context.Background(), tt.host, tt.network)
		if w, ok := strings.CutPrefix(tt.want, "error: "); ok {
			var re *ResolveError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), tt.host) {
				t.Errorf("%s %s: %v, %v; want a ResolveError naming the host with %q", tt.host, tt.network, got, err, w)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s %s: %v, %v; want %s", tt.host, tt.network, got, err, tt.want)
		}
		if tt.host == "localhost" && zone.queries.Load() != before {
			t.Errorf("localhost was asked of DNS")
		}
	}
	// The chain's smallest TTL (the CNAME's 1 s) bounds the cache time, not the A's 300 s.
	r.mu.Lock()
	e := r.cache[resolveKey{"alias.example.test", "ip"}]
	r.mu.Unlock()
	if left := time.Until(e.expires); left > time.Second {
		t.Errorf("alias cached for %v more, want at most the CNAME's 1s", left)
	}
}

// TestTCPFollowsDNS moves a target's address while a prober runs: after the TTL the
// probe goes to the new address (where nothing listens) and is refused.
func TestTCPFollowsDNS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	zone := &movingZone{a: "127.0.0.1"}
	env := &Env{Resolver: NewResolver([]string{startDNSPair(t, zone)})}
	p, err := New(KindTCP, TCPSpec{Address: "moving.example.test:" + port}, env)
	if err != nil {
		t.Fatal(err)
	}
	if r := probeOnce(t, p, time.Second); !r.OK || r.Phases.Resolve <= 0 {
		t.Fatalf("first probe: %+v", r)
	}
	zone.set("127.0.0.2")
	time.Sleep(1100 * time.Millisecond)
	if r := probeOnce(t, p, time.Second); r.Reason != ReasonRefused {
		t.Fatalf("probe after the move: %+v, want refused", r)
	}
}
