package exporters

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/probes"
)

// refExporter is the /metrics exporter as it was built on client_golang before the page
// was written by hand (HistogramVec, CounterVec and a collector of the state gauges): the
// oracle the hand-written page must equal.
type refExporter struct {
	state    *promState
	registry *prometheus.Registry
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
	metrics  map[promTargetKey]*refTargetMetrics
}

type refTargetMetrics struct {
	kind     probes.Kind
	duration prometheus.Observer
	timeouts prometheus.Counter
}

func newRefExporter(t *testing.T, agentName string, labels map[string]string) *refExporter {
	t.Helper()
	extra, err := extraLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	constLabels := prometheus.Labels{"agent": agentName}
	for _, l := range extra {
		constLabels[l.name] = l.value
	}
	r := &refExporter{
		state:    newPromState(),
		registry: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "probe_duration_seconds",
			Help:    "Round-trip time of successful probes.",
			Buckets: probeDurationBuckets[:],
		}, []string{"site", "target", "kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeprobe_probe_failures_total",
			Help: "Failed probes by reason.",
		}, []string{"site", "target", "kind", "reason"}),
		metrics: map[promTargetKey]*refTargetMetrics{},
	}
	reg := prometheus.WrapRegistererWith(constLabels, r.registry)
	for _, c := range []prometheus.Collector{r.duration, r.failures, &refStateCollector{r.state}, &refLatenessCollector{r.state}} {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *refExporter) Handle(ev agent.Event) {
	if ev.Type == agent.EventScheduler {
		report := *ev.Scheduler // the reference state has no page labels, so apply skips it
		r.state.mu.Lock()
		r.state.scheduler = &report
		r.state.mu.Unlock()
	}
	_, t := r.state.apply(ev)
	if t == nil {
		return
	}
	m := r.metrics[t.key]
	if m == nil || (ev.Kind != "" && ev.Kind != m.kind) {
		m = &refTargetMetrics{
			kind:     ev.Kind,
			duration: r.duration.WithLabelValues(ev.Site, ev.Target, string(ev.Kind)),
			timeouts: r.failures.WithLabelValues(ev.Site, ev.Target, string(ev.Kind), string(probes.ReasonTimeout)),
		}
		r.metrics[t.key] = m
	}
	if ev.Type != agent.EventProbe || ev.Inconclusive {
		return
	}
	switch {
	case ev.Result.OK:
		m.duration.Observe(ev.Result.RTT.Seconds())
	case ev.Result.Reason == probes.ReasonTimeout:
		m.timeouts.Inc()
	default:
		r.failures.WithLabelValues(ev.Site, ev.Target, string(m.kind), string(ev.Result.Reason)).Inc()
	}
}

// page is what promhttp wrote: the gathered families in the text format.
func (r *refExporter) page(t *testing.T) []byte {
	t.Helper()
	mfs, err := r.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// refStateCollector is the former stateCollector: gauges from promState.series.
type refStateCollector struct{ state *promState }

// refLatenessCollector writes the agent's lateness report as client_golang would: a
// constant histogram per event and a counter.
type refLatenessCollector struct{ state *promState }

var (
	refLatenessDesc = prometheus.NewDesc("edgeprobe_scheduler_lateness_seconds",
		"How late the agent runs against due times: wakeup (the scheduler's timer or a finished probe), start (a "+
			"probe against its slot), timeout (giving up against the deadline), result (handling a finished probe).",
		[]string{"event"}, nil)
	refInconclusiveDesc = prometheus.NewDesc("edgeprobe_probe_inconclusive_total",
		"Failed probes the agent was too late to judge, counted as neither failure nor success.", nil, nil)
	refWorkersDesc = prometheus.NewDesc("edgeprobe_scheduler_workers",
		"Worker goroutines running blocking probes, busy or idle; each ends after 10 s idle.", nil, nil)
)

func (c *refLatenessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- refLatenessDesc
	ch <- refInconclusiveDesc
	ch <- refWorkersDesc
}

func (c *refLatenessCollector) Collect(ch chan<- prometheus.Metric) {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	r := c.state.scheduler
	if r == nil {
		return
	}
	for ev := range agent.NumLatenessEvents {
		h := r.Histograms[ev]
		buckets := map[float64]uint64{}
		var acc uint64
		for i, le := range agent.LatenessBuckets {
			acc += h.Buckets[i]
			buckets[le.Seconds()] = acc
		}
		ch <- prometheus.MustNewConstHistogram(refLatenessDesc, h.Count, h.Sum.Seconds(), buckets, ev.String())
	}
	ch <- prometheus.MustNewConstMetric(refInconclusiveDesc, prometheus.CounterValue, float64(r.Inconclusive))
	ch <- prometheus.MustNewConstMetric(refWorkersDesc, prometheus.GaugeValue, float64(r.Workers))
}

var refStateDescs = map[string]*prometheus.Desc{
	"edgeprobe_agent_impaired": prometheus.NewDesc("edgeprobe_agent_impaired",
		"1 while the agent is too late, for too long, to judge its own timeouts.", nil, nil),
	"edgeprobe_agent_isolated": prometheus.NewDesc("edgeprobe_agent_isolated",
		"1 when the agent's self-check says its own uplink is the likely cause of failures.", nil, nil),
	"edgeprobe_site_state": prometheus.NewDesc("edgeprobe_site_state",
		"State set of each site as this agent sees it: 1 for the current state.", []string{"site", "state"}, nil),
	"edgeprobe_site_state_change_timestamp_seconds": prometheus.NewDesc("edgeprobe_site_state_change_timestamp_seconds",
		"Unix time when the site entered its current state.", []string{"site"}, nil),
	"edgeprobe_site_detect_seconds": prometheus.NewDesc("edgeprobe_site_detect_seconds",
		"Time from the first failed (or, on recovery, successful) probe to the last site change.", []string{"site"}, nil),
	"edgeprobe_target_failure_reason": prometheus.NewDesc("edgeprobe_target_failure_reason",
		"Why the last probe failed: 0 when it succeeded, else 1 timeout, 2 refused, 3 unreachable, 4 resolve, 5 rcode, 6 answer, 7 status, 8 body, 9 tls, 10 protocol, 11 permission, 12 error.",
		[]string{"site", "target", "kind"}, nil),
	"edgeprobe_target_up": prometheus.NewDesc("edgeprobe_target_up",
		"1 when the target is up or suspect, 0 when down.", []string{"site", "target", "kind"}, nil),
	"probe_success": prometheus.NewDesc("probe_success",
		"1 when the last probe succeeded.", []string{"site", "target", "kind"}, nil),
	"probe_ssl_earliest_cert_expiry": prometheus.NewDesc("probe_ssl_earliest_cert_expiry",
		"Unix time the earliest of the certificates the server presented in the last completed TLS handshake expires.", []string{"site", "target", "kind"}, nil),
	"probe_http_duration_seconds": prometheus.NewDesc("probe_http_duration_seconds",
		"Phases of the last HTTP probe, as blackbox_exporter names them.", []string{"site", "target", "kind", "phase"}, nil),
}

func (c *refStateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range refStateDescs {
		ch <- d
	}
}

func (c *refStateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range append(c.state.series(0), c.state.httpPhases()...) {
		desc, ok := refStateDescs[s.name]
		if !ok {
			continue
		}
		values := make([]string, len(s.labels))
		for i, l := range s.labels {
			values[i] = l.value
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, s.value, values...)
	}
}

// oracleEvents is a seeded random agent's life: sites and control targets, names with
// characters the text format escapes, RTTs in every bucket, exactly on bounds and above
// the last, failures of every reason, state changes, kind changes, the agent isolated.
func oracleEvents(seed uint64, n int) []agent.Event {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sites := []string{"", "alpha", "beta", `quo"te`, `back\slash`, "new\nline", "서울"}
	names := []string{"web", "gw", `a"b`, `c\d`, "e\nf", "dns-1", "x", "ping 2", `\"` + "\n"}
	kinds := []probes.Kind{probes.KindICMP, probes.KindHTTP, probes.KindDNS, probes.KindTCP}
	now := time.Unix(1795000000, 123456789)
	type tgt struct {
		site, name string
		kind       probes.Kind
	}
	var targets []tgt
	for _, s := range sites {
		for _, name := range names {
			if rnd.IntN(3) > 0 {
				targets = append(targets, tgt{s, name, kinds[rnd.IntN(len(kinds))]})
			}
		}
	}
	rtt := func() time.Duration {
		switch rnd.IntN(4) {
		case 0: // exactly on a bound
			return time.Duration(probeDurationBuckets[rnd.IntN(nBuckets)] * 1e9)
		case 1: // above the last bound
			return 5*time.Second + time.Duration(rnd.Int64N(5e9))
		default: // anywhere, log-uniform from 1 µs to 5 s
			return time.Duration(1e3 * math.Pow(10, rnd.Float64()*6.7))
		}
	}
	var evs []agent.Event
	var lateness agent.SchedulerReport
	for i := 0; i < n; i++ {
		now = now.Add(time.Duration(rnd.IntN(50)) * time.Millisecond)
		t := &targets[rnd.IntN(len(targets))]
		ev := agent.Event{Time: now, Agent: "edge1", Site: t.site, Target: t.name, Kind: t.kind}
		switch x := rnd.IntN(100); {
		case x < 60:
			ev.Type = agent.EventProbe
			ev.Result = probes.Result{Start: now, OK: true, RTT: rtt(),
				Phases: probes.Phases{Resolve: time.Duration(rnd.IntN(1e6)), Connect: time.Duration(rnd.IntN(1e6)),
					TLS: time.Duration(rnd.IntN(1e6)), Processing: time.Duration(rnd.IntN(1e7)), Transfer: time.Duration(rnd.IntN(1e5))}}
			if t.kind == probes.KindHTTP || t.kind == probes.KindTCP && rnd.IntN(2) == 0 {
				// A handshake's certificate expiry, also before the Unix epoch.
				ev.Result.CertExpiry = now.Add(time.Duration(rnd.Int64N(2*365*24)-24*365*60) * time.Hour)
			}
		case x < 85:
			ev.Type = agent.EventProbe
			reason := probes.ReasonTimeout
			if rnd.IntN(2) == 0 {
				reason = probes.Reasons[rnd.IntN(len(probes.Reasons))]
			}
			ev.Result = probes.Result{Start: now, RTT: time.Second, Reason: reason, Detail: "x"}
			ev.Inconclusive = reason == probes.ReasonTimeout && rnd.IntN(4) == 0
			if reason == probes.ReasonStatus && t.kind == probes.KindHTTP {
				ev.Result.CertExpiry = now.Add(time.Duration(rnd.Int64N(1e6)) * time.Second) // a handshake, then a wrong status
			}
		case x < 93:
			ev.Type = agent.EventTarget
			ev.To = []string{agent.TargetUp, agent.TargetSuspect, agent.TargetDown, agent.TargetUnknown}[rnd.IntN(4)]
		case x < 96:
			ev = agent.Event{Type: agent.EventSite, Time: now, Agent: "edge1", Site: t.site,
				To:     []string{agent.SiteUp, agent.SiteDegraded, agent.SiteDown, agent.SiteUnknown}[rnd.IntN(4)],
				Detect: time.Duration(rnd.IntN(1e9))}
			if t.site == "" {
				ev.Site = "alpha"
			}
		case x < 97:
			ev = agent.Event{Type: agent.EventAgent, Time: now, Agent: "edge1",
				To: []string{agent.AgentOK, agent.AgentIsolated}[rnd.IntN(2)]}
		case x < 98 && rnd.IntN(2) == 0:
			ev = agent.Event{Type: agent.EventImpaired, Time: now, Agent: "edge1",
				To: []string{agent.AgentOK, agent.AgentImpaired}[rnd.IntN(2)]}
		case x < 98:
			// The agent's totals grow: samples in random buckets, beyond the last too.
			for ev := range agent.NumLatenessEvents {
				h := &lateness.Histograms[ev]
				for range rnd.IntN(20) {
					d := time.Duration(1e3 * math.Pow(10, rnd.Float64()*6.5))
					h.Count++
					h.Sum += d
					for i, le := range agent.LatenessBuckets {
						if d <= le {
							h.Buckets[i]++
							break
						}
					}
				}
			}
			lateness.Inconclusive += uint64(rnd.IntN(3))
			lateness.Workers = rnd.IntN(100)
			report := lateness
			ev = agent.Event{Type: agent.EventScheduler, Time: now, Agent: "edge1", Scheduler: &report}
		default: // a reload changes the target's kind; its old series stay
			t.kind = kinds[rnd.IntN(len(kinds))]
			ev.Kind = t.kind
			ev.Type, ev.To = agent.EventTarget, agent.TargetUnknown
		}
		evs = append(evs, ev)
	}
	return evs
}

// ownFamilies are the families the exporter writes itself.
var ownFamilies = []string{famImpaired, famIsolated, famFailures, famInconclusive, famLateness, famWorkers, famDetect, famState,
	famSince, famReason, famUp, famDuration, famHTTP, famCert, famSuccess}

func parsePage(t *testing.T, what string, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", what, err)
	}
	return families
}

// canonical renders a family's series one per line, sorted, with every label, value,
// bucket bound and count, sum and count.
func canonical(mf *dto.MetricFamily) []string {
	var out []string
	for _, m := range mf.GetMetric() {
		var b strings.Builder
		labels := slices.Clone(m.GetLabel())
		sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
		for _, l := range labels {
			fmt.Fprintf(&b, "%s=%q,", l.GetName(), l.GetValue())
		}
		switch {
		case m.Gauge != nil:
			fmt.Fprintf(&b, " gauge %v", m.Gauge.GetValue())
		case m.Counter != nil:
			fmt.Fprintf(&b, " counter %v", m.Counter.GetValue())
		case m.Histogram != nil:
			h := m.Histogram
			fmt.Fprintf(&b, " histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
			for _, bk := range h.GetBucket() {
				fmt.Fprintf(&b, " %v:%d", bk.GetUpperBound(), bk.GetCumulativeCount())
			}
		default:
			fmt.Fprintf(&b, " untyped %v", m.GetUntyped().GetValue())
		}
		out = append(out, b.String())
	}
	sort.Strings(out)
	return out
}

// TestPrometheusPageOracle feeds the same events to the exporter and to the former
// client_golang exporter and requires the same families, series and values.
func TestPrometheusPageOracle(t *testing.T) {
	labels := map[string]string{"region": "kr", "aaa": "first", "zone": "a\"b\\c\nd", "pz": "between phase and reason"}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			p, err := NewPrometheus(config.PrometheusConfig{Listen: "127.0.0.1:0"}, "edge1", labels, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			go p.server.Serve(p.listener)
			ref := newRefExporter(t, "edge1", labels)
			evs := oracleEvents(seed, 5000)
			for i, ev := range evs {
				p.Handle(ev)
				ref.Handle(ev)
				if i == len(evs)/2 {
					comparePages(t, p, ref, 100) // mid-way too: series appear over time
				}
			}
			comparePages(t, p, ref, 500)
			// Every family the exporter writes itself took part.
			page := parsePage(t, "/metrics", scrape(t, http.DefaultClient, "http://"+p.Addr()+"/metrics"))
			for _, name := range ownFamilies {
				if len(page[name].GetMetric()) == 0 {
					t.Errorf("family %s has no series after %d events", name, len(evs))
				}
			}
		})
	}
}

func comparePages(t *testing.T, p *Prometheus, ref *refExporter, minSeries int) {
	t.Helper()
	url := "http://" + p.Addr() + "/metrics"
	body := scrape(t, http.DefaultClient, url) // gzip, decompressed by the transport
	plain := scrapeEncoding(t, url, "identity")
	zipped := scrapeEncoding(t, url, "gzip")
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatalf("gzip page: %v", err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip page: %v", err)
	}
	// The Go and process collectors' values move between scrapes; compare our families.
	pick := func(b []byte) string {
		var keep []string
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if !strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "process_") && !strings.Contains(line, " go_") && !strings.Contains(line, " process_") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "")
	}
	if pick(plain) != pick(unzipped) || pick(plain) != pick(body) {
		t.Errorf("gzip and identity pages differ")
	}
	got := parsePage(t, "/metrics", body)
	want := parsePage(t, "reference page", ref.page(t))
	for name := range got {
		if want[name] == nil && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && name != "edgeprobe_build_info" {
			t.Errorf("family %s on the page, not in the reference", name)
		}
	}
	series := 0
	for _, name := range ownFamilies {
		w, g := want[name], got[name]
		if (w == nil) != (g == nil) {
			t.Errorf("family %s: on the page %v, in the reference %v", name, g != nil, w != nil)
			continue
		}
		if w == nil {
			continue
		}
		if g.GetHelp() != w.GetHelp() || g.GetType() != w.GetType() {
			t.Errorf("family %s: help %q type %v, want %q %v", name, g.GetHelp(), g.GetType(), w.GetHelp(), w.GetType())
		}
		gs, ws := canonical(g), canonical(w)
		series += len(ws)
		if !slices.Equal(gs, ws) {
			for i := 0; i < len(gs) || i < len(ws); i++ {
				var a, b string
				if i < len(gs) {
					a = gs[i]
				}
				if i < len(ws) {
					b = ws[i]
				}
				if a != b {
					t.Errorf("family %s, series %d of %d/%d:\n got  %s\n want %s", name, i, len(gs), len(ws), a, b)
					break
				}
			}
		}
	}
	if series < minSeries {
		t.Errorf("only %d series compared; the event mix is too thin to mean much", series)
	}
	promtoolCheckMetrics(t, body)
}

func scrapeEncoding(t *testing.T, url, encoding string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", encoding)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if ce, want := resp.Header.Get("Content-Encoding"), map[string]string{"gzip": "gzip"}[encoding]; ce != want {
		t.Errorf("Accept-Encoding %s: Content-Encoding %q, want %q", encoding, ce, want)
	}
	return body
}

// TestPrometheusScrapeConcurrent scrapes while several goroutines add targets and handle
// results (run it with -race): every page parses, has no series twice, and the last one
// counts every probe result.
func TestPrometheusScrapeConcurrent(t *testing.T) {
	p := startPrometheus(t, config.PrometheusConfig{})
	url := "http://" + p.Addr() + "/metrics"
	const writers, perWriter = 4, 3000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				ev := agent.Event{Type: agent.EventProbe, Time: time.Now(), Agent: "edge1",
					Site: fmt.Sprintf("s%d", i%7), Target: fmt.Sprintf("w%d-t%d", w, i%300), Kind: probes.KindICMP,
					Result: probes.Result{OK: i%5 != 0, RTT: time.Duration(i) * time.Microsecond, Reason: probes.ReasonTimeout}}
				if i%5 == 0 && i%10 == 0 {
					ev.Result.Reason = probes.ReasonRefused
				}
				if i%997 == 0 {
					ev.Kind = probes.KindTCP
				}
				p.Handle(ev)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	check := func(body []byte) (probesSeen float64) {
		families := parsePage(t, "/metrics", body)
		for _, name := range []string{famDuration, famFailures, famSuccess} {
			seen := map[string]bool{}
			for _, s := range canonicalLabels(families[name]) {
				if seen[s] {
					t.Fatalf("%s: series %s twice", name, s)
				}
				seen[s] = true
			}
		}
		for _, m := range families[famDuration].GetMetric() {
			probesSeen += float64(m.GetHistogram().GetSampleCount())
		}
		for _, m := range families[famFailures].GetMetric() {
			probesSeen += m.GetCounter().GetValue()
		}
		return probesSeen
	}
	var sg sync.WaitGroup
	for range 2 {
		sg.Add(1)
		go func() {
			defer sg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				check(scrapeNoFatal(t, url))
			}
		}()
	}
	sg.Wait()
	<-done
	if got := check(scrape(t, http.DefaultClient, url)); got != writers*perWriter {
		t.Errorf("the page counts %v probe results, %d were handled", got, writers*perWriter)
	}
}

func scrapeNoFatal(t *testing.T, url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return b
}

func canonicalLabels(mf *dto.MetricFamily) []string {
	var out []string
	for _, m := range mf.GetMetric() {
		var b strings.Builder
		for _, l := range m.GetLabel() {
			fmt.Fprintf(&b, "%s=%q,", l.GetName(), l.GetValue())
		}
		out = append(out, b.String())
	}
	return out
}

// TestPrometheusScrapeAllocs: a scrape's allocations do not grow with the targets.
func TestPrometheusScrapeAllocs(t *testing.T) {
	testkit.SkipShort(t, "measures a scrape's allocations at 10 and 1000 targets")
	allocs := func(n int) float64 {
		p, err := NewPrometheus(config.PrometheusConfig{Listen: "127.0.0.1:0"}, "edge1", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		warm(p, benchTargets(10, n))
		req, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		serve := func() { p.server.Handler.ServeHTTP(&discardResponse{header: http.Header{}}, req) }
		serve()
		return testing.AllocsPerRun(5, serve)
	}
	small, large := allocs(100), allocs(2000)
	t.Logf("allocations per scrape: %v at 100 targets, %v at 2000", small, large)
	if large > small*1.1+20 {
		t.Errorf("a scrape of 2000 targets allocates %v times, of 100 targets %v: it grows with the series", large, small)
	}
}

// TestPrometheusPageInvalidUTF8: a name that is not UTF-8 (client_golang panicked on it)
// is written with U+FFFD, and the page still parses and lints.
func TestPrometheusPageInvalidUTF8(t *testing.T) {
	p := startPrometheus(t, config.PrometheusConfig{})
	p.Handle(agent.Event{Type: agent.EventProbe, Time: time.Now(), Agent: "edge1", Site: "s\xff", Target: "t\xc3",
		Kind: probes.KindICMP, Result: probes.Result{OK: true, RTT: time.Millisecond}})
	body := scrape(t, http.DefaultClient, "http://"+p.Addr()+"/metrics")
	m := findMetric(t, parsePage(t, "/metrics", body), famSuccess, map[string]string{"site": "s\uFFFD", "target": "t\uFFFD"})
	if metricValue(m) != 1 {
		t.Errorf("probe_success = %v, want 1", metricValue(m))
	}
	promtoolCheckMetrics(t, body)
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                       false,
		"gzip":                   true,
		"GZIP":                   true,
		"identity":               false,
		"br, gzip;q=0.5":         true,
		"gzip;q=0, identity":     false,
		"gzip; q=0.0":            false,
		"deflate , gzip ;q=1.0 ": true,
		"x-gzip":                 false,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
