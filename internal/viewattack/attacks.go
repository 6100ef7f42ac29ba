package viewattack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
)

// attacks are the hostile clients, each against a fresh view at its default limits.
var attacks = []attack{
	{name: "baseline", about: "no attack: the honest agents alone", run: func(ctx context.Context, e *env) { <-ctx.Done() }},
	{name: "snappy-header", about: "44 clients at once: 6-byte bodies whose snappy header claims 64 MiB", run: snappyHeader},
	{name: "s2-bomb", about: "44 clients at once: a valid 28-byte S2 block that expands to 64 MiB", run: s2Bomb},
	{name: "held-bodies", about: "64 connections each sending 4 MiB less one byte of a 4 MiB body, then holding", run: heldBodies},
	{name: "conn-flood", about: "2000 connections each sending a header line slowly (1 KiB per 100 ms, up to 60 KiB), never ending it", run: connFlood},
	{name: "drive-by", about: "a web page's simple POST (text/plain, no Content-Encoding): 40 forged agents report s1 down", run: driveBy},
	{name: "rebinding", about: "DNS rebinding: the forged push and a read with Host: rebind.attacker.example", run: rebinding},
	{name: "shared-token", about: "the shared token pushes the honest agents' names (each has its own agent token) with s1 down", run: sharedToken, config: tokensConfig},
	{name: "stalled-log", about: "the event log's reader stops reading while 50 sites flap", stdout: "stall", run: flapping},
	{name: "closed-log", about: "the event log's reader goes away while 50 sites flap", stdout: "close", run: flapping},
	{name: "refused-flood", about: "2000 refused pushes (not snappy) as fast as 8 clients can", run: refusedFlood},
	{name: "memory-all", about: "snappy-header, s2-bomb, held-bodies and conn-flood at once", run: all(snappyHeader, s2Bomb, heldBodies, connFlood)},
}

// all runs attacks at once.
func all(attacks ...func(context.Context, *env)) func(context.Context, *env) {
	return func(ctx context.Context, e *env) {
		var wg sync.WaitGroup
		for _, a := range attacks {
			wg.Go(func() { a(ctx, e) })
		}
		wg.Wait()
	}
}

// hammer runs n clients, each sending body with set's headers until ctx ends.
func hammer(ctx context.Context, e *env, n int, body []byte, set func(http.Header)) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				code, _, _ := post(ctx, client, e.base+"/api/v1/write", body, set)
				if ctx.Err() == nil {
					e.answered(code)
				}
				if code == 0 || code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
					sleepCtx(ctx, 10*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// snappyHeader: the header is the varint 64 MiB (0x80 0x80 0x80 0x20), then two bytes
// that are no valid snappy block.
func snappyHeader(ctx context.Context, e *env) {
	hammer(ctx, e, 44, []byte{0x80, 0x80, 0x80, 0x20, 0x00, 0x00}, pushHeaders)
}

// S2Bomb is a valid S2 block (the snappy dialect of klauspost/compress/s2, whose repeat
// codes go beyond the snappy format) of 64 MiB of zeros: 28 bytes.
func S2Bomb() []byte { return s2.Encode(nil, make([]byte, 64<<20)) }

func s2Bomb(ctx context.Context, e *env) { hammer(ctx, e, 44, S2Bomb(), pushHeaders) }

// heldBodies: each connection announces 4 MiB (the default max_body_bytes), sends all
// but the last byte and waits for the answer; when it comes (or the view closes the
// connection) the next connection starts.
func heldBodies(ctx context.Context, e *env) {
	const size = 4 << 20
	junk := make([]byte, size-1)
	for i := range junk {
		junk[i] = byte(i*7 + 1)
	}
	head := "POST /api/v1/write HTTP/1.1\r\nHost: " + e.addr + "\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n" +
		"X-Prometheus-Remote-Write-Version: 0.1.0\r\nUser-Agent: edgeprobe-viewattack\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for ctx.Err() == nil {
				e.answered(holdOne(ctx, e.addr, head, junk))
			}
		})
	}
	wg.Wait()
}

// holdOne sends head and body on a new connection and returns the status of the answer
// (0 for none before the connection closed or ctx ended).
func holdOne(ctx context.Context, addr, head string, body []byte) int {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		sleepCtx(ctx, 50*time.Millisecond)
		return 0
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go func() {
		_, _ = io.WriteString(conn, head)
		_, _ = conn.Write(body)
	}()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

// connFlood: 2000 connections, each sending one header line slowly (1 KiB every
// 100 ms, up to 60 KiB, under the former 64 KiB header limit) and never ending it; a
// connection the view closes is opened again.
func connFlood(ctx context.Context, e *env) {
	head := "GET /api/v1/sites HTTP/1.1\r\nHost: " + e.addr + "\r\nX-Pad: "
	chunk := strings.Repeat("a", 1<<10)
	var wg sync.WaitGroup
	for range 2000 {
		wg.Go(func() {
			for ctx.Err() == nil {
				conn, err := net.DialTimeout("tcp", e.addr, time.Second)
				if err != nil {
					sleepCtx(ctx, 100*time.Millisecond)
					continue
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				closed := make(chan struct{})
				go func() {
					_, _ = io.Copy(io.Discard, conn) // until the view closes it
					close(closed)
				}()
				_, err = io.WriteString(conn, head)
				for i := 0; i < 60 && err == nil; i++ {
					select {
					case <-closed:
						err = io.EOF
					case <-time.After(100 * time.Millisecond):
						_, err = io.WriteString(conn, chunk)
					}
				}
				<-closed
				stop()
				conn.Close()
				if ctx.Err() == nil {
					e.answered(0)
				}
			}
		})
	}
	wg.Wait()
}

// forged is a push of 40 agents that do not exist, all reporting s1 down: with the six
// honest agents reporting it up, at most 6 of 46 witnesses (13%) say up, under
// max_up_fraction, so the view would call s1 lost.
func forged() []byte {
	var rs []report
	for i := range 40 {
		rs = append(rs, report{agent: fmt.Sprintf("forged-%02d", i), interval: 1, sites: map[string]string{"s1": "down"}})
	}
	return encode(rs...)
}

// driveBy is what a page on any web origin can send to a loopback view without a CORS
// preflight: a POST with a text/plain body and no other header a script could add.
func driveBy(ctx context.Context, e *env) {
	body := forged()
	repeat(ctx, 100*time.Millisecond, func() {
		code, _, _ := post(ctx, http.DefaultClient, e.base+"/api/v1/write", body, func(h http.Header) {
			h.Set("Content-Type", "text/plain;charset=UTF-8")
			h.Set("Origin", "http://attacker.example")
		})
		e.answered(code)
	})
}

// rebinding: after DNS rebinding a page on rebind.attacker.example talks to the view as
// its own origin, so it may send any header; only its Host header gives it away.
func rebinding(ctx context.Context, e *env) {
	body := forged()
	_, port, _ := net.SplitHostPort(e.addr)
	host := "rebind.attacker.example:" + port
	repeat(ctx, 100*time.Millisecond, func() {
		code, _, _ := post(ctx, http.DefaultClient, e.base+"/api/v1/write", body, func(h http.Header) {
			pushHeaders(h)
			h.Set("Host", host)
		})
		e.answered(code)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/api/v1/sites", nil)
		req.Host = host
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			e.answered(1000 + resp.StatusCode) // reads counted apart: 1000 + status
		}
	})
}

func repeat(ctx context.Context, every time.Duration, f func()) {
	for ctx.Err() == nil {
		f()
		sleepCtx(ctx, every)
	}
}

const sharedSecret = "viewattack-shared-secret"

// tokensConfig gives every honest agent its own agent token and the view a shared token.
func tokensConfig(dir string) (string, map[string]string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "tokens = [%q]\n", sharedSecret)
	tokens := map[string]string{}
	for i := range 50 {
		name := fmt.Sprintf("edge-%02d", i+1)
		tokens[name] = "viewattack-token-" + name
		file := filepath.Join(dir, name+".token")
		if err := os.WriteFile(file, []byte(tokens[name]+"\n"), 0o600); err != nil {
			return "", nil, err
		}
		fmt.Fprintf(&b, "[[agent_tokens]]\nagent = %q\ntoken_file = %q\n", name, file)
	}
	return b.String(), tokens, nil
}

// sharedToken: a holder of the shared token speaks for the honest agents, which have
// their own tokens, and reports s1 down in their names.
func sharedToken(ctx context.Context, e *env) {
	var rs []report
	for _, a := range e.honest {
		rs = append(rs, report{agent: a, interval: 1, sites: map[string]string{"s1": "down", "s2": "up", "flip": "up"}})
	}
	body := encode(rs...)
	repeat(ctx, 50*time.Millisecond, func() {
		code, _, _ := post(ctx, http.DefaultClient, e.base+"/api/v1/write", body, func(h http.Header) {
			pushHeaders(h)
			h.Set("Authorization", "Bearer "+sharedSecret)
		})
		e.answered(code)
	})
}

// flapping makes 50 sites change verdict on every push (flap-b holds them up, flap-a
// turns them down and up), at flap-a's push_rate of 10 a second: 500 event-log lines a
// second.
func flapping(ctx context.Context, e *env) {
	sites := func(st string) map[string]string {
		m := map[string]string{}
		for i := range 50 {
			m[fmt.Sprintf("flap%02d", i)] = st
		}
		return m
	}
	push := func(body []byte) {
		code, _, _ := post(ctx, http.DefaultClient, e.base+"/api/v1/write", body, pushHeaders)
		if ctx.Err() == nil {
			e.answered(code)
		}
	}
	push(encode(report{agent: "flap-b", interval: 60, sites: sites("up")}))
	// Each push encoded anew: a push whose samples are no newer than the last applied
	// one of its agent changes nothing.
	n := 0
	repeat(ctx, 100*time.Millisecond, func() {
		st := "up"
		if n%2 == 0 {
			st = "down"
		}
		push(encode(report{agent: "flap-a", interval: 60, sites: sites(st)}))
		n++
		if n%20 == 0 {
			push(encode(report{agent: "flap-b", interval: 60, sites: sites("up")}))
		}
	})
}

// refusedFlood sends 2000 pushes that are not snappy; each is refused (400).
func refusedFlood(ctx context.Context, e *env) {
	var mu sync.Mutex
	left := 2000
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				code, _, _ := post(ctx, client, e.base+"/api/v1/write", []byte("\xffhello"), pushHeaders)
				e.answered(code)
			}
		})
	}
	wg.Wait()
	<-ctx.Done()
}
