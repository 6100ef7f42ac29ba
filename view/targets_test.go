package view

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// TestDecodeTargets: a push's target series become the report's targets, sorted by site
// and name whatever order they came in, each with what its series said; control targets
// (no site), targets without a name and NaNs (staleness markers) are left out.
func TestDecodeTargets(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	l := func(site, target, kind string) []string {
		return []string{"agent", "a", "site", site, "target", target, "kind", kind}
	}
	body := encodeWrite(t,
		series(contract.MetricTargetUp, 1, at, l("seoul", "web", "http")...),
		series(contract.MetricProbeSuccess, 1, at, l("seoul", "web", "http")...),
		series(contract.MetricProbeDuration, 0.0123, at, l("seoul", "web", "http")...),
		series(contract.MetricTargetFailureReason, 0, at, l("seoul", "web", "http")...),
		series(contract.MetricTargetUp, 0, at, l("pangyo", "ping", "icmp")...),
		series(contract.MetricProbeSuccess, 0, at, l("pangyo", "ping", "icmp")...),
		series(contract.MetricProbeDuration, 0.25, at, l("pangyo", "ping", "icmp")...),
		series(contract.MetricTargetFailureReason, float64(contract.FailureReasonCode(contract.ReasonRefused)), at, l("pangyo", "ping", "icmp")...),
		series(contract.MetricTargetUp, 1, at, l("pangyo", "dns", "dns")...), // not probed yet
		series(contract.MetricProbeSuccess, 1, at, "agent", "a", "target", "gw", "kind", "icmp"),
		series(contract.MetricProbeSuccess, 1, at, "agent", "a", "site", "seoul", "kind", "icmp"),
		series(contract.MetricProbeSuccess, math.NaN(), at, l("seoul", "gone", "tcp")...),
	)
	reports, err := DecodeWrite(body, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := referenceDecode(body, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || !slices.Equal(reports[0].Targets, ref[0].Targets) {
		t.Fatalf("reports %+v, reference %+v", reports, ref)
	}
	var got []string
	for _, tr := range reports[0].Targets {
		v := tr.view()
		got = append(got, fmt.Sprintf("%s/%s %s up=%s ok=%s rtt=%s reason=%q", tr.Site.Value(), v.Name, v.Kind,
			str(v.Up), str(v.OK), str(v.RTTSeconds), v.Reason))
	}
	want := []string{
		`pangyo/dns dns up=true ok=- rtt=- reason=""`,
		`pangyo/ping icmp up=false ok=false rtt=0.25 reason="refused"`,
		`seoul/web http up=true ok=true rtt=0.0123 reason=""`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func str[T any](p *T) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// TestDecodeTargetsLimit: an agent cannot make the view keep more than
// maxTargetsPerAgent targets; the push is refused whole, saying why.
func TestDecodeTargetsLimit(t *testing.T) {
	at := time.Now()
	ps := make([]*prompb.TimeSeries, 0, maxTargetsPerAgent+1)
	for i := range maxTargetsPerAgent + 1 {
		ps = append(ps, series(contract.MetricProbeSuccess, 1, at, "agent", "a", "site", "s", "target", fmt.Sprintf("t%06d", i), "kind", "icmp"))
	}
	_, err := DecodeWrite(encodeWrite(t, ps...), 64<<20)
	var pe *pushError
	if !errors.As(err, &pe) || pe.reason != "bad_content" || !strings.Contains(err.Error(), fmt.Sprintf("more than %d targets", maxTargetsPerAgent)) {
		t.Fatalf("error %v, want bad_content naming the target limit", err)
	}
}

// TestSiteTargetsAPI: GET /api/v1/sites/{site} gives the verdict and every agent's
// targets at the site with the failure reason; an unknown site is 404, and with
// read_tokens the endpoint needs one.
func TestSiteTargetsAPI(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadTokens = []string{"reader-secret"}
	base, _ := startView(t, cfg)
	at := time.Now()
	var pushes []agentPush
	for _, a := range []string{"edge1", "edge2", "edge3"} {
		pushes = append(pushes, agentPush{agent: a, interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up"}, since: at, at: at, targets: 2})
	}
	if code := postWrite(t, base, "", encodePushes(t, pushes...)); code != 204 {
		t.Fatalf("push: %d", code)
	}
	get := func(path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get("/api/v1/sites/pangyo", ""); code != http.StatusUnauthorized {
		t.Errorf("without a read token: %d, want 401", code)
	}
	if code, body := get("/api/v1/sites/"+url.PathEscape("no/such site"), "reader-secret"); code != http.StatusNotFound || !strings.Contains(string(body), `"no/such site"`) {
		t.Errorf("unknown site: %d %s, want 404 naming it", code, body)
	}
	code, body := get("/api/v1/sites/pangyo", "reader-secret")
	if code != 200 {
		t.Fatalf("GET /api/v1/sites/pangyo: %d %s", code, body)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["name"] != "pangyo" || doc["state"] != VerdictLost || doc["silenced"] != false {
		t.Errorf("site %s: want pangyo, lost, not silenced", body)
	}
	agents, _ := doc["agents"].([]any)
	if len(agents) != 3 {
		t.Fatalf("agents %v, want 3", doc["agents"])
	}
	a := agents[0].(map[string]any)
	if a["name"] != "edge1" || a["state"] != "down" {
		t.Errorf("first agent %v, want edge1 down", a)
	}
	targets, _ := a["targets"].([]any)
	if len(targets) != 2 {
		t.Fatalf("edge1's targets %v, want t0-icmp and t1-http", a["targets"])
	}
	want := map[string]any{"name": "t0-icmp", "kind": "icmp", "up": false, "ok": false, "rtt_seconds": 0.25, "reason": "timeout"}
	if got := targets[0].(map[string]any); !maps.Equal(got, want) {
		t.Errorf("target %v, want %v", got, want)
	}
	// A site that is up: targets carry no reason.
	_, body = get("/api/v1/sites/seoul", "reader-secret")
	if !strings.Contains(string(body), `{"name":"t1-http","kind":"http","up":true,"ok":true,"rtt_seconds":0.0015}`) {
		t.Errorf("seoul %s: want t1-http up, ok, 1.5 ms, no reason", body)
	}
}

// BenchmarkTargetMemory measures what the view's heap holds per target: 10,000 agents
// each reporting 20 sites of 2 targets (400,000 targets, the scale the view is sized for),
// decoded as pushes, applied, then measured with their targets and without.
// go test -run '^$' -bench TargetMemory -benchtime 1x ./view/
func BenchmarkTargetMemory(b *testing.B) {
	const agents = 10000
	at := time.Now()
	reports, err := DecodeWrite(encodePushes(b, agentPush{agent: "edge00000", interval: 1, sites: benchSites(), since: at, at: at, targets: 2}), 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := reports[0]
	perAgent := len(tmpl.Targets)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perTarget, engineMiB float64
	for b.Loop() {
		before := heap()
		e := NewEngine(DefaultConfig())
		for i := range agents {
			// What DecodeWrite gives for each agent: its own sites map and targets slice;
			// the names are the same handles, as interning makes them.
			r := tmpl
			r.Agent = fmt.Sprintf("edge%05d", i)
			r.Sites = maps.Clone(tmpl.Sites)
			r.Targets = slices.Clone(tmpl.Targets)
			e.Apply([]AgentReport{r}, at)
		}
		with := heap()
		e.mu.Lock()
		for _, a := range e.agents {
			a.targets = nil
		}
		e.mu.Unlock()
		without := heap()
		perTarget = float64(with-without) / float64(agents*perAgent)
		engineMiB = float64(with-before) / (1 << 20)
		runtime.KeepAlive(e)
	}
	b.ReportMetric(perTarget, "B/target")
	b.ReportMetric(engineMiB, "MiB/engine")
	b.ReportMetric(float64(unsafe.Sizeof(TargetReport{})), "B/struct")
}
