package prometheus_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/view"
)

// tee is the one remote_write receiver the agents of a test push to: it hands every push
// to the view's engine (decoded as the view decodes it, applied at its arrival) and
// forwards the same bytes to every backend, answering once all have answered. So the
// view and both rule engines judge exactly the same pushes.
type tee struct {
	t        *testing.T
	srv      *httptest.Server
	backends []*backend
	client   *http.Client

	mu      sync.Mutex
	engine  *view.Engine
	changes []view.Change
	pushes  int
	errs    []string
}

func newTee(t *testing.T, cfg *view.Config, backends []*backend) *tee {
	tt := &tee{t: t, backends: backends, engine: view.NewEngine(cfg),
		client: &http.Client{Timeout: 10 * time.Second}}
	tt.srv = httptest.NewServer(tt)
	t.Cleanup(tt.srv.Close)
	return tt
}

func (tt *tee) URL() string { return tt.srv.URL + "/api/v1/write" }

func (tt *tee) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	reports, err := view.DecodeWrite(body, 4<<20)
	tt.mu.Lock()
	tt.pushes++
	if err != nil {
		tt.errs = append(tt.errs, fmt.Sprintf("view refused a push: %v", err))
	} else {
		changes, _ := tt.engine.Apply(reports, now)
		tt.changes = append(tt.changes, changes...)
	}
	tt.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range tt.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, b.write, bytes.NewReader(body))
			for _, h := range []string{"Content-Type", "Content-Encoding", "X-Prometheus-Remote-Write-Version"} {
				req.Header.Set(h, r.Header.Get(h))
			}
			resp, err := tt.client.Do(req)
			if err == nil {
				msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
				}
			}
			if err != nil {
				tt.mu.Lock()
				tt.errs = append(tt.errs, fmt.Sprintf("%s refused a push: %v", b.name, err))
				tt.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	w.WriteHeader(http.StatusNoContent)
}

// viewVerdicts is the engine's verdict per site, after taking out the agents that went
// stale by now (the view's expiry timer).
func (tt *tee) viewVerdicts(now time.Time) map[string]string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.changes = append(tt.changes, tt.engine.Expire(now)...)
	out := map[string]string{}
	for _, s := range tt.engine.Sites(now) {
		out[s.Name] = s.State
	}
	return out
}

// lastChange is the time of the engine's last change of site to verdict after since.
func (tt *tee) lastChange(site, verdict string, since time.Time) (time.Time, bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for i := len(tt.changes) - 1; i >= 0; i-- {
		c := tt.changes[i]
		if c.Site == site && c.To == verdict && !c.Time.Before(since) {
			return c.Time, true
		}
	}
	return time.Time{}, false
}

func (tt *tee) errors() []string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return slices.Clone(tt.errs)
}

// simAgent is an agent of a scenario: its whole state, pushed as the agents' exporter
// pushes it (the push contract, docs/architecture.md): the agent-wide series and each site's
// state set, every series carrying the agent's name and labels, every sample one time.
type simAgent struct {
	name     string
	labels   map[string]string
	isolated bool
	impaired bool
	sites    map[string]string
	since    map[string]time.Time
	lastMs   int64
}

func (a *simAgent) encode(now time.Time) []byte {
	ms := now.UnixMilli()
	if ms <= a.lastMs {
		ms = a.lastMs + 1
	}
	a.lastMs = ms
	req := &prompb.WriteRequest{}
	add := func(value float64, pairs ...string) {
		ls := []*prompb.Label{{Name: contract.LabelAgent, Value: a.name}}
		for k, v := range a.labels {
			ls = append(ls, &prompb.Label{Name: k, Value: v})
		}
		for i := 0; i+1 < len(pairs); i += 2 {
			ls = append(ls, &prompb.Label{Name: pairs[i], Value: pairs[i+1]})
		}
		sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
		req.Timeseries = append(req.Timeseries, &prompb.TimeSeries{Labels: ls, Samples: []*prompb.Sample{{Value: value, Timestamp: ms}}})
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	add(b2f(a.isolated), contract.LabelName, contract.MetricAgentIsolated)
	add(b2f(a.impaired), contract.LabelName, contract.MetricAgentImpaired)
	add(1, contract.LabelName, contract.MetricPushInterval)
	var sites []string
	for s := range a.sites {
		sites = append(sites, s)
	}
	sort.Strings(sites)
	for _, s := range sites {
		for _, st := range contract.SiteStates {
			add(b2f(a.sites[s] == st), contract.LabelName, contract.MetricSiteState, contract.LabelSite, s, contract.LabelState, st)
		}
		add(float64(a.since[s].UnixNano())/1e9, contract.LabelName, contract.MetricSiteStateChange, contract.LabelSite, s)
		add(0.3, contract.LabelName, contract.MetricSiteDetect, contract.LabelSite, s)
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		panic(err) // plain strings and floats: only a bug gets here
	}
	return snappy.Encode(nil, raw)
}

// push sends the agent's state to url.
func (a *simAgent) push(client *http.Client, url string, now time.Time) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(a.encode(now)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push of %s: %s", a.name, resp.Status)
	}
	return nil
}

// siteRE matches the sites of a test (named prefix-...).
func siteRE(prefix string) string { return prefix + "-.*" }
