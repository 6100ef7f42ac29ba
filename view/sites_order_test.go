package view

import (
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
