//go:build linux

package testnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		want    map[string][]string // node -> addresses
		wantErr string
	}{
		{
			name: "two sites get a /25 each",
			spec: Spec{Sites: []SiteSpec{{Name: "a", Hosts: 3}, {Name: "b"}}, Edges: []string{"e0", "e1"}, Hosts: []string{"view"}},
			want: map[string][]string{
				"a":    {"198.51.100.11/25", "198.51.100.12/25", "198.51.100.13/25"},
				"b":    {"198.51.100.139/25"},
				"e0":   {"203.0.113.11/24"},
				"e1":   {"203.0.113.12/24"},
				"view": {"203.0.113.201/24"},
			},
		},
		{
			name: "three sites get a /26 each",
			spec: Spec{Sites: []SiteSpec{{Name: "a"}, {Name: "b"}, {Name: "c", Hosts: 2}}},
			want: map[string][]string{
				"a": {"198.51.100.11/26"},
				"b": {"198.51.100.75/26"},
				"c": {"198.51.100.139/26", "198.51.100.140/26"},
			},
		},
		{name: "empty", spec: Spec{}, wantErr: "no sites, edges or hosts"},
		{name: "duplicate", spec: Spec{Sites: []SiteSpec{{Name: "a"}}, Edges: []string{"a"}}, wantErr: `edge name "a" is used twice`},
		{name: "reserved", spec: Spec{Hosts: []string{"core"}}, wantErr: `host name "core" is used twice (or is the reserved "core")`},
		{name: "bad name", spec: Spec{Edges: []string{"Edge-1"}}, wantErr: `edge name "Edge-1": want a lower-case letter`},
		{name: "too long", spec: Spec{Edges: []string{"abcdefghijk"}}, wantErr: `edge name "abcdefghijk"`},
		{name: "too many hosts", spec: Spec{Sites: []SiteSpec{{Name: "a", Hosts: 250}}}, wantErr: `site "a": hosts = 250, allowed 1 to 244 with 1 sites`},
		{name: "negative hosts", spec: Spec{Sites: []SiteSpec{{Name: "a", Hosts: -1}}}, wantErr: `site "a": hosts = -1`},
		{name: "too many sites", spec: Spec{Sites: make([]SiteSpec, 9)}, wantErr: "9 sites, at most 8 fit in 198.51.100.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes, err := plan(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("plan error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, nd := range nodes {
				for _, a := range nd.addrs {
					got[nd.name] = append(got[nd.name], netip.PrefixFrom(a, nd.prefixLen).String())
				}
			}
			for name, want := range tt.want {
				if !slices.Equal(got[name], want) {
					t.Errorf("%s: addresses %v, want %v", name, got[name], want)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("nodes %v, want %d", got, len(tt.want))
			}
		})
	}
}

func TestNewPrefixFitsInterfaceNames(t *testing.T) {
	p := newPrefix()
	m := ownedName.FindStringSubmatch(p + "-core")
	if m == nil {
		t.Fatalf("prefix %q does not match %v", p, ownedName)
	}
	if longest := p + "c" + "189"; len(longest) > 15 {
		t.Errorf("interface name %q is longer than the kernel's 15 characters", longest)
	}
	if q := newPrefix(); q == p {
		t.Errorf("two prefixes in one process are both %q", p)
	}
}

func twoSites(t *testing.T) (*Net, map[string]Services) {
	t.Helper()
	n := New(t, Spec{Sites: []SiteSpec{{Name: "a"}, {Name: "b"}}, Edges: []string{"e0"}})
	svc := map[string]Services{}
	for _, site := range []string{"a", "b"} {
		s, err := n.Serve(site, 0)
		if err != nil {
			t.Fatal(err)
		}
		svc[site] = s
	}
	return n, svc
}

// reach reports which of a site's services answer from an edge, within a short deadline:
// ICMP echo, DNS over UDP, HTTP and the TCP port.
func reach(t *testing.T, n *Net, edge string, s Services) map[string]error {
	t.Helper()
	const deadline = 300 * time.Millisecond
	got := map[string]error{}

	got["icmp"] = n.Do(edge, func() error { return echo(s.Addr, deadline) })

	dial := func(network, address string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		return n.DialContext(edge)(ctx, network, address)
	}
	conn, err := dial("udp", s.DNS.String())
	if err == nil {
		c := &dns.Client{Timeout: deadline}
		q := new(dns.Msg).SetQuestion("www.example.test.", dns.TypeA)
		var r *dns.Msg
		r, _, err = c.ExchangeWithConn(q, &dns.Conn{Conn: conn})
		conn.Close()
		if err == nil && (len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != s.Addr.String()) {
			err = errors.New("wrong answer: " + r.String())
		}
	}
	got["dns"] = err

	client := n.HTTPClient(edge)
	client.Timeout = deadline
	resp, err := client.Get(s.URL())
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok\n" {
			err = errors.New("unexpected answer " + resp.Status)
		}
	}
	got["http"] = err

	conn, err = dial("tcp", s.TCP.String())
	if err == nil {
		conn.Close()
	}
	got["tcp"] = err
	return got
}

// echo sends one ICMP echo request from the calling thread's namespace.
func echo(to netip.Addr, deadline time.Duration) error {
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return err
	}
	defer c.Close()
	req := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 1, Data: []byte("testnet")}}
	b, err := req.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: to.AsSlice()}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(deadline))
	buf := make([]byte, 1500)
	for {
		nr, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		m, err := icmp.ParseMessage(1, buf[:nr])
		if err == nil && m.Type == ipv4.ICMPTypeEchoReply && from.String() == to.String() {
			return nil
		}
	}
}

func expectReach(t *testing.T, when string, got map[string]error, want bool) {
	t.Helper()
	for _, kind := range []string{"icmp", "dns", "http", "tcp"} {
		if ok := got[kind] == nil; ok != want {
			t.Errorf("%s: %s reachable = %v (err %v), want %v", when, kind, ok, got[kind], want)
		}
	}
}

func TestBlackholeSite(t *testing.T) {
	n, svc := twoSites(t)
	expectReach(t, "before", reach(t, n, "e0", svc["a"]), true)

	if err := n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	gone := reach(t, n, "e0", svc["a"])
	expectReach(t, "site a blackholed", gone, false)
	for kind, err := range gone {
		// Silence, not a refusal: a dead site answers nothing.
		if errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("site a blackholed: %s refused (%v), want a timeout", kind, err)
		}
	}
	expectReach(t, "site b while a is blackholed", reach(t, n, "e0", svc["b"]), true)

	if err := n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "site a healed", reach(t, n, "e0", svc["a"]), true)
}

func TestCutUplink(t *testing.T) {
	n, svc := twoSites(t)
	if err := n.CutUplink("e0"); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "uplink cut, site a", reach(t, n, "e0", svc["a"]), false)
	expectReach(t, "uplink cut, site b", reach(t, n, "e0", svc["b"]), false)
	if err := n.HealUplink("e0"); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "uplink healed, site a", reach(t, n, "e0", svc["a"]), true)
	expectReach(t, "uplink healed, site b", reach(t, n, "e0", svc["b"]), true)
}

func TestDropTCPPort(t *testing.T) {
	n, svc := twoSites(t)
	if err := n.DropTCPPort("a", HTTPPort); err != nil {
		t.Fatal(err)
	}
	got := reach(t, n, "e0", svc["a"])
	for kind, wantOK := range map[string]bool{"icmp": true, "dns": true, "http": false, "tcp": true} {
		if ok := got[kind] == nil; ok != wantOK {
			t.Errorf("port 80 dropped: %s reachable = %v (err %v), want %v", kind, ok, got[kind], wantOK)
		}
	}
	expectReach(t, "site b while a drops port 80", reach(t, n, "e0", svc["b"]), true)
	if err := n.AllowTCPPort("a", HTTPPort); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "port 80 allowed again", reach(t, n, "e0", svc["a"]), true)
}

func TestFaultErrors(t *testing.T) {
	n := New(t, Spec{Sites: []SiteSpec{{Name: "a"}}, Edges: []string{"e0"}})
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"blackhole an edge", n.BlackholeSite("e0"), `"e0" has role edge, want site`},
		{"cut a site's uplink", n.CutUplink("a"), `"a" has role site, want edge`},
		{"unknown node", n.HealSite("x"), `no node named "x"`},
		{"port out of range", n.DropTCPPort("a", 0), "TCP port 0 out of range"},
		{"drop on an edge", n.DropTCPPort("e0", 80), `"e0" has role edge, want site`},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, tt.err, tt.want)
		}
	}
	if _, err := n.SiteAddr("a", 1); err == nil || !strings.Contains(err.Error(), `site "a" has hosts 0 to 0, not 1`) {
		t.Errorf("SiteAddr out of range: error %v", err)
	}
}

func TestNoRouteOut(t *testing.T) {
	n := New(t, Spec{Edges: []string{"e0"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// No packet leaves: without a default route the kernel refuses at once.
	_, err := n.DialContext("e0")(ctx, "tcp", "192.0.2.1:80")
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("dial outside the documentation prefixes: %v, want ENETUNREACH", err)
	}
}

func TestStart(t *testing.T) {
	n := New(t, Spec{Edges: []string{"e0"}})
	p, err := n.Start("e0", "ip", "-4", "-brief", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	for {
		l, err := p.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.Time.IsZero() {
			t.Errorf("line %q has no arrival time", l.Text)
		}
		out = append(out, l.Text)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("ip addr show: %v: %s", err, p.Stderr())
	}
	// Inside the namespace there is loopback and the edge's own address, nothing else.
	text := strings.Join(out, "\n")
	if len(out) != 2 || !strings.Contains(text, "203.0.113.11/24") || !strings.Contains(text, "127.0.0.1/8") {
		t.Errorf("addresses seen inside e0:\n%s", text)
	}

	// The kernel kills a program when the thread that forked it ends, and the runtime
	// ends the thread of a locked goroutine that returns, such as Do's. Starting from
	// inside Do is the quickest way to hit that.
	var sleeper *Proc
	err = n.Do("e0", func() error {
		var err error
		sleeper, err = n.Start("e0", "sleep", "30")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sleeper.Exited():
		t.Fatalf("sleep ended as the thread that started it ended: %v", sleeper.Err())
	case <-time.After(200 * time.Millisecond):
	}
	start := time.Now()
	err = sleeper.Stop()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("stopped sleep: %v, want killed by SIGTERM", err)
	}
	if d := time.Since(start); d > stopGrace {
		t.Errorf("Stop took %v, more than the grace period: SIGTERM was not delivered", d)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	Require(t)
	n, err := Build(Spec{Sites: []SiteSpec{{Name: "a"}}, Edges: []string{"e0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	names, err := namespaces()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, name := range names {
		if strings.HasPrefix(name, n.Prefix()) {
			ours = append(ours, name)
		}
	}
	slices.Sort(ours)
	if want := []string{n.Prefix() + "-a", n.Prefix() + "-core", n.Prefix() + "-e0"}; !slices.Equal(ours, want) {
		t.Errorf("namespaces %v, want %v", ours, want)
	}
	if _, err := n.Serve("a", 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ = namespaces()
	for _, name := range names {
		if strings.HasPrefix(name, n.Prefix()) {
			t.Errorf("namespace %s left after Close", name)
		}
	}
	if err := Cleanup("x"); err == nil {
		t.Error("Cleanup(\"x\") did not refuse a prefix outside the package's")
	}
}

// TestEdgesAndHost checks the layout the view's detection benchmark uses: three edges and a central
// host on the edges' side. Every edge reaches the host; cutting one edge's uplink cuts
// that edge alone, from the host as from the sites.
func TestEdgesAndHost(t *testing.T) {
	n := New(t, Spec{Sites: []SiteSpec{{Name: "a"}, {Name: "b"}}, Edges: []string{"e0", "e1", "e2"}, Hosts: []string{"view"}})
	viewAddr, err := n.Addr("view")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	err = n.Do("view", func() error {
		var err error
		l, err = net.Listen("tcp", netip.AddrPortFrom(viewAddr, 9470).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go acceptAndClose(l)

	connects := func(edge string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c, err := n.DialContext(edge)(ctx, "tcp", l.Addr().String())
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if err := n.CutUplink("e1"); err != nil {
		t.Fatal(err)
	}
	for edge, want := range map[string]bool{"e0": true, "e1": false, "e2": true} {
		if got := connects(edge); got != want {
			t.Errorf("with e1's uplink cut: %s reaches the view at %s = %v, want %v", edge, l.Addr(), got, want)
		}
	}
	if err := n.HealUplink("e1"); err != nil {
		t.Fatal(err)
	}
	if !connects("e1") {
		t.Errorf("e1 does not reach the view after its uplink healed")
	}
}

func TestLineWriter(t *testing.T) {
	tests := []struct {
		name    string
		chunks  []string
		want    []string
		partial string
	}{
		{"whole lines", []string{"a\n", "b\n"}, []string{"a", "b"}, ""},
		{"line split across writes", []string{"a\nb", "c\n"}, []string{"a", "bc"}, ""},
		{"several in one write", []string{"a\nb\nc\n"}, []string{"a", "b", "c"}, ""},
		{"unfinished last line", []string{"a\nb"}, []string{"a"}, "b"},
		{"empty line", []string{"\n"}, []string{""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Proc{exited: make(chan struct{}), more: make(chan struct{})}
			for _, c := range tt.chunks {
				if n, err := (lineWriter{p}).Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", c, n, err)
				}
			}
			var got []string
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			for {
				l, err := p.Next(ctx)
				if err != nil {
					break
				}
				got = append(got, l.Text)
			}
			if !slices.Equal(got, tt.want) || string(p.partial) != tt.partial {
				t.Errorf("lines %q, partial %q; want %q, %q", got, p.partial, tt.want, tt.partial)
			}
		})
	}
}

// TestServeDaemons: nginx and dnsmasq in a site of three hosts answer as Serve does, each
// host with its own address; a blackhole silences them; Close stops them (the namespace
// goes, which a server left running would hold open).
func TestServeDaemons(t *testing.T) {
	RequireDaemons(t)
	n := New(t, Spec{Sites: []SiteSpec{{Name: "a", Hosts: 3}}, Edges: []string{"e0"}})
	svcs, err := n.ServeDaemons("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 3 {
		t.Fatalf("%d hosts served, want 3", len(svcs))
	}
	for _, s := range svcs {
		expectReach(t, "served by the daemons, "+s.Addr.String(), reach(t, n, "e0", s), true)
	}
	if err := n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "blackholed", reach(t, n, "e0", svcs[0]), false)
	if err := n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "healed", reach(t, n, "e0", svcs[1]), true)
	if _, err := n.ServeDaemons("e0"); err == nil {
		t.Error("ServeDaemons on an edge: no error")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := namespaces()
	for _, name := range names {
		if strings.HasPrefix(name, n.Prefix()) {
			t.Errorf("namespace %s left after Close", name)
		}
	}
}
