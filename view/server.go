package view

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

//go:embed web/index.html
var webFS embed.FS

// Options are the parts of a Server that are not configuration.
type Options struct {
	// Logger receives diagnostics; default discards them.
	Logger *slog.Logger
	// Events receives one JSON line per verdict change (the event log); default none.
	Events io.Writer
	// KeepAlive is how often /api/v1/events sends a comment to idle clients; default 15s.
	KeepAlive time.Duration
	// RetryBase is the first delay between notification attempts; default 500ms.
	RetryBase time.Duration
	// Limits of the HTTP server against slow or oversized requests (slowloris): the time
	// to read a request's headers (default 5s), the whole request (default 30s; an
	// events stream lifts it once its headers are read), an idle keep-alive connection
	// (default 2m), and the size of the headers (default 64 KiB).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// Server is the central view: it receives pushes, keeps verdicts, serves them and
// announces their changes. Verdicts change only inside applyMu, so every change is
// published (log line, SSE, notifiers) in the order it happened.
type Server struct {
	cfg       *Config
	engine    *Engine
	log       *slog.Logger
	events    *slog.Logger
	metrics   *viewMetrics
	broker    *broker
	notifiers []notifier
	keepAlive time.Duration
	wake      chan struct{}
	mux       *http.ServeMux
	opts      Options
	limiter   *limiter
	// decodeSlots bounds the pushes decoded at once, and so the memory that decoding
	// takes however many connections send at once (each decoded body is bounded too).
	decodeSlots chan struct{}

	applyMu sync.Mutex
}

// New builds a view from a validated config.
func New(cfg *Config, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Events == nil {
		opts.Events = io.Discard
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 500 * time.Millisecond
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 5 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 30 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	s := &Server{
		cfg:       cfg,
		engine:    NewEngine(cfg),
		log:       opts.Logger,
		events:    slog.New(slog.NewJSONHandler(opts.Events, nil)),
		broker:    newBroker(),
		keepAlive: opts.KeepAlive,
		wake:      make(chan struct{}, 1),
		mux:       http.NewServeMux(),
		opts:      opts,
		limiter:   newLimiter(cfg.PushRate, cfg.PushBurst),

		decodeSlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
	}
	s.metrics = newViewMetrics(s)
	for _, w := range cfg.Notifiers.Webhook {
		s.notifiers = append(s.notifiers, newWebhook(w, opts.RetryBase, s.metrics, s.log))
	}
	for _, a := range cfg.Notifiers.Alertmanager {
		s.notifiers = append(s.notifiers, newAlertmanager(a, opts.RetryBase, "http://"+cfg.Listen+"/", s.metrics, s.log))
	}
	s.mux.HandleFunc("POST /api/v1/write", s.handleWrite)
	s.mux.HandleFunc("GET /api/v1/sites", s.handleSites)
	s.mux.HandleFunc("GET /api/v1/events", s.handleEvents)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	return s
}

// Handler serves the view's HTTP API.
func (s *Server) Handler() http.Handler { return s.mux }

// Run keeps staleness and the notifiers going until ctx is done. Handler works without
// Run, but then agents only turn stale when the next push arrives.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range s.notifiers {
		wg.Go(func() { n.run(ctx) })
	}
	s.expireLoop(ctx)
	s.broker.closeAll()
	wg.Wait()
}

// ListenAndServe serves the view on cfg.Listen until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves the view on ln until ctx is done. It refuses a listener beyond loopback
// when the config has no authentication and does not allow that (Config.CheckExposure).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.cfg.CheckExposure(ln.Addr().String()); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	runDone := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(runDone)
	}()
	errc := make(chan error, 1)
	// web.Serve serves plain HTTP when no web config is set, TLS as it says otherwise.
	go func() { errc <- web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &s.cfg.WebConfig}, s.log) }()
	s.log.Info("view listening", "address", ln.Addr().String(), "quorum", s.cfg.Quorum.String(), "tls", s.cfg.WebConfig != "")
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(shutdownCtx)
		cancel()
	}
	<-runDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// expireLoop sleeps until the next agent would turn stale (or a push changes that) and
// re-evaluates then, so a silent agent stops counting within milliseconds of its deadline
// without a polling tick.
func (s *Server) expireLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Stop()
		if next := s.engine.NextExpiry(time.Now()); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
			s.applyMu.Lock()
			s.publish(s.engine.Expire(time.Now()))
			s.applyMu.Unlock()
		}
	}
}

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
	if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "io.prometheus.write.v2") {
		s.reject(w, http.StatusUnsupportedMediaType, "unsupported", "remote_write 2.0 is not supported; send remote_write 1.0 (prometheus.WriteRequest)")
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "snappy") {
		s.reject(w, http.StatusUnsupportedMediaType, "unsupported", fmt.Sprintf("content encoding %q is not supported; want snappy", ce))
		return
	}
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes exceeds max_body_bytes %d", r.ContentLength, limit))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds max_body_bytes %d", limit))
			return
		}
		s.reject(w, http.StatusBadRequest, "read", "read body: "+err.Error())
		return
	}
	s.decodeSlots <- struct{}{}
	reports, err := DecodeWrite(body, limit)
	<-s.decodeSlots
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
	changes, ignored := s.engine.Apply(reports, time.Now())
	s.publish(changes)
	s.applyMu.Unlock()
	s.metrics.ignored.Add(float64(ignored))
	select {
	case s.wake <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// authorize checks the bearer token. It returns the agent the token is bound to ("" for
// a shared token or when no tokens are configured).
func (s *Server) authorize(r *http.Request) (agent string, ok bool) {
	if len(s.cfg.Tokens) == 0 && len(s.cfg.AgentTokens) == 0 {
		return "", true
	}
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || got == "" {
		return "", false
	}
	match := func(want string) bool { return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 }
	for _, at := range s.cfg.AgentTokens {
		if match(at.token) {
			return at.Agent, true
		}
	}
	for _, t := range s.cfg.Tokens {
		if match(t) {
			return "", true
		}
	}
	return "", false
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
	s.log.Warn("push rejected", "reason", reason, "error", msg)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgeprobe view"`)
	}
	http.Error(w, msg, code)
}

// publish announces verdict changes; the caller holds applyMu. Nothing here may block:
// SSE clients and notifiers have their own queues and are dropped or counted when full.
func (s *Server) publish(changes []Change) {
	for _, c := range changes {
		s.metrics.changes.WithLabelValues(c.To).Inc()
		attrs := []any{"site", c.Site, "from", c.From, "to", c.To, "witnesses", c.Witnesses, "down", c.Down}
		if c.DetectSeconds != nil {
			attrs = append(attrs, "detect_seconds", *c.DetectSeconds)
		}
		s.events.Info("verdict", attrs...)
		data, err := json.Marshal(c)
		if err == nil {
			s.broker.publish(data)
		}
		if c.To == VerdictLost || c.From == VerdictLost {
			for _, n := range s.notifiers {
				n.enqueue(c)
			}
		}
	}
}

func (s *Server) handleSites(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	if err := enc.Encode(struct {
		Sites []SiteView `json:"sites"`
	}{s.engine.Sites(time.Now())}); err != nil {
		s.log.Debug("write sites response", "error", err)
	}
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	page, err := webFS.ReadFile("web/index.html")
	if err != nil {
		http.Error(w, "page missing from the binary", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_, _ = w.Write(page)
}

// sseWriteTimeout bounds one write to an SSE client, so a client that stopped reading
// holds a goroutine for at most this long.
const sseWriteTimeout = 10 * time.Second

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	sub := s.broker.subscribe(s.cfg.MaxEventClients)
	if sub == nil {
		s.log.Warn("events client refused", "remote", r.RemoteAddr, "max_event_clients", s.cfg.MaxEventClients)
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("too many event clients (max_event_clients %d)", s.cfg.MaxEventClients), http.StatusServiceUnavailable)
		return
	}
	defer s.broker.unsubscribe(sub)
	// The server's read timeout would end the stream; its request is read already.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func(text string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := io.WriteString(w, text); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(": connected\nretry: 1000\n\n") {
		return
	}
	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case data, open := <-sub:
			if !open {
				return
			}
			if !send("data: " + string(data) + "\n\n") {
				return
			}
		case <-keepAlive.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}

// broker fans verdict changes out to SSE clients. A client whose queue is full is cut
// off (its channel closed) rather than waited for; browsers reconnect on their own.
type broker struct {
	mu      sync.Mutex
	clients map[chan []byte]struct{}
	dropped int
	refused int
}

const sseQueue = 64

func newBroker() *broker { return &broker{clients: map[chan []byte]struct{}{}} }

// subscribe adds a client, or returns nil when limit clients are connected already.
func (b *broker) subscribe(limit int) chan []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if limit > 0 && len(b.clients) >= limit {
		b.refused++
		return nil
	}
	ch := make(chan []byte, sseQueue)
	b.clients[ch] = struct{}{}
	return ch
}

func (b *broker) unsubscribe(ch chan []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.clients[ch]; ok {
		delete(b.clients, ch)
		close(ch)
	}
}

func (b *broker) publish(data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.clients {
		select {
		case ch <- data:
		default:
			delete(b.clients, ch)
			close(ch)
			b.dropped++
		}
	}
}

func (b *broker) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.clients {
		delete(b.clients, ch)
		close(ch)
	}
}

func (b *broker) counts() (clients, dropped, refused int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients), b.dropped, b.refused
}

// limiter is a token bucket per agent: rate pushes a second, burst at once.
type limiter struct {
	rate  float64
	burst float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	pruneSize int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}, pruneSize: 4096}
}

// allow takes one token from each agent's bucket, or none when one of them is empty; it
// then says how long until that one has a token again.
func (l *limiter) allow(now time.Time, agents ...string) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) >= l.pruneSize {
		l.prune(now)
	}
	ok = true
	for _, a := range agents {
		b := l.buckets[a]
		if b == nil {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[a] = b
		}
		b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
		b.last = now
		if b.tokens < 1 {
			ok = false
			wait = max(wait, time.Duration((1-b.tokens)/l.rate*float64(time.Second)))
		}
	}
	if ok {
		for _, a := range agents {
			l.buckets[a].tokens--
		}
	}
	return wait, ok
}

// limited names the first of agents whose bucket is empty at now, for messages.
func (l *limiter) limited(now time.Time, agents []string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range agents {
		if b := l.buckets[a]; b != nil && b.tokens+now.Sub(b.last).Seconds()*l.rate < 1 {
			return a
		}
	}
	return agents[0]
}

// prune forgets the buckets that are full again (their agents are as if never seen), so
// that pushes under ever new agent names cannot grow the map without end.
func (l *limiter) prune(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, a)
		}
	}
	l.pruneSize = max(4096, 2*len(l.buckets))
}
