package view

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// The tests of view/README.md, "Hostile input": each attack an attacker's test found on
// loopback, against the real server (Serve, with its listener and timeouts).
// internal/viewattack plays the same attacks against a view binary and measures them.

// serveHostile runs a view like serveView and returns it too, for its insides.
func serveHostile(t testing.TB, cfg *Config, opts Options, tune func(*Server)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + ln.Addr().String()
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestSnappyStrict: a block with S2's repeat codes (28 bytes of them expand to 64 MiB) is
// not snappy and is refused, and neither it nor a header that lies about the decoded
// size (6 bytes claiming 64 MiB, within the default decoded limit) makes the view
// allocate what the header claims.
func TestSnappyStrict(t *testing.T) {
	bombs := map[string][]byte{
		"S2 block of 64 MiB":    s2.Encode(nil, make([]byte, 64<<20)),
		"S2 block of 64 KiB":    s2.Encode(nil, make([]byte, 64<<10)),
		"header claiming 64MiB": {0x80, 0x80, 0x80, 0x20, 0x00, 0x00},
	}
	for name, body := range bombs {
		t.Run(name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = DecodeWrite(body, DefaultMaxBodyBytes) })
			var pe *pushError
			if !errors.As(err, &pe) || pe.reason != "bad_snappy" {
				t.Errorf("DecodeWrite of %d bytes: %v, want refused as bad_snappy", len(body), err)
			}
			if n > 1<<20 {
				t.Errorf("refusing %d bytes allocated %d bytes", len(body), n)
			}
		})
	}
	// Real snappy, as every agent writes it, still decodes.
	good := encodePushes(t, agentPush{agent: "a", interval: 1, sites: map[string]string{"p": "up"}})
	if _, err := DecodeWrite(good, DefaultMaxBodyBytes); err != nil {
		t.Errorf("a real push: %v", err)
	}
}

// holdBody opens a connection, sends a push's headers announcing size bytes and all of
// the body but its last byte, and returns the connection; the view waits for the rest.
func holdBody(t *testing.T, base string, size int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"+
		"X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %d\r\n\r\n", size)
	if _, err := conn.Write(make([]byte, size-1)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestPushMemoryBudget: bodies take their memory before they are read. With
// max_push_memory 4 MiB, large bodies (over 256 KiB) may hold a quarter of it at once:
// one held 1 MiB body leaves a second one waiting, then answered 503 with Retry-After,
// while ordinary pushes go through; once the first goes, the next large body is read.
func TestPushMemoryBudget(t *testing.T) {
	cfg, err := ParseConfig([]byte("max_body_bytes = 1048576\nmax_push_memory = 4194304\n"), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, base := serveHostile(t, cfg, Options{ReadTimeout: time.Minute}, nil)
	held := holdBody(t, base, 1<<20)
	eventuallyMetric(t, base, `edgeprobe_view_push_memory_bytes{use="bodies"} 1.048576e+06`)
	start := time.Now()
	code, h, msg := postWriteResp(t, base, "", make([]byte, 1<<20))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" || !strings.Contains(msg, "max_push_memory") {
		t.Errorf("second large body while one is held: %d Retry-After %q %q; want 503, Retry-After 1, naming max_push_memory", code, h.Get("Retry-After"), msg)
	}
	if waited := time.Since(start); waited < budgetWait/2 {
		t.Errorf("refused after %v, want after waiting about %v", waited, budgetWait)
	}
	if code := postWrite(t, base, "", encodePushes(t, agentPush{agent: "a", interval: 1, sites: map[string]string{"p": "up"}})); code != http.StatusNoContent {
		t.Errorf("an ordinary push while a large body is held: %d, want 204", code)
	}
	held.Close()
	eventuallyMetric(t, base, `edgeprobe_view_push_memory_bytes{use="bodies"} 0`)
	if code, _, msg := postWriteResp(t, base, "", make([]byte, 1<<20)); code != http.StatusBadRequest {
		t.Errorf("large body once the held one is gone: %d %q, want it read (and refused as not snappy, 400)", code, msg)
	}
	wantMetric(t, metricsText(t, base), `edgeprobe_view_pushes_rejected_total{reason="busy"} 1`)
}

// TestConnectionCap: with max_connections 16, 40 connections that never send a request
// cannot hold the view: it closes the ones that have dawdled longest to make room, never
// holds more than 16, and an agent's push on a new connection gets through.
func TestConnectionCap(t *testing.T) {
	cfg, err := ParseConfig([]byte("max_connections = 16\n"), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, base := serveHostile(t, cfg, Options{ReadHeaderTimeout: time.Minute}, nil)
	addr := strings.TrimPrefix(base, "http://")
	closedByView := make(chan struct{}, 40)
	for range 40 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			if _, err := conn.Read(make([]byte, 1)); err != nil {
				closedByView <- struct{}{}
			}
		}()
	}
	stop := make(chan struct{})
	most := make(chan int, 1)
	go func() {
		peak := 0
		for {
			select {
			case <-stop:
				most <- peak
				return
			case <-time.After(5 * time.Millisecond):
				peak = max(peak, s.hard.conns.count())
			}
		}
	}()
	client := &http.Client{Timeout: 20 * time.Second}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(encodePushes(t, agentPush{agent: "a", interval: 1, sites: map[string]string{"p": "up"}})))
	setPushHeaders(req.Header)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("push on a new connection while 40 idle ones are held: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("push: %d, want 204", resp.StatusCode)
	}
	select {
	case <-closedByView:
	case <-time.After(5 * time.Second):
		t.Error("the view closed none of 40 idle connections to make room")
	}
	close(stop)
	if peak := <-most; peak > 16 {
		t.Errorf("the view held %d connections, more than max_connections 16", peak)
	}
	text := metricsText(t, base)
	if !regexp.MustCompile(`(?m)^edgeprobe_view_connections_evicted_total [1-9]`).MatchString(text) {
		t.Errorf("/metrics counts no evicted connection")
	}
}

// TestConnectionCapVictims: at the cap, the connection closed for room is the one that
// has dawdled longest before its first request, and only when none has, the one idle
// longest between requests; a connection with a request in progress is never closed.
func TestConnectionCapVictims(t *testing.T) {
	l := newConnLimit(3)
	conns := map[string]*limitedConn{}
	closed := map[string]chan struct{}{}
	for _, name := range []string{"new", "idle", "busy"} {
		if err := l.room(); err != nil {
			t.Fatal(err)
		}
		ours, theirs := net.Pipe()
		t.Cleanup(func() { theirs.Close() })
		conns[name] = &limitedConn{Conn: ours, l: l}
		closed[name] = make(chan struct{})
		go func() {
			io.Copy(io.Discard, theirs)
			close(closed[name])
		}()
	}
	l.track(conns["idle"], http.StateNew)
	l.track(conns["idle"], http.StateActive)
	l.track(conns["idle"], http.StateIdle)
	l.track(conns["new"], http.StateNew)
	l.track(conns["busy"], http.StateNew)
	l.track(conns["busy"], http.StateActive)
	past := func(name string) {
		l.mu.Lock()
		conns[name].since = time.Now().Add(-time.Minute)
		l.mu.Unlock()
		l.signal()
	}
	past("idle")
	past("new")
	gone := map[string]bool{}
	for _, want := range []string{"new", "idle"} {
		if err := l.room(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-closed[want]:
		case <-time.After(10 * time.Second):
			t.Fatalf("the view made room without closing %q", want)
		}
		gone[want] = true
		for name, c := range closed {
			select {
			case <-c:
				if !gone[name] {
					t.Fatalf("making room closed %q too", name)
				}
			default:
			}
		}
	}
	// Only "busy" is left, in the middle of a request: room waits until it is idle.
	got := make(chan error, 1)
	go func() { got <- l.room() }()
	select {
	case err := <-got:
		t.Fatalf("room with every connection busy: %v, want a wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.track(conns["busy"], http.StateIdle)
	past("busy")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	<-closed["busy"]
	if l.fresh != (connList{}) || l.idle != (connList{}) || l.count() != 3 {
		t.Errorf("lists %+v %+v, %d open, want both empty and 3 open", l.fresh, l.idle, l.count())
	}
}

// forgedDown is a push of 40 agents that do not exist reporting site p down: beside two
// honest agents reporting it up, enough to make it lost if it were accepted.
func forgedDown(t *testing.T) []byte {
	var ps []agentPush
	for i := range 40 {
		ps = append(ps, agentPush{agent: fmt.Sprintf("forged-%02d", i), interval: 1, sites: map[string]string{"p": "down"}})
	}
	return encodePushes(t, ps...)
}

// TestPushHeadersRequired: a web page on any origin can POST a "simple" request (text/plain,
// no other header) without a CORS preflight; the view takes only pushes with the
// remote_write headers, which no page can send without a preflight that the view never
// answers, and none that name an Origin. The forged loss is never applied.
func TestPushHeadersRequired(t *testing.T) {
	_, base := serveHostile(t, DefaultConfig(), Options{}, nil)
	for _, a := range []string{"edge1", "edge2"} {
		if code := postWrite(t, base, "", encodePushes(t, agentPush{agent: a, interval: 1, sites: map[string]string{"p": "up"}})); code != http.StatusNoContent {
			t.Fatalf("%s: %d", a, code)
		}
	}
	body := forgedDown(t)
	tests := []struct {
		name string
		set  func(http.Header)
		want int
	}{
		{"a page's simple POST", func(h http.Header) {
			h.Set("Content-Type", "text/plain;charset=UTF-8")
			h.Set("Origin", "http://attacker.example")
		}, http.StatusForbidden},
		{"text/plain without Origin", func(h http.Header) { h.Set("Content-Type", "text/plain") }, http.StatusUnsupportedMediaType},
		{"no Content-Encoding", func(h http.Header) {
			setPushHeaders(h)
			h.Del("Content-Encoding")
		}, http.StatusUnsupportedMediaType},
		{"form content type", func(h http.Header) {
			setPushHeaders(h)
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		}, http.StatusUnsupportedMediaType},
		{"no remote_write version", func(h http.Header) {
			setPushHeaders(h)
			h.Del("X-Prometheus-Remote-Write-Version")
		}, http.StatusUnsupportedMediaType},
		{"every header and an Origin", func(h http.Header) {
			setPushHeaders(h)
			h.Set("Origin", "http://attacker.example")
		}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
			tt.set(req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%d %q, want %d", resp.StatusCode, msg, tt.want)
			}
		})
	}
	// A CORS preflight is never answered with permission.
	req, _ := http.NewRequest(http.MethodOptions, base+"/api/v1/write", nil)
	req.Header.Set("Origin", "http://attacker.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-encoding, content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 2 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight answered %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if s := getSites(t, base).Sites; len(s) != 1 || s[0].State != VerdictUp || len(s[0].Agents) != 2 {
		t.Errorf("sites after the forged pushes: %+v, want p up with its two agents", s)
	}
}

// TestHostChecked: every endpoint refuses a Host that is not one of the view's names (a
// page on a rebound name speaks as the view's own origin), and serves IP literals,
// localhost and allowed_hosts.
func TestHostChecked(t *testing.T) {
	cfg, err := ParseConfig([]byte(`allowed_hosts = ["View.Example.NET."]`), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, base := serveHostile(t, cfg, Options{KeepAlive: 50 * time.Millisecond}, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	do := func(method, path, host string) int {
		var body io.Reader
		if method == http.MethodPost {
			body = bytes.NewReader(encodePushes(t, agentPush{agent: "a", interval: 1, sites: map[string]string{"p": "up"}}))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, base+path, body)
		req.Host = host
		setPushHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s Host %s: %v", method, path, host, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	endpoints := []struct{ method, path string }{
		{"POST", "/api/v1/write"}, {"GET", "/api/v1/sites"}, {"GET", "/api/v1/events"}, {"GET", "/metrics"}, {"GET", "/"},
	}
	for _, host := range []string{"rebind.attacker.example:" + port, "rebind.attacker.example", "view.example.net.evil:" + port} {
		for _, e := range endpoints {
			if code := do(e.method, e.path, host); code != http.StatusMisdirectedRequest {
				t.Errorf("%s %s with Host %s: %d, want 421", e.method, e.path, host, code)
			}
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "view.example.net:" + port, "VIEW.example.net"} {
		for _, e := range endpoints {
			want := http.StatusOK
			if e.method == "POST" {
				want = http.StatusNoContent
			}
			if code := do(e.method, e.path, host); code != want {
				t.Errorf("%s %s with Host %s: %d, want %d", e.method, e.path, host, code, want)
			}
		}
	}
	if _, err := ParseConfig([]byte(`allowed_hosts = ["view example"]`), "view.toml"); err == nil || !strings.Contains(err.Error(), "view.toml:1: allowed_hosts[0]:") {
		t.Errorf("a bad allowed_hosts entry: %v", err)
	}
}

// TestSharedTokenReservesAgentNames: an agent with its own token (agent_tokens) can be
// pushed only with it; a shared token naming it is refused (403), alone or beside others.
func TestSharedTokenReservesAgentNames(t *testing.T) {
	dir := t.TempDir()
	var toml strings.Builder
	toml.WriteString("tokens = [\"shared\"]\n")
	for _, a := range []string{"edge1", "edge2"} {
		f := filepath.Join(dir, a)
		if err := os.WriteFile(f, []byte(a+"-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&toml, "[[agent_tokens]]\nagent = %q\ntoken_file = %q\n", a, f)
	}
	cfg, err := ParseConfig([]byte(toml.String()), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, base := serveHostile(t, cfg, Options{}, nil)
	site := func(st string) map[string]string { return map[string]string{"p": st} }
	for _, a := range []string{"edge1", "edge2"} {
		if code := postWrite(t, base, a+"-secret", encodePushes(t, agentPush{agent: a, interval: 1, sites: site("up")})); code != http.StatusNoContent {
			t.Fatalf("%s with its own token: %d", a, code)
		}
	}
	if code := postWrite(t, base, "shared", encodePushes(t, agentPush{agent: "edge3", interval: 1, sites: site("up")})); code != http.StatusNoContent {
		t.Errorf("shared token for an agent without a token of its own: %d, want 204", code)
	}
	for name, body := range map[string][]byte{
		"alone":  encodePushes(t, agentPush{agent: "edge1", interval: 1, sites: site("down")}, agentPush{agent: "edge2", interval: 1, sites: site("down")}),
		"beside": encodePushes(t, agentPush{agent: "edge3", interval: 1, sites: site("down")}, agentPush{agent: "edge1", interval: 1, sites: site("down")}),
	} {
		code, _, msg := postWriteResp(t, base, "shared", body)
		if code != http.StatusForbidden || !strings.Contains(msg, "its own token") {
			t.Errorf("shared token pushing reserved agents (%s): %d %q, want 403", name, code, msg)
		}
	}
	for _, a := range getSites(t, base).Sites[0].Agents {
		if a.State != "up" {
			t.Errorf("agent %s is %s: a refused push was applied", a.Name, a.State)
		}
	}
}

// blockingWriter is an event log reader that stopped reading.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("write |1: broken pipe") }

// TestEventLogNeverBlocks: with an event log nobody reads (or one that fails, as a
// closed pipe does), pushes are answered, verdicts change and agents still turn stale
// on time; the lines that did not fit are counted in edgeprobe_view_log_dropped_total.
func TestEventLogNeverBlocks(t *testing.T) {
	for name, w := range map[string]io.Writer{"stalled reader": blockingWriter{make(chan struct{})}, "failing writer": failingWriter{}} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.PushRate, cfg.PushBurst = 1000, 1000
			cfg.StaleAfter = Duration{Duration: 3 * time.Second}
			var logs testkit.Buffer
			_, base := serveHostile(t, cfg, Options{Events: w, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
			sites := func(st string) map[string]string {
				m := map[string]string{}
				for i := range 5000 {
					m[fmt.Sprintf("s%04d", i)] = st
				}
				return m
			}
			client := &http.Client{Timeout: 5 * time.Second}
			// Encoded before they are sent, so that the pushes come within stale_after;
			// each one newer than the one before.
			steps := []struct{ agent, state string }{{"a", "up"}, {"b", "up"}, {"a", "down"}, {"a", "up"}}
			var bodies [][]byte
			at := time.Now()
			for i, st := range steps {
				bodies = append(bodies, encodePushes(t, agentPush{agent: st.agent, interval: 1, sites: sites(st.state), at: at.Add(time.Duration(i) * time.Millisecond)}))
			}
			push := func(i int) {
				a, st := steps[i].agent, steps[i].state
				req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(bodies[i]))
				setPushHeaders(req.Header)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("push %s %s: %v", a, st, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Fatalf("push %s %s: %d", a, st, resp.StatusCode)
				}
			}
			// 5000 sites change verdict on each push: the buffer (8192 lines) overflows.
			for i := range steps {
				push(i)
			}
			if s := getSites(t, base).Sites; s[0].State != VerdictUp {
				t.Errorf("after the pushes %s is %s, want up", s[0].Name, s[0].State)
			}
			// Both agents turn stale after 3 s: the staleness timer publishes too.
			deadline := time.Now().Add(10 * time.Second)
			for getSites(t, base).Sites[0].State != VerdictUnknown {
				if time.Now().After(deadline) {
					t.Fatal("the sites did not turn unknown after their agents went stale")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !regexp.MustCompile(`(?m)^edgeprobe_view_log_dropped_total [1-9]`).MatchString(metricsText(t, base)) {
				t.Error("/metrics counts no dropped event log line")
			}
			for deadline := time.Now().Add(2 * time.Second); !strings.Contains(logs.String(), "event log: lines dropped"); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the diagnostics do not say that lines were dropped: %q", logs.String())
					break
				}
			}
		})
	}
}

// TestRefusalsLoggedOnce: a flood of refused pushes gives one line, then one summary a
// window with the count by reason, not a line each.
func TestRefusalsLoggedOnce(t *testing.T) {
	var logs testkit.Buffer
	const window = time.Second
	_, base := serveHostile(t, DefaultConfig(), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, func(s *Server) {
		s.hard.rejects.every = window
	})
	start := time.Now()
	for range 200 {
		if code := postWrite(t, base, "", []byte("\xffhello")); code != http.StatusBadRequest {
			t.Fatalf("garbage: %d", code)
		}
	}
	for range 50 {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	took := time.Since(start)
	time.Sleep(2 * window)
	var full, summaries []string
	counted := 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		switch {
		case strings.Contains(l, "requests refused"):
			summaries = append(summaries, l)
			m := regexp.MustCompile(` count=(\d+) `).FindStringSubmatch(l)
			if m == nil {
				t.Errorf("summary %q has no count", l)
				continue
			}
			n, _ := strconv.Atoi(m[1])
			counted += n
		case strings.Contains(l, "refused") || strings.Contains(l, "rejected"):
			full = append(full, l)
		}
	}
	// One window per second of refusals, and a pause on a loaded machine may close one.
	if most := 2 * (int(took/window) + 2); len(full)+len(summaries) > most || len(full) == 0 || len(summaries) == 0 {
		t.Fatalf("%d full lines and %d summaries for 250 refusals in %v, want one of each per window of %v (at most %d lines):\n%s",
			len(full), len(summaries), took.Round(time.Millisecond), window, most, logs.String())
	}
	if !strings.Contains(full[0], "reason=bad_snappy") {
		t.Errorf("first line %q, want the first refusal in full", full[0])
	}
	if counted+len(full) != 250 {
		t.Errorf("summaries count %d refusals and %d are logged in full, want 250 in all", counted, len(full))
	}
	if len(full) == 1 && len(summaries) == 1 && !strings.Contains(summaries[0], `by_reason="bad_snappy=199 unsupported=50"`) {
		t.Errorf("summary %q, want the counts by reason", summaries[0])
	}
	wantMetric(t, metricsText(t, base), `edgeprobe_view_pushes_rejected_total{reason="bad_snappy"} 200`)
}

// TestReadEndpointsNeedReadToken: with read_tokens set, every endpoint that shows the
// view's state needs a read (or admin) token; the page itself holds no data.
func TestReadEndpointsNeedReadToken(t *testing.T) {
	cfg, err := ParseConfig([]byte("read_tokens = [\"reader\"]\nadmin_tokens = [\"admin\"]\n"), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, base := serveHostile(t, cfg, Options{KeepAlive: 50 * time.Millisecond}, nil)
	get := func(path, token string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/api/v1/sites", "/api/v1/events", "/metrics"} {
		for token, want := range map[string]int{"": 401, "guess": 401, "reader": 200, "admin": 200} {
			if code := get(path, token); code != want {
				t.Errorf("GET %s with token %q: %d, want %d", path, token, code, want)
			}
		}
	}
	if code := get("/", ""); code != http.StatusOK {
		t.Errorf("GET / without a token: %d, want 200 (the page holds no data)", code)
	}
}

// TestReportsBounded: what a push builds is bounded by its decoded size: a push of
// minimal series naming 20000 sites (a few dozen bytes each) is refused, while a real
// agent's push of 10000 sites (six series each) is taken.
func TestReportsBounded(t *testing.T) {
	var bomb []agentPush
	for a := range 4 {
		sites := map[string]string{}
		for i := range 5000 {
			sites["s"+strconv.Itoa(i)] = "up"
		}
		bomb = append(bomb, agentPush{agent: fmt.Sprintf("a%d", a), sites: sites})
	}
	raw := encodeMinimal(t, bomb)
	_, err := DecodeWrite(raw, DefaultMaxBodyBytes)
	var pe *pushError
	if !errors.As(err, &pe) || pe.reason != "too_large" {
		t.Errorf("20000 sites in minimal series: %v, want refused as too_large", err)
	}
	sites := map[string]string{}
	for i := range 10000 {
		sites[fmt.Sprintf("site%05d", i)] = "up"
	}
	reports, err := DecodeWrite(encodePushes(t, agentPush{agent: "big", interval: 1, sites: sites, since: time.Now(), detect: 0.2}), DefaultMaxBodyBytes)
	if err != nil || len(reports) != 1 || len(reports[0].Sites) != 10000 {
		t.Errorf("a real push of 10000 sites: %d reports, %v", len(reports), err)
	}
}

// encodeMinimal writes each site as one edgeprobe_site_state series with nothing but
// its name, agent, site and state labels and an empty sample.
func encodeMinimal(t *testing.T, ps []agentPush) []byte {
	t.Helper()
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	label := func(name, value string) []byte { return field(field(nil, 1, []byte(name)), 2, []byte(value)) }
	var raw []byte
	for _, p := range ps {
		for site := range p.sites {
			var ts []byte
			ts = field(ts, 1, label("__name__", "edgeprobe_site_state"))
			ts = field(ts, 1, label("agent", p.agent))
			ts = field(ts, 1, label("site", site))
			ts = field(ts, 1, label("state", "up"))
			ts = field(ts, 2, nil)
			raw = field(raw, 1, ts)
		}
	}
	return snappy.Encode(nil, raw)
}
