package view

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
)

// serveView runs a view with Serve on a loopback port, the way `edgeprobe view` does
// (http.Server with its timeouts, not httptest), until the test ends.
func serveView(t *testing.T, cfg *Config, opts Options) (base string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func postWriteResp(t testing.TB, base, token string, body []byte) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	setPushHeaders(req.Header)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post to %s: %v", base, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(msg)
}

// TestPushRateLimit: each agent has its own token bucket; beyond it a push gets 429 with
// Retry-After, other agents are not affected, and a push naming a limited agent is
// refused whole (nothing of it applied, no other agent's token spent).
func TestPushRateLimit(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "edge9.token")
	if err := os.WriteFile(tokenFile, []byte("edge9-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`push_rate = 0.5
push_burst = 3
tokens = ["shared"]
[[agent_tokens]]
agent = "edge9"
token_file = "`+tokenFile+`"
`), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	base := serveView(t, cfg, Options{})
	push := func(token string, sites map[string]string, agents ...string) (int, http.Header, string) {
		var ps []agentPush
		for _, a := range agents {
			ps = append(ps, agentPush{agent: a, interval: 1, sites: sites})
		}
		return postWriteResp(t, base, token, encodePushes(t, ps...))
	}
	up := map[string]string{"pangyo": "up"}
	for i := range 3 {
		if code, _, msg := push("shared", up, "a"); code != http.StatusNoContent {
			t.Fatalf("push %d of a within the burst: %d %s", i+1, code, msg)
		}
	}
	code, h, msg := push("shared", up, "a")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "2" || !strings.Contains(msg, "push_rate 0.5/s (burst 3)") {
		t.Fatalf("4th push of a: %d Retry-After %q %q; want 429, Retry-After 2 and the limit named", code, h.Get("Retry-After"), msg)
	}
	if code, _, msg := push("shared", up, "b"); code != http.StatusNoContent {
		t.Fatalf("b while a is limited: %d %s", code, msg)
	}
	// A push of b and the limited a is refused whole: b's down is not applied.
	if code, _, _ := push("shared", map[string]string{"pangyo": "down"}, "b", "a"); code != http.StatusTooManyRequests {
		t.Fatalf("push of b and a: %d, want 429", code)
	}
	for _, ag := range getSites(t, base).Sites[0].Agents {
		if ag.State != "up" {
			t.Errorf("agent %s is %s after a refused push, want up", ag.Name, ag.State)
		}
	}
	// b's bucket was not spent by the refused push: two more fit (burst 3, one used).
	for i := range 2 {
		if code, _, msg := push("shared", up, "b"); code != http.StatusNoContent {
			t.Fatalf("b push %d after the refused one: %d %s", i+2, code, msg)
		}
	}
	// An agent's own token is limited too (before its body is read).
	for range 3 {
		push("edge9-secret", up, "edge9")
	}
	if code, _, _ := push("edge9-secret", up, "edge9"); code != http.StatusTooManyRequests {
		t.Errorf("4th push with edge9's token: %d, want 429", code)
	}
	wantMetric(t, metricsText(t, base), `edgeprobe_view_pushes_rejected_total{reason="rate_limited"} 3`)
}

// TestLimiterPrunes: buckets of agents that are full again are forgotten, so pushes
// under ever new names cannot grow the limiter's map without end.
func TestLimiterPrunes(t *testing.T) {
	l := newLimiter(10, 5)
	now := time.Now()
	// 20000 names, one a millisecond: each bucket is full again 100 ms after its push.
	for i := range 20000 {
		if _, ok := l.allow(now.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("agent%d", i)); !ok {
			t.Fatalf("first push of agent%d refused", i)
		}
	}
	if n := len(l.buckets); n > 4096+100 {
		t.Errorf("%d buckets after 20000 one-off agents over 20 s, want the full ones pruned", n)
	}
}

// TestEventClientsCap: beyond max_event_clients, /api/v1/events answers 503 with
// Retry-After; a freed place is taken again.
func TestEventClientsCap(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEventClients = 2
	base := serveView(t, cfg, Options{})
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, cancel
	}
	r1, c1 := open()
	defer c1()
	r2, c2 := open()
	defer c2()
	r3, c3 := open()
	c3()
	if r1.StatusCode != 200 || r2.StatusCode != 200 || r3.StatusCode != http.StatusServiceUnavailable || r3.Header.Get("Retry-After") == "" {
		t.Fatalf("statuses %d %d %d (Retry-After %q), want 200 200 503 with Retry-After", r1.StatusCode, r2.StatusCode, r3.StatusCode, r3.Header.Get("Retry-After"))
	}
	wantMetric(t, metricsText(t, base), "edgeprobe_view_sse_refused_total 1")
	c1()
	r1.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r4, c4 := open()
		c4()
		if r4.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a client left: %d, want 200", r4.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSlowClients: the server's own limits against slowloris and oversized requests,
// with short timeouts: headers that never end, a body that never comes, enormous
// headers; and an events stream outlives the read timeout.
func TestSlowClients(t *testing.T) {
	base := serveView(t, DefaultConfig(), Options{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond,
		MaxHeaderBytes: 4096, KeepAlive: 100 * time.Millisecond})
	addr := strings.TrimPrefix(base, "http://")
	// closedWithin sends text and says how long the server took to close the connection.
	closedWithin := func(text string) (time.Duration, string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, text); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(conn)
		return time.Since(start), string(got)
	}
	t.Run("headers never end", func(t *testing.T) {
		took, _ := closedWithin("POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
		if took > 3*time.Second {
			t.Errorf("connection held %v, want closed after ReadHeaderTimeout (300ms)", took)
		}
	})
	t.Run("body never comes", func(t *testing.T) {
		took, got := closedWithin("POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\n" +
			"X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: 1000\r\n\r\nabc")
		if took > 3*time.Second {
			t.Errorf("connection held %v, want closed after ReadTimeout (600ms)", took)
		}
		if got != "" && !strings.Contains(got, " 400 ") {
			t.Errorf("answer %q, want none or 400", got)
		}
	})
	t.Run("enormous headers", func(t *testing.T) {
		_, got := closedWithin("GET /api/v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n")
		if !strings.Contains(got, " 431 ") {
			t.Errorf("answer %.80q, want 431 Request Header Fields Too Large", got)
		}
	})
	t.Run("events outlive the read timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(conn)
		start := time.Now()
		keepAlives := 0
		for time.Since(start) < 1500*time.Millisecond {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended after %v (%d keep-alives): %v", time.Since(start), keepAlives, err)
			}
			if strings.HasPrefix(line, ": keep-alive") {
				keepAlives++
			}
		}
	})
}

// TestSnappyBomb: a small body that would expand beyond 16 x max_body_bytes is refused
// with 413 before it is expanded, and changes nothing.
func TestSnappyBomb(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 64 << 10
	base := serveView(t, cfg, Options{})
	if code, _, _ := postWriteResp(t, base, "", encodePushes(t, agentPush{agent: "a", sites: map[string]string{"p": "up"}})); code != 204 {
		t.Fatalf("good push: %d", code)
	}
	// 1.2 MiB of zeros compress 20:1 to under max_body_bytes and expand past the
	// decoded limit of max(1 MiB, 16 x 64 KiB); a header that lies about the decoded size
	// (1 GiB in 6 bytes) is refused before anything is allocated.
	bomb := snappy.Encode(nil, make([]byte, 1200<<10))
	if len(bomb) > int(cfg.MaxBodyBytes) {
		t.Fatalf("bomb of %d bytes does not fit max_body_bytes", len(bomb))
	}
	liar := []byte{0x80, 0x80, 0x80, 0x80, 0x04, 0x00}
	for name, body := range map[string][]byte{"zeros": bomb, "lying header": liar} {
		code, _, msg := postWriteResp(t, base, "", body)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "more than the limit of 1048576") {
			t.Errorf("%s: %d %q, want 413 naming the decoded limit", name, code, msg)
		}
	}
	if s := getSites(t, base).Sites; len(s) != 1 || s[0].Agents[0].State != "up" {
		t.Errorf("sites after the bomb: %+v", s)
	}
}

// TestForgedLostRefused: with per-agent tokens, an agent cannot push another agent's
// series, alone or mixed with its own; the forged "down" never makes the site lost, and
// nothing of a mixed push is applied.
func TestForgedLostRefused(t *testing.T) {
	dir := t.TempDir()
	var toml strings.Builder
	for _, a := range []string{"edge1", "edge2", "edge3"} {
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
	base := serveView(t, cfg, Options{})
	events := followEvents(t, base, "")
	push := func(token string, ps ...agentPush) int {
		code, _, _ := postWriteResp(t, base, token, encodePushes(t, ps...))
		return code
	}
	site := func(st string) map[string]string { return map[string]string{"pangyo": st} }
	for _, a := range []string{"edge1", "edge2", "edge3"} {
		if code := push(a+"-secret", agentPush{agent: a, interval: 1, sites: site("up")}); code != 204 {
			t.Fatalf("%s pushing itself: %d", a, code)
		}
	}
	// edge1 really sees pangyo down: one witness, degraded.
	if code := push("edge1-secret", agentPush{agent: "edge1", interval: 1, sites: site("down")}); code != 204 {
		t.Fatalf("edge1 down: %d", code)
	}
	// edge1 forges edge2's down (which would complete the quorum of 2), alone and mixed.
	if code := push("edge1-secret", agentPush{agent: "edge2", interval: 1, sites: site("down")}); code != http.StatusForbidden {
		t.Errorf("edge1's token pushing edge2's series: %d, want 403", code)
	}
	if code := push("edge1-secret", agentPush{agent: "edge1", interval: 1, sites: site("up")}, agentPush{agent: "edge2", interval: 1, sites: site("down")}); code != http.StatusForbidden {
		t.Errorf("edge1's token pushing edge1's and edge2's series: %d, want 403", code)
	}
	s := getSites(t, base).Sites[0]
	if s.State != VerdictDegraded || s.Down != 1 {
		t.Errorf("pangyo %s with %d down, want degraded with 1 down (edge1's own)", s.State, s.Down)
	}
	for _, a := range s.Agents {
		want := map[string]string{"edge1": "down", "edge2": "up", "edge3": "up"}[a.Name]
		if a.State != want {
			t.Errorf("%s reports %s, want %s: a refused push changed it", a.Name, a.State, want)
		}
	}
	// The stream saw unknown -> up and up -> degraded, never lost.
	var seen []string
	for len(seen) < 2 {
		c := nextChange(t, events, 2*time.Second)
		seen = append(seen, c.From+"->"+c.To)
	}
	if e, err := events.NextWithin(200 * time.Millisecond); err == nil {
		t.Errorf("unexpected verdict change %s", e.Data)
	}
	if seen[0] != "unknown->up" || seen[1] != "up->degraded" {
		t.Errorf("changes %v, want unknown->up, up->degraded", seen)
	}
	wantMetric(t, metricsText(t, base), `edgeprobe_view_pushes_rejected_total{reason="forbidden"} 2`)
}

// TestPushBeyondBounds: a push that would take the view past max_agents gets 507, is
// counted and logged with the bound's name, and changes no verdict.
func TestPushBeyondBounds(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxAgents = 2
	base, _ := startView(t, cfg)
	pushSite(t, base, "down", "a", "b")
	code, _, msg := postWriteResp(t, base, "", encodePushes(t, agentPush{agent: "c", sites: map[string]string{"pangyo": "up"}}))
	if code != http.StatusInsufficientStorage || !strings.Contains(msg, "max_agents 2") {
		t.Fatalf("push of a third agent: %d %q, want 507 naming max_agents 2", code, msg)
	}
	wantMetric(t, metricsText(t, base), `edgeprobe_view_pushes_rejected_total{reason="full"} 1`)
	if s := getSites(t, base).Sites; len(s) != 1 || len(s[0].Agents) != 2 || s[0].State != VerdictLost {
		t.Errorf("sites %+v: want pangyo lost from a and b alone", s)
	}
}

// A push whose sender is gone before a decode slot is free is not decoded: under more
// load than the view has CPU for, it would only take a slot from a sender still waiting.
func TestDecodeSkipsAbandonedPush(t *testing.T) {
	cfg := DefaultConfig()
	s, err := New(cfg, Options{Events: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	body := encodePushes(t, agentPush{agent: "a", interval: 1, sites: map[string]string{"p": "up"}, at: time.Now()})
	for range cap(s.decodeSlots) {
		s.decodeSlots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/api/v1/write", nil)
	done := make(chan error, 1)
	go func() {
		_, err := s.decode(req, body, nil)
		done <- err
	}()
	cancel()
	if err := <-done; err != errBusy {
		t.Fatalf("decode of an abandoned push waiting for a slot: %v, want errBusy", err)
	}
	if n := len(s.decodeSlots); n != cap(s.decodeSlots) {
		t.Errorf("decode slots held: %d, want all %d (the test's)", n, cap(s.decodeSlots))
	}
	if used := s.hard.decoding.used.Load(); used != 0 {
		t.Errorf("decoding budget still charged %d bytes after the push gave up", used)
	}
	// With a slot free, a push whose sender waits is decoded.
	<-s.decodeSlots
	reps, err := s.decode(httptest.NewRequest(http.MethodPost, "/api/v1/write", nil), body, nil)
	if err != nil || len(reps) != 1 || reps[0].Agent != "a" {
		t.Fatalf("decode with a free slot: %v, %d reports", err, len(reps))
	}
}
