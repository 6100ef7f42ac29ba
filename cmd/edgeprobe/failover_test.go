package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/view"
)

const (
	testAdminToken = "admin-secret"
	testTSIG       = "sMcguyyzMSnhe9+kvSj0FnwZ1V9jsmwqYwTDC9po1dI="
)

// writeFiles writes name -> content into a new directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		mode := os.FileMode(0o600)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startFailoverView serves a failover controller's API behind an admin-token check, as
// the view mounts it, for a runbook-only site "dca".
func startFailoverView(t *testing.T) (url, tokenFile string) {
	t.Helper()
	dir := writeFiles(t, map[string]string{
		"runbook.sh":  "#!/bin/sh\n",
		"admin.token": testAdminToken + "\n",
		"view.toml":   "state_dir = \"state\"\n[[actions.exec]]\nsite = \"dca\"\ncommand = [\"runbook.sh\"]\n",
	})
	cfg, err := view.LoadConfig(filepath.Join(dir, "view.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := failover.New(&cfg.Actions, failover.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	h := ctl.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testAdminToken {
			http.Error(w, `{"error":"admin token required"}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, filepath.Join(dir, "admin.token")
}

func TestFailoverCLI(t *testing.T) {
	url, token := startFailoverView(t)
	run := func(args ...string) runResult {
		return runBinary(t, 15*time.Second, append([]string{"failover"}, args...)...)
	}
	steps := []struct {
		args   []string
		status int
		out    string // in stdout (status 0) or stderr
	}{
		{[]string{"status", "--view", url, "--token-file", token}, 0, "dca   primary"},
		{[]string{"status", "--view", url}, 1, "admin token required (HTTP 401) (give an admin token with --token-file)"},
		{[]string{"hold", "--view", url, "--token-file", token}, 2, "hold needs --reason TEXT"},
		{[]string{"hold", "--view", url, "--token-file", token, "--reason", "DNS migration"}, 0, "held: DNS migration"},
		{[]string{"hold", "--view", url, "--token-file", token, "--reason", "again"}, 1, "held already (by cli "},
		{[]string{"status", "--view", url, "--token-file", token}, 0, "held by cli "},
		{[]string{"release", "--view", url, "--token-file", token}, 0, "released"},
		{[]string{"release", "--view", url, "--token-file", token}, 1, "not held (HTTP 409)"},
		{[]string{"failback", "dca", "--view", url, "--token-file", token}, 1, "not failed over (it is primary) (HTTP 409)"},
		{[]string{"failback", "nowhere", "--view", url, "--token-file", token}, 1, "no actions are configured for this site (HTTP 404)"},
		{[]string{"failback", "--view", url}, 2, "failback needs the SITE"},
		{[]string{"status", "extra", "--view", url}, 2, `unexpected argument "extra"`},
		{[]string{"bogus"}, 2, `unknown subcommand "bogus"`},
		{nil, 2, "missing the subcommand"},
		{[]string{"status", "--view", "ftp://x"}, 2, `has scheme "ftp"`},
		{[]string{"status", "--view", url, "--token-file", "/nonexistent"}, 2, "--token-file: open /nonexistent"},
		{[]string{"status", "--view", "http://127.0.0.1:1", "--timeout", "2s"}, 1, "connect: connection refused"},
	}
	for _, s := range steps {
		r := run(s.args...)
		text := r.stderr
		if s.status == 0 {
			text = r.stdout
		}
		if r.status != s.status || !strings.Contains(text, s.out) {
			t.Errorf("failover %s: status %d\nstdout: %s\nstderr: %s\nwant %d and %q", strings.Join(s.args, " "), r.status, r.stdout, r.stderr, s.status, s.out)
		}
	}
	r := run("status", "--view", url, "--token-file", token, "--json")
	if r.status != 0 || !strings.Contains(r.stdout, `"hold": null`) {
		t.Errorf("--json: %d %s %s", r.status, r.stdout, r.stderr)
	}
}

// startUpdateServer is a DNS server on loopback that checks TSIG and accepts updates,
// answering www.example.test. A with 198.51.100.13; it counts the updates.
func startUpdateServer(t *testing.T) (addr string, updates *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := new(atomic.Int32)
	srv := &dns.Server{Listener: l, TsigSecret: map[string]string{"edgeprobe.": testTSIG},
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }, // updates too
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Authoritative = true
			if q.IsTsig() == nil || w.TsigStatus() != nil {
				m.Rcode = dns.RcodeNotAuth
				w.WriteMsg(m)
				return
			}
			if q.Opcode == dns.OpcodeUpdate {
				n.Add(1)
			} else {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
					A: net.ParseIP("198.51.100.13")})
			}
			t := q.IsTsig()
			m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return l.Addr().String(), n
}

func TestCheckViewConfig(t *testing.T) {
	addr, updates := startUpdateServer(t)
	viewToml := func(server, key string) string {
		return fmt.Sprintf(`state_dir = "state"
[actions]
lost_for = "0s"
[[actions.dns]]
site = "dca"
server = %q
zone = "example.test."
name = "www.example.test."
type = "A"
primary = ["198.51.100.13"]
failover = ["198.51.100.23"]
tsig_key_file = %q
`, server, key)
	}
	dir := writeFiles(t, map[string]string{
		"tsig.key":   "key \"edgeprobe\" { algorithm hmac-sha256; secret \"" + testTSIG + "\"; };\n",
		"wrong.key":  "key \"edgeprobe\" { algorithm hmac-sha256; secret \"QUJD\"; };\n",
		"md5.key":    "key \"edgeprobe\" {\n algorithm hmac-md5;\n secret \"QUJD\";\n};\n",
		"good.toml":  viewToml(addr, "tsig.key"),
		"wrong.toml": viewToml(addr, "wrong.key"),
		"bad.toml":   strings.Replace(viewToml("nowhere:99999", "md5.key"), `state_dir = "state"`, "", 1),
		"noact.toml": "quorum = 2\n",
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		args   []string
		status int
		stdout string
		stderr []string
	}{
		{[]string{"--view-config", p("good.toml")}, 0, "good.toml: ok, 1 DNS actions, 0 runbooks", nil},
		{[]string{"--view-config", p("bad.toml")}, 2, "", []string{
			"bad.toml:2: actions: needs the view's state_dir",
			"bad.toml:6: actions.dns[0].server: port \"99999\" is not a number",
			"actions.dns[0].tsig_key_file: " + p("md5.key") + ":2: unknown algorithm \"hmac-md5\""}},
		{[]string{"--view-config", p("good.toml"), "--test-actions"}, 0,
			"actions.dns[0] (site dca): www.example.test. A on " + addr + ": ok, the server accepts the key's updates; it holds the primary records (198.51.100.13)", nil},
		{[]string{"--view-config", p("wrong.toml"), "--test-actions"}, 1, "actions.dns[0] (site dca): www.example.test. A on " + addr + ": FAILED: reading www.example.test. A:",
			[]string{"1 of 1 DNS actions failed the test update"}},
		{[]string{"--view-config", p("noact.toml"), "--test-actions"}, 0, "no [[actions.dns]] to test", nil},
		{[]string{"--test-actions"}, 2, "", []string{"--test-actions needs --view-config FILE"}},
		{[]string{"--config", p("good.toml"), "--view-config", p("good.toml")}, 2, "", []string{"check one file at a time"}},
	}
	for _, tt := range tests {
		r := runBinary(t, 30*time.Second, append([]string{"check"}, tt.args...)...)
		ok := r.status == tt.status && strings.Contains(r.stdout, tt.stdout)
		for _, e := range tt.stderr {
			ok = ok && strings.Contains(r.stderr, e)
		}
		if !ok {
			t.Errorf("check %s: status %d\nstdout: %s\nstderr: %s\nwant %d, %q, %q", strings.Join(tt.args, " "), r.status, r.stdout, r.stderr, tt.status, tt.stdout, tt.stderr)
		}
	}
	if n := updates.Load(); n != 1 {
		t.Errorf("%d test updates reached the server, want 1", n)
	}
}
