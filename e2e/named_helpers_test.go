//go:build linux

package e2e

// A real authoritative server on the namespace network: Debian's BIND (`named`) in a host
// namespace, serving one zone whose records the view's [[actions.dns]] rewrite by RFC 2136
// updates (docs/DESIGN.md, "Failover"). It lives here rather than in shared test support
// because internal/testkit does not exist yet; failover/named_test.go has the loopback
// twin the package's own tests use.

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// The TSIG keys every test server knows: updateKey may update the zone (update-policy),
// refusedKey is known to the server and granted nothing, so its updates are REFUSED.
const (
	updateKey  = "edgeprobe"
	refusedKey = "readonly"
)

// namedRun is one named serving zone from a host of the test network on port 53.
type namedRun struct {
	t              testing.TB
	n              *testnet.Net
	node           string // where named runs
	from           string // the namespace queries are sent from
	Addr           string // ADDR:53, inside node's namespace
	Zone           string // fully qualified
	KeyFile        string // holds updateKey
	RefusedKeyFile string // holds refusedKey
	proc           *testnet.Proc
}

// requireNamed returns named's path; without it the test skips, or fails when CI is set
// (CI installs scripts/deps/failover.txt, so nothing may skip there).
func requireNamed(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"named", "/usr/sbin/named"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "named (BIND 9) is not installed; install the packages in scripts/deps/failover.txt (make deps)"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this is an error, not a skip)", msg)
	}
	t.Skipf("skipping: %s", msg)
	return ""
}

func tsigSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// startNamed runs named on host node of n, authoritative for zone with the A records of
// records (owner name relative to the zone -> addresses, TTL 5 s), and waits until it
// answers. Queries of the helpers go out from the namespace of host from, as a resolver's
// would. named is stopped when the test ends.
func startNamed(t testing.TB, n *testnet.Net, node, from, zone string, records map[string][]string) *namedRun {
	t.Helper()
	bin := requireNamed(t)
	addr, err := n.Addr(node)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	zone = dns.Fqdn(zone)
	s := &namedRun{t: t, n: n, node: node, from: from, Addr: netip.AddrPortFrom(addr, 53).String(), Zone: zone,
		KeyFile: filepath.Join(dir, updateKey+".key"), RefusedKeyFile: filepath.Join(dir, refusedKey+".key")}
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []struct{ file, name string }{{s.KeyFile, updateKey}, {s.RefusedKeyFile, refusedKey}} {
		write(k.file, fmt.Sprintf("key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", k.name, tsigSecret(t)))
	}
	var z strings.Builder
	fmt.Fprintf(&z, "$TTL 60\n@ IN SOA ns.%[1]s hostmaster.%[1]s 1 3600 600 86400 5\n@ IN NS ns.%[1]s\nns IN A %[2]s\n", zone, addr)
	names := make([]string, 0, len(records))
	for name := range records {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, a := range records[name] {
			fmt.Fprintf(&z, "%s 5 IN A %s\n", name, a)
		}
	}
	zoneFile := filepath.Join(dir, "zone.db")
	write(zoneFile, z.String())
	conf := filepath.Join(dir, "named.conf")
	write(conf, fmt.Sprintf(`include "%[1]s";
include "%[2]s";
options {
	directory "%[3]s";
	pid-file none;
	session-keyfile "%[3]s/session.key";
	managed-keys-directory "%[3]s";
	listen-on port 53 { %[4]s; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
zone "%[5]s" {
	type primary;
	file "%[6]s";
	update-policy { grant %[7]s zonesub ANY; };
};
`, s.KeyFile, s.RefusedKeyFile, dir, addr, strings.TrimSuffix(zone, "."), zoneFile, updateKey))
	// -g: foreground, logging to stderr (kept by Proc); -n 1: one worker on a shared
	// 2-core machine. As root named keeps running as root (no -u): the directory is the
	// test's own.
	p, err := n.Start(node, bin, "-g", "-4", "-n", "1", "-c", conf)
	if err != nil {
		t.Fatal(err)
	}
	s.proc = p
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			log := p.Stderr()
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			t.Logf("named on %s, the end of its log:\n%s", node, log)
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.Exited():
			t.Fatalf("named on %s exited: %v\n%s", node, p.Err(), p.Stderr())
		default:
		}
		r, err := s.exchange(soaQuery(zone))
		if err == nil && r.Rcode == dns.RcodeSuccess && r.Authoritative {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("named on %s not answering for %s within %v: %v\n%s", node, zone, startTimeout, err, p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func soaQuery(zone string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	m.RecursionDesired = false
	return m
}

// exchange sends m over TCP from the from host's namespace, as a resolver would
// (unsigned).
func (s *namedRun) exchange(m *dns.Msg) (*dns.Msg, error) {
	var conn net.Conn
	if err := s.n.Do(s.from, func() (err error) {
		conn, err = net.DialTimeout("tcp", s.Addr, 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: conn}
	defer co.Close()
	co.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// serial is the zone's SOA serial: BIND moves it on every update it applies.
func (s *namedRun) serial() (uint32, error) {
	r, err := s.exchange(soaQuery(s.Zone))
	if err != nil {
		return 0, err
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("no SOA for %s in %v", s.Zone, r)
}

// mustSerial is serial or the test's end.
func (s *namedRun) mustSerial() uint32 {
	s.t.Helper()
	v, err := s.serial()
	if err != nil {
		s.t.Fatalf("SOA serial of %s: %v", s.Zone, err)
	}
	return v
}

// lookupA is the A RRset of name (fully qualified), sorted.
func (s *namedRun) lookupA(name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.RecursionDesired = false
	r, err := s.exchange(m)
	if err != nil {
		return nil, err
	}
	return answerA(r, name), nil
}

// answerA lists the A records for name in r, sorted.
func answerA(r *dns.Msg, name string) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, name) {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

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
