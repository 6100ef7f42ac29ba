//go:build linux

package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// Daemons are the programs ServeDaemons runs: Debian's nginx (package nginx-light) and
// dnsmasq (package dnsmasq-base), both in scripts/deps/netns.txt.
var Daemons = []string{"nginx", "dnsmasq"}

// RequireDaemons stops the test when a program of Daemons is missing (testkit.Require:
// a skip, an error under CI), as Require does for the network itself.
func RequireDaemons(tb testing.TB) {
	tb.Helper()
	for _, name := range Daemons {
		_, err := lookDaemon(name)
		testkit.Require(tb, err)
	}
}

// lookDaemon finds a server program in PATH or in /usr/sbin, where Debian installs both
// and where a user's PATH often does not look.
func lookDaemon(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	path := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return "", fmt.Errorf("testnet: %s not found in PATH or /usr/sbin (Debian packages nginx-light, dnsmasq-base; scripts/deps/netns.txt)", name)
}

// daemonsReady bounds how long ServeDaemons waits for the servers to answer.
const daemonsReady = 10 * time.Second

// ServeDaemons serves what Serve serves, on every host of a site, from real servers in
// separate processes inside the site's namespace: one nginx for the site (HTTP on 80,
// 200 "ok" on every path; 5432 accepts and closes, the client hanging up first) and one
// dnsmasq per host (DNS on udp and tcp 53, answering every A query with that host's
// address). They stop when the network is closed, and die with this process.
//
// Serve runs its servers in the test's own process, where they share the CPU and the Go
// scheduler with whatever the test does; under load their answers come late and a
// probe's timeout measures the test, not the program under test. These answer from
// event loops written in C, each scheduled by the kernel as its own process: the soak
// (e2e/soak_test.go) measured what each costs and how late each answers.
func (n *Net) ServeDaemons(site string) ([]Services, error) {
	nd, err := n.node(site, roleSite)
	if err != nil {
		return nil, err
	}
	nginx, err := lookDaemon("nginx")
	if err != nil {
		return nil, err
	}
	dnsmasq, err := lookDaemon("dnsmasq")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", n.prefix+"-"+site+"-")
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.closers = append(n.closers, func() error { return os.RemoveAll(dir) })
	n.mu.Unlock()

	var svcs []Services
	var listen strings.Builder
	for _, addr := range nd.addrs {
		s := Services{
			Addr: addr,
			DNS:  netip.AddrPortFrom(addr, DNSPort),
			HTTP: netip.AddrPortFrom(addr, HTTPPort),
			TCP:  netip.AddrPortFrom(addr, TCPPort),
		}
		svcs = append(svcs, s)
		fmt.Fprintf(&listen, "    listen %s;\n    listen %s;\n", s.HTTP, s.TCP)
	}
	// One process (master_process off), so that the death signal Start sets reaches the
	// process that serves: an nginx master killed outright leaves its workers running.
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
%[2]s    location / { return 200 "ok\n"; }
  }
}
`, dir, listen.String())
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	procs := []*Proc{}
	p, err := n.Start(site, nginx, "-p", dir, "-e", "stderr", "-c", confPath)
	if err != nil {
		return nil, err
	}
	procs = append(procs, p)
	for _, s := range svcs {
		p, err := n.Start(site, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			"--bind-interfaces", "--listen-address="+s.Addr.String(), "--port=53", "--address=/#/"+s.Addr.String(),
			"--local-ttl=60", "--user=root", "--pid-file=", "--log-facility=-")
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	if err := n.waitDaemons(site, svcs, procs); err != nil {
		return nil, fmt.Errorf("testnet %s: servers of site %q: %w", n.prefix, site, err)
	}
	return svcs, nil
}

// waitDaemons waits until every host answers HTTP, TCP and DNS from inside the site.
func (n *Net) waitDaemons(site string, svcs []Services, procs []*Proc) error {
	deadline := time.Now().Add(daemonsReady)
	dial := n.DialContext(site)
	for _, s := range svcs {
		for {
			err := answers(dial, s)
			if err == nil {
				break
			}
			for _, p := range procs {
				select {
				case <-p.Exited():
					return fmt.Errorf("a server exited (%v): %s", p.Err(), p.Stderr())
				default:
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not answering after %v: %w", daemonsReady, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// answers checks a host's three services once.
func answers(dial func(context.Context, string, string) (net.Conn, error), s Services) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, port := range []netip.AddrPort{s.HTTP, s.TCP} {
		c, err := dial(ctx, "tcp", port.String())
		if err != nil {
			return err
		}
		c.Close()
	}
	c, err := dial(ctx, "udp", s.DNS.String())
	if err != nil {
		return err
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion("ready.test.", dns.TypeA)
	conn := &dns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if err := conn.WriteMsg(q); err != nil {
		return err
	}
	r, err := conn.ReadMsg()
	if err != nil {
		return err
	}
	if len(r.Answer) != 1 {
		return errors.New("DNS answer without the host's address")
	}
	if a, ok := r.Answer[0].(*dns.A); !ok || !a.A.Equal(s.Addr.AsSlice()) {
		return fmt.Errorf("DNS answer %v, want %s", r.Answer[0], s.Addr)
	}
	return nil
}
