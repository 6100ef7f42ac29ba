package testkit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The TSIG keys every test BIND knows (docs/architecture.md, "Failover": updates are signed
// with TSIG): NamedUpdateKey may update the zone, NamedRefusedKey is known to the
// server and granted nothing, so its updates are REFUSED.
const (
	NamedUpdateKey  = "edgeprobe"
	NamedRefusedKey = "readonly"
)

// namedHint says where named comes from, for the skip message.
const namedHint = "BIND 9: Debian package bind9 of scripts/deps/failover.txt, make deps"

const (
	// namedReady bounds the wait for a started named to answer its zone: tens of
	// milliseconds on an idle machine, seconds on a loaded 2-core one.
	namedReady = 20 * time.Second
	// namedTries is how often a port picked for named is picked again when named cannot
	// listen on it (another process took it between the pick and named's bind).
	namedTries = 5
	// namedStopGrace is the time named has to exit after SIGTERM before it is killed.
	namedStopGrace = 10 * time.Second
	// namedQueryTimeout bounds one query to named, the connection included.
	namedQueryTimeout = 2 * time.Second
	// namedLogTail is how much of the end of named's log a failed test shows.
	namedLogTail = 4000
)

// NamedOptions says what StartNamed runs. Zone is required; the rest has defaults.
type NamedOptions struct {
	// Zone is the zone named is primary of, e.g. "example.test." (made fully qualified).
	Zone string
	// Records is the zone file's text after the SOA, the NS and the NS host's A record
	// (the listen address), which StartNamed writes: one record a line, owners relative
	// to Zone, e.g. "www 5 IN A 198.51.100.13\n". The zone's default TTL is 60 s and its
	// serial starts at 1.
	Records string
	// Addr is the address named listens on (IPv4); the zero Addr is 127.0.0.1.
	Addr netip.Addr
	// Port is named's port (UDP and TCP). 0 picks one free on Addr in this process's
	// network namespace, and picks again if named finds it taken.
	Port int
	// UpdateKey and RefusedKey name the two TSIG keys; "" is NamedUpdateKey and
	// NamedRefusedKey.
	UpdateKey, RefusedKey string
	// Wrap, if set, turns named's command line into the one to run, e.g. prefixed with
	// "ip netns exec NS" to run it inside a network namespace. The program must exec
	// named (so that signals and the parent-death signal reach it).
	Wrap func(argv []string) []string
	// Dial makes the connections of the queries (the readiness check, Exchange, Dial),
	// e.g. from inside a namespace; nil dials from this process's namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Named is Debian's named (BIND 9) serving one zone for one test, with two TSIG keys:
// one the zone's update-policy grants every name of the zone to (grant KEY zonesub
// ANY), one known and granted nothing.
type Named struct {
	Addr           string // ADDR:PORT, where named listens
	Zone           string // fully qualified
	Dir            string // named.conf, the zone file and its journal, the keys, the log
	KeyFile        string // holds the update key, in BIND's key-file syntax
	RefusedKeyFile string // holds the refused key
	UpdateKey      string // the key names
	RefusedKey     string
	log            string
	dial           func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NamedPath returns named's path, or stops the test through SkipUnlessCI. StartNamed
// calls it; a test calls it itself to stop before building what named would serve.
func NamedPath(tb TB) string {
	tb.Helper()
	return LookTool(tb, namedHint, "named", "/usr/sbin/named")
}

// TSIGSecret is a fresh random HMAC-SHA256 secret, base64 as key files hold it.
func TSIGSecret(tb TB) string {
	tb.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TSIGKey is a key statement in BIND's key-file syntax (what tsig-keygen writes), for
// named.conf to include and the view's tsig_key_file to read.
func TSIGKey(name, secret string) string {
	return fmt.Sprintf("key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", name, secret)
}

// StartNamed writes named.conf, the zone and the two keys into a temporary directory,
// starts named in the foreground, waits until it answers the zone's SOA authoritatively
// and stops it when the test ends; a failed test shows the end of named's log. Without
// named the test stops through SkipUnlessCI.
func StartNamed(tb TB, opts NamedOptions) *Named {
	tb.Helper()
	bin := NamedPath(tb)
	if opts.Zone == "" {
		tb.Fatalf("testkit: StartNamed: no zone given")
	}
	addr := opts.Addr
	if !addr.IsValid() {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if !addr.Is4() {
		tb.Fatalf("testkit: StartNamed: %s is not an IPv4 address (named runs with -4)", addr)
	}
	dir := tb.TempDir()
	s := &Named{Zone: dns.Fqdn(opts.Zone), Dir: dir, UpdateKey: or(opts.UpdateKey, NamedUpdateKey), RefusedKey: or(opts.RefusedKey, NamedRefusedKey),
		log: filepath.Join(dir, "named.log"), dial: opts.Dial}
	if s.dial == nil {
		s.dial = (&net.Dialer{}).DialContext
	}
	s.KeyFile = filepath.Join(dir, s.UpdateKey+".key")
	s.RefusedKeyFile = filepath.Join(dir, s.RefusedKey+".key")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			tb.Fatalf("testkit: %v", err)
		}
	}
	write(s.KeyFile, TSIGKey(s.UpdateKey, TSIGSecret(tb)))
	write(s.RefusedKeyFile, TSIGKey(s.RefusedKey, TSIGSecret(tb)))
	records := opts.Records
	if records != "" && !strings.HasSuffix(records, "\n") {
		records += "\n" // else named warns that the file does not end with a newline
	}
	zoneFile := filepath.Join(dir, "zone.db")
	write(zoneFile, fmt.Sprintf("$TTL 60\n@ IN SOA ns.%[1]s hostmaster.%[1]s 1 3600 600 86400 5\n@ IN NS ns.%[1]s\nns IN A %[2]s\n%[3]s",
		s.Zone, addr, records))
	conf := filepath.Join(dir, "named.conf")

	var lastErr error
	for range namedTries {
		port := opts.Port
		if port == 0 {
			var err error
			if port, err = ReservePort(addr); err != nil {
				tb.Fatalf("testkit: a port for named: %v", err)
			}
		}
		s.Addr = netip.AddrPortFrom(addr, uint16(port)).String()
		write(conf, namedConf(s, dir, zoneFile, addr, port))
		p, err := s.start(bin, conf, opts.Wrap)
		if err != nil {
			tb.Fatalf("testkit: starting named: %v", err)
		}
		lastErr = s.waitReady(p.exited)
		if lastErr == nil {
			tb.Cleanup(func() {
				p.stop()
				if tb.Failed() {
					tb.Logf("named at %s, the end of its log:\n%s", s.Addr, s.logTail())
				}
			})
			return s
		}
		p.stop()
		// Only an exit (named could not listen) is worth another port; a server that runs
		// and does not answer within the bound would do the same again.
		if opts.Port != 0 || !errors.Is(lastErr, errNamedExited) {
			break
		}
	}
	tb.Fatalf("testkit: named at %s did not come up: %v\nthe end of its log:\n%s", s.Addr, lastErr, s.logTail())
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// namedConf is a primary for one zone on one address: no recursion, no NOTIFY, no
// control channel, and updates by the update key alone.
func namedConf(s *Named, dir, zoneFile string, addr netip.Addr, port int) string {
	return fmt.Sprintf(`include "%[1]s";
include "%[2]s";
options {
	directory "%[3]s";
	pid-file none;
	session-keyfile "%[3]s/session.key";
	managed-keys-directory "%[3]s";
	listen-on port %[4]d { %[5]s; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
zone "%[6]s" {
	type primary;
	file "%[7]s";
	update-policy { grant %[8]s zonesub ANY; };
};
`, s.KeyFile, s.RefusedKeyFile, dir, port, addr, strings.TrimSuffix(s.Zone, "."), zoneFile, s.UpdateKey)
}

// namedProc is one named process.
type namedProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

var errNamedExited = errors.New("named exited")

func (s *Named) start(bin, conf string, wrap func([]string) []string) (*namedProc, error) {
	// -g: foreground, logging to stderr; -4: IPv4 only; -n 1: one worker on a shared
	// 2-core machine. As root named keeps running as root (no -u): the directory is the
	// test's own.
	argv := []string{bin, "-g", "-4", "-n", "1", "-c", conf}
	if wrap != nil {
		argv = wrap(argv)
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	waited, err := startChild(cmd)
	if err != nil {
		return nil, err
	}
	p := &namedProc{cmd: cmd, exited: make(chan struct{})}
	go func() { <-waited; close(p.exited) }()
	return p, nil
}

// stop ends named with SIGTERM, or kills it after namedStopGrace.
func (p *namedProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(namedStopGrace):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitReady waits until named answers the zone's SOA authoritatively.
func (s *Named) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(namedReady)
	for {
		select {
		case <-exited:
			return errNamedExited
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion(s.Zone, dns.TypeSOA)
		r, err := s.Exchange(m)
		if err == nil && r.Rcode == dns.RcodeSuccess && r.Authoritative {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answered %s, authoritative %v", dns.RcodeToString[r.Rcode], r.Authoritative)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no authoritative answer for %s within %v: %v", s.Zone, namedReady, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Dial connects to named over network ("tcp" or "udp") through NamedOptions.Dial.
func (s *Named) Dial(network string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), namedQueryTimeout)
	defer cancel()
	return s.dial(ctx, network, s.Addr)
}

// Exchange sends m over TCP and returns the answer, as a resolver would (unsigned unless
// m is signed).
func (s *Named) Exchange(m *dns.Msg) (*dns.Msg, error) {
	conn, err := s.Dial("tcp")
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: conn}
	defer co.Close()
	co.SetDeadline(time.Now().Add(namedQueryTimeout))
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// Query is the answer's records of type qtype owned by name (fully qualified), in the
// order named sent them.
func (s *Named) Query(name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	r, err := s.Exchange(m)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("query %s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
	}
	return Answer(r, name, qtype), nil
}

// Answer is the records of type qtype owned by name in r's answer section, in order.
func Answer(r *dns.Msg, name string, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range r.Answer {
		if h := rr.Header(); h.Rrtype == qtype && strings.EqualFold(h.Name, name) {
			out = append(out, rr)
		}
	}
	return out
}

// Lookup is the data of name's records of type qtype, sorted: addresses for A and AAAA,
// the target for CNAME, the zone file's text after the type for any other.
func (s *Named) Lookup(name string, qtype uint16) ([]string, error) {
	rrs, err := s.Query(name, qtype)
	if err != nil {
		return nil, err
	}
	return RData(rrs), nil
}

// RData is the data of rrs as Lookup gives it, sorted: what follows the type in the
// zone file's text.
func RData(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	slices.Sort(out)
	return out
}

// Serial is the zone's SOA serial: named moves it on every update it applies, so a test
// reads from it how many changes were made.
func (s *Named) Serial() (uint32, error) {
	rrs, err := s.Query(s.Zone, dns.TypeSOA)
	if err != nil {
		return 0, err
	}
	if len(rrs) != 1 {
		return 0, fmt.Errorf("%d SOA records for %s", len(rrs), s.Zone)
	}
	return rrs[0].(*dns.SOA).Serial, nil
}

// Log is named's log so far.
func (s *Named) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

func (s *Named) logTail() string {
	l := s.Log()
	if len(l) > namedLogTail {
		l = "..." + l[len(l)-namedLogTail:]
	}
	return l
}
