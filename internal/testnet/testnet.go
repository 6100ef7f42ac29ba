//go:build linux

// Package testnet builds throwaway networks of Linux network namespaces in which a
// datacenter can really go dark, for edgeprobe's end-to-end tests and detection benchmarks.
//
// Why namespaces: a site loss cannot be faked on loopback, because 127.0.0.0/8 always
// answers. Here every site and every edge host is its own namespace with documentation
// addresses (sites in 198.51.100.0/24, edges and other hosts in 203.0.113.0/24), joined by
// veth pairs to one bridge that lives in a separate "core" namespace. Nothing is created in
// the root namespace, and a namespace has no route but the two documentation prefixes, so
// no probe can leak to the outside world.
//
// Failures are those of a fire or a cut fibre. A site blackhole or an uplink cut sets the
// node's bridge port down: packets vanish without an answer, as in a fire or a cut fibre.
// A partial failure (only the web server) is an nftables drop inside the site's namespace.
// Ports are switched with an ioctl from a thread inside the core namespace rather than by
// running ip(8), so that a benchmark knows the moment of the failure to a few microseconds,
// and neighbour (ARP) entries are static, so that the network's own timers (ARP's one
// second retry, "host unreachable" after three) never blur what the agent is timed on.
//
// Servers run inside this process: Do runs a function on an OS thread that has entered a
// namespace with setns(2); a socket belongs to the namespace of the thread that created it,
// so listeners made there serve from any goroutine afterwards. The thread is never
// unlocked, and the Go runtime ends it when its goroutine returns. This was chosen over
// running servers as subprocesses under `ip netns exec` because the servers are then the
// project's own Go code (miekg/dns, net/http) with no helper binary or Debian daemon to
// install, start-up is synchronous (the socket exists when Serve returns), errors come
// back as values, and closing a listener is the whole shutdown. Programs under test, such
// as the edgeprobe agent, do run as subprocesses (Start), as they would in production.
//
// Every name carries a per-network prefix, "ept" + the creating process ID in base 36 +
// a sequence letter, so parallel runs never collide and interface names stay within
// the kernel's 15 characters. Close (registered with t.Cleanup by New) removes a network;
// Build also sweeps networks left behind by processes that died, and Cleanup removes
// every namespace with a given prefix.
package testnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// NamePrefix starts the name of every namespace and interface this package creates.
const NamePrefix = "ept"

// Spec describes a network: the sites, the edges (hosts that run agents) and other hosts
// (a central view, a Prometheus) on the edges' side. Names are short lower-case words,
// unique across the whole Spec.
type Spec struct {
	Sites []SiteSpec
	Edges []string
	Hosts []string
}

// SiteSpec is one datacenter: a namespace holding Hosts addresses (default 1).
type SiteSpec struct {
	Name  string
	Hosts int
}

type role int

const (
	roleSite role = iota
	roleEdge
	roleHost
)

func (r role) String() string {
	return [...]string{"site", "edge", "host"}[r]
}

// node is one namespace attached to the bridge.
type node struct {
	name      string
	role      role
	index     int          // position on the bridge: names its veth pair
	addrs     []netip.Addr // the first is the node's address
	prefixLen int          // of the node's own subnet
	nftReady  bool         // the drop table exists (sites only)
	pathReady bool         // the path-cut table exists (sites only)
}

// Net is a built network. Its methods are safe for concurrent use.
type Net struct {
	prefix string
	nodes  []*node
	byName map[string]*node

	mu      sync.Mutex
	closers []func() error // servers, in start order
	procs   []*Proc
	closed  bool
}

// Address plan. Sites share 198.51.100.0/24 in equal power-of-two blocks (two sites get a
// /25 each); hosts within a block start at .11 so the first site looks like the configuration examples'
// example. Edges take 203.0.113.11 upwards, other hosts 203.0.113.201 upwards.
var (
	sitePrefix = netip.MustParsePrefix("198.51.100.0/24")
	edgePrefix = netip.MustParsePrefix("203.0.113.0/24")
)

const (
	maxSites       = 8  // blocks of at least 32 addresses
	firstHostOctet = 11 // within a site block and within the edge /24
	firstHostsAddr = 201
	maxEdges       = firstHostsAddr - firstHostOctet
	maxHosts       = 254 - firstHostsAddr + 1
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// plan checks spec and assigns indexes and addresses.
func plan(spec Spec) ([]*node, error) {
	var errs []error
	if len(spec.Sites)+len(spec.Edges)+len(spec.Hosts) == 0 {
		return nil, errors.New("testnet: spec has no sites, edges or hosts")
	}
	if len(spec.Sites) > maxSites {
		errs = append(errs, fmt.Errorf("testnet: %d sites, at most %d fit in %s", len(spec.Sites), maxSites, sitePrefix))
	}
	if len(spec.Edges) > maxEdges {
		errs = append(errs, fmt.Errorf("testnet: %d edges, at most %d", len(spec.Edges), maxEdges))
	}
	if len(spec.Hosts) > maxHosts {
		errs = append(errs, fmt.Errorf("testnet: %d hosts, at most %d", len(spec.Hosts), maxHosts))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	blockBits := 0
	for 1<<blockBits < len(spec.Sites) {
		blockBits++
	}
	blockLen := 8 - blockBits
	blockSize := 1 << blockLen

	var nodes []*node
	seen := map[string]bool{"core": true}
	add := func(name string, r role, addrs []netip.Addr, prefixLen int) {
		switch {
		case !nameRE.MatchString(name):
			errs = append(errs, fmt.Errorf("testnet: %s name %q: want a lower-case letter then up to 9 letters or digits", r, name))
		case seen[name]:
			errs = append(errs, fmt.Errorf("testnet: %s name %q is used twice (or is the reserved \"core\")", r, name))
		}
		seen[name] = true
		nodes = append(nodes, &node{name: name, role: r, index: len(nodes), addrs: addrs, prefixLen: prefixLen})
	}
	for i, s := range spec.Sites {
		hosts := s.Hosts
		if hosts == 0 {
			hosts = 1
		}
		if hosts < 0 || firstHostOctet+hosts > blockSize-1 {
			errs = append(errs, fmt.Errorf("testnet: site %q: hosts = %d, allowed 1 to %d with %d sites", s.Name, hosts, blockSize-1-firstHostOctet, len(spec.Sites)))
			continue
		}
		base := sitePrefix.Addr().As4()
		addrs := make([]netip.Addr, hosts)
		for h := range addrs {
			a := base
			a[3] = byte(i*blockSize + firstHostOctet + h)
			addrs[h] = netip.AddrFrom4(a)
		}
		add(s.Name, roleSite, addrs, 24+blockBits)
	}
	octet := func(n int) []netip.Addr {
		a := edgePrefix.Addr().As4()
		a[3] = byte(n)
		return []netip.Addr{netip.AddrFrom4(a)}
	}
	for i, e := range spec.Edges {
		add(e, roleEdge, octet(firstHostOctet+i), edgePrefix.Bits())
	}
	for i, h := range spec.Hosts {
		add(h, roleHost, octet(firstHostsAddr+i), edgePrefix.Bits())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return nodes, nil
}

// Prerequisites says why namespaces cannot be built here, or returns nil.
func Prerequisites() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("testnet: creating network namespaces needs root (running as uid %d)", uid)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("testnet: %s not found in PATH (Debian packages iproute2, nftables): %w", tool, err)
		}
	}
	return nil
}

// Require stops the test when Prerequisites fails, by the project's skip policy
// (testkit.Require): a skip on a developer's machine, a failure when CI is set.
func Require(tb testing.TB) {
	tb.Helper()
	testkit.Require(tb, Prerequisites())
}

// New builds the network for a test and removes it when the test ends, even on failure.
func New(tb testing.TB, spec Spec) *Net {
	tb.Helper()
	Require(tb)
	n, err := Build(spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("removing test network %s: %v", n.prefix, err)
		}
	})
	return n
}

var sequence atomic.Uint32

// newPrefix names a network after this process and a sequence number: unique among live
// processes, and it tells sweepStale whether the owner is gone.
func newPrefix() string {
	seq := sequence.Add(1) - 1
	return fmt.Sprintf("%s%05s%s", NamePrefix, strconv.FormatInt(int64(os.Getpid()), 36), strconv.FormatInt(int64(seq%36), 36))
}

// Build creates the network described by spec. The caller must Close it. Programs use
// Build; tests use New.
func Build(spec Spec) (*Net, error) {
	nodes, err := plan(spec)
	if err != nil {
		return nil, err
	}
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	sweepStale()
	n := &Net{prefix: newPrefix(), nodes: nodes, byName: map[string]*node{}}
	for _, nd := range nodes {
		n.byName[nd.name] = nd
	}
	if err := n.build(); err != nil {
		return nil, errors.Join(err, Cleanup(n.prefix))
	}
	return n, nil
}

func (n *Net) build() error {
	core := n.coreNS()
	bridge := n.prefix + "br"
	steps := [][]string{
		{"netns", "add", core},
		{"-n", core, "link", "set", "lo", "up"},
		{"-n", core, "link", "add", bridge, "type", "bridge"},
		{"-n", core, "link", "set", bridge, "up"},
	}
	for _, nd := range n.nodes {
		ns, host, port := n.ns(nd), n.hostIf(nd), n.portIf(nd)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"link", "add", "name", host, "address", nd.mac(), "netns", ns, "type", "veth", "peer", "name", port, "netns", core},
			[]string{"-n", core, "link", "set", port, "master", bridge, "up"},
		)
		for _, a := range nd.addrs {
			steps = append(steps, []string{"-n", ns, "addr", "add", netip.PrefixFrom(a, nd.prefixLen).String(), "dev", host})
		}
		steps = append(steps, []string{"-n", ns, "link", "set", host, "up"})
		// Both documentation prefixes are on-link through the bridge; there is no default
		// route, so anything else is unreachable from inside.
		for _, p := range []netip.Prefix{sitePrefix, edgePrefix} {
			if p.Bits() < nd.prefixLen || !p.Contains(nd.addrs[0]) {
				steps = append(steps, []string{"-n", ns, "route", "add", p.String(), "dev", host})
			}
		}
	}
	for _, s := range steps {
		if err := runIP(s...); err != nil {
			return err
		}
	}
	// Every node knows every other node's MAC address for good, so no ARP ever runs: a
	// blackholed host's packets vanish (never "host unreachable" after failed ARP), and a
	// healed port carries traffic at once rather than after ARP's one-second retry.
	for _, nd := range n.nodes {
		var batch strings.Builder
		for _, peer := range n.nodes {
			if peer == nd {
				continue
			}
			for _, a := range peer.addrs {
				fmt.Fprintf(&batch, "neigh replace %s lladdr %s dev %s nud permanent\n", a, peer.mac(), n.hostIf(nd))
			}
		}
		if batch.Len() == 0 {
			continue
		}
		cmd := exec.Command("ip", "-n", n.ns(nd), "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip -n %s -batch (static neighbours): %w: %s", n.ns(nd), err, strings.TrimSpace(string(out)))
		}
	}
	for _, nd := range n.nodes {
		if err := n.waitRunning(nd); err != nil {
			return err
		}
	}
	return nil
}

// mac is the node's fixed, locally administered Ethernet address ("ep" in its second and
// third bytes); each network has its own bridge, so only the index has to differ.
func (nd *node) mac() string {
	return fmt.Sprintf("02:65:70:00:%02x:%02x", nd.index>>8, nd.index&0xff)
}

// Prefix is the name prefix of this network's namespaces and interfaces.
func (n *Net) Prefix() string { return n.prefix }

func (n *Net) coreNS() string         { return n.prefix + "-core" }
func (n *Net) ns(nd *node) string     { return n.prefix + "-" + nd.name }
func (n *Net) hostIf(nd *node) string { return n.prefix + "h" + strconv.Itoa(nd.index) }
func (n *Net) portIf(nd *node) string { return n.prefix + "c" + strconv.Itoa(nd.index) }

func (n *Net) node(name string, roles ...role) (*node, error) {
	nd, ok := n.byName[name]
	if !ok {
		return nil, fmt.Errorf("testnet %s: no node named %q", n.prefix, name)
	}
	for _, r := range roles {
		if nd.role == r {
			return nd, nil
		}
	}
	return nil, fmt.Errorf("testnet %s: %q has role %s, want %s", n.prefix, name, nd.role, roles[0])
}

// NS is the namespace name of a node (site, edge or host), for `ip netns exec`.
func (n *Net) NS(name string) (string, error) {
	nd, err := n.node(name, roleSite, roleEdge, roleHost)
	if err != nil {
		return "", err
	}
	return n.ns(nd), nil
}

// SiteAddr is the address of host i (from 0) of a site.
func (n *Net) SiteAddr(site string, i int) (netip.Addr, error) {
	nd, err := n.node(site, roleSite)
	if err != nil {
		return netip.Addr{}, err
	}
	if i < 0 || i >= len(nd.addrs) {
		return netip.Addr{}, fmt.Errorf("testnet %s: site %q has hosts 0 to %d, not %d", n.prefix, site, len(nd.addrs)-1, i)
	}
	return nd.addrs[i], nil
}

// Addr is the address of an edge or another host.
func (n *Net) Addr(name string) (netip.Addr, error) {
	nd, err := n.node(name, roleEdge, roleHost)
	if err != nil {
		return netip.Addr{}, err
	}
	return nd.addrs[0], nil
}

// Exec runs a command inside a node's namespace and returns its combined output.
func (n *Net) Exec(name string, args ...string) ([]byte, error) {
	ns, err := n.NS(name)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ip netns exec %s %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Close stops the processes and servers started in the network and removes its
// namespaces, which takes their interfaces with them.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	procs, closers := n.procs, n.closers
	n.mu.Unlock()

	var errs []error
	for _, p := range procs {
		p.Stop()
	}
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, Cleanup(n.prefix))
	return errors.Join(errs...)
}

// Cleanup removes every network namespace whose name starts with prefix: leftovers of a
// run that was killed before it could Close. Cleanup(NamePrefix) removes them all,
// including those of runs still going; prefer a network's own Prefix.
func Cleanup(prefix string) error {
	if !strings.HasPrefix(prefix, NamePrefix) {
		return fmt.Errorf("testnet: refusing to clean up %q: not under this package's prefix %q", prefix, NamePrefix)
	}
	names, err := namespaces()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			if err := runIP("netns", "delete", name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ownedName matches the namespaces this package creates: prefix, owner PID in base 36,
// sequence, then "-" and a node name.
var ownedName = regexp.MustCompile(`^` + NamePrefix + `([0-9a-z]{5})[0-9a-z]-[a-z][a-z0-9]*$`)

// sweepStale removes the networks of processes that no longer exist. Processes started
// in a network die with their owner (Pdeathsig), so nothing holds those namespaces.
func sweepStale() {
	names, err := namespaces()
	if err != nil {
		return
	}
	for _, name := range names {
		m := ownedName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.ParseInt(m[1], 36, 32)
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(int(pid), 0); errors.Is(err, syscall.ESRCH) {
			runIP("netns", "delete", name) // best effort: a concurrent sweep may win
		}
	}
}

// namespaces lists the named network namespaces.
func namespaces() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func runIP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
