package view

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// handleWrite takes one push (view/README.md, "Push contract"; "Hostile input" for the
// order of the checks): who sends it, whether it is a remote_write 1.0 push at all, then
// memory for its body before the body is read, and for its decoding before it is
// decoded. Nothing of a push is applied unless all of it is.
func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request) {
	s.metrics.received.Inc()
	boundAgent, ok := s.authorize(r)
	if !ok {
		s.reject(w, http.StatusUnauthorized, "unauthorized", "missing or unknown bearer token")
		return
	}
	// An agent's own token is limited before its body is even read.
	if boundAgent != "" {
		if wait, ok := s.limiter.allow(time.Now(), boundAgent); !ok {
			s.rateLimited(w, boundAgent, wait)
			return
		}
	}
	if code, reason, msg := checkPushHeaders(r.Header); code != 0 {
		s.reject(w, code, reason, msg)
		return
	}
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes exceeds max_body_bytes %d", r.ContentLength, limit))
		return
	}
	// Memory for the body is taken before a byte of it is read: at what the request
	// announces, or at max_body_bytes when it does not say.
	charge := limit
	if r.ContentLength >= 0 {
		charge = r.ContentLength
	}
	charge = max(charge, minBodyCharge)
	if err := s.takeBodyMemory(r, charge); err != nil {
		s.busy(w)
		return
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		s.releaseBodyMemory(charge)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds max_body_bytes %d", limit))
			return
		}
		s.reject(w, http.StatusBadRequest, "read", "read body: "+err.Error())
		return
	}
	// The connection's shape slot (shape.go), unless another of its HTTP/2 streams holds
	// it: held until the reports it may give have been applied.
	slot := connShapeSlot(r.Context())
	if slot != nil {
		if slot.mu.TryLock() {
			defer slot.release()
		} else {
			slot = nil
		}
	}
	reports, err := s.decode(r, body, slot)
	putBody(body)
	s.releaseBodyMemory(charge)
	if errors.Is(err, errBusy) {
		s.busy(w)
		return
	}
	if err != nil {
		var pe *pushError
		reason, code := "bad_content", http.StatusBadRequest
		if errors.As(err, &pe) {
			reason = pe.reason
		}
		if reason == "too_large" {
			code = http.StatusRequestEntityTooLarge
		}
		s.reject(w, code, reason, err.Error())
		return
	}
	if boundAgent != "" {
		for _, rep := range reports {
			if rep.Agent != boundAgent {
				s.reject(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token of agent %q cannot push series of agent %q", boundAgent, rep.Agent))
				return
			}
		}
	} else {
		// An agent with its own token speaks only with it: the shared tokens cannot
		// push its series (docs/architecture.md, "Verdicts at the view": a witness is an
		// agent, and one holder of a shared token must not be all of them).
		for _, rep := range reports {
			if s.hard.reserved[rep.Agent] {
				s.reject(w, http.StatusForbidden, "forbidden", fmt.Sprintf("agent %q has its own token (agent_tokens); only that token can push its series", rep.Agent))
				return
			}
		}
		names := make([]string, len(reports))
		for i, rep := range reports {
			names[i] = rep.Agent
		}
		if wait, ok := s.limiter.allow(time.Now(), names...); !ok {
			who := names[0]
			if len(names) > 1 {
				who = fmt.Sprintf("%s (one of the %d agents in the push)", s.limiter.limited(time.Now(), names), len(names))
			}
			s.rateLimited(w, who, wait)
			return
		}
	}
	s.applyMu.Lock()
	if err := s.engine.Fits(reports); err != nil {
		s.applyMu.Unlock()
		// 507: a sender retries a 5xx, and room comes back as forget_after drops the
		// agents that went away.
		s.reject(w, http.StatusInsufficientStorage, "full", err.Error())
		return
	}
	changes, ignored := s.engine.Apply(reports, time.Now())
	s.publish(changes)
	s.applyMu.Unlock()
	s.metrics.ignored.Add(float64(ignored))
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if s.takeOver(w, r) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkPushHeaders refuses what is not a remote_write 1.0 push by its headers
// (docs/architecture.md, "The push contract"). The remote_write 1.0 specification has senders send Content-Encoding: snappy,
// Content-Type: application/x-protobuf and X-Prometheus-Remote-Write-Version: 0.1.0,
// and Prometheus, vmagent, the OpenTelemetry collector and exporters/remotewrite.go do.
// Requiring them is also what keeps web pages out: a page on any origin may POST a
// "simple" request (a text/plain body, no other header) without asking, but a request
// with any of these headers needs a CORS preflight, which the view never grants. A
// request naming its Origin comes from a browser, never from an agent.
func checkPushHeaders(h http.Header) (code int, reason, msg string) {
	const want = "a remote_write 1.0 push has Content-Encoding: snappy, Content-Type: application/x-protobuf and X-Prometheus-Remote-Write-Version: 0.1.0"
	if origin := h.Get("Origin"); origin != "" {
		return http.StatusForbidden, "forbidden", fmt.Sprintf("pushes from web pages are refused (Origin %q)", origin)
	}
	ct := h.Get("Content-Type")
	if strings.Contains(ct, "io.prometheus.write.v2") {
		return http.StatusUnsupportedMediaType, "unsupported", "remote_write 2.0 is not supported; send remote_write 1.0 (prometheus.WriteRequest)"
	}
	if ce := h.Get("Content-Encoding"); !strings.EqualFold(ce, "snappy") {
		return http.StatusUnsupportedMediaType, "unsupported", fmt.Sprintf("content encoding %q is not supported: %s", ce, want)
	}
	// The exporters' own value is matched as it is; any other is parsed.
	if ct != "application/x-protobuf" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-protobuf" || (params["proto"] != "" && params["proto"] != "prometheus.WriteRequest") {
			return http.StatusUnsupportedMediaType, "unsupported", fmt.Sprintf("content type %q is not supported: %s", ct, want)
		}
	}
	if v := h.Get("X-Prometheus-Remote-Write-Version"); !strings.HasPrefix(v, "0.1.") {
		return http.StatusUnsupportedMediaType, "unsupported", fmt.Sprintf("X-Prometheus-Remote-Write-Version %q is not supported: %s", v, want)
	}
	return 0, "", ""
}

// takeBodyMemory takes charge bytes of the bodies' budget (and, for a large body, of
// the large bodies' share) for r's body; releaseBodyMemory gives them back.
func (s *Server) takeBodyMemory(r *http.Request, charge int64) error {
	h := s.hard
	if charge > smallBody {
		if err := h.large.acquire(r.Context(), charge); err != nil {
			return err
		}
	}
	if err := h.bodies.acquire(r.Context(), charge); err != nil {
		if charge > smallBody {
			h.large.release(charge)
		}
		return err
	}
	return nil
}

func (s *Server) releaseBodyMemory(charge int64) {
	s.hard.bodies.release(charge)
	if charge > smallBody {
		s.hard.large.release(charge)
	}
}

// decode decodes a push within the decoding budget: twice the decoded size the snappy
// header claims (the buffer, and the reports built from it, which decodeWrite bounds
// by that size), taken before the buffer is allocated; and in one of the decode slots,
// which bound the CPU that decoding takes, unless its sender is gone before one is free
// (errBusy).
func (s *Server) decode(r *http.Request, body []byte, slot *shapeSlot) ([]AgentReport, error) {
	n, err := snappyClaim(body, s.decodedLimit())
	if err != nil {
		return nil, err
	}
	charge := max(2*int64(n), minBodyCharge)
	if err := s.hard.decoding.acquire(r.Context(), charge); err != nil {
		return nil, err
	}
	defer s.hard.decoding.release(charge)
	// A push whose sender gave up waiting (its timeout, or it went away) is not
	// decoded: under more load than the view has CPU for, decoding it would only take
	// a slot from a push whose sender still waits. Its agent's next push carries its
	// whole state again.
	// A free slot is taken without asking for the request's Done channel, which
	// net/http makes on the first call: one allocation a push fewer.
	select {
	case s.decodeSlots <- struct{}{}:
	default:
		select {
		case s.decodeSlots <- struct{}{}:
		case <-r.Context().Done():
			return nil, errBusy
		}
	}
	defer func() { <-s.decodeSlots }()
	reports, replayed, err := decodeWrite(body, n, slot)
	if err == nil {
		by := decodedInFull
		if replayed {
			by = decodedByShape
		}
		s.metrics.decoded.WithLabelValues(by).Inc()
	}
	return reports, err
}

// decodedLimit is the largest decoded push: max(1 MiB, 16 x max_body_bytes), and no more
// than a quarter of max_push_memory, as a push is charged twice its decoded size to the
// decoding half.
func (s *Server) decodedLimit() int {
	return int(min(decodedLimit(s.cfg.MaxBodyBytes), s.hard.decoding.size/2))
}

// bodyPools keep the buffers of ordinary pushes between requests, one pool per size
// class: minPooledBody bytes, and each of the bodyClasses twice the one before (64 KiB).
// A body takes a buffer of the smallest class that holds it, so a push of a few KiB
// does not hold 64 KiB while it waits for a decode slot: at 10,000 agents a backlog of
// pushes held a hundred MiB of such buffers, and refilled the pool after every
// collection (view/README.md, "Performance").
var bodyPools [bodyClasses]sync.Pool

const (
	minPooledBody = 4 << 10
	bodyClasses   = 5 // 4, 8, 16, 32 and 64 KiB
)

// bodyClass is the class of the smallest pooled buffer that holds n bytes, or -1 when
// n is more than the largest class.
func bodyClass(n int64) int {
	for c := range bodyClasses {
		if n <= int64(bodyClassSize(c)) {
			return c
		}
	}
	return -1
}

func bodyClassSize(c int) int { return minPooledBody << c }

func getBody(n int64) []byte {
	c := bodyClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if b, ok := bodyPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, bodyClassSize(c))
}

// putBody gives a buffer of getBody back to its class's pool; one of another size
// (read whole, without a length) is left to the collector.
func putBody(b []byte) {
	if c := bodyClass(int64(cap(b))); c >= 0 && cap(b) == bodyClassSize(c) {
		b = b[:0]
		bodyPools[c].Put(&b)
	}
}

// readBody reads a push's body of at most limit bytes into a buffer of exactly the size
// the request announces (a pooled one when it is small), or growing up to limit when it
// announces none. A body of an announced length, which the caller has checked against
// limit, cannot run past it: net/http stops it at that length.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength < 0 {
		return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	buf := getBody(r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		putBody(buf)
		return nil, err
	}
	return buf, nil
}

// busy answers a push that found no memory within budgetWait.
func (s *Server) busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	s.reject(w, http.StatusServiceUnavailable, "busy", "the view is busy: max_push_memory is taken by other pushes; retry")
}

// rateLimited answers 429 with the seconds until the agent may push again.
func (s *Server) rateLimited(w http.ResponseWriter, agent string, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
	s.reject(w, http.StatusTooManyRequests, "rate_limited",
		fmt.Sprintf("agent %s pushes faster than push_rate %g/s (burst %d)", agent, s.cfg.PushRate, s.cfg.PushBurst))
}

func (s *Server) reject(w http.ResponseWriter, code int, reason, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	s.hard.rejects.note(reason, msg)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgeprobe view"`)
	}
	http.Error(w, msg, code)
}

// rejectLogEvery is the window of rejectLog.
const rejectLogEvery = 10 * time.Second

// rejectLog keeps refusals from flooding the diagnostics: the first refusal is logged
// in full; those that follow within rejectLogEvery are counted by reason, and one line
// at the end of the window says how many there were, why, and the last one's message.
// A window with none closes, and the next refusal is logged in full again. The counts
// by reason are on /metrics too (edgeprobe_view_pushes_rejected_total).
type rejectLog struct {
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	open   bool
	counts map[string]int
	last   string
}

func newRejectLog(log *slog.Logger) *rejectLog {
	return &rejectLog{log: log, every: rejectLogEvery, counts: map[string]int{}}
}

func (l *rejectLog) note(reason, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.open {
		l.open = true
		l.log.Warn("request refused", "reason", reason, "error", msg)
		time.AfterFunc(l.every, l.summary)
		return
	}
	l.counts[reason]++
	l.last = msg
}

func (l *rejectLog) summary() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.counts) == 0 {
		l.open = false
		return
	}
	total := 0
	var by []string
	for _, reason := range slices.Sorted(maps.Keys(l.counts)) {
		total += l.counts[reason]
		by = append(by, fmt.Sprintf("%s=%d", reason, l.counts[reason]))
	}
	l.log.Warn("requests refused", "count", total, "within", l.every.String(), "by_reason", strings.Join(by, " "), "last_error", l.last)
	clear(l.counts)
	time.AfterFunc(l.every, l.summary)
}
