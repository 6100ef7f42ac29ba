package view

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// viewMetrics is the view's own /metrics, on a private registry so that tests can run
// many views in one process and nothing global leaks in.
type viewMetrics struct {
	registry      *prometheus.Registry
	received      prometheus.Counter
	rejected      *prometheus.CounterVec
	ignored       prometheus.Counter
	decoded       *prometheus.CounterVec
	changes       *prometheus.CounterVec
	notifications *prometheus.CounterVec
}

// The values of edgeprobe_view_pushes_decoded_total's label by.
const (
	decodedByShape = "shape"
	decodedInFull  = "full"
)

var rejectReasons = []string{"unauthorized", "forbidden", "unsupported", "too_large", "read", "bad_snappy", "bad_protobuf", "no_agent", "bad_content", "rate_limited", "host", "busy", "full"}

func newViewMetrics(s *Server) *viewMetrics {
	m := &viewMetrics{
		registry: prometheus.NewRegistry(),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeprobe_view_pushes_received_total", Help: "Pushes received at /api/v1/write, accepted or not.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeprobe_view_pushes_rejected_total", Help: "Pushes refused whole, by reason.",
		}, []string{"reason"}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeprobe_view_reports_ignored_total", Help: "Agent reports accepted but ignored as older than the agent's last one or than max_sample_age.",
		}),
		decoded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeprobe_view_pushes_decoded_total", Help: "Pushes decoded, by how: from the shape of the connection's previous push (shape) or in full (full).",
		}, []string{"by"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeprobe_view_verdict_changes_total", Help: "Site verdict changes, by new verdict.",
		}, []string{"to"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeprobe_view_notifications_total", Help: "Notifications by notifier and result (sent, failed, dropped).",
		}, []string{"notifier", "result"}),
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	for _, by := range []string{decodedByShape, decodedInFull} {
		m.decoded.WithLabelValues(by)
	}
	for _, v := range append(Verdicts, VerdictForgotten) {
		m.changes.WithLabelValues(v)
	}
	m.registry.MustRegister(m.received, m.rejected, m.ignored, m.decoded, m.changes, m.notifications,
		stateCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// stateCollector reads the gauges from the engine at scrape time, so they can never
// drift from what /api/v1/sites says.
type stateCollector struct{ s *Server }

var (
	sitesDesc   = prometheus.NewDesc("edgeprobe_view_sites", "Sites by current verdict.", []string{"state"}, nil)
	agentsDesc  = prometheus.NewDesc("edgeprobe_view_agents", "Known agents by freshness (fresh or stale).", []string{"freshness"}, nil)
	clientsDesc = prometheus.NewDesc("edgeprobe_view_sse_clients", "Connected /api/v1/events clients.", nil, nil)
	resetsDesc  = prometheus.NewDesc("edgeprobe_view_sse_resets_total", "Event clients told to reset: they fell further behind than the event ring.", nil, nil)
	refusedDesc = prometheus.NewDesc("edgeprobe_view_sse_refused_total", "Event clients refused because max_event_clients were connected.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sitesDesc
	ch <- agentsDesc
	ch <- clientsDesc
	ch <- resetsDesc
	ch <- refusedDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	verdicts, fresh, stale := c.s.engine.Counts()
	for _, state := range Verdicts {
		ch <- prometheus.MustNewConstMetric(sitesDesc, prometheus.GaugeValue, float64(verdicts[state]), state)
	}
	ch <- prometheus.MustNewConstMetric(agentsDesc, prometheus.GaugeValue, float64(fresh), "fresh")
	ch <- prometheus.MustNewConstMetric(agentsDesc, prometheus.GaugeValue, float64(stale), "stale")
	clients, resets, refused := c.s.broker.counts()
	ch <- prometheus.MustNewConstMetric(clientsDesc, prometheus.GaugeValue, float64(clients))
	ch <- prometheus.MustNewConstMetric(resetsDesc, prometheus.CounterValue, float64(resets))
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(refused))
}
