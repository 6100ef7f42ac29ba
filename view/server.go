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
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/edgeprobe/edgeprobe/failover"
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
	// EventRing is how many verdict changes are kept for replay; default DefaultEventRing.
	EventRing int
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
	eventLog  *eventLog
	silences  *silences
	failover  *failover.Controller // nil without [actions]
	actions   *actionFeed
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

// New builds a view from a validated config. It reads what a previous run left in the
// state directory (silences, the last verdict changes) and the notifiers' secrets.
func New(cfg *Config, opts Options) (*Server, error) {
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
	if opts.EventRing <= 0 {
		opts.EventRing = DefaultEventRing
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
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("state_dir: %w", err)
		}
	}
	var err error
	if s.eventLog, err = newEventLog(cfg.StateDir, opts.EventRing, s.log); err != nil {
		return nil, err
	}
	if s.silences, err = newSilences(cfg, time.Now()); err != nil {
		return nil, err
	}
	s.metrics = newViewMetrics(s)
	s.hard = newHardening(cfg, s)
	s.metrics.registry.MustRegister(s.hard)
	s.events = slog.New(slog.NewJSONHandler(s.hard.events, nil))
	for _, wc := range cfg.Notifiers.Webhook {
		w, err := newWebhook(wc, opts.RetryBase, s.metrics, s.log)
		if err != nil {
			return nil, err
		}
		s.notifiers = append(s.notifiers, w)
	}
	if cfg.Actions.Enabled() {
		if s.failover, err = failover.New(&cfg.Actions, failover.Options{Logger: s.log.With("part", "failover"), Alert: s.failoverAlert}); err != nil {
			return nil, err
		}
		s.actions = newActionFeed(s.failover)
		s.metrics.registry.MustRegister(s.failover.Collector())
		h := s.requireMethodAuth(s.failover.Handler())
		s.mux.Handle(failover.PathStatus, h)
		s.mux.Handle(failover.PathStatus+"/", h)
	}
	for _, a := range cfg.Notifiers.Alertmanager {
		s.notifiers = append(s.notifiers, newAlertmanager(a, opts.RetryBase, "http://"+cfg.Listen+"/", s.metrics, s.log))
	}
	s.mux.HandleFunc("POST /api/v1/write", s.handleWrite)
	s.mux.HandleFunc("GET /api/v1/sites", s.requireRead(s.handleSites))
	s.mux.HandleFunc("GET /api/v1/sites/{site}", s.requireRead(s.handleSite))
	s.mux.HandleFunc("GET /api/v1/events", s.requireRead(s.handleEvents))
	s.mux.HandleFunc("GET /api/v1/events/history", s.requireRead(s.handleHistory))
	s.mux.HandleFunc("GET /api/v1/silences", s.requireRead(s.handleSilences))
	s.mux.HandleFunc("POST /api/v1/silences", s.requireAdmin(s.handleAddSilence))
	s.mux.HandleFunc("DELETE /api/v1/silences/{id}", s.requireAdmin(s.handleDeleteSilence))
	s.mux.HandleFunc("GET /metrics", s.requireRead(promhttp.HandlerFor(s.metrics.registry,
		promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}).ServeHTTP))
	// The page holds no data: it reads the API, with the read token a reader gives it.
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	s.handler = s.guard(s.mux)
	return s, nil
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
	wg.Go(func() { s.eventLog.run(ctx.Done()) })
	if s.failover != nil {
		wg.Go(func() { s.actions.run(ctx) })
		wg.Go(func() {
			if err := s.failover.Run(ctx); err != nil {
				s.log.Error("failover stopped", "error", err)
			}
		})
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
		ConnContext:       connContext,
	}
	ln = s.serve(srv, ln)
	pushes := newPushConns(srv, ln.Addr())
	s.hard.pushes.Store(pushes)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithValue(ctx, pushConnsKey{}, pushes) }
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
	// Taken connections are the view's own: Shutdown neither knows nor waits for them.
	pushes.stop()
	pushes.Close()
	pushes.wait()
	<-runDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// forgetEvery is how often the view looks for agents and sites to forget.
const forgetEvery = 5 * time.Second

// expireLoop sleeps until the next agent would turn stale (or a push changes that), the
// next silence starts or ends, or it is time to forget, and acts then: a silent agent
// stops counting within milliseconds of its deadline without a polling tick.
func (s *Server) expireLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	forget := time.NewTicker(forgetEvery)
	defer forget.Stop()
	for {
		now := time.Now()
		next := s.engine.NextExpiry(now)
		silenceAt, silenceSites := s.silences.next(now)
		if !silenceAt.IsZero() && (next.IsZero() || silenceAt.Before(next)) {
			next = silenceAt
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
			now := time.Now()
			s.applyMu.Lock()
			s.publish(s.engine.Expire(now))
			if !silenceAt.IsZero() && !now.Before(silenceAt) {
				s.silenceChanged(silenceSites, now)
			}
			s.applyMu.Unlock()
		case <-forget.C:
			s.applyMu.Lock()
			s.publish(s.engine.Forget(time.Now()))
			s.applyMu.Unlock()
		}
	}
}

// publish announces verdict changes; the caller holds applyMu. Nothing here may block:
// the event log writes from its own goroutine, SSE clients and notifiers keep their own
// state and are cut or catch up when they are slow.
func (s *Server) publish(changes []Change) {
	for _, c := range changes {
		c.Silenced = s.silences.silenced(c.Site, c.Time)
		c = s.eventLog.add(c)
		s.metrics.changes.WithLabelValues(c.To).Inc()
		attrs := []any{"id", c.ID, "site", c.Site, "from", c.From, "to", c.To, "witnesses", c.Witnesses, "down", c.Down, "up", c.Up}
		if c.DetectSeconds != nil {
			attrs = append(attrs, "detect_seconds", *c.DetectSeconds)
		}
		if c.Silenced {
			attrs = append(attrs, "silenced", true)
		}
		s.events.Info("verdict", attrs...)
		st := siteStatus{Verdict: c.To, From: c.From, Time: c.Time, Since: c.Time, Silenced: c.Silenced,
			Witnesses: c.Witnesses, Down: c.Down, Up: c.Up, Detect: c.DetectSeconds}
		s.observe(c.Site, st)
	}
	if len(changes) > 0 {
		s.broker.publish()
	}
}

// observe tells the notifiers and the failover of a site's status; the caller holds
// applyMu, so they hear of every site's changes in order.
func (s *Server) observe(site string, st siteStatus) {
	for _, n := range s.notifiers {
		n.observe(site, st)
	}
	if s.actions != nil {
		s.actions.put(site, st)
	}
}

// silenceChanged tells the notifiers that sites' silences started or ended at now; the
// caller holds applyMu.
func (s *Server) silenceChanged(sites []string, now time.Time) {
	for _, site := range sites {
		v, ok := s.engine.Site(site, now)
		if !ok {
			continue
		}
		silenced := s.silences.silenced(site, now)
		s.log.Info("silence", "site", site, "silenced", silenced, "verdict", v.State)
		st := siteStatus{Verdict: v.State, From: v.State, Time: now, Since: v.Since, Silenced: silenced,
			Witnesses: v.Witnesses, Down: v.Down, Up: v.Up, Detect: v.DetectSeconds}
		s.observe(site, st)
	}
}

// The answer is written as the engine is copied, a chunk of sites at a time: at 10,000
// agents x 20 sites it is some 20 MB, which encoding it whole first held in memory twice
// over (the copy and the encoding) and had the collector scan the view's heap for every
// read. Each site is written by SiteView.appendJSON, as encoding/json writes it.
func (s *Server) handleSites(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	silenced := map[string]bool{}
	for _, sl := range s.silences.all(now) {
		if sl.active(now) {
			silenced[sl.Site] = true
		}
	}
	writeJSONHeader(w, http.StatusOK)
	buf := append(make([]byte, 0, 64<<10), `{"sites":[`...)
	first := true
	err := s.engine.eachAnswer(now, func(chunk []SiteView) error {
		for i := range chunk {
			chunk[i].Silenced = silenced[chunk[i].Name]
			if !first {
				buf = append(buf, ',')
			}
			first = false
			buf = chunk[i].appendJSON(buf)
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		// A read yields the processor between chunks, so that the pushes that came in
		// meanwhile are decided before it goes on: on a view short of CPU the verdict
		// comes before the dashboard (view/README.md, "Performance"). At 10,000 agents on
		// two cores, pushes beside a read that did not wait took 13-196 ms (median).
		runtime.Gosched()
		return err
	})
	if err == nil {
		_, err = w.Write(append(buf, "]}\n"...))
	}
	if err != nil {
		s.log.Debug("write response", "error", err)
	}
}

// handleSite serves one site's verdict and, per agent that reports it, that agent's
// latest targets there (name, kind, up, the last probe's outcome, RTT and failure
// reason): what the page shows for a cell.
func (s *Server) handleSite(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	name := r.PathValue("site")
	d, ok := s.engine.SiteTargets(name, now)
	if !ok {
		http.Error(w, fmt.Sprintf("no agent reports a site %q", name), http.StatusNotFound)
		return
	}
	d.Silenced = s.silences.silenced(name, now)
	writeJSON(w, s.log, http.StatusOK, d)
}

// historyLimit bounds one answer of /api/v1/events/history.
const historyLimit = 1000

// handleHistory serves the kept verdict changes after ?since=ID (default: all), oldest
// first, at most ?limit= (1000). complete is false when changes after since are no longer
// kept; next is the id to ask from for the rest.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			http.Error(w, fmt.Sprintf("since: %q is not an event id", v), http.StatusBadRequest)
			return
		}
	}
	limit := historyLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > historyLimit {
			http.Error(w, fmt.Sprintf("limit: %q is not a number from 1 to %d", v, historyLimit), http.StatusBadRequest)
			return
		}
		limit = n
	}
	events, complete := s.eventLog.since(since, limit)
	next := since
	if len(events) > 0 {
		next = events[len(events)-1].ID
	}
	writeJSON(w, s.log, http.StatusOK, struct {
		Events   []Change `json:"events"`
		Complete bool     `json:"complete"`
		Next     uint64   `json:"next"`
		Last     uint64   `json:"last"`
	}{append([]Change{}, events...), complete, next, s.eventLog.lastID()})
}

func (s *Server) handleSilences(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.log, http.StatusOK, struct {
		Silences []Silence `json:"silences"`
	}{append([]Silence{}, s.silences.all(time.Now())...)})
}

func (s *Server) handleAddSilence(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSilenceBody))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	now := time.Now()
	sl, err := parseSilence(body, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if sl, err = s.silences.add(sl, now); err != nil {
		http.Error(w, err.Error(), http.StatusInsufficientStorage)
		return
	}
	s.log.Info("silence set", "id", sl.ID, "site", sl.Site, "start", sl.Start, "end", sl.End, "comment", sl.Comment, "remote", r.RemoteAddr)
	s.applyMu.Lock()
	s.silenceChanged([]string{sl.Site}, now)
	s.applyMu.Unlock()
	s.wakeLoop()
	writeJSON(w, s.log, http.StatusCreated, sl)
}

func (s *Server) handleDeleteSilence(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	sl, found, err := s.silences.remove(r.PathValue("id"), now)
	switch {
	case !found:
		http.Error(w, "no such silence", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInsufficientStorage)
		return
	}
	s.log.Info("silence removed", "id", sl.ID, "site", sl.Site, "remote", r.RemoteAddr)
	s.applyMu.Lock()
	s.silenceChanged([]string{sl.Site}, now)
	s.applyMu.Unlock()
	s.wakeLoop()
	writeJSON(w, s.log, http.StatusOK, sl)
}

// wakeLoop has the expire loop look at its deadlines again.
func (s *Server) wakeLoop() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, log *slog.Logger, code int, v any) {
	writeJSONHeader(w, code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Debug("write response", "error", err)
	}
}

// writeJSONHeader starts a JSON answer: its type, never cached.
func writeJSONHeader(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
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

// FlushEvents waits until the event log's queued lines are written, at most timeout:
// for a clean exit, after Serve returned.
func (s *Server) FlushEvents(timeout time.Duration) { s.hard.events.Flush(timeout) }
