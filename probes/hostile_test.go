//go:build linux

package probes

// Hostile endpoints: real servers on loopback that trickle, flood,
// loop, lie or never finish. Every probe must fail cleanly with the right Reason and a
// Detail that says what happened, by its deadline, without reading without bound.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// hostileCase is one probe against one hostile endpoint.
type hostileCase struct {
	name     string
	kind     Kind
	spec     any
	timeout  time.Duration
	want     Reason   // ReasonNone: the probe must succeed despite the hostility
	detail   []string // substrings the Detail must hold
	maxAlloc uint64   // bytes the probe may allocate (0: not checked)
}

// slack is how late a probe may return after its deadline on a loaded machine.
const slack = 300 * time.Millisecond

// runHostile runs each case once and logs a line per case: reason, detail, time taken.
func runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	runHostileEnv(t, &Env{Resolver: NewResolver([]string{testkit.FreePort(t, "udp")})}, cases)
}

func runHostileEnv(t *testing.T, env *Env, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.kind, tc.spec, env)
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := p.(io.Closer); ok {
				defer c.Close()
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			start := time.Now()
			r := p.Probe(ctx)
			took := time.Since(start)
			cancel()
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("HOSTILE | %s | %s | ok=%v reason=%s | %q | %v | %d KiB allocated",
				tc.kind, tc.name, r.OK, r.Reason, r.Detail, took.Round(time.Millisecond), alloc>>10)
			if r.Reason != tc.want || r.OK != (tc.want == ReasonNone) {
				t.Fatalf("got %+v, want reason %q", r, tc.want)
			}
			if !r.OK && r.Detail == "" {
				t.Error("failure without a Detail")
			}
			for _, s := range tc.detail {
				if !strings.Contains(r.Detail, s) {
					t.Errorf("detail %q does not say %q", r.Detail, s)
				}
			}
			if took > tc.timeout+slack {
				t.Errorf("took %v, deadline %v", took, tc.timeout)
			}
			if tc.maxAlloc > 0 && !raceEnabled && alloc > tc.maxAlloc {
				t.Errorf("allocated %d bytes, want at most %d", alloc, tc.maxAlloc)
			}
		})
	}
}

// rawServer runs handle on every connection to a loopback listener. handle must return
// when the connection is closed; the test's end closes every connection.
func rawServer(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// readRequest consumes an HTTP request head.
func readRequest(c net.Conn) *bufio.Reader {
	br := bufio.NewReader(c)
	http.ReadRequest(br)
	return br
}

// resetConn closes c with an RST instead of a FIN.
func resetConn(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// certKit is a CA (whose PEM is caFile) and leaf certificates of every wrong kind.
type certKit struct {
	caFile                         string
	good, expired, wrongName, self tls.Certificate
}

func newCertKit(t testing.TB) certKit {
	t.Helper()
	ca := testkit.NewCA(t)
	now := time.Now()
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	leaf := func(spec testkit.CertSpec) tls.Certificate {
		spec.CommonName = "hostile"
		return ca.Issue(t, spec).Certificate
	}
	return certKit{
		caFile:    ca.File,
		good:      leaf(testkit.CertSpec{IPs: loop}),
		expired:   leaf(testkit.CertSpec{IPs: loop, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(-time.Hour)}),
		wrongName: leaf(testkit.CertSpec{DNSNames: []string{"other.example.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 2)}}),
		self:      leaf(testkit.CertSpec{IPs: loop, SelfSigned: true}),
	}
}

// tlsHTTP serves the test mux over TLS with cert.
func tlsHTTP(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(testMux())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = quietLog
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestHTTPHostileEndpoints(t *testing.T) {
	// Slowloris: a status line, then one header byte every 100 ms, forever.
	slowloris := rawServer(t, func(c net.Conn) {
		readRequest(c)
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Slow: "); err != nil {
			return
		}
		for {
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Megabytes of headers, fast: many lines, or one endless line.
	pad := strings.Repeat("p", 1000)
	manyHeaders := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		for i := 0; i < 8<<10; i++ { // 8 MiB
			if _, err := fmt.Fprintf(c, "X-Pad-%d: %s\r\n", i, pad); err != nil {
				return
			}
		}
		io.WriteString(c, "Content-Length: 0\r\n\r\n")
	})
	endlessHeader := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Endless: ")
		chunk := []byte(strings.Repeat("e", 64<<10))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	// A body that never ends, fast.
	endlessBody := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
		chunk := []byte(strings.Repeat("b", 64<<10))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	shortBody := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
	})
	badChunks := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n")
	})
	notHTTP := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
	})
	rst := rawServer(t, func(c net.Conn) {
		readRequest(c)
		resetConn(c)
	})
	// Informational answers (103 Early Hints) without end: their headers count too.
	endless1xx := rawServer(t, func(c net.Conn) {
		readRequest(c)
		for {
			if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"); err != nil {
				return
			}
		}
	})
	// A gzip bomb: 64 MiB of zeros in about 64 KiB, which net/http decompresses on the fly.
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		zw.Write(zeros)
	}
	zw.Close()
	gzipBomb := rawServer(t, func(c net.Conn) {
		readRequest(c)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", bomb.Len())
		c.Write(bomb.Bytes())
	})
	// Redirects: each to a new URL, forever; a loop of two.
	var redirectHits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/r/{n}", func(w http.ResponseWriter, r *http.Request) {
		redirectHits.Add(1)
		n, _ := strconv.Atoi(r.PathValue("n"))
		http.Redirect(w, r, fmt.Sprintf("/r/%d", n+1), http.StatusFound)
	})
	mux.HandleFunc("/a", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/b", http.StatusMovedPermanently) })
	mux.HandleFunc("/b", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/a", http.StatusMovedPermanently) })
	mux.HandleFunc("/slowloris", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+slowloris+"/", http.StatusFound)
	})
	mux.HandleFunc("/ftp", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "ftp://127.0.0.1/file", http.StatusFound)
	})
	redirects := httptest.NewServer(mux)
	t.Cleanup(redirects.Close)

	certs := newCertKit(t)
	good, expired := tlsHTTP(t, certs.good), tlsHTTP(t, certs.expired)
	wrongName, self := tlsHTTP(t, certs.wrongName), tlsHTTP(t, certs.self)
	verify := TLSSpec{CAFile: certs.caFile}
	// HTTP/2 (over TLS, negotiated by ALPN) with 2 MiB of response headers.
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 2 << 10 {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", i), pad)
		}
		fmt.Fprintf(w, "proto %s", r.Proto)
	}))
	h2.EnableHTTP2 = true
	h2.TLS = &tls.Config{Certificates: []tls.Certificate{certs.good}}
	h2.Config.ErrorLog = quietLog
	h2.StartTLS()
	t.Cleanup(h2.Close)
	plain := httptest.NewServer(testMux())
	t.Cleanup(plain.Close)

	const second = time.Second
	cases := []hostileCase{
		{name: "slowloris headers", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + slowloris + "/"},
			timeout: second, want: ReasonTimeout, detail: []string{"response headers"}},
		{name: "megabytes of headers", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + manyHeaders + "/"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"headers exceed"}, maxAlloc: 4 << 20},
		{name: "one endless header line", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + endlessHeader + "/"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"headers exceed"}, maxAlloc: 4 << 20},
		{name: "endless body, body_match", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + endlessBody + "/", BodyMatch: "needle"},
			timeout: 3 * second, want: ReasonBody, detail: []string{"exceeds body_limit (1048576 bytes)"}, maxAlloc: 6 << 20},
		{name: "endless body, small limit", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + endlessBody + "/", BodyMatch: "needle", BodyLimit: 1000},
			timeout: 3 * second, want: ReasonBody, detail: []string{"exceeds body_limit (1000 bytes)"}, maxAlloc: 1 << 20},
		{name: "endless body, no match: cut off at the limit", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + endlessBody + "/"},
			timeout: 3 * second, want: ReasonNone, maxAlloc: 1 << 20},
		{name: "body shorter than Content-Length", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + shortBody + "/", BodyMatch: "x"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"read body after 9 bytes", "unexpected EOF"}},
		{name: "malformed chunked body", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + badChunks + "/"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"chunk"}},
		{name: "not HTTP at all", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + notHTTP + "/"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"malformed HTTP"}},
		{name: "reset after the request", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + rst + "/"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"reset"}},
		{name: "endless redirects", kind: KindHTTP, spec: HTTPSpec{URL: redirects.URL + "/r/0", Redirects: 5},
			timeout: 3 * second, want: ReasonStatus, detail: []string{"status 302", "after 5 redirects", "/r/5"}},
		{name: "endless redirects, none followed", kind: KindHTTP, spec: HTTPSpec{URL: redirects.URL + "/r/0", Status: []string{"2xx"}},
			timeout: 3 * second, want: ReasonStatus, detail: []string{"status 302"}},
		{name: "redirect loop", kind: KindHTTP, spec: HTTPSpec{URL: redirects.URL + "/a", Redirects: 20},
			timeout: 3 * second, want: ReasonStatus, detail: []string{"status 301", "after 20 redirects"}},
		{name: "redirect to a slowloris", kind: KindHTTP, spec: HTTPSpec{URL: redirects.URL + "/slowloris", Redirects: 1},
			timeout: second, want: ReasonTimeout, detail: []string{"after 1 redirects", "http://" + slowloris, "reading the response headers"}},
		{name: "megabytes of headers over HTTP/2", kind: KindHTTP, spec: HTTPSpec{URL: h2.URL + "/", TLS: verify},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"PROTOCOL_ERROR"}, maxAlloc: 8 << 20},
		{name: "endless 103 Early Hints", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + endless1xx + "/"},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"headers exceed"}, maxAlloc: 4 << 20},
		{name: "gzip bomb, body_match", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + gzipBomb + "/", BodyMatch: "needle"},
			timeout: 3 * second, want: ReasonBody, detail: []string{"exceeds body_limit (1048576 bytes)"}, maxAlloc: 8 << 20},
		{name: "gzip bomb, no match", kind: KindHTTP, spec: HTTPSpec{URL: "http://" + gzipBomb + "/"},
			timeout: 3 * second, want: ReasonNone, maxAlloc: 4 << 20},
		{name: "redirect to ftp", kind: KindHTTP, spec: HTTPSpec{URL: redirects.URL + "/ftp", Redirects: 2},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"ftp://127.0.0.1/file", "unsupported protocol scheme"}},
		{name: "tls verified (control)", kind: KindHTTP, spec: HTTPSpec{URL: good + "/healthz", TLS: verify},
			timeout: 3 * second, want: ReasonNone},
		{name: "expired certificate", kind: KindHTTP, spec: HTTPSpec{URL: expired + "/healthz", TLS: verify},
			timeout: 3 * second, want: ReasonTLS, detail: []string{"expired"}},
		{name: "self-signed certificate", kind: KindHTTP, spec: HTTPSpec{URL: self + "/healthz", TLS: verify},
			timeout: 3 * second, want: ReasonTLS, detail: []string{"unknown authority"}},
		{name: "wrong host name", kind: KindHTTP, spec: HTTPSpec{URL: wrongName + "/healthz", TLS: verify},
			timeout: 3 * second, want: ReasonTLS, detail: []string{"valid for 127.0.0.2, not 127.0.0.1"}},
		{name: "tls handshake never completes", kind: KindHTTP, spec: HTTPSpec{URL: "https://" + silentTCP(t) + "/", TLS: verify},
			timeout: second, want: ReasonTimeout, detail: []string{"TLS handshake"}},
		{name: "plain HTTP on an https URL", kind: KindHTTP, spec: HTTPSpec{URL: strings.Replace(plain.URL, "http:", "https:", 1) + "/healthz", TLS: verify},
			timeout: 3 * second, want: ReasonTLS, detail: []string{"HTTP response to HTTPS client"}},
	}
	runHostile(t, cases)
	if n := redirectHits.Load(); n != 6+1 && n != 0 { // 0: -run picked other cases
		t.Errorf("redirect server hit %d times, want 7 (1+5 followed, 1 not followed)", n)
	}
}

func TestTCPHostileEndpoints(t *testing.T) {
	certs := newCertKit(t)
	rstAfterHello := rawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 512))
		resetConn(c)
	})
	expired := tlsServer(t, certs.expired)
	verify := TLSSpec{Enable: true, CAFile: certs.caFile}
	cases := []hostileCase{
		{name: "accepts, never speaks TLS", kind: KindTCP, spec: TCPSpec{Address: silentTCP(t), TLS: verify},
			timeout: time.Second, want: ReasonTimeout, detail: []string{"TLS handshake with"}},
		{name: "reset during the TLS handshake", kind: KindTCP, spec: TCPSpec{Address: rstAfterHello, TLS: verify},
			timeout: time.Second, want: ReasonTLS, detail: []string{"TLS handshake with", "reset"}},
		{name: "expired certificate", kind: KindTCP, spec: TCPSpec{Address: expired, TLS: verify},
			timeout: time.Second, want: ReasonTLS, detail: []string{"expired"}},
		{name: "not TLS at all", kind: KindTCP, spec: TCPSpec{Address: plainTextTCP(t), TLS: verify},
			timeout: time.Second, want: ReasonTLS, detail: []string{"TLS handshake with"}},
		{name: "DNS over TLS, silent listener", kind: KindDNS, spec: DNSSpec{Server: silentTCP(t), Transport: "tls", Query: "a.test", TLS: TLSSpec{CAFile: certs.caFile}},
			timeout: time.Second, want: ReasonTimeout, detail: []string{"over tcp-tls"}},
		{name: "DNS over TCP, reset", kind: KindDNS, spec: DNSSpec{Server: rstAfterHello, Transport: "tcp", Query: "a.test"},
			timeout: time.Second, want: ReasonProtocol, detail: []string{"reset"}},
	}
	runHostile(t, cases)
}

// dnsAnswer builds a reply to q with n A records for its name: 127.0.0.1, 127.0.0.2, ...
func dnsAnswer(q *dns.Msg, n int) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	r.Compress = true
	name := q.Question[0].Name
	for i := range n {
		r.Answer = append(r.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   net.IPv4(127, byte((i+1)>>16), byte((i+1)>>8), byte(i+1)), // loopback only
		})
	}
	return r
}

// floodZone answers with thousands of records: over UDP it says truncated.
type floodZone struct{ records int }

func (z floodZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		r := new(dns.Msg)
		r.SetReply(req)
		r.Truncated = true
		w.WriteMsg(r)
		return
	}
	w.WriteMsg(dnsAnswer(req, z.records))
}

// pointerLoop is a reply to query whose answer's owner name is a compression pointer to
// a pointer that points back to the first.
func pointerLoop(query []byte) []byte {
	if len(query) < 12 {
		return nil
	}
	b := append([]byte{}, query...)
	b[2], b[3] = 0x81, 0x80              // response, RD, RA, NOERROR
	binary.BigEndian.PutUint16(b[6:], 1) // ANCOUNT
	at := len(b)
	// Name: pointer to at+2, which points back to at.
	b = append(b, 0xc0|byte((at+2)>>8), byte(at+2), 0xc0|byte(at>>8), byte(at))
	return append(b, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1)
}

// selfPointer is a reply whose question name is a pointer to itself.
func selfPointer(query []byte) []byte {
	if len(query) < 12 {
		return nil
	}
	b := make([]byte, 12, 20)
	copy(b, query[:12])
	b[2], b[3] = 0x81, 0x80
	return append(b, 0xc0, 12, 0, 1, 0, 1)
}

// silentUDP reads datagrams and never answers.
func silentUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// rawUDPMulti answers every datagram with each of replies(query), in order.
func rawUDPMulti(t testing.TB, replies func(query []byte) [][]byte) string {
	t.Helper()
	return rawUDPConn(t, func(pc net.PacketConn, from net.Addr, q []byte) {
		for _, r := range replies(q) {
			pc.WriteTo(r, from)
		}
	})
}

func rawUDPConn(t testing.TB, serve func(pc net.PacketConn, from net.Addr, q []byte)) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			serve(pc, from, append([]byte{}, buf[:n]...))
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// modify unpacks a query, lets change build the reply, and packs it.
func modify(change func(q, r *dns.Msg)) func([]byte) []byte {
	return func(query []byte) []byte {
		q := new(dns.Msg)
		if err := q.Unpack(query); err != nil {
			return nil
		}
		r := dnsAnswer(q, 1)
		change(q, r)
		b, _ := r.Pack()
		return b
	}
}

func TestDNSHostileEndpoints(t *testing.T) {
	flood := startDNSPair(t, floodZone{records: 4000})
	floodTCP := startDNS(t, "tcp", floodZone{records: 4000}, nil)
	// A 4000-record answer over UDP, without the TC bit: more than any UDP buffer asked for.
	oversized := rawUDP(t, func(q []byte) []byte {
		m := new(dns.Msg)
		if m.Unpack(q) != nil {
			return nil
		}
		b, _ := dnsAnswer(m, 90).Pack() // ~1.5 KB: past the 512 bytes a plain query allows
		return b
	})
	loopUDP := rawUDP(t, pointerLoop)
	loopTCP := rawTCP(t, pointerLoop)
	selfUDP := rawUDP(t, selfPointer)
	wrongQuestion := rawUDP(t, modify(func(q, r *dns.Msg) { r.Question[0].Name = "evil.example.test." }))
	wrongType := rawUDP(t, modify(func(q, r *dns.Msg) { r.Question[0].Qtype = dns.TypeAAAA }))
	noQuestion := rawUDP(t, modify(func(q, r *dns.Msg) { r.Question = nil }))
	notResponse := rawUDP(t, func(q []byte) []byte { return q }) // echoes the query
	// Wrong IDs first, then the right answer: the probe must wait for it.
	wrongIDsThenRight := rawUDPMulti(t, func(q []byte) [][]byte {
		var out [][]byte
		for i := range 3 {
			out = append(out, modify(func(q, r *dns.Msg) { r.Id += uint16(i + 1) })(q))
		}
		return append(out, modify(func(q, r *dns.Msg) {})(q))
	})
	onlyWrongIDs := rawUDPMulti(t, func(q []byte) [][]byte {
		return [][]byte{modify(func(q, r *dns.Msg) { r.Id ^= 0xffff })(q)}
	})
	garbage := rawUDP(t, func(q []byte) []byte {
		b := make([]byte, 300)
		seeded := mrand.New(mrand.NewPCG(6, 2)) // the same garbage on every run
		for i := range b {
			b[i] = byte(seeded.Uint32())
		}
		copy(b, q[:2]) // the query's ID, so the client takes it for the answer
		return b
	})
	oneByte := rawUDP(t, func([]byte) []byte { return []byte{0x42} })
	// Over TCP: a length prefix promising 60000 bytes, 12 sent, then silence or a hang-up.
	tcpStall := rawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 512))
		c.Write([]byte{0xea, 0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
		io.Copy(io.Discard, c)
	})
	tcpShort := rawServer(t, func(c net.Conn) {
		c.Read(make([]byte, 512))
		c.Write([]byte{0xea, 0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	})

	const second = time.Second
	q := "www.example.test"
	last := `\tA\t127\.0\.15\.160$` // record 4000
	cases := []hostileCase{
		{name: "4000 records over tcp", kind: KindDNS, spec: DNSSpec{Server: floodTCP, Transport: "tcp", Query: q, Answers: []string{last}},
			timeout: 3 * second, want: ReasonNone, maxAlloc: 16 << 20},
		{name: "4000 records over tcp, no match", kind: KindDNS, spec: DNSSpec{Server: floodTCP, Transport: "tcp", Query: q, Answers: []string{`10\.99\.`}},
			timeout: 3 * second, want: ReasonAnswer, detail: []string{"(4000 records)"}, maxAlloc: 16 << 20},
		{name: "4000 records after a truncated udp answer", kind: KindDNS, spec: DNSSpec{Server: flood, Query: q, Answers: []string{last}},
			timeout: 3 * second, want: ReasonNone, maxAlloc: 16 << 20},
		{name: "oversized udp answer without TC", kind: KindDNS, spec: DNSSpec{Server: oversized, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"over udp", "overflow"}},
		{name: "compression pointer loop, udp", kind: KindDNS, spec: DNSSpec{Server: loopUDP, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"pointer"}},
		{name: "compression pointer loop, tcp", kind: KindDNS, spec: DNSSpec{Server: loopTCP, Transport: "tcp", Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"pointer"}},
		{name: "question name points to itself", kind: KindDNS, spec: DNSSpec{Server: selfUDP, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"pointer"}},
		{name: "wrong question name", kind: KindDNS, spec: DNSSpec{Server: wrongQuestion, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{`reply is for "evil.example.test." A IN, want "www.example.test." A IN`}},
		{name: "wrong question type", kind: KindDNS, spec: DNSSpec{Server: wrongType, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"AAAA IN, want"}},
		{name: "no question section", kind: KindDNS, spec: DNSSpec{Server: noQuestion, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"without a question section"}},
		{name: "query echoed back", kind: KindDNS, spec: DNSSpec{Server: notResponse, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"QR bit clear"}},
		{name: "wrong IDs, then the answer", kind: KindDNS, spec: DNSSpec{Server: wrongIDsThenRight, Query: q},
			timeout: 3 * second, want: ReasonNone},
		{name: "only wrong IDs", kind: KindDNS, spec: DNSSpec{Server: onlyWrongIDs, Query: q},
			timeout: 500 * time.Millisecond, want: ReasonTimeout, detail: []string{"over udp", "timeout"}},
		{name: "garbage with the right ID", kind: KindDNS, spec: DNSSpec{Server: garbage, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"over udp"}},
		{name: "one byte", kind: KindDNS, spec: DNSSpec{Server: oneByte, Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"over udp"}},
		{name: "udp server never answers", kind: KindDNS, spec: DNSSpec{Server: silentUDP(t), Query: q},
			timeout: 500 * time.Millisecond, want: ReasonTimeout, detail: []string{"over udp"}},
		{name: "tcp length prefix, then silence", kind: KindDNS, spec: DNSSpec{Server: tcpStall, Transport: "tcp", Query: q},
			timeout: 500 * time.Millisecond, want: ReasonTimeout, detail: []string{"over tcp"}},
		{name: "tcp answer cut short", kind: KindDNS, spec: DNSSpec{Server: tcpShort, Transport: "tcp", Query: q},
			timeout: 3 * second, want: ReasonProtocol, detail: []string{"over tcp", "EOF"}},
	}
	runHostile(t, cases)
}

// zoneFunc answers every query with what build returns.
type zoneFunc func(q *dns.Msg) *dns.Msg

func (z zoneFunc) ServeDNS(w dns.ResponseWriter, req *dns.Msg) { w.WriteMsg(z(req)) }

// truncateUDP answers over UDP with an empty truncated reply, as a server does when the
// answer is too large, and over TCP with the zone's answer.
type truncateUDP struct{ zone dns.Handler }

func (z truncateUDP) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		r := new(dns.Msg)
		r.SetReply(req)
		r.Truncated = true
		w.WriteMsg(r)
		return
	}
	z.zone.ServeDNS(w, req)
}

// rrs builds a reply to q from zone-file lines.
func rrs(q *dns.Msg, lines ...string) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			panic(err)
		}
		r.Answer = append(r.Answer, rr)
	}
	return r
}

// TestResolverHostile points the resolver of TCP probes at hostile DNS servers: a
// target's name must resolve to an address for that name or not at all.
func TestResolverHostile(t *testing.T) {
	listener := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	_, port, _ := net.SplitHostPort(listener)
	chain := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("c%d.example.test. 60 IN CNAME c%d.example.test.", i, i+1))
		}
		return append(out, fmt.Sprintf("c%d.example.test. 60 IN A 127.0.0.1", n))
	}
	servers := map[string]string{
		// An address for another name only: a poisoning attempt.
		"other name": startDNSPair(t, zoneFunc(func(q *dns.Msg) *dns.Msg {
			return rrs(q, "evil.example.test. 60 IN A 127.0.0.1")
		})),
		"cname loop": startDNSPair(t, zoneFunc(func(q *dns.Msg) *dns.Msg {
			return rrs(q, "c0.example.test. 60 IN CNAME c1.example.test.", "c1.example.test. 60 IN CNAME c0.example.test.")
		})),
		"chain of 3":  startDNSPair(t, zoneFunc(func(q *dns.Msg) *dns.Msg { return rrs(q, chain(3)...) })),
		"chain of 40": startDNSPair(t, truncateUDP{zoneFunc(func(q *dns.Msg) *dns.Msg { return rrs(q, chain(40)...) })}),
		"wrong question": startDNSPair(t, zoneFunc(func(q *dns.Msg) *dns.Msg {
			r := rrs(q, "evil.example.test. 60 IN A 127.0.0.1")
			r.Question[0].Name = "evil.example.test."
			return r
		})),
		"4000 records": startDNSPair(t, floodZone{records: 4000}),
		"pointer loop": rawUDP(t, pointerLoop),
		"silent":       silentUDP(t),
	}
	var cases []hostileCase
	for _, tc := range []struct {
		server, name string
		want         Reason
		detail       []string
	}{
		{"other name", "www.example.test", ReasonResolve, []string{"resolve www.example.test: www.example.test: no A record at"}},
		{"cname loop", "c0.example.test", ReasonResolve, []string{"no A record"}},
		{"chain of 3", "c0.example.test", ReasonNone, nil},
		{"chain of 40", "c0.example.test", ReasonResolve, []string{"no A record"}},
		{"wrong question", "www.example.test", ReasonResolve, []string{`reply is for "evil.example.test." A IN`}},
		{"4000 records", "www.example.test", ReasonNone, nil}, // the first, 127.0.0.1
		{"pointer loop", "www.example.test", ReasonResolve, []string{"too many compression pointers"}},
		{"silent", "www.example.test", ReasonResolve, []string{"timeout"}},
	} {
		spec := TCPSpec{Address: net.JoinHostPort(tc.name, port), Family: "ip4"}
		cases = append(cases, hostileCase{name: "resolver: " + tc.server, kind: KindTCP, spec: spec,
			timeout: 500 * time.Millisecond, want: tc.want, detail: tc.detail})
	}
	for _, tc := range cases {
		server := servers[strings.TrimPrefix(tc.name, "resolver: ")]
		t.Run(tc.name, func(t *testing.T) {
			env := &Env{Resolver: NewResolver([]string{server})}
			runHostileEnv(t, env, []hostileCase{tc})
		})
	}
}

// TestHTTPReason checks the classification of net/http's plain-text errors by their own
// text, never by the URL in front of them.
func TestHTTPReason(t *testing.T) {
	wrap := func(u, msg string) error { return &url.Error{Op: "Get", URL: u, Err: errors.New(msg)} }
	for _, tc := range []struct {
		err  error
		want Reason
	}{
		{wrap("http://a.test/chunked/malformed HTTP", "something else"), ReasonError},
		{wrap("http://a.test/", "net/http: server response headers exceeded 262144 bytes; aborted"), ReasonProtocol},
		{wrap("http://a.test/", "malformed HTTP status code \"x\""), ReasonProtocol},
		{errors.New("invalid byte in chunk length"), ReasonProtocol},
		{wrap("https://a.test/", "http: server gave HTTP response to HTTPS client"), ReasonTLS},
		{&url.Error{Op: "Get", URL: "http://a.test/", Err: context.DeadlineExceeded}, ReasonTimeout},
	} {
		if got := httpReason(tc.err); got != tc.want {
			t.Errorf("httpReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
