package exporters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
)

var _ agent.Sink = (*Prometheus)(nil)

// probeDurationBuckets span a LAN round trip (tens of microseconds on a switch) to a slow
// WAN HTTP probe near the longest timeout (seconds), roughly 2.5x apart so that both a
// 0.3 ms LAN and a 180 ms intercontinental RTT land in a bucket narrow enough to alert on.
var probeDurationBuckets = [nBuckets]float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5,
}

// Prometheus serves the agent's state and probe statistics at /metrics for a Prometheus
// server to scrape. It keeps its own registry, so nothing registered elsewhere in the
// process leaks into the page, and adds the agent name and agent labels to every series.
type Prometheus struct {
	cfg        config.PrometheusConfig
	logger     *slog.Logger
	state      *promState
	registry   *prometheus.Registry
	registerer prometheus.Registerer // adds agent and the agent labels
	listener   net.Listener
	server     *http.Server
}

// NewPrometheus checks the web config file (TLS, basic auth; see exporter-toolkit),
// registers the metrics and binds the listen address, so that a busy port or a bad file
// is reported before the agent starts. Serving starts with Run.
func NewPrometheus(cfg config.PrometheusConfig, agentName string, labels map[string]string, logger *slog.Logger) (*Prometheus, error) {
	cfg.SetDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if agentName == "" {
		return nil, errors.New("prometheus exporter: the agent name is empty; every series needs one")
	}
	extra, err := extraLabels(labels)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	if err := web.Validate(cfg.WebConfig); err != nil {
		return nil, fmt.Errorf("prometheus exporter: web config %s: %w", cfg.WebConfig, err)
	}
	constLabels := prometheus.Labels{"agent": agentName}
	for _, l := range extra {
		constLabels[l.name] = l.value
	}
	p := &Prometheus{
		cfg:      cfg,
		logger:   logger,
		state:    newPromState(),
		registry: prometheus.NewRegistry(),
	}
	// The per-target families are written by servePage from p.state (see prompage.go).
	p.state.pageLabels = newPageLabels(agentName, extra)
	p.registerer = prometheus.WrapRegistererWith(constLabels, p.registry)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "edgeprobe_build_info",
		Help:        "Always 1; the labels say which build of edgeprobe runs.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	for _, c := range []prometheus.Collector{
		buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := p.registerer.Register(c); err != nil {
			return nil, fmt.Errorf("prometheus exporter: register metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc(cfg.Path, p.servePage)
	if cfg.Path != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "edgeprobe",
			Description: "Reachability of sites as seen by agent " + agentName,
			Version:     buildVersion(),
			Links:       []web.LandingLinks{{Address: cfg.Path, Text: "Metrics"}},
		})
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: landing page: %w", err)
		}
		mux.Handle("/", landing)
	}
	p.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// Failed handshakes of scanners and misconfigured scrapers are not the agent's problem.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	p.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: listen on %s: %w", cfg.Listen, err)
	}
	return p, nil
}

// Addr is the address the endpoint listens on (useful with port 0).
func (p *Prometheus) Addr() string { return p.listener.Addr().String() }

// Register adds a collector to the exporter's registry with the agent's labels; the
// remote_write exporters register their delivery counters this way.
func (p *Prometheus) Register(c prometheus.Collector) error {
	return p.registerer.Register(c)
}

// Handle records an event. It only updates in-memory state and never blocks on I/O: a
// probe result costs one uncontended lock and one map lookup, and allocates nothing.
// promState.apply counts it in the target's histogram and failure counters (a target's
// histogram and its timeout counter exist at 0 from its first event, so that rate() sees
// the first probe and the first timeout; other reasons appear on their first failure,
// since one series per reason and target was 12 of 34 series per target). A reload that
// removes a target, or changes its kind, removes its series (agent.EventRemoved).
func (p *Prometheus) Handle(ev agent.Event) {
	p.state.apply(ev)
}

// Run serves /metrics until ctx is done, then shuts the server down gracefully.
func (p *Prometheus) Run(ctx context.Context) error {
	noSystemd := false
	flags := &web.FlagConfig{
		WebListenAddresses: &[]string{p.cfg.Listen},
		WebSystemdSocket:   &noSystemd,
		WebConfigFile:      &p.cfg.WebConfig,
	}
	served := make(chan error, 1)
	// web.Serve rather than web.ListenAndServe: the listener is bound in NewPrometheus so
	// that a busy port fails at start-up and port 0 can be read back with Addr.
	go func() { served <- web.Serve(p.listener, p.server, flags, p.logger) }()
	select {
	case err := <-served:
		return fmt.Errorf("prometheus exporter: serve on %s: %w", p.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("prometheus exporter: shut down %s: %w", p.Addr(), err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("prometheus exporter: serve on %s: %w", p.Addr(), err)
	}
	return nil
}

// Close releases the listener of an exporter whose Run was never called.
func (p *Prometheus) Close() error {
	if err := p.listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("prometheus exporter: close %s: %w", p.Addr(), err)
	}
	return nil
}

// Version is the edgeprobe version shown by edgeprobe_build_info and the remote_write
// User-Agent. cmd/edgeprobe sets it at start-up from the version it was linked with; left
// empty, the module version the go command stamped into the binary is used.
var Version string

func buildVersion() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "unknown"
}
