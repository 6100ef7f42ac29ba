//go:build linux

package probes

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// TestICMPNetns probes from an edge namespace to a site namespace: a live host answers,
// a blackholed site times out, and an address that the site's router declares
// unreachable gives ICMP destination unreachable, as a real router's would.
func TestICMPNetns(t *testing.T) {
	n := testnet.New(t, testnet.Spec{Sites: []testnet.SiteSpec{{Name: "a"}}, Edges: []string{"e0"}})
	site, err := n.SiteAddr("a", 0)
	if err != nil {
		t.Fatal(err)
	}
	const nowhere = "203.0.113.250"
	for _, cmd := range [][]string{
		{"a", "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		// The kernel rate-limits the ICMP errors it sends per destination; both modes
		// ask for several here.
		{"a", "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"},
		{"a", "ip", "route", "add", "unreachable", nowhere + "/32"},
		{"e0", "ip", "route", "add", nowhere + "/32", "via", site.String()},
		// Namespaces have their own ping_group_range, so this one needs no restoring.
		{"e0", "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"},
	} {
		if _, err := n.Exec(cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram} {
		t.Run(string(mode), func(t *testing.T) {
			e, err := NewICMPEngine(mode)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			env := &Env{ICMP: e}
			up, err := New(KindICMP, ICMPSpec{Address: site.String()}, env)
			if err != nil {
				t.Fatal(err)
			}
			dead, err := New(KindICMP, ICMPSpec{Address: nowhere}, env)
			if err != nil {
				t.Fatal(err)
			}
			// The first probe opens the engine's socket, so it must run inside the edge.
			var first Result
			if err := n.Do("e0", func() error { first = probeOnce(t, up, 2*time.Second); return nil }); err != nil {
				t.Fatal(err)
			}
			if !first.OK {
				t.Fatalf("probe to %s: %+v", site, first)
			}
			if r := probeOnce(t, dead, time.Second); r.Reason != ReasonUnreachable || !strings.Contains(r.Detail, nowhere) {
				t.Errorf("probe to %s: %+v, want unreachable", nowhere, r)
			}
			// The same through Start, as the agent runs ICMP probes.
			if r := startOnce(t, up, 2*time.Second); !r.OK {
				t.Errorf("Start to %s: %+v", site, r)
			}
			if r := startOnce(t, dead, time.Second); r.Reason != ReasonUnreachable || !strings.Contains(r.Detail, nowhere) {
				t.Errorf("Start to %s: %+v, want unreachable", nowhere, r)
			}
			if st := e.Stats(); st.ReceiveErrors != 0 {
				t.Errorf("stats %+v: the ICMP error must be read, not counted as a failed read", st)
			}
			if err := n.BlackholeSite("a"); err != nil {
				t.Fatal(err)
			}
			if r := probeOnce(t, up, 300*time.Millisecond); r.Reason != ReasonTimeout {
				t.Errorf("probe to blackholed %s: %+v, want timeout", site, r)
			}
			if r := startOnce(t, up, 300*time.Millisecond); r.Reason != ReasonTimeout || !strings.Contains(r.Detail, site.String()) {
				t.Errorf("Start to blackholed %s: %+v, want timeout naming it", site, r)
			}
			if err := n.HealSite("a"); err != nil {
				t.Fatal(err)
			}
			if r := probeOnce(t, up, 2*time.Second); !r.OK {
				t.Errorf("probe to healed %s: %+v", site, r)
			}
		})
	}
}
