package view

import (
	"bytes"
	"fmt"
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
	labels   []string          // the agent's own labels, name and value pairs
	impaired bool
	// targets per site, pushed as the agent does (after the sites, by site and name):
	// t0-icmp, t1-http, ...; up with a 1.5 ms RTT at an up site, down by timeout at a
	// down one. 0 pushes one probe_success per site instead.
	targets int
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
	out := []*prompb.TimeSeries{series(contract.MetricAgentIsolated, iso, at, append([]string{"agent", p.agent}, p.labels...)...)}
	if p.impaired {
		out = append(out, series(contract.MetricAgentImpaired, 1, at, "agent", p.agent))
	}
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
		if p.targets == 0 {
			out = append(out, series("probe_success", 1, at, "agent", p.agent, "site", site, "target", "web", "kind", "http"))
		}
	}
	for _, site := range names {
		for k := range p.targets {
			name, kind := fmt.Sprintf("t%d-icmp", k), "icmp"
			if k%2 == 1 {
				name, kind = fmt.Sprintf("t%d-http", k), "http"
			}
			up, rtt, reason := 1.0, 0.0015, 0.0
			if p.sites[site] == "down" {
				up, rtt, reason = 0, 0.25, float64(contract.FailureReasonCode(contract.ReasonTimeout))
			}
			l := []string{"agent", p.agent, "kind", kind, "site", site, "target", name}
			out = append(out,
				series(contract.MetricTargetUp, up, at, l...),
				series(contract.MetricProbeSuccess, up, at, l...),
				series(contract.MetricProbeDuration, rtt, at, l...),
				series(contract.MetricTargetFailureReason, reason, at, l...))
		}
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

// postWrite sends a body to a view's /api/v1/write as an agent would and returns the status.
func postWrite(t testing.TB, base, token string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
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
