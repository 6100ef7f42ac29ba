package probes

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// httpProber sends one request and checks the status and, optionally, the body.
type httpProber struct {
	spec      HTTPSpec
	url       *url.URL
	status    []statusRange
	bodyMatch *regexp.Regexp
	limit     int64
	network   string
	resolver  *Resolver
	dialer    net.Dialer
	client    *http.Client
	body      bytes.Buffer // reused between probes for body_match
}

var _ Prober = (*httpProber)(nil)

// statusRange accepts codes lo..hi: "204" is 204..204, "2xx" is 200..299.
type statusRange struct{ lo, hi int }

// parseStatus reads a validated code ("204") or class ("2xx").
func parseStatus(s string) statusRange {
	if strings.HasSuffix(s, "xx") {
		lo := int(s[0]-'0') * 100
		return statusRange{lo, lo + 99}
	}
	code, _ := strconv.Atoi(s)
	return statusRange{code, code}
}

type httpTimesKey struct{}

// httpTimes collects one probe's phase boundaries from httptrace and the dialer. The
// transport may still be dialing on its own goroutine when a failed request returns, hence
// the lock.
type httpTimes struct {
	mu                       sync.Mutex
	resolve                  time.Duration
	connectStart, connectEnd time.Time
	tlsStart, tlsEnd         time.Time
	wrote, firstByte         time.Time
	redirects                int       // redirects followed so far
	certExpiry               time.Time // of the last handshake that completed
}

// MaxResponseHeaderBytes caps the response headers an HTTP probe reads; a server that
// sends more fails the probe with ReasonProtocol.
const MaxResponseHeaderBytes = 256 << 10

func newHTTPProber(spec HTTPSpec, env *Env) (*httpProber, error) {
	u, err := url.Parse(spec.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	p := &httpProber{spec: spec, url: u, limit: spec.BodyLimit, resolver: env.resolver(), network: familyNetwork(spec.Family)}
	for _, s := range spec.Status {
		p.status = append(p.status, parseStatus(s))
	}
	if spec.BodyMatch != "" {
		p.bodyMatch = regexp.MustCompile(spec.BodyMatch)
	}
	conf, err := spec.TLS.ClientConfig()
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		// Probes go to the target itself, never through an environment proxy.
		Proxy:               nil,
		DialContext:         p.dial,
		TLSClientConfig:     conf,
		DisableKeepAlives:   !spec.KeepAlive,
		MaxIdleConnsPerHost: 1,
		ForceAttemptHTTP2:   true,
		// net/http's default is 10 MiB, and a server that streams one endless header line
		// made a probe allocate 70 MB before that limit stopped it.
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
	}
	p.client = &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > spec.Redirects {
				return http.ErrUseLastResponse
			}
			if t, ok := req.Context().Value(httpTimesKey{}).(*httpTimes); ok {
				// The next request starts over: a timeout must say where it got.
				t.set(func() { t.redirects, t.wrote, t.firstByte = len(via), time.Time{}, time.Time{} })
			}
			return nil
		},
	}
	return p, nil
}

func (p *httpProber) dial(ctx context.Context, network, address string) (net.Conn, error) {
	conn, resolved, err := p.resolver.dialContext(ctx, &p.dialer, network, p.network, address)
	if t, ok := ctx.Value(httpTimesKey{}).(*httpTimes); ok {
		t.set(func() { t.resolve += resolved })
	}
	return conn, err
}

// Close releases pooled connections (there are some only with KeepAlive).
func (p *httpProber) Close() error {
	p.client.CloseIdleConnections()
	return nil
}

// Probe sends the request, reads the body up to the limit and checks the answer.
func (p *httpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	times := &httpTimes{}
	ctx = context.WithValue(ctx, httpTimesKey{}, times)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// The resolver's own UDP queries to DNS servers pass through here too.
		ConnectStart: func(network, _ string) {
			if strings.HasPrefix(network, "tcp") {
				times.stamp(&times.connectStart)
			}
		},
		ConnectDone: func(network, _ string, _ error) {
			if strings.HasPrefix(network, "tcp") {
				times.stamp(&times.connectEnd)
			}
		},
		TLSHandshakeStart: func() { times.stamp(&times.tlsStart) },
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			times.stamp(&times.tlsEnd)
			if err == nil {
				expiry := earliestExpiry(cs.PeerCertificates)
				times.set(func() { times.certExpiry = expiry })
			}
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { times.stamp(&times.wrote) },
		GotFirstResponseByte: func() { times.stamp(&times.firstByte) },
	})
	var body io.Reader
	if p.spec.Body != "" {
		body = strings.NewReader(p.spec.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.spec.Method, p.spec.URL, body)
	if err != nil {
		return failure(start, ReasonError, fmt.Sprintf("build request: %v", err))
	}
	for name, value := range p.spec.Headers {
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}

	resp, err := p.client.Do(req)
	if err != nil {
		reason, detail := httpFailure(err, times)
		r := failure(start, reason, fmt.Sprintf("%s %s: %s", p.spec.Method, p.url.Redacted(), detail))
		r.Phases = times.phases(time.Now())
		r.CertExpiry = times.expiry()
		return r
	}
	defer resp.Body.Close()
	reason, detail := p.readBody(resp.Body)
	end := time.Now()
	r := Result{Start: start, RTT: end.Sub(start), Phases: times.phases(end)}
	// From the connection the answer came on, as blackbox_exporter reads it: a kept-alive
	// probe's had its handshake in an earlier probe, and after redirects it is the last
	// server's (none when that one spoke plain HTTP).
	if resp.TLS != nil {
		r.CertExpiry = earliestExpiry(resp.TLS.PeerCertificates)
	}
	if !p.accepts(resp.StatusCode) {
		r.Reason = ReasonStatus
		r.Detail = fmt.Sprintf("status %d, want %s", resp.StatusCode, strings.Join(p.spec.Status, " or "))
		if n := times.followed(); n > 0 {
			r.Detail += fmt.Sprintf(" (from %s after %d redirects", resp.Request.URL.Redacted(), n)
			if n == p.spec.Redirects && resp.StatusCode >= 300 && resp.StatusCode < 400 {
				r.Detail += ", the limit"
			}
			r.Detail += ")"
		}
		return r
	}
	if reason != ReasonNone {
		r.Reason, r.Detail = reason, detail
		return r
	}
	r.OK = true
	return r
}

// readBody reads at most limit bytes of the body and applies body_match.
func (p *httpProber) readBody(body io.Reader) (Reason, string) {
	return matchBody(body, p.limit, p.bodyMatch, &p.body)
}

// matchBody reads at most limit bytes of body and, when re is set, checks that they match
// it. A body over the limit fails with ReasonBody when matching and is cut off (not an
// error) otherwise; memory stays within limit+1 bytes of buf (which is reused) however
// much the server sends. It is pure but for reading body, so that it can be fuzzed.
func matchBody(body io.Reader, limit int64, re *regexp.Regexp, buf *bytes.Buffer) (Reason, string) {
	limited := io.LimitReader(body, limit+1)
	if re == nil {
		if n, err := io.Copy(io.Discard, limited); err != nil {
			return httpReason(err), fmt.Sprintf("read body after %d bytes: %v", n, err)
		}
		return ReasonNone, ""
	}
	buf.Reset()
	n, err := buf.ReadFrom(limited)
	if err != nil {
		return httpReason(err), fmt.Sprintf("read body after %d bytes: %v", n, err)
	}
	if n > limit {
		return ReasonBody, fmt.Sprintf("body exceeds body_limit (%d bytes)", limit)
	}
	if !re.Match(buf.Bytes()) {
		return ReasonBody, fmt.Sprintf("body (%d bytes) does not match %q", n, re)
	}
	return ReasonNone, ""
}

func (p *httpProber) accepts(code int) bool {
	for _, r := range p.status {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

// httpReason adds net/http's own refusals of a malformed answer, which it reports as
// plain errors, to the common mapping.
func httpReason(err error) Reason {
	reason := reasonOf(err)
	if reason != ReasonError {
		return reason
	}
	// The error's own text, without the URL a *url.Error puts first (a URL may hold
	// any of the words below).
	msg := err.Error()
	var uerr *url.Error
	if errors.As(err, &uerr) {
		msg = uerr.Err.Error()
	}
	for _, s := range []string{
		"server response headers exceeded", // more than MaxResponseHeaderBytes
		"malformed HTTP",                   // status line, header or version
		"chunk",                            // malformed chunked encoding
		"unsupported protocol scheme",      // a redirect to ftp:// or the like
		"invalid header", "bad Content-Length", "unexpected EOF",
		"http2:", "stream error", "connection error: ", // HTTP/2 framing, GOAWAY, RST_STREAM
	} {
		if strings.Contains(msg, s) {
			return ReasonProtocol
		}
	}
	if strings.Contains(msg, "server gave HTTP response to HTTPS client") {
		return ReasonTLS
	}
	return ReasonError
}

// httpFailure classifies a failed request and says what happened: the error without
// net/http's repetition of method and URL (kept when a redirect changed the URL), and on a
// timeout, the step the request had reached.
func httpFailure(err error, times *httpTimes) (Reason, string) {
	reason := httpReason(err)
	detail := err.Error()
	var uerr *url.Error
	if errors.As(err, &uerr) {
		detail = uerr.Err.Error()
		if times.followed() > 0 {
			detail = fmt.Sprintf("after %d redirects, %s: %s", times.followed(), uerr.URL, detail)
		}
	}
	if strings.Contains(detail, "server response headers exceeded") {
		detail = fmt.Sprintf("response headers exceed %d bytes: %s", MaxResponseHeaderBytes, detail)
	}
	if reason == ReasonTimeout {
		detail += " " + times.stage()
	}
	return reason, detail
}

func (t *httpTimes) expiry() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.certExpiry
}

func (t *httpTimes) followed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.redirects
}

// stage says how far a request that timed out had come.
func (t *httpTimes) stage() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !t.firstByte.IsZero():
		return fmt.Sprintf("(reading the response headers; first byte %v after the request)",
			t.firstByte.Sub(t.wrote).Round(time.Millisecond))
	case !t.wrote.IsZero():
		return "(request sent, no response byte)"
	case !t.tlsStart.IsZero() && t.tlsEnd.IsZero():
		return fmt.Sprintf("(TLS handshake not completed after %v)", time.Since(t.tlsStart).Round(time.Millisecond))
	case !t.connectStart.IsZero() && t.connectEnd.IsZero():
		return "(TCP connect not completed)"
	}
	return "(before the request was sent)"
}

func (t *httpTimes) set(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f()
}

func (t *httpTimes) stamp(field *time.Time) {
	now := time.Now()
	t.set(func() { *field = now })
}

func (t *httpTimes) phases(end time.Time) Phases {
	t.mu.Lock()
	defer t.mu.Unlock()
	ph := Phases{Resolve: t.resolve}
	if !t.connectStart.IsZero() && !t.connectEnd.IsZero() {
		ph.Connect = t.connectEnd.Sub(t.connectStart)
	}
	if !t.tlsStart.IsZero() && !t.tlsEnd.IsZero() {
		ph.TLS = t.tlsEnd.Sub(t.tlsStart)
	}
	if !t.wrote.IsZero() && !t.firstByte.IsZero() {
		ph.Processing = t.firstByte.Sub(t.wrote)
		ph.Transfer = end.Sub(t.firstByte)
	}
	return ph
}
