//go:build linux

package e2e

// A real authoritative server on the namespace network: Debian's BIND (`named`) in a host
// namespace, serving one zone whose records the view's [[actions.dns]] rewrite by RFC 2136
// updates (docs/architecture.md, "Failover"). The server itself is internal/testkit's
// StartNamed, which failover/named_test.go runs on loopback; here it runs in a namespace.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// namedRun is testkit's named serving a zone from a host of the test network on port 53,
// with the update key (KeyFile) and the refused key (RefusedKeyFile). Its queries go out
// from the namespace of another host, as a resolver's would.
type namedRun struct {
	*testkit.Named
	t testing.TB
}

// startNamed runs named on host node of n, authoritative for zone with the A records of
// records (owner name relative to the zone -> addresses, TTL 5 s), and waits until it
// answers from host from. named is stopped when the test ends.
func startNamed(t testing.TB, n *testnet.Net, node, from, zone string, records map[string][]string) *namedRun {
	t.Helper()
	addr, err := n.Addr(node)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := n.NS(node)
	if err != nil {
		t.Fatal(err)
	}
	var z strings.Builder
	for _, name := range slices.Sorted(maps.Keys(records)) {
		for _, a := range records[name] {
			fmt.Fprintf(&z, "%s 5 IN A %s\n", name, a)
		}
	}
	s := testkit.StartNamed(t, testkit.NamedOptions{Zone: zone, Records: z.String(), Addr: addr, Port: 53,
		// ip(8) execs named in the namespace, so the death signal and SIGTERM reach it.
		Wrap: func(argv []string) []string { return append([]string{"ip", "netns", "exec", ns}, argv...) },
		Dial: n.DialContext(from)})
	return &namedRun{Named: s, t: t}
}

// mustSerial is the zone's SOA serial (named moves it on every update it applies) or
// the test's end.
func (s *namedRun) mustSerial() uint32 {
	s.t.Helper()
	v, err := s.Serial()
	if err != nil {
		s.t.Fatalf("SOA serial of %s: %v", s.Zone, err)
	}
	return v
}

// lookupA is the A RRset of name (fully qualified), sorted.
func (s *namedRun) lookupA(name string) ([]string, error) { return s.Lookup(name, dns.TypeA) }

// waitA waits until name's A RRset is exactly want and returns when that was first
// read; it fails the test after timeout.
func (s *namedRun) waitA(what, name string, timeout time.Duration, want ...string) time.Time {
	s.t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(timeout)
	var got []string
	var err error
	for {
		got, err = s.lookupA(name)
		now := time.Now()
		if err == nil && slices.Equal(got, want) {
			return now
		}
		if now.After(deadline) {
			s.t.Fatalf("waiting %v for %s (%s A %v): last answer %v (error %v)", timeout, what, name, want, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectZone fails the test unless the zone's serial is serial and name holds exactly
// want: nothing was written.
func (s *namedRun) expectZone(what string, serial uint32, name string, want ...string) {
	s.t.Helper()
	slices.Sort(want)
	got, err := s.lookupA(name)
	if err != nil {
		s.t.Fatalf("%s: reading %s: %v", what, name, err)
	}
	if !slices.Equal(got, want) {
		s.t.Errorf("%s: %s A = %v, want %v", what, name, got, want)
	}
	if now := s.mustSerial(); now != serial {
		s.t.Errorf("%s: the zone's serial moved from %d to %d: an update was applied", what, serial, now)
	}
}
