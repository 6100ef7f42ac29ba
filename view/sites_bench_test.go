package view

import (
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkSitesAnswer is one read of /api/v1/sites at the load of `make
// bench-view-load VIEW_AGENTS=10000`: 20,000 sites of 10 agents each (10,000 agents of 20
// sites), written to a discarding writer, with what the read costs per site.
func BenchmarkSitesAnswer(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Defaults()
	s, err := New(cfg, Options{Events: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	const agents, sitesPer, witnesses = 10000, 20, 10
	now := time.Now()
	for a := range agents {
		r := report(fmt.Sprintf("load%05d", a), false, nil)
		r.SampleTime = now
		group := a / witnesses
		for k := range sitesPer {
			r.Sites[fmt.Sprintf("g%04d-site%03d", group, k)] = SiteReport{State: "up", Detect: -1}
		}
		s.engine.Apply([]AgentReport{r}, now)
	}
	req := httptest.NewRequest("GET", "/api/v1/sites", nil)
	var bytes int
	for b.Loop() {
		w := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
		s.handleSites(w, req)
		bytes = w.n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(agents/witnesses*sitesPer), "ns/site")
	b.ReportMetric(float64(bytes)/1e6, "MB/answer")
}

type countingWriter struct {
	*httptest.ResponseRecorder
	n int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
