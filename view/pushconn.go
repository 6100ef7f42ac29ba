package view

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Push connections (view/README.md, "Push connections"). Once net/http has answered an
// accepted push on an HTTP/1.1 keep-alive connection, the view takes the connection
// over (Hijack) and reads the requests that follow on it itself, as long as each is a
// push of the plain form agents send: the request line pushLine, a head that fits the
// connection's buffer, one Host, one Content-Length, and no Transfer-Encoding, Expect,
// Upgrade or any byte that net/http would read otherwise. Such a push goes to the same
// handler as before (the web config's wrapper, then the Host check, then handleWrite),
// with a request built from its head, and its answer is written by hand. Anything else
// goes back to net/http before a byte of it is consumed (handBack), and net/http serves
// the connection from then on, as it served the first push: its answers, limits and
// errors stay its own. net/http's own work on each request of a kept connection (the
// request and response, the header map, the goroutine that watches for the client going
// away, its deadlines and ConnState calls) was a sixth of a push at 10,000 agents, and
// most of the view's garbage.

// pushLine is the request line of every push a taken connection serves itself.
const pushLine = "POST " + writePath + " HTTP/1.1\r\n"

// pushConns are the connections one Serve has taken over, and the listener by which
// net/http gets back those that send something else.
type pushConns struct {
	srv  *http.Server
	addr net.Addr
	back chan net.Conn
	done chan struct{}
	once sync.Once // closes done

	mu       sync.Mutex
	taken    map[*pushConn]struct{}
	stopping bool
	serving  bool // srv serves the connections handed back
	wg       sync.WaitGroup
}

type pushConnsKey struct{}

// returnedKey marks the context of a connection net/http got back: it is not taken
// over again, so that a client that mixes pushes and other requests stays with net/http.
type returnedKey struct{}

func newPushConns(srv *http.Server, addr net.Addr) *pushConns {
	return &pushConns{srv: srv, addr: addr, back: make(chan net.Conn), done: make(chan struct{}), taken: map[*pushConn]struct{}{}}
}

// connContext is the http.Server's ConnContext: every connection gets its shape slot,
// and one that was handed back is marked so.
func connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = withShapeSlot(ctx, c)
	if _, ok := c.(*returnedConn); ok {
		ctx = context.WithValue(ctx, returnedKey{}, true)
	}
	return ctx
}

// Accept, Close and Addr make pushConns the listener of the connections handed back.
func (p *pushConns) Accept() (net.Conn, error) {
	select {
	case c := <-p.back:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pushConns) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *pushConns) Addr() net.Addr { return p.addr }

// takeOver answers the push r with 204 and serves its connection's next pushes, when the
// connection may be taken over; false leaves w to the caller.
func (s *Server) takeOver(w http.ResponseWriter, r *http.Request) bool {
	hj, ok := w.(http.Hijacker) // not on a taken connection: its answers are not net/http's
	if !ok {
		return false
	}
	p, _ := r.Context().Value(pushConnsKey{}).(*pushConns)
	if p == nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close || r.ContentLength < 0 || r.Context().Value(returnedKey{}) != nil {
		return false
	}
	header := w.Header().Clone() // what the handlers before this one set (the web config's headers)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return false
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return false
	}
	pc := &pushConn{s: s, p: p, handler: p.srv.Handler, c: c, br: brw.Reader, header: http.Header{}}
	pc.ctx = pushCtx{values: context.WithoutCancel(r.Context()), slot: connShapeSlot(r.Context()), pc: pc}
	pc.tmpl = (&http.Request{
		Method: http.MethodPost, URL: &url.URL{Path: writePath}, RequestURI: writePath,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: r.RemoteAddr, TLS: r.TLS,
	}).WithContext(&pc.ctx)
	pc.resp.header = header
	pc.resp.code = http.StatusNoContent
	p.taken[pc] = struct{}{}
	p.wg.Add(1)
	go pc.run()
	return true
}

// stop closes the taken connections that wait for a request, and the others once their
// request is answered.
func (p *pushConns) stop() {
	p.mu.Lock()
	p.stopping = true
	taken := slices.Collect(maps.Keys(p.taken))
	p.mu.Unlock()
	for _, pc := range taken {
		pc.stop()
	}
}

// count is how many connections are taken over now; p may be nil (no Serve yet).
func (p *pushConns) count() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.taken)
}

// wait waits until every taken connection is closed or handed back.
func (p *pushConns) wait() { p.wg.Wait() }

// handBack gives pc's connection to net/http with all it has read ahead unread.
func (p *pushConns) handBack(pc *pushConn) {
	pc.c.SetDeadline(time.Time{})
	rc := &returnedConn{Conn: pc.c, br: pc.br}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		rc.Close()
		return
	}
	if !p.serving {
		p.serving = true
		// Started only now, once the first Serve has set srv up (web.Serve writes its
		// TLS fields before it serves); Shutdown closes p with srv's other listeners.
		go p.srv.Serve(p)
	}
	p.mu.Unlock()
	select {
	case p.back <- rc:
	case <-p.done:
		rc.Close()
	}
}

func (p *pushConns) forget(pc *pushConn) {
	p.mu.Lock()
	delete(p.taken, pc)
	p.mu.Unlock()
	p.wg.Done()
}

// returnedConn is a connection handed back to net/http: it reads first what the taken
// connection's reader holds.
type returnedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *returnedConn) Read(b []byte) (int, error) { return c.br.Read(b) }

// pushConn is a connection taken over.
type pushConn struct {
	s       *Server
	p       *pushConns
	handler http.Handler
	c       net.Conn      // what Hijack gave: the connection, or its TLS layer
	br      *bufio.Reader // net/http's reader of c, with what it read ahead
	// Every push on the connection is served with the same context, request and
	// header, reset for each: no handler keeps any of them once it has answered.
	ctx    pushCtx
	tmpl   *http.Request // what every request on the connection has in common
	req    http.Request
	header http.Header
	names  headCache
	body   pushBody
	resp   pushResponse
	out    []byte

	mu       sync.Mutex
	idle     bool // waiting for a request
	stopping bool
}

// stop has the connection close once it has no request in progress.
func (pc *pushConn) stop() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.stopping = true
	if pc.idle {
		pc.c.SetReadDeadline(aLongTimeAgo)
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// What the head of a taken connection's next request asks for.
const (
	headPush  = iota // a push this loop serves
	headOther        // anything else: net/http serves it
	headNone         // the connection closed, timed out, or the view stops
)

func (pc *pushConn) run() {
	defer pc.p.forget(pc)
	defer func() {
		// As net/http does: a handler's panic closes its connection, not the view.
		if err := recover(); err != nil {
			pc.c.Close()
			if err != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				pc.s.log.Error("panic serving a push", "remote", pc.tmpl.RemoteAddr, "panic", fmt.Sprint(err), "stack", string(buf))
			}
		}
	}()
	// The push that net/http read is answered first.
	if err := pc.resp.write(pc, false); err != nil {
		pc.c.Close()
		return
	}
	for {
		kind, h, start := pc.next()
		switch kind {
		case headOther:
			pc.p.handBack(pc)
			return
		case headNone:
			pc.c.Close()
			return
		}
		if !pc.serve(h, start) {
			pc.c.Close()
			return
		}
	}
}

// next waits for the next request, and reads its head when it is a push this loop
// serves; otherwise it leaves every byte unread. The connection is on the cap's idle
// list (guard.go) while it waits, as net/http's are.
func (pc *pushConn) next() (kind int, h pushHead, start time.Time) {
	conns := pc.s.hard.conns
	pc.mu.Lock()
	if pc.stopping {
		pc.mu.Unlock()
		return headNone, h, start
	}
	pc.idle = true
	pc.c.SetReadDeadline(time.Now().Add(pc.s.opts.IdleTimeout))
	pc.mu.Unlock()
	conns.track(pc.c, http.StateIdle)
	_, err := pc.br.Peek(1)
	conns.track(pc.c, http.StateActive)
	pc.mu.Lock()
	pc.idle = false
	stopping := pc.stopping
	pc.mu.Unlock()
	if err != nil || stopping {
		return headNone, h, start
	}
	start = time.Now()
	pc.c.SetReadDeadline(start.Add(pc.s.opts.ReadHeaderTimeout))
	for {
		buf, _ := pc.br.Peek(pc.br.Buffered())
		if n := min(len(buf), len(pushLine)); string(buf[:n]) != pushLine[:n] {
			return headOther, h, start
		}
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			head := buf[:i+4]
			h, ok := parsePushHead(head, pc.header, &pc.names)
			if !ok {
				return headOther, h, start
			}
			pc.br.Discard(len(head))
			return headPush, h, start
		}
		if len(buf) == pc.br.Size() {
			return headOther, h, start // a head this long is net/http's to read, or refuse
		}
		if _, err := pc.br.Peek(len(buf) + 1); err != nil {
			return headNone, h, start
		}
	}
}

// serve hands a push to the handler and writes its answer; false closes the connection.
func (pc *pushConn) serve(h pushHead, start time.Time) bool {
	pc.c.SetReadDeadline(start.Add(pc.s.opts.ReadTimeout))
	pc.ctx.begin(h.contentLength == 0)
	pc.body = pushBody{br: pc.br, ctx: &pc.ctx, n: h.contentLength}
	pc.req = *pc.tmpl
	r := &pc.req
	r.Header, r.Host, r.ContentLength, r.Close, r.Body = pc.header, h.host, h.contentLength, h.close, &pc.body
	clear(pc.resp.header)
	pc.resp.code, pc.resp.body = 0, pc.resp.body[:0]
	pc.handler.ServeHTTP(&pc.resp, r)
	if pc.ctx.end() {
		return false // its sender is gone
	}
	// A body the handler did not read (a push refused by its head) is not skipped: the
	// connection closes, as net/http closes one whose unread body is large.
	keep := !h.close && pc.body.n == 0
	return pc.resp.write(pc, !keep) == nil && keep
}

// pushHead is what the handlers read of a push's head besides its header.
type pushHead struct {
	host          string
	contentLength int64
	close         bool
}

// headCache keeps the previous head's header names (as sent, and canonical) and
// values, so that a head that repeats them, as an agent's do, allocates nothing.
type headCache struct{ sent, keys, vals []string }

func (hc *headCache) key(i int, name []byte) string {
	if i < len(hc.sent) && hc.sent[i] == string(name) {
		return hc.keys[i]
	}
	hc.grow(i)
	hc.sent[i] = string(name)
	hc.keys[i] = textproto.CanonicalMIMEHeaderKey(hc.sent[i])
	return hc.keys[i]
}

func (hc *headCache) val(i int, v []byte) string {
	if hc.vals[i] != string(v) {
		hc.vals[i] = string(v)
	}
	return hc.vals[i]
}

func (hc *headCache) grow(i int) {
	for len(hc.sent) <= i {
		hc.sent, hc.keys, hc.vals = append(hc.sent, ""), append(hc.keys, ""), append(hc.vals, "")
	}
}

// parsePushHead reads a push's head (its request line pushLine and its header, ending
// with an empty line) into header, the way net/http would read it. It refuses, for
// net/http to read, any head that net/http would read in another way or refuse: a line
// not ended by CRLF or holding a CR or LF of its own (folded lines included), a name
// that is not a token or a value with control bytes, no Host or more than one, a Host
// that is not a host, no Content-Length or more than one, or one that is not a plain
// number, a Connection other than close or keep-alive, and Transfer-Encoding, Expect,
// Upgrade or Trailer. FuzzPushHead holds it to http.ReadRequest.
func parsePushHead(head []byte, header http.Header, hc *headCache) (h pushHead, ok bool) {
	if len(head) < len(pushLine)+2 || string(head[:len(pushLine)]) != pushLine || string(head[len(head)-2:]) != "\r\n" {
		return h, false
	}
	rest := head[len(pushLine) : len(head)-2] // without the empty line's CRLF
	clear(header)
	h.contentLength = -1
	hosts := 0
	for i := 0; len(rest) > 0; i++ {
		line, after, found := bytes.Cut(rest, []byte("\r\n"))
		if !found {
			return h, false
		}
		rest = after
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validName(line[:colon]) {
			return h, false
		}
		value := bytes.Trim(line[colon+1:], " \t")
		if !validValue(value) {
			return h, false
		}
		key := hc.key(i, line[:colon])
		v := hc.val(i, value)
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !httpguts.ValidHostHeader(v) {
				return h, false
			}
			h.host = v
			continue // net/http keeps Host out of the header too
		case "Content-Length":
			n, ok := plainLength(value)
			if !ok || h.contentLength >= 0 {
				return h, false
			}
			h.contentLength = n
		case "Connection":
			switch {
			case strings.EqualFold(v, "close"):
				h.close = true
			case strings.EqualFold(v, "keep-alive"):
			default:
				return h, false
			}
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return h, false
		}
		if vs, dup := header[key]; dup {
			header[key] = append(vs, v)
		} else {
			header[key] = hc.vals[i : i+1 : i+1]
		}
	}
	if hosts != 1 || h.contentLength < 0 {
		return h, false
	}
	return h, true
}

func validName(b []byte) bool {
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// validValue refuses control bytes but a tab, as net/http does (it refuses a value
// with a CR or LF, which a head split at CRLF can still hold alone).
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// plainLength reads a Content-Length of 1 to 18 digits.
func plainLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// pushBody is a push's body on a taken connection: its Content-Length bytes.
type pushBody struct {
	br  *bufio.Reader
	ctx *pushCtx
	n   int64
}

func (b *pushBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if b.n == 0 {
		b.ctx.bodyDone()
		return n, io.EOF // with the last bytes, as net/http does
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *pushBody) Close() error { return nil }

// pushCtx is the context of the pushes on a taken connection: the connection's values,
// done when its sender goes away while a push is served. As net/http does, it watches
// for that from the end of a push's body until the push is answered, and only once
// asked (Done): by the pushes that wait for memory or a decode slot. Unlike net/http's,
// it is the connection's: it is not done once a push is answered, only when its sender
// is gone, and the connection closes then.
type pushCtx struct {
	values context.Context // the connection's, without net/http's cancellation
	slot   *shapeSlot      // looked up on every push, so kept apart from values
	pc     *pushConn

	mu       sync.Mutex
	done     chan struct{} // made when first asked
	gone     bool          // the sender went away; done is closed
	asked    bool          // Done was called during this push
	bodyRead bool
	aborted  bool          // the push is answered: the watch's end is not the sender's
	watching chan struct{} // closed when this push's watch ends
}

func (c *pushCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *pushCtx) Value(key any) any {
	if _, ok := key.(shapeSlotKey); ok {
		return c.slot
	}
	return c.values.Value(key)
}

func (c *pushCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
	}
	c.asked = true
	c.watchLocked()
	return c.done
}

func (c *pushCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return context.Canceled
	}
	return nil
}

// begin readies the context for the next push; bodyRead says it has no body to read.
func (c *pushCtx) begin(bodyRead bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked, c.bodyRead, c.aborted, c.watching = false, bodyRead, false, nil
}

func (c *pushCtx) bodyDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodyRead = true
	c.watchLocked()
}

// watchLocked starts the watch for the sender going away once the push has asked for
// it and its body is read, until the push is answered: a Done called later (by a
// goroutine of context.WithTimeout's, say) starts none, as the connection's reader is
// then the next request's.
func (c *pushCtx) watchLocked() {
	if !c.asked || !c.bodyRead || c.aborted || c.gone || c.watching != nil {
		return
	}
	watching := make(chan struct{})
	c.watching = watching
	go func() {
		defer close(watching)
		_, err := c.pc.br.Peek(1)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil && !c.aborted { // only a watch sets gone, and one runs at a time
			c.gone = true
			close(c.done)
		}
	}()
}

// end stops the watch once the push is answered and says whether the sender went away.
func (c *pushCtx) end() (gone bool) {
	c.mu.Lock()
	watching := c.watching
	c.aborted = true
	c.mu.Unlock()
	if watching != nil {
		c.pc.c.SetReadDeadline(aLongTimeAgo)
		<-watching
		c.pc.c.SetReadDeadline(time.Time{})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// pushResponse is the answer to a push on a taken connection, written once the handler
// returns.
type pushResponse struct {
	header http.Header
	code   int
	body   []byte
}

func (w *pushResponse) Header() http.Header { return w.header }

func (w *pushResponse) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *pushResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, b...)
	return len(b), nil
}

// maxKeptOut bounds the answer buffer a taken connection keeps between pushes.
const maxKeptOut = 4 << 10

// write writes the answer as net/http would: its status line, the handler's header
// (names that are not tokens left out, line breaks in values made spaces), Date, and
// Content-Length and the body unless the status has none.
func (w *pushResponse) write(pc *pushConn, closing bool) error {
	code := w.code
	if code == 0 {
		code = http.StatusOK
	}
	body := w.body
	if code == http.StatusNoContent || code == http.StatusNotModified {
		body = nil
		delete(w.header, "Content-Length")
	} else {
		w.header.Set("Content-Length", strconv.Itoa(len(body)))
		if _, ok := w.header["Content-Type"]; !ok && len(body) > 0 {
			w.header.Set("Content-Type", http.DetectContentType(body))
		}
	}
	if closing {
		w.header.Set("Connection", "close")
	}
	b := append(pc.out[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	if _, ok := w.header["Date"]; !ok {
		b = append(b, "Date: "...)
		b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	if len(w.header) > 0 {
		for _, k := range slices.Sorted(maps.Keys(w.header)) {
			if !httpguts.ValidHeaderFieldName(k) {
				continue
			}
			for _, v := range w.header[k] {
				b = append(b, k...)
				b = append(b, ": "...)
				b = append(b, strings.TrimSpace(headerNewlines.Replace(v))...)
				b = append(b, "\r\n"...)
			}
		}
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	if cap(b) <= maxKeptOut {
		pc.out = b
	}
	pc.c.SetWriteDeadline(time.Now().Add(pc.s.opts.ReadTimeout))
	_, err := pc.c.Write(b)
	return err
}

var headerNewlines = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")
