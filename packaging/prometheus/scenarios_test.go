package prometheus_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/packaging/prometheus"
	"github.com/edgeprobe/edgeprobe/view"
)

// scenario is one recorded sequence of agent states (testdata/scenarios/*.json): each
// step changes some agents and names the verdict every site must then have.
type scenario struct {
	Description string                `json:"description"`
	Quorum      int                   `json:"quorum"`    // 0: the default
	QuorumBy    string                `json:"quorum_by"` // selects the rule file generated for it
	Agents      map[string]agentPatch `json:"agents"`
	Steps       []struct {
		Name   string                `json:"name"`
		Agents map[string]agentPatch `json:"agents"`
		Want   map[string]string     `json:"want"`
	} `json:"steps"`
}

// agentPatch changes what it names: sites merge into the agent's sites; silent stops
// (true) or resumes (false) its pushes.
type agentPatch struct {
	Labels   map[string]string `json:"labels"`
	Sites    map[string]string `json:"sites"`
	Isolated *bool             `json:"isolated"`
	Impaired *bool             `json:"impaired"`
	Silent   *bool             `json:"silent"`
}

func loadScenarios(t *testing.T) map[string]*scenario {
	t.Helper()
	files, err := filepath.Glob("testdata/scenarios/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in testdata/scenarios: %v", err)
	}
	out := map[string]*scenario{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := &scenario{}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(sc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, st := range sc.Steps {
			for site, v := range st.Want {
				if !slices.Contains(view.Verdicts, v) {
					t.Fatalf("%s: step %d (%s): site %s: verdict %q is none of %v", f, i, st.Name, site, v, view.Verdicts)
				}
			}
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = sc
	}
	return out
}

// params are the view settings a scenario runs under.
func (sc *scenario) params() prometheus.Params {
	p := prometheus.DefaultParams()
	if sc.Quorum != 0 {
		p.Quorum = sc.Quorum
	}
	p.QuorumBy = sc.QuorumBy
	return p
}

func (sc *scenario) viewConfig() *view.Config {
	p := sc.params()
	c := view.DefaultConfig()
	c.Quorum = view.Quorum{N: p.Quorum}
	c.QuorumBy = p.QuorumBy
	c.MaxUpFraction = p.MaxUpFraction
	return c
}

// TestScenarioEngine plays every scenario into the view's engine alone (no rule
// engine needed): each step's verdicts are the view's, so the scenarios' expectations
// are the reference rule's and not a guess.
func TestScenarioEngine(t *testing.T) {
	for name, sc := range loadScenarios(t) {
		t.Run(name, func(t *testing.T) {
			e := view.NewEngine(sc.viewConfig())
			agents := newAgents(name, sc)
			now := time.Unix(1_800_000_000, 0)
			for i, st := range sc.Steps {
				agents.apply(st.Agents)
				// Four pushes a second apart, then the verdict: long enough for a
				// silent agent to go stale (3 push intervals), as in the live run.
				for range 4 {
					now = now.Add(time.Second)
					for _, a := range agents.live() {
						reports, err := view.DecodeWrite(a.encode(now), 4<<20)
						if err != nil {
							t.Fatal(err)
						}
						e.Apply(reports, now)
					}
					e.Expire(now)
				}
				got := map[string]string{}
				for _, s := range e.Sites(now) {
					got[s.Name] = s.State
				}
				if want := agents.qualify(st.Want); !maps.Equal(got, want) {
					t.Errorf("step %d (%s): view gives %v, the scenario says %v", i, st.Name, got, want)
				}
			}
		})
	}
}

// TestScenarios is the differential check (docs/architecture.md, "At scale: the same rule on
// a TSDB"): every scenario's pushes go, through one tee, to the view's engine, to
// Prometheus and to VictoriaMetrics with vmalert, each evaluating the rule file generated
// for the scenario's settings; after each step all three must give every site the
// step's verdict (within a bounded wait for the engines' evaluation step), the rules'
// alerts must agree with those verdicts, and at the end the recorded verdict state set
// must have summed to exactly 1 per site at every evaluation of both engines.
func TestScenarios(t *testing.T) {
	scenarios := loadScenarios(t)
	files := generatedFiles(t)
	for name, sc := range scenarios {
		t.Run(name, func(t *testing.T) {
			file := ""
			for _, g := range files {
				if g.params == sc.params() {
					file = g.file
				}
			}
			if file == "" {
				t.Fatalf("no generated rule file for %+v: add a go:generate line to rules.go", sc.params())
			}
			st := stackFor(t, file)
			t.Parallel()
			defer st.logTail(t)
			runScenario(t, name, sc, st)
		})
	}
}

// agents are a scenario's simAgents, their names prefixed with the scenario's so that
// scenarios can share the engines.
type agents struct {
	prefix string
	mu     sync.Mutex
	all    map[string]*simAgent
	silent map[string]bool
}

func newAgents(prefix string, sc *scenario) *agents {
	as := &agents{prefix: prefix, all: map[string]*simAgent{}, silent: map[string]bool{}}
	as.apply(sc.Agents)
	return as
}

func (as *agents) qualify(sites map[string]string) map[string]string {
	out := map[string]string{}
	for s, v := range sites {
		out[as.prefix+"-"+s] = v
	}
	return out
}

func (as *agents) apply(patch map[string]agentPatch) {
	as.mu.Lock()
	defer as.mu.Unlock()
	now := time.Now()
	for name, p := range patch {
		a := as.all[name]
		if a == nil {
			a = &simAgent{name: as.prefix + "-" + name, labels: map[string]string{}, sites: map[string]string{}, since: map[string]time.Time{}}
			as.all[name] = a
		}
		maps.Copy(a.labels, p.Labels)
		for s, st := range p.Sites {
			s = as.prefix + "-" + s
			if a.sites[s] != st {
				a.since[s] = now
			}
			a.sites[s] = st
		}
		if p.Isolated != nil {
			a.isolated = *p.Isolated
		}
		if p.Impaired != nil {
			a.impaired = *p.Impaired
		}
		if p.Silent != nil {
			as.silent[name] = *p.Silent
		}
	}
}

// live is the agents that push, in name order.
func (as *agents) live() []*simAgent {
	as.mu.Lock()
	defer as.mu.Unlock()
	var out []*simAgent
	for _, name := range slices.Sorted(maps.Keys(as.all)) {
		if !as.silent[name] {
			out = append(out, as.all[name])
		}
	}
	return out
}

// expectedAgentAlerts is the firing set of the isolated and impaired alerts: the
// agents that push and say so.
func (as *agents) expectedAgentAlerts() map[string]bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	out := map[string]bool{}
	for name, a := range as.all {
		if as.silent[name] {
			continue
		}
		if a.isolated {
			out[prometheus.AlertIsolated+"/"+a.name] = true
		}
		if a.impaired {
			out[prometheus.AlertImpaired+"/"+a.name] = true
		}
	}
	return out
}

// pushLoop pushes every live agent now and then once a second (the push interval the
// agents announce) until stop is closed.
func (as *agents) pushLoop(t *testing.T, url string, now <-chan struct{}, stop <-chan struct{}) {
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		as.mu.Lock() // one push round at a time, in order, like each agent's send loop
		for _, a := range as.liveLocked() {
			if err := a.push(client, url, time.Now()); err != nil {
				t.Errorf("push: %v", err)
			}
		}
		as.mu.Unlock()
		select {
		case <-stop:
			return
		case <-now:
			tick.Reset(time.Second)
		case <-tick.C:
		}
	}
}

func (as *agents) liveLocked() []*simAgent {
	var out []*simAgent
	for _, name := range slices.Sorted(maps.Keys(as.all)) {
		if !as.silent[name] {
			out = append(out, as.all[name])
		}
	}
	return out
}

// settleLimit bounds the wait for the engines to agree after a step: VictoriaMetrics
// makes a new series searchable some 10 s after its first sample, and a silent agent
// goes stale 3 s after its last push; the rest is one evaluation and a flush or two.
const settleLimit = 45 * time.Second

func runScenario(t *testing.T, name string, sc *scenario, st *stack) {
	tt := newTee(t, sc.viewConfig(), st.backends)
	as := newAgents(name, sc)
	now, stop, done := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go func() { defer close(done); as.pushLoop(t, tt.URL(), now, stop) }()
	defer func() { close(stop); <-done }()
	start := time.Now()
	for i, step := range sc.Steps {
		as.apply(step.Agents)
		select {
		case now <- struct{}{}:
		default:
		}
		want := as.qualify(step.Want)
		began := time.Now()
		if diffs := settle(tt, st, as.prefix, as.expectedAgentAlerts, want, settleLimit); len(diffs) > 0 {
			t.Fatalf("step %d (%s): after %v, want %v:\n  %s", i, step.Name, settleLimit, want, strings.Join(diffs, "\n  "))
		}
		t.Logf("step %d (%s): all agree after %v", i, step.Name, time.Since(began).Round(10*time.Millisecond))
	}
	if errs := tt.errors(); len(errs) > 0 {
		t.Errorf("pushes refused: %v", errs)
	}
	end := time.Now()
	for _, b := range st.backends {
		n, err := b.stateSetHolds(siteRE(name), start, end, view.Verdicts, settleLimit)
		if err != nil {
			t.Error(err)
		}
		t.Logf("%s: the verdict state set summed to 1 at each of %d site evaluations", b.name, n)
	}
}

// settle waits until the view and every backend give each site its wanted verdict and
// the rules' alerts agree with them, and returns what still differs at the limit.
func settle(tt *tee, st *stack, prefix string, agentAlerts func() map[string]bool, want map[string]string, limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	for {
		diffs := compareAll(tt, st, prefix, agentAlerts(), want)
		if len(diffs) == 0 || time.Now().After(deadline) {
			return diffs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// compareAll lists how the view's verdicts, the backends' recorded verdicts and the
// backends' firing alerts (of the agents and sites named prefix-...) differ from want and
// wantAlerts (the agents' firing alerts; the sites' follow from want).
func compareAll(tt *tee, st *stack, prefix string, wantAlerts map[string]bool, want map[string]string) []string {
	var diffs []string
	if got := tt.viewVerdicts(time.Now()); !maps.Equal(got, want) {
		diffs = append(diffs, fmt.Sprintf("view: %v", got))
	}
	for site, v := range want {
		switch v {
		case view.VerdictLost:
			wantAlerts[prometheus.AlertLost+"/"+site] = true
		case view.VerdictPartitioned:
			wantAlerts[prometheus.AlertPartitioned+"/"+site] = true
		}
	}
	for _, b := range st.backends {
		got, err := b.verdicts(siteRE(prefix))
		if err != nil {
			diffs = append(diffs, err.Error())
			continue
		}
		if !maps.Equal(got, want) {
			diffs = append(diffs, fmt.Sprintf("%s: %v", b.name, got))
		}
		firing, err := b.firing()
		if err != nil {
			diffs = append(diffs, err.Error())
			continue
		}
		var extra, missing []string
		for k := range firing {
			alertname, who, _ := strings.Cut(k, "/")
			if !strings.HasPrefix(who, prefix+"-") || alertname == prometheus.AlertSilent {
				continue
			}
			// The degraded alert waits 10 s before firing: it may fire only for a
			// site that is degraded, never for one that is up again.
			if alertname == prometheus.AlertDegraded {
				if want[who] != view.VerdictDegraded {
					extra = append(extra, k)
				}
				continue
			}
			if !wantAlerts[k] {
				extra = append(extra, k)
			}
		}
		for k := range wantAlerts {
			if !firing[k] {
				missing = append(missing, k)
			}
		}
		sort.Strings(extra)
		sort.Strings(missing)
		if len(extra)+len(missing) > 0 {
			diffs = append(diffs, fmt.Sprintf("%s alerts: firing but should not %v, not firing %v", b.name, extra, missing))
		}
	}
	return diffs
}
