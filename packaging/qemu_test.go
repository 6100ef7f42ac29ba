package packaging_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// TestBinariesRun runs every packaged binary, the ARM ones under Debian's qemu-user-static
// (called directly, so no binfmt registration is needed), modelling the oldest CPU each is
// meant for: version, check on the shipped and example configs, and real TCP and DNS
// probes against servers on loopback, each of which must also fail when the server is not
// there.
func TestBinariesRun(t *testing.T) {
	b := packages(t)
	tcpAddr, closedAddr := tcpServer(t)
	dnsAddr := dnsServer(t)
	// The shipped configs and the examples the package ships as docs; all are part of the
	// tree: a missing one is an error everywhere, not only in CI.
	var checks [][]string
	for _, c := range [][2]string{
		{"--config", "packaging/agent.toml"},
		{"--config", "agent.toml.example"},
		{"--view-config", "packaging/view.toml"},
		{"--view-config", "view.toml.example"},
	} {
		path := filepath.Join(repoRoot, c[1])
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s is missing: the binaries must pass check on it", path)
			continue
		}
		checks = append(checks, []string{"check", c[0], path})
	}

	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			if tg.qemu != "" {
				needTools(t, tg.qemu)
			}
			exe := func(args ...string) (string, int) {
				name, argv := b.binary(tg), args
				if tg.qemu != "" {
					name, argv = tg.qemu, append([]string{"-cpu", tg.qemuCPU, b.binary(tg)}, args...)
				}
				out, err := exec.Command(name, argv...).CombinedOutput()
				var exit *exec.ExitError
				switch {
				case errors.As(err, &exit):
					return string(out), exit.ExitCode()
				case err != nil:
					t.Fatalf("running %s: %v", name, err)
				}
				return string(out), 0
			}
			if out, code := exe("version"); code != 0 || !strings.Contains(out, b.version) {
				t.Errorf("version: exit %d, output %q, want exit 0 naming %s", code, out, b.version)
			}
			for _, args := range checks {
				if out, code := exe(args...); code != 0 {
					t.Errorf("%s: exit %d\n%s", strings.Join(args, " "), code, out)
				}
			}
			for _, c := range []struct {
				args []string
				want int
			}{
				{[]string{"probe", "tcp", tcpAddr, "--timeout", "5s"}, 0},
				{[]string{"probe", "tcp", closedAddr, "--timeout", "5s"}, 1},
				{[]string{"probe", "dns", dnsAddr, "--query", "site.edgeprobe.test.", "--timeout", "5s"}, 0},
				{[]string{"probe", "dns", dnsAddr, "--query", "gone.edgeprobe.test.", "--timeout", "5s"}, 1},
			} {
				if out, code := exe(c.args...); code != c.want {
					t.Errorf("%s: exit %d, want %d\n%s", strings.Join(c.args, " "), code, c.want, out)
				}
			}
		})
	}
}

// tcpServer listens on loopback and accepts until the test ends. It also returns an
// address where nothing listens (a port it held and released), for the refused case.
func tcpServer(t *testing.T) (open, closed string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), testkit.FreePort(t, "tcp")
}

// dnsServer answers A queries for site.edgeprobe.test. and NXDOMAIN for anything else.
func dnsServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		if q.Name == "site.edgeprobe.test." && q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP("203.0.113.10"),
			})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestEmulatedPiZeroRejectsARMv7 shows that the emulated ARM1176 is strict enough for the
// armv6 pass above to mean something: the ARMv7 build must die there (illegal instruction).
func TestEmulatedPiZeroRejectsARMv7(t *testing.T) {
	needTools(t, "qemu-arm-static")
	b := packages(t)
	armv7 := targets[3]
	out, err := exec.Command("qemu-arm-static", "-cpu", "arm1176", b.binary(armv7), "version").CombinedOutput()
	if err == nil {
		t.Fatalf("the ARMv7 build ran on an emulated ARM1176:\n%s", out)
	}
	if !strings.Contains(err.Error(), "illegal instruction") {
		t.Fatalf("the ARMv7 build failed on an emulated ARM1176, but not with SIGILL: %v\n%s", err, out)
	}
}
