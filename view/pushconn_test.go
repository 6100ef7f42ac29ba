package view

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// rawConn is a client that writes requests by hand and reads their answers, on one
// connection.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, base string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// pushHeadText is a push's head as the agents' exporter sends it, plus extra lines.
func pushHeadText(host string, n int, extra ...string) string {
	var b strings.Builder
	b.WriteString("POST /api/v1/write HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: edgeprobe\r\n")
	b.WriteString("Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n", n)
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// a1Push is a push by agent a1 of site s1 in state, to host.
func a1Push(t testing.TB, host, state string) string {
	body := encodePushes(t, agentPush{agent: "a1", interval: 1, sites: map[string]string{"s1": state}})
	return pushHeadText(host, len(body)) + string(body)
}

type rawAnswer struct {
	code   int
	header http.Header
	body   string
	closed bool // the view closed the connection after it
}

// send writes req, giving it and its answer 20 s.
func (rc *rawConn) send(req string) {
	rc.t.Helper()
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(rc.c, req); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// do sends req and reads its answer; an answer whose connection the view closes says so.
func (rc *rawConn) do(req string) rawAnswer {
	rc.t.Helper()
	rc.send(req)
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		rc.t.Fatalf("read the answer to %.60q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return rawAnswer{code: resp.StatusCode, header: resp.Header, body: string(body), closed: resp.Close}
}

// agentState is the state agent reports for site in s's engine, or "".
func agentState(s *Server, agent, site string) string {
	v, _ := s.engine.Site(site, time.Now())
	for _, a := range v.Agents {
		if a.Name == agent {
			return a.State
		}
	}
	return ""
}

func takenCount(t *testing.T, base string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^edgeprobe_view_connections_taken (\S+)$`).FindStringSubmatch(metricsText(t, base))
	if m == nil {
		t.Fatal("/metrics has no edgeprobe_view_connections_taken")
	}
	return m[1]
}

// TestPushConnectionTakenOver: after a push is accepted, the view reads its connection's
// next pushes itself and applies them; a request of another kind on that connection goes
// back to net/http, which answers it and keeps the connection from then on.
func TestPushConnectionTakenOver(t *testing.T) {
	cfg := &Config{Quorum: Quorum{N: 1}}
	cfg.Defaults()
	s, base := serveHostile(t, cfg, Options{}, nil)
	host := strings.TrimPrefix(base, "http://")
	rc := dialRaw(t, base)
	push := func(state string) string { return a1Push(t, host, state) }
	if a := rc.do(push("up")); a.code != http.StatusNoContent || a.closed {
		t.Fatalf("first push: %d (closed %v), want 204 on a kept connection", a.code, a.closed)
	}
	if got := takenCount(t, base); got != "1" {
		t.Fatalf("edgeprobe_view_connections_taken %s after a push, want 1", got)
	}
	// Two pushes sent at once: the second waits in the connection's buffer.
	a := rc.do(push("down") + push("up"))
	if a.code != http.StatusNoContent || a.closed || a.header.Get("Date") == "" {
		t.Fatalf("push on the taken connection: %d %v, want 204 with a Date", a.code, a.header)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the pipelined push: %v %v, want 204", resp, err)
	}
	if got := agentState(s, "a1", "s1"); got != "up" {
		t.Errorf("a1 reports s1 %q after the last push, want up", got)
	}
	a = rc.do(push("down"))
	if a.code != http.StatusNoContent {
		t.Fatalf("push: %d", a.code)
	}
	if got := agentState(s, "a1", "s1"); got != "down" {
		t.Errorf("a1 reports s1 %q after the push, want down", got)
	}
	a = rc.do("GET /api/v1/sites HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	if a.code != http.StatusOK || !strings.Contains(a.body, `"s1"`) || a.closed {
		t.Fatalf("a read on the taken connection: %d %.80q (closed %v), want 200 with s1 on a kept connection", a.code, a.body, a.closed)
	}
	if got := takenCount(t, base); got != "0" {
		t.Errorf("edgeprobe_view_connections_taken %s once the connection went back, want 0", got)
	}
	if a := rc.do(push("up")); a.code != http.StatusNoContent || a.closed {
		t.Fatalf("push after the read: %d (closed %v), want 204", a.code, a.closed)
	}
	if got := takenCount(t, base); got != "0" {
		t.Errorf("edgeprobe_view_connections_taken %s: a connection handed back was taken again", got)
	}
	if got := agentState(s, "a1", "s1"); got != "up" {
		t.Errorf("a1 reports s1 %q after the push served by net/http, want up", got)
	}
}

// TestPushConnectionAnswers: every request answered on a taken connection gets the
// answer net/http gives it on a new connection: the same status, body and headers.
func TestPushConnectionAnswers(t *testing.T) {
	cfg := &Config{Quorum: Quorum{N: 1}, Tokens: []string{"push-token"}, MaxBodyBytes: 64 << 10}
	cfg.Defaults()
	_, base := serveHostile(t, cfg, Options{}, nil)
	host := strings.TrimPrefix(base, "http://")
	good := encodePushes(t, agentPush{agent: "a1", interval: 1, sites: map[string]string{"s1": "up"}})
	auth := "Authorization: Bearer push-token"
	goodPush := pushHeadText(host, len(good), auth) + string(good)
	bad := []byte("not snappy at all")
	cases := []struct{ name, req string }{
		{"good", goodPush},
		{"no token", pushHeadText(host, len(good)) + string(good)},
		{"wrong token", pushHeadText(host, len(good), "Authorization: Bearer nope") + string(good)},
		{"bad body", pushHeadText(host, len(bad), auth) + string(bad)},
		{"from a page", pushHeadText(host, len(good), auth, "Origin: http://evil.example") + string(good)},
		{"other Host", strings.Replace(goodPush, "Host: "+host, "Host: evil.example", 1)},
		{"no Host", strings.Replace(goodPush, "Host: "+host+"\r\n", "", 1)},
		{"two Hosts", pushHeadText(host, len(good), auth, "Host: "+host) + string(good)},
		{"too large", pushHeadText(host, 1<<20, auth)},
		{"gzip", strings.Replace(goodPush, "Content-Encoding: snappy", "Content-Encoding: gzip", 1)},
		{"Connection: close", pushHeadText(host, len(good), auth, "Connection: close") + string(good)},
		{"Expect", pushHeadText(host, len(good), auth, "Expect: 100-continue") + string(good)},
		{"chunked", strings.Replace(pushHeadText(host, 0, auth, "Transfer-Encoding: chunked"), "Content-Length: 0\r\n", "", 1) +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(good), good)},
		{"two lengths", pushHeadText(host, len(good), auth, fmt.Sprintf("Content-Length: %d", len(good))) + string(good)},
		{"folded line", pushHeadText(host, len(good), auth, "X-Long: a", " b") + string(good)},
		{"bare LF", strings.Replace(goodPush, "User-Agent: edgeprobe\r\n", "User-Agent: edgeprobe\n", 1)},
		{"space before colon", pushHeadText(host, len(good), auth, "X-Odd : 1") + string(good)},
		{"control byte", pushHeadText(host, len(good), auth, "X-Odd: a\x01b") + string(good)},
		{"HTTP/1.0", strings.Replace(goodPush, "HTTP/1.1", "HTTP/1.0", 1)},
		{"other path", strings.Replace(goodPush, "/api/v1/write", "/api/v1/writes", 1)},
		{"long head", pushHeadText(host, len(good), auth, "X-Pad: "+strings.Repeat("p", 6000)) + string(good)},
	}
	normal := func(a rawAnswer) string {
		a.header.Del("Date")
		return fmt.Sprintf("%d %q %v", a.code, a.body, a.header)
	}
	for _, c := range cases {
		fresh := dialRaw(t, base).do(c.req)
		taken := dialRaw(t, base)
		if a := taken.do(goodPush); a.code != http.StatusNoContent {
			t.Fatalf("%s: the push before: %d", c.name, a.code)
		}
		got := taken.do(c.req)
		if normal(got) != normal(fresh) {
			t.Errorf("%s: on a taken connection %s\n  net/http on a new one %s", c.name, normal(got), normal(fresh))
		}
		if fresh.code == http.StatusNoContent && got.closed != fresh.closed {
			t.Errorf("%s: closed %v on a taken connection, %v by net/http", c.name, got.closed, fresh.closed)
		}
	}
}

// TestPushConnectionsStop: when the view stops, a taken connection waiting for its next
// push is closed, and Serve returns.
func TestPushConnectionsStop(t *testing.T) {
	cfg := &Config{Quorum: Quorum{N: 1}}
	cfg.Defaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	rc := dialRaw(t, base)
	body := encodePushes(t, agentPush{agent: "a1", interval: 1, sites: map[string]string{"s1": "up"}})
	for range 2 {
		if a := rc.do(pushHeadText(ln.Addr().String(), len(body)) + string(body)); a.code != http.StatusNoContent {
			t.Fatalf("push: %d", a.code)
		}
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return with a taken connection open")
	}
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := rc.br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the taken connection after the view stopped: read %d, %v; want EOF", n, err)
	}
}

// FuzzPushHead holds parsePushHead to net/http: a head it accepts, http.ReadRequest and
// the server's own checks accept too, with the same method, target, Host, length,
// Connection: close and header.
func FuzzPushHead(f *testing.F) {
	f.Add([]byte(pushHeadText("127.0.0.1:9470", 1234, "Authorization: Bearer t")))
	f.Add([]byte(pushHeadText("view.example", 0, "Connection: close", "X-A: 1", "x-a: 2")))
	f.Add([]byte(pushHeadText("[::1]:9470", 7, "Connection: keep-alive", "Accept-Encoding:  gzip \t")))
	f.Add([]byte("POST /api/v1/write HTTP/1.1\r\nHost: a\r\nContent-Length: 00012\r\nfoo_bar: \xff\r\n\r\n"))
	var hc headCache
	header := http.Header{}
	f.Fuzz(func(t *testing.T, b []byte) {
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			b = b[:i+4]
		}
		h, ok := parsePushHead(b, header, &hc)
		if !ok {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("accepted %q, which http.ReadRequest refuses: %v", b, err)
		}
		for k, vs := range req.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				t.Fatalf("accepted %q, whose name %q the server refuses", b, k)
			}
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("accepted %q, whose value %q the server refuses", b, v)
				}
			}
		}
		if !httpguts.ValidHostHeader(req.Host) {
			t.Fatalf("accepted %q, whose Host %q the server refuses", b, req.Host)
		}
		if req.Method != http.MethodPost || req.RequestURI != writePath || req.Proto != "HTTP/1.1" {
			t.Fatalf("accepted %q: net/http reads %s %s %s", b, req.Method, req.RequestURI, req.Proto)
		}
		if req.Host != h.host || req.ContentLength != h.contentLength || req.Close != h.close || len(req.TransferEncoding) != 0 {
			t.Fatalf("%q: read Host %q, length %d, close %v; net/http reads %q, %d, %v, %v",
				b, h.host, h.contentLength, h.close, req.Host, req.ContentLength, req.Close, req.TransferEncoding)
		}
		if !reflect.DeepEqual(map[string][]string(header), map[string][]string(req.Header)) {
			t.Fatalf("%q: read header %v; net/http reads %v", b, header, req.Header)
		}
	})
}

// TestPushConnectionSenderGone: a push on a taken connection that waits for a decode
// slot is decoded once one is free while its sender waits, and the connection serves
// its next push; when its sender goes away while it waits, it is not decoded, its
// memory is given back and the connection closes.
func TestPushConnectionSenderGone(t *testing.T) {
	cfg := &Config{Quorum: Quorum{N: 1}}
	cfg.Defaults()
	s, base := serveHostile(t, cfg, Options{}, nil)
	host := strings.TrimPrefix(base, "http://")
	push := func(state string) string { return a1Push(t, host, state) }
	rc := dialRaw(t, base)
	for _, state := range []string{"up", "up"} { // the second one on the taken connection
		if a := rc.do(push(state)); a.code != http.StatusNoContent || a.closed {
			t.Fatalf("push: %d (closed %v), want 204 on a kept connection", a.code, a.closed)
		}
	}
	if got := takenCount(t, base); got != "1" {
		t.Fatalf("edgeprobe_view_connections_taken %s, want 1", got)
	}
	// The test holds every decode slot but those it frees; a failure frees them all,
	// so that the view can stop.
	held := 0
	hold := func() { s.decodeSlots <- struct{}{}; held++ }
	free := func() { <-s.decodeSlots; held-- }
	t.Cleanup(func() {
		for held > 0 {
			free()
		}
	})
	for range cap(s.decodeSlots) {
		hold()
	}
	waiting := func() bool { return s.hard.decoding.used.Load() > 0 } // charged before the slot wait

	rc.send(push("down"))
	waitFor(t, 10*time.Second, "the push to wait for a decode slot", waiting)
	free()
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != http.StatusNoContent || resp.Close {
		t.Fatalf("the push that waited for a slot: %v %v, want 204 on a kept connection", resp, err)
	}
	if got := agentState(s, "a1", "s1"); got != "down" {
		t.Fatalf("a1 reports s1 %q after the push that waited, want down", got)
	}
	if a := rc.do(push("up")); a.code != http.StatusNoContent || a.closed {
		t.Fatalf("the push after: %d (closed %v), want 204 on a kept connection", a.code, a.closed)
	}
	if got := agentState(s, "a1", "s1"); got != "up" {
		t.Fatalf("a1 reports s1 %q after the next push, want up", got)
	}

	hold()
	rc.send(push("down"))
	waitFor(t, 10*time.Second, "the push to wait for a decode slot", waiting)
	rc.c.Close()
	waitFor(t, 10*time.Second, "the push of a sender gone to give its memory back", func() bool { return !waiting() })
	waitFor(t, 10*time.Second, "the connection of a sender gone to close", func() bool { return s.hard.pushes.Load().count() == 0 })
	if got := agentState(s, "a1", "s1"); got != "up" {
		t.Errorf("a1 reports s1 %q: the push of a sender gone was applied", got)
	}
	wantMetric(t, metricsText(t, base), `edgeprobe_view_pushes_rejected_total{reason="busy"} 1`)
	if n := len(s.decodeSlots); n != cap(s.decodeSlots) {
		t.Errorf("decode slots held: %d, want all %d (the test's)", n, cap(s.decodeSlots))
	}
}

// TestPushCtxLateDone: a Done called after a push is answered (by a goroutine that
// context.WithTimeout started for a wait of the push) starts no watch for the sender,
// since the connection's reader is the next request's by then; a Done during the next
// push does, once its body is read, and the push's end stops it.
func TestPushCtxLateDone(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	pc := &pushConn{c: server, br: bufio.NewReader(server)}
	pc.ctx = pushCtx{values: context.Background(), pc: pc}
	ctx := &pc.ctx
	watching := func() chan struct{} {
		ctx.mu.Lock()
		defer ctx.mu.Unlock()
		return ctx.watching
	}
	// A push that never waits: no watch, and none after its end.
	ctx.begin(false)
	ctx.bodyDone()
	if ctx.end() {
		t.Fatal("a push without a watch ended with its sender gone")
	}
	ctx.Done() // late: the push is answered
	if watching() != nil {
		t.Fatal("a Done after the push's end started a watch beside the next request's read")
	}
	// The next push asks: its watch starts once its body is read, and its end stops it.
	ctx.begin(false)
	ctx.Done()
	if watching() != nil {
		t.Fatal("a watch started before the body was read")
	}
	ctx.bodyDone()
	if watching() == nil {
		t.Fatal("a Done during the push started no watch once its body was read")
	}
	if ctx.end() || ctx.Err() != nil {
		t.Fatalf("the push's end took the stopped watch for its sender going away (Err %v)", ctx.Err())
	}
}

// BenchmarkPushConnection sends an agent's push of 20 sites over one kept connection and
// reads its answer: the view's whole work for a push, from the socket to the answer
// (make view-bench). "taken" is a connection the view took over; "net/http" one it
// handed back, which net/http serves. Their allocations differ by what a taken
// connection saves on each push.
func BenchmarkPushConnection(b *testing.B) {
	for _, name := range []string{"taken", "net/http"} {
		b.Run(name, func(b *testing.B) {
			cfg := &Config{Quorum: Quorum{N: 1}, PushRate: 1e9, PushBurst: 1 << 30} // one agent, pushing as fast as it can
			cfg.Defaults()
			s, base := serveHostile(b, cfg, Options{}, nil)
			host := strings.TrimPrefix(base, "http://")
			body := encodePushes(b, agentPush{agent: "edge0000", interval: 1, sites: benchSites(), targets: 2})
			push := pushHeadText(host, len(body)) + string(body)
			rc := dialRaw(b, base)
			if a := rc.do(push); a.code != http.StatusNoContent {
				b.Fatalf("push: %d", a.code)
			}
			if name == "net/http" {
				if a := rc.do("GET /api/v1/sites HTTP/1.1\r\nHost: " + host + "\r\n\r\n"); a.code != http.StatusOK || a.closed {
					b.Fatalf("the read: %d (closed %v), want 200 on a kept connection", a.code, a.closed)
				}
			}
			if got, want := s.hard.pushes.Load().count(), map[string]int{"taken": 1, "net/http": 0}[name]; got != want {
				b.Fatalf("%d connections taken over, want %d", got, want)
			}
			// The answers are read by hand, so that the client allocates nothing.
			answer, pushBytes := make([]byte, 0, 512), []byte(push)
			rc.c.SetDeadline(time.Time{})
			b.SetBytes(int64(len(push)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rc.c.Write(pushBytes); err != nil {
					b.Fatal(err)
				}
				answer = answer[:0]
				for !bytes.HasSuffix(answer, []byte("\r\n\r\n")) {
					c, err := rc.br.ReadByte()
					if err != nil {
						b.Fatal(err)
					}
					answer = append(answer, c)
				}
				if !bytes.HasPrefix(answer, []byte("HTTP/1.1 204 ")) {
					b.Fatalf("answer %q, want 204", answer)
				}
			}
		})
	}
}
