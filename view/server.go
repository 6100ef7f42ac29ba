package view

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
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
	// (default 2m), and the size of the headers (default 16 KiB).
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
	// hard holds the HTTP-level defences (guard.go), handler the mux behind them.
	hard    *hardening
	handler http.Handler

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
		// Agents send a few hundred bytes of headers, browsers (no cookies here) a few
		// KiB; the limit is what a connection can hold while its headers arrive
		// (max_connections of them: view/README.md, "Hostile input").
		opts.MaxHeaderBytes = 16 << 10
	}
	s := &Server{
		cfg:       cfg,
		engine:    NewEngine(cfg),
		log:       opts.Logger,
		broker:    newBroker(),
		keepAlive: opts.KeepAlive,
		wake:      make(chan struct{}, 1),
		mux:       http.NewServeMux(),
		opts:      opts,
		limiter:   newLimiter(cfg.PushRate, cfg.PushBurst),

		decodeSlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
	}
	s.metrics = newViewMetrics(s)
	s.hard = newHardening(cfg, s)
	s.metrics.registry.MustRegister(s.hard)
	s.events = slog.New(slog.NewJSONHandler(s.hard.events, nil))
	for _, w := range cfg.Notifiers.Webhook {
		s.notifiers = append(s.notifiers, newWebhook(w, opts.RetryBase, s.metrics, s.log))
	}
	for _, a := range cfg.Notifiers.Alertmanager {
		s.notifiers = append(s.notifiers, newAlertmanager(a, opts.RetryBase, "http://"+cfg.Listen+"/", s.metrics, s.log))
	}
	s.mux.HandleFunc("POST /api/v1/write", s.handleWrite)
	s.mux.HandleFunc("GET /api/v1/sites", s.requireRead(s.handleSites))
	s.mux.HandleFunc("GET /api/v1/events", s.requireRead(s.handleEvents))
	s.mux.HandleFunc("GET /metrics", s.requireRead(promhttp.HandlerFor(s.metrics.registry,
		promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}).ServeHTTP))
	// The page holds no data: it reads the API, with the read token a reader gives it.
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	s.handler = s.guard(s.mux)
	return s
}

// Handler serves the view's HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

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
		Handler:           s.handler,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ln = s.serve(srv, ln)
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
