package view

import (
	"bytes"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// agentPush describes one agent's push the way an edgeprobe agent sends it (see the push
// contract in README.md); tests turn it into real remote_write bytes.
type agentPush struct {
	agent    string
	isolated bool
	interval float64           // seconds; 0 leaves the series out
	sites    map[string]string // site -> up, degraded, down, unknown
	since    time.Time         // change timestamp of every site; zero leaves it out
	detect   float64           // detect seconds of every site
	at       time.Time         // sample timestamp
}

func series(name string, v float64, at time.Time, labels ...string) *prompb.TimeSeries {
	ls := []*prompb.Label{{Name: "__name__", Value: name}}
	for i := 0; i+1 < len(labels); i += 2 {
		ls = append(ls, &prompb.Label{Name: labels[i], Value: labels[i+1]})
	}
	return &prompb.TimeSeries{Labels: ls, Samples: []*prompb.Sample{{Value: v, Timestamp: at.UnixMilli()}}}
}

func (p agentPush) series() []*prompb.TimeSeries {
	at := p.at
	if at.IsZero() {
		at = time.Now()
	}
	iso := 0.0
	if p.isolated {
		iso = 1
	}
	out := []*prompb.TimeSeries{series(contract.MetricAgentIsolated, iso, at, "agent", p.agent)}
	if p.interval > 0 {
		out = append(out, series(contract.MetricPushInterval, p.interval, at, "agent", p.agent))
	}
	names := make([]string, 0, len(p.sites))
	for s := range p.sites {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, site := range names {
		for _, st := range []string{"up", "degraded", "down", "unknown"} {
			v := 0.0
			if st == p.sites[site] {
				v = 1
			}
			out = append(out, series(contract.MetricSiteState, v, at, "agent", p.agent, "site", site, "state", st))
		}
		if !p.since.IsZero() {
			out = append(out, series(contract.MetricSiteStateChange, float64(p.since.UnixNano())/1e9, at, "agent", p.agent, "site", site))
			out = append(out, series(contract.MetricSiteDetect, p.detect, at, "agent", p.agent, "site", site))
		}
		out = append(out, series("probe_success", 1, at, "agent", p.agent, "site", site, "target", "web", "kind", "http"))
	}
	return out
}

func encodeWrite(t testing.TB, ts ...*prompb.TimeSeries) []byte {
	t.Helper()
	raw, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
	if err != nil {
		t.Fatalf("marshal WriteRequest: %v", err)
	}
	return snappy.Encode(nil, raw)
}

func encodePushes(t testing.TB, pushes ...agentPush) []byte {
	t.Helper()
	var ts []*prompb.TimeSeries
	for _, p := range pushes {
		ts = append(ts, p.series()...)
	}
	return encodeWrite(t, ts...)
}

// setPushHeaders sets the headers of a remote_write 1.0 push, as exporters/remotewrite.go
// sends them.
func setPushHeaders(h http.Header) {
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("Content-Encoding", "snappy")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
}

// postWrite sends a body to a view's /api/v1/write as an agent would and returns the status.
func postWrite(t testing.TB, base, token string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	setPushHeaders(req.Header)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post to %s: %v", base, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
