package failover

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The zone every test server serves, and the records it starts with.
const (
	testZone = "example.test."
	// Two sites' names, so that guard rails over several sites can be tested.
	testName1 = "www.example.test."
	testName2 = "api.example.test."
	testCNAME = "app.example.test."

	primary1  = "198.51.100.13"
	failover1 = "198.51.100.23"
	primary2  = "198.51.100.14"
	failover2 = "198.51.100.24"
)

// namedServer is a real BIND (Debian's named) serving testZone on 127.0.0.1 for one
// test, with two TSIG keys: "edgeprobe", allowed to update the zone, and "readonly",
// known to the server but granted nothing.
type namedServer struct {
	Addr      string // 127.0.0.1:PORT
	Dir       string
	KeyFile   string // holds "edgeprobe"
	ROKeyFile string // holds "readonly"
	log       string
}

// namedPath finds named; a test that needs it skips without it, or fails when CI is
// set (CI installs scripts/deps/failover.txt, so nothing may skip there).
func namedPath(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"named", "/usr/sbin/named"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "named (BIND 9) is not installed; install the packages in scripts/deps/failover.txt (make deps)"
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s (CI is set, so this is an error, not a skip)", msg)
	}
	tb.Skipf("skipping: %s", msg)
	return ""
}

func newSecret(tb testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func keyFileText(name, secret string) string {
	return fmt.Sprintf("key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", name, secret)
}

// startNamed writes a named.conf, the zone and the keys into a temporary directory,
// starts named in the foreground on a free loopback port, waits until it answers and
// stops it when the test ends.
func startNamed(tb testing.TB) *namedServer {
	tb.Helper()
	bin := namedPath(tb)
	dir := tb.TempDir()
	srv := &namedServer{Dir: dir, KeyFile: filepath.Join(dir, "edgeprobe.key"), ROKeyFile: filepath.Join(dir, "readonly.key"),
		log: filepath.Join(dir, "named.log")}
	rw, ro := newSecret(tb), newSecret(tb)
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	write("edgeprobe.key", keyFileText("edgeprobe", rw))
	write("readonly.key", keyFileText("readonly", ro))
	write("example.test.zone", `$TTL 60
@	IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 5
@	IN NS ns.example.test.
ns	IN A 127.0.0.1
www	5 IN A `+primary1+`
api	5 IN A `+primary2+`
app	5 IN CNAME primary.example.test.
`)
	var lastErr error
	for try := 0; try < 5; try++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		write("named.conf", fmt.Sprintf(`include "%[1]s/edgeprobe.key";
include "%[1]s/readonly.key";
options {
	directory "%[1]s";
	pid-file none;
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
zone "example.test" {
	type primary;
	file "%[1]s/example.test.zone";
	update-policy { grant edgeprobe zonesub ANY; };
};
`, dir, port))
		logf, err := os.Create(srv.log)
		if err != nil {
			tb.Fatal(err)
		}
		// -g: foreground, log to stderr; -n 1: one worker on a shared 2-core machine.
		// As root named keeps running as root (no -u): the directory is the test's own.
		cmd := exec.Command(bin, "-g", "-4", "-n", "1", "-c", filepath.Join(dir, "named.conf"), "-p", fmt.Sprint(port))
		cmd.Stdout, cmd.Stderr = logf, logf
		dieWithTest(cmd)
		if err := cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("starting named: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		srv.Addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		if lastErr = srv.waitReady(exited); lastErr == nil {
			tb.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-exited
				}
				if tb.Failed() {
					tb.Logf("named log:\n%s", srv.logTail())
				}
			})
			return srv
		}
		cmd.Process.Kill()
		<-exited
	}
	tb.Fatalf("named did not come up: %v\n%s", lastErr, srv.logTail())
	return nil
}

// waitReady waits until named answers the zone's SOA authoritatively.
func (s *namedServer) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("named exited")
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion(testZone, dns.TypeSOA)
		c := &dns.Client{Net: "tcp", Timeout: 500 * time.Millisecond}
		if r, _, err := c.Exchange(m, s.Addr); err == nil && r.Rcode == dns.RcodeSuccess && r.Authoritative {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within 20s", s.Addr)
}

func (s *namedServer) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freePort finds a loopback port free for both UDP and TCP at this moment.
func freePort() (int, error) {
	for range 20 {
		u, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err == nil {
			t.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port")
}

// lookup reads name's records of type t from the server, as a resolver would (unsigned),
// sorted.
func (s *namedServer) lookup(tb testing.TB, name string, t uint16) []string {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		tb.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		switch x := rr.(type) {
		case *dns.A:
			out = append(out, x.A.String())
		case *dns.AAAA:
			out = append(out, x.AAAA.String())
		case *dns.CNAME:
			out = append(out, x.Target)
		}
	}
	slices.Sort(out)
	return out
}

// serial is the zone's SOA serial: it moves on every change the server applies.
func (s *namedServer) serial(tb testing.TB) uint32 {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(testZone, dns.TypeSOA)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr)
	if err != nil || len(r.Answer) == 0 {
		tb.Fatalf("query SOA: %v %v", err, r)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// expectRecords fails unless name holds exactly want.
func (s *namedServer) expectRecords(tb testing.TB, name string, want ...string) {
	tb.Helper()
	slices.Sort(want)
	if got := s.lookup(tb, name, dns.TypeA); !slices.Equal(got, want) {
		tb.Fatalf("%s A = %v, want %v\nnamed log:\n%s", name, got, want, s.logTail())
	}
}

// grep says whether named's log holds text.
func (s *namedServer) grep(text string) bool {
	b, _ := os.ReadFile(s.log)
	return bytes.Contains(b, []byte(text))
}
