package exporters

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/probes"
)

// The per-probe path of every sink: the agent calls Handle once per probe result (1000
// targets at 1 s is 1000 calls a second per sink), so each must cost nanoseconds and
// allocate nothing. Run them with
//
//	go test -run '^$' -bench . -benchmem ./exporters/

// benchTargets are nTargets probe events spread over nSites sites, as the agent emits them.
func benchTargets(nSites, nTargets int) []agent.Event {
	kinds := []probes.Kind{probes.KindICMP, probes.KindDNS, probes.KindHTTP, probes.KindTCP}
	now := time.Now()
	evs := make([]agent.Event, nTargets)
	for i := range evs {
		evs[i] = agent.Event{
			Type: agent.EventProbe, Time: now, Agent: "edge-seoul-01",
			Site:   "site-" + strconv.Itoa(i%nSites),
			Target: "target-" + strconv.Itoa(i),
			Kind:   kinds[i%len(kinds)],
			Result: probes.Result{OK: true, RTT: time.Duration(300+i) * time.Microsecond},
		}
	}
	return evs
}

// warm gives a sink the first event of every target and its first state, as the agent
// does before the steady state the benchmarks measure.
func warm(s agent.Sink, evs []agent.Event) {
	sites := map[string]bool{}
	for _, ev := range evs {
		s.Handle(ev)
		ch := ev
		ch.Type, ch.From, ch.To = agent.EventTarget, agent.TargetUnknown, agent.TargetUp
		s.Handle(ch)
		if !sites[ev.Site] {
			sites[ev.Site] = true
			s.Handle(agent.Event{Type: agent.EventSite, Time: ev.Time, Agent: ev.Agent, Site: ev.Site,
				From: agent.SiteUnknown, To: agent.SiteUp})
		}
	}
}

// benchProbes handles probe events round-robin over the targets; every 10th fails.
func benchProbes(b *testing.B, s agent.Sink, evs []agent.Event) {
	b.Helper()
	warm(s, evs)
	fail := probes.Result{OK: false, RTT: 200 * time.Millisecond, Reason: probes.ReasonTimeout, Detail: "no answer"}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ev := evs[i%len(evs)]
		if i%10 == 9 {
			ev.Result = fail
		}
		ev.Time = ev.Time.Add(time.Duration(i) * time.Millisecond)
		s.Handle(ev)
		i++
	}
}

// benchChanges handles target state changes, up and down in turn.
func benchChanges(b *testing.B, s agent.Sink, evs []agent.Event) {
	b.Helper()
	warm(s, evs)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ev := evs[i%len(evs)]
		ev.Type, ev.From, ev.To, ev.Reason, ev.Detect = agent.EventTarget, agent.TargetUp, agent.TargetDown, probes.ReasonTimeout, 310*time.Millisecond
		if (i/len(evs))%2 == 1 {
			ev.From, ev.To, ev.Reason = agent.TargetDown, agent.TargetUp, ""
		}
		s.Handle(ev)
		i++
	}
}

func newBenchPrometheus(b *testing.B) *Prometheus {
	p, err := NewPrometheus(config.PrometheusConfig{Listen: "127.0.0.1:0"}, "edge-seoul-01", map[string]string{"region": "kr"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

func newBenchStdout(b *testing.B, format, results string) *Stdout {
	s, err := NewStdout(io.Discard, config.StdoutConfig{Format: format, Results: results, Summary: config.Duration{Duration: 10 * time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func newBenchRemoteWrite(b *testing.B) *RemoteWrite {
	rw, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/"}, "", "edge-seoul-01", map[string]string{"region": "kr"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return rw
}

func BenchmarkPrometheusProbe(b *testing.B) {
	benchProbes(b, newBenchPrometheus(b), benchTargets(20, 1000))
}

func BenchmarkPrometheusChange(b *testing.B) {
	benchChanges(b, newBenchPrometheus(b), benchTargets(20, 1000))
}

func BenchmarkStdoutProbe(b *testing.B) {
	for _, format := range []string{config.FormatJSON, config.FormatText} {
		for _, results := range []string{config.ResultsChanges, config.ResultsAll} {
			b.Run(format+"/"+results, func(b *testing.B) {
				benchProbes(b, newBenchStdout(b, format, results), benchTargets(20, 1000))
			})
		}
	}
}

func BenchmarkStdoutChange(b *testing.B) {
	for _, format := range []string{config.FormatJSON, config.FormatText} {
		b.Run(format, func(b *testing.B) {
			benchChanges(b, newBenchStdout(b, format, config.ResultsChanges), benchTargets(20, 1000))
		})
	}
}

func BenchmarkRemoteWriteProbe(b *testing.B) {
	benchProbes(b, newBenchRemoteWrite(b), benchTargets(20, 1000))
}

// BenchmarkRemoteWriteChange is Handle of a state change; the push it asks for is
// BenchmarkSnapshot1000's work, done on Run's goroutine.
func BenchmarkRemoteWriteChange(b *testing.B) {
	benchChanges(b, newBenchRemoteWrite(b), benchTargets(20, 1000))
}

// BenchmarkSnapshot1000 is one push of an agent watching 1000 targets in 20 sites:
// encode (protobuf) and compress (snappy), as Run does every push interval and on every
// state change. bytes/push is what goes on the wire and into the spool.
func BenchmarkSnapshot1000(b *testing.B) {
	rw := newBenchRemoteWrite(b)
	warm(rw, benchTargets(20, 1000))
	// The first snapshot encodes every series' labels once; the steady state reuses them.
	payload, err := rw.encode(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if payload, err = rw.encode(time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(payload)), "bytes/push")
	b.ReportMetric(float64(len(rw.enc.raw)), "raw-bytes/push")
	b.ReportMetric(float64(len(rw.enc.series)), "series/push")
}

// discardResponse is an http.ResponseWriter that counts the body and keeps nothing.
type discardResponse struct {
	header http.Header
	n      int
	status int
}

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) WriteHeader(status int)      { d.status = status }
func (d *discardResponse) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// BenchmarkPrometheusScrape1000 is one scrape of /metrics of an agent watching 1000
// targets in 20 sites (the handler alone, gzip as Prometheus asks for it, no network).
// page-bytes is the uncompressed page, gzip-bytes what goes on the wire.
func BenchmarkPrometheusScrape1000(b *testing.B) {
	p := newBenchPrometheus(b)
	evs := benchTargets(20, 1000)
	warm(p, evs)
	fail := probes.Result{OK: false, RTT: 200 * time.Millisecond, Reason: probes.ReasonTimeout}
	for i, ev := range evs {
		if i%10 == 9 {
			ev.Result = fail
		}
		p.Handle(ev)
	}
	handler := p.server.Handler
	serve := func(gzip bool) *discardResponse {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		w := &discardResponse{header: http.Header{}}
		handler.ServeHTTP(w, req)
		if w.status != 0 && w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
		return w
	}
	page := serve(false).n
	var w *discardResponse
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w = serve(true)
	}
	b.ReportMetric(float64(page), "page-bytes")
	b.ReportMetric(float64(w.n), "gzip-bytes")
}
