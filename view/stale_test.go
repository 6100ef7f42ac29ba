package view

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// staleSite is the series an agent sends once for a site a reload removed: every series
// of it with the staleness marker (docs/architecture.md, "The push contract").
func staleSite(agent, site string, at time.Time) []*prompb.TimeSeries {
	stale := math.Float64frombits(contract.StaleNaN)
	var out []*prompb.TimeSeries
	for _, st := range contract.SiteStates {
		out = append(out, series(contract.MetricSiteState, stale, at, "agent", agent, "site", site, "state", st))
	}
	return append(out,
		series(contract.MetricSiteStateChange, stale, at, "agent", agent, "site", site),
		series(contract.MetricSiteDetect, stale, at, "agent", agent, "site", site))
}

// TestStaleMarkersAreNoState: a NaN state sample is no state. A site whose series end
// with the staleness marker leaves the agent's report, also when it was the push's only
// site, and the view stops counting the agent as its witness.
func TestStaleMarkersAreNoState(t *testing.T) {
	at := time.UnixMilli(time.Now().UnixMilli())
	push := agentPush{agent: "edge1", interval: 1, sites: map[string]string{"seoul": "up"}, at: at}
	ts := append(push.series(), staleSite("edge1", "pangyo", at)...)
	reports, err := DecodeWrite(encodeWrite(t, ts...), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || len(reports[0].Sites) != 1 || reports[0].Sites["seoul"].State != "up" {
		t.Errorf("reports %+v: want edge1 with seoul up and no pangyo", reports)
	}

	only := append(agentPush{agent: "edge1", interval: 1, at: at}.series(), staleSite("edge1", "pangyo", at)...)
	reports, err = DecodeWrite(encodeWrite(t, only...), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].Sites == nil || len(reports[0].Sites) != 0 {
		t.Errorf("reports %+v: want edge1 with an empty (not absent) site state", reports)
	}

	// A NaN beside the state at 1 is not a second state.
	mixed := encodeWrite(t,
		series(contract.MetricSiteState, math.NaN(), at, "agent", "edge1", "site", "pangyo", "state", "down"),
		series(contract.MetricSiteState, 1, at, "agent", "edge1", "site", "pangyo", "state", "up"))
	if reports, err = DecodeWrite(mixed, 1<<20); err != nil || reports[0].Sites["pangyo"].State != "up" {
		t.Errorf("NaN down beside up: %+v, %v; want pangyo up", reports, err)
	}

	base, _ := startView(t, &Config{})
	for _, a := range []string{"edge1", "edge2"} {
		p := agentPush{agent: a, interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up"}, at: at}
		if code := postWrite(t, base, "", encodePushes(t, p)); code != http.StatusNoContent {
			t.Fatalf("push of %s: %d", a, code)
		}
	}
	if s := siteView(t, base, "pangyo"); s.State != VerdictLost {
		t.Fatalf("pangyo %+v, want lost", s)
	}
	later := at.Add(100 * time.Millisecond)
	push = agentPush{agent: "edge1", interval: 1, sites: map[string]string{"seoul": "up"}, at: later}
	if code := postWrite(t, base, "", encodeWrite(t, append(push.series(), staleSite("edge1", "pangyo", later)...)...)); code != http.StatusNoContent {
		t.Fatalf("push with the staleness markers: %d", code)
	}
	s := siteView(t, base, "pangyo")
	if s.State != VerdictUnknown || s.Witnesses != 1 || len(s.Agents) != 1 || s.Agents[0].Name != "edge2" {
		t.Errorf("pangyo after edge1 ended its series: %+v; want unknown, reported by edge2 alone", s)
	}
}

func siteView(t *testing.T, base, name string) SiteView {
	t.Helper()
	for _, s := range getSites(t, base).Sites {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no site %s in /api/v1/sites", name)
	return SiteView{}
}
