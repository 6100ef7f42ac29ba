package view

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// sitesFromScratch is what Sites must give, built without the engine's kept orders: every
// site sorted by name, its agents sorted by name.
func sitesFromScratch(e *Engine, now time.Time) []SiteView {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []SiteView
	for _, s := range e.sites {
		v := SiteView{Name: s.name, State: s.state, Since: s.since, Witnesses: s.witnesses, Down: s.down, Up: s.upN,
			Agents: []AgentView{}, DetectSeconds: s.detect}
		for a := range s.agents {
			av := AgentView{Name: a.name, State: a.sites[s.name].State, Isolated: a.isolated, Impaired: a.impaired, Stale: !e.fresh(a, now)}
			if a.domainSet {
				av.Domain = a.domain
			}
			v.Agents = append(v.Agents, av)
		}
		slices.SortFunc(v.Agents, func(x, y AgentView) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, v)
	}
	slices.SortFunc(out, func(x, y SiteView) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// TestSitesOrderKept: the sites and agents a reader gets stay sorted and complete while
// agents come, change their sites and are forgotten, and sites come and go, with reads
// between every step (which build the kept orders, that the next step must undo).
func TestSitesOrderKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction, ForgetAfter: Duration{Duration: time.Minute}})
	now := t0
	states := []string{"up", "down", "degraded"}
	for step := range 400 {
		switch rng.IntN(10) {
		case 0: // the agents that stopped pushing a minute ago are forgotten, and their sites
			now = now.Add(40 * time.Second)
			e.Forget(now)
		default:
			sites := map[string]string{}
			for range rng.IntN(6) {
				sites[fmt.Sprintf("site%02d", rng.IntN(12))] = states[rng.IntN(len(states))]
			}
			r := report(fmt.Sprintf("edge%d", rng.IntN(8)), rng.IntN(5) == 0, sites)
			now = now.Add(time.Second)
			r.SampleTime = now
			e.Apply([]AgentReport{r}, now)
		}
		if rng.IntN(3) > 0 {
			got, want := e.Sites(now), sitesFromScratch(e, now)
			if len(got) == 0 && len(want) == 0 {
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d: Sites\n%+v\nwant\n%+v", step, got, want)
			}
		}
		checkEngine(t, e, now)
	}
}

// TestSitesReadWhileForgotten: a read keeps the sorted sites it started with between its
// steps; sites forgotten meanwhile are left out, none is given twice or out of order.
func TestSitesReadWhileForgotten(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction, ForgetAfter: Duration{Duration: time.Minute}})
	n := 2*siteChunk + 5
	sites := map[string]string{}
	for i := range n {
		sites[fmt.Sprintf("old%05d", i)] = "up"
	}
	e.Apply([]AgentReport{report("edge1", false, sites)}, t0)
	later := t0.Add(2 * time.Minute)
	var names []string
	chunks := 0
	e.EachSites(t0, func(chunk []SiteView) error {
		chunks++
		for _, v := range chunk {
			names = append(names, v.Name)
		}
		if chunks == 1 {
			// Between the read's steps: edge1 and its sites are forgotten, a new site comes.
			e.Forget(later)
			r := report("edge2", false, map[string]string{"new": "up"})
			r.SampleTime = later
			e.Apply([]AgentReport{r}, later)
		}
		return nil
	})
	if len(names) != siteChunk || !slices.IsSorted(names) {
		t.Fatalf("%d sites read in %d steps (sorted %v), want the first step's %d alone", len(names), chunks, slices.IsSorted(names), siteChunk)
	}
	if got := e.Sites(later); len(got) != 1 || got[0].Name != "new" {
		t.Fatalf("after: %d sites, want only new", len(got))
	}
	checkEngine(t, e, later)
}

// TestSitesReadStepsByAgents: a read of sites with many agents each stops a step once it
// has copied agentChunk agents' entries, so a push is applied between the steps; every
// site still comes whole and in order, and a push between the steps shows in the sites
// not yet copied.
func TestSitesReadStepsByAgents(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction})
	per := agentChunk/2 + 1 // two sites pass agentChunk
	var reports []AgentReport
	for i := range per {
		reports = append(reports, report(fmt.Sprintf("edge%05d", i), false, map[string]string{"a": "up", "b": "up", "c": "up", "d": "up"}))
	}
	e.Apply(reports, t0)
	var names []string
	var steps []int
	e.EachSites(t0, func(chunk []SiteView) error {
		steps = append(steps, len(chunk))
		for _, v := range chunk {
			names = append(names, v.Name)
			if len(v.Agents) != per {
				t.Errorf("site %s read with %d agents, want %d", v.Name, len(v.Agents), per)
			}
			if v.Name == "d" && v.State != VerdictLost {
				t.Errorf("site d is %s, want lost: the push between the steps is not in it", v.State)
			}
		}
		if len(steps) == 1 {
			var down []AgentReport
			for _, r := range reports {
				r.Sites = map[string]SiteReport{"a": {State: "up", Detect: -1}, "b": {State: "up", Detect: -1},
					"c": {State: "up", Detect: -1}, "d": {State: "down", Detect: -1}}
				down = append(down, r)
			}
			e.Apply(down, t0)
		}
		return nil
	})
	if !slices.Equal(steps, []int{2, 2}) || !slices.Equal(names, []string{"a", "b", "c", "d"}) {
		t.Fatalf("read %v in steps of %v sites, want a..d in steps of [2 2]", names, steps)
	}
	checkEngine(t, e, t0)
}

// answerJSON is the answer of GET /api/v1/sites that eachAnswer gives at now, without
// silences.
func answerJSON(e *Engine, now time.Time) []byte {
	b := []byte(`{"sites":[`)
	first := true
	e.eachAnswer(now, func(chunk []SiteView) error {
		for i := range chunk {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = chunk[i].appendJSON(b)
		}
		return nil
	})
	return append(b, "]}"...)
}

// TestSitesAnswerKept: the agents' JSON that the sites keep between reads is what
// encoding/json writes of the engine built from scratch, at every step of agents coming,
// changing state, isolation, impairment and failure domain, going stale (with and
// without an Expire since) and being forgotten.
func TestSitesAnswerKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, QuorumBy: "region", MaxUpFraction: DefaultMaxUpFraction,
		ForgetAfter: Duration{Duration: time.Minute}})
	now := t0
	states := []string{"up", "down", "degraded"}
	kept := 0
	for step := range 2000 {
		switch rng.IntN(20) {
		case 0: // a minute passes: the agents that stopped pushing are forgotten
			now = now.Add(40 * time.Second)
			e.Forget(now)
		case 1, 2: // time passes past some agents' deadlines, with no Expire yet
			now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
		case 3:
			e.Expire(now)
		default:
			sites := map[string]string{}
			for range rng.IntN(6) {
				sites[fmt.Sprintf("site%02d", rng.IntN(12))] = states[rng.IntN(len(states))]
			}
			r := report(fmt.Sprintf("edge%d", rng.IntN(8)), rng.IntN(5) == 0, sites)
			r.Impaired = rng.IntN(6) == 0
			if region := rng.IntN(4); region > 0 {
				r.Labels = map[string]string{"region": fmt.Sprint("r", region)}
			}
			if rng.IntN(8) == 0 {
				r.Sites = nil // a push without site series: the agent's sites stay
			}
			now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
			r.SampleTime = now
			e.Apply([]AgentReport{r}, now)
		}
		if rng.IntN(3) == 0 {
			continue
		}
		want, err := json.Marshal(struct {
			Sites []SiteView `json:"sites"`
		}{sitesFromScratch(e, now)})
		if err != nil {
			t.Fatal(err)
		}
		if got := answerJSON(e, now); string(got) != strings.Replace(string(want), `"sites":null`, `"sites":[]`, 1) {
			t.Fatalf("step %d: answer\n%s\nwant\n%s", step, got, want)
		}
		for _, s := range e.sites {
			if s.answer != nil {
				kept++
			}
		}
		if len(e.expiry) == 0 || now.Before(e.expiry[0].deadline) {
			checkEngine(t, e, now) // which holds only with no agent past its deadline
		}
	}
	if kept == 0 {
		t.Fatal("no site kept its answer between reads: the test covers nothing")
	}
}
