package view

import (
	"errors"
	"testing"
	"time"
)

func withLabels(r AgentReport, kv ...string) AgentReport {
	r.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Labels[kv[i]] = kv[i+1]
	}
	return r
}

// TestQuorumBy: with quorum_by, down witnesses must span quorum failure domains; agents
// behind one ISP are one witness, and an agent without the label is a domain of its own.
func TestQuorumBy(t *testing.T) {
	down := map[string]string{"pangyo": "down"}
	up := map[string]string{"pangyo": "up"}
	tests := []struct {
		name    string
		reports []AgentReport
		want    string
		w, d    int // witness domains, down domains
	}{
		{"two agents of one region are one witness", []AgentReport{
			withLabels(report("a", false, down), "region", "kr"), withLabels(report("b", false, down), "region", "kr"),
		}, VerdictUnknown, 1, 1},
		{"a whole region cut off from a live site is not lost", []AgentReport{
			withLabels(report("a", false, down), "region", "kr"), withLabels(report("b", false, down), "region", "kr"),
			withLabels(report("c", false, down), "region", "kr"), withLabels(report("d", false, up), "region", "jp"),
		}, VerdictDegraded, 2, 1},
		{"one region down, the other degraded, is degraded", []AgentReport{
			withLabels(report("a", false, down), "region", "kr"), withLabels(report("b", false, down), "region", "kr"),
			withLabels(report("c", false, map[string]string{"pangyo": "degraded"}), "region", "jp"),
		}, VerdictDegraded, 2, 1},
		{"two regions down is lost", []AgentReport{
			withLabels(report("a", false, down), "region", "kr"), withLabels(report("b", false, down), "region", "kr"),
			withLabels(report("c", false, down), "region", "jp"),
		}, VerdictLost, 2, 2},
		{"an agent without the label is its own domain", []AgentReport{
			withLabels(report("a", false, down), "region", "kr"), withLabels(report("b", false, down)),
		}, VerdictLost, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(&Config{Quorum: Quorum{N: 2}, QuorumBy: "region", MaxUpFraction: DefaultMaxUpFraction})
			e.Apply(tt.reports, t0)
			s := e.Sites(t0)[0]
			if s.State != tt.want || s.Witnesses != tt.w || s.Down != tt.d {
				t.Errorf("verdict %s, %d witness domains, %d down; want %s, %d, %d", s.State, s.Witnesses, s.Down, tt.want, tt.w, tt.d)
			}
		})
	}
}

// TestQuorumByRelabel: an agent that moves to another failure domain (its label changed)
// is counted in the new one only.
func TestQuorumByRelabel(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, QuorumBy: "asn", MaxUpFraction: DefaultMaxUpFraction})
	down := map[string]string{"s": "down"}
	e.Apply([]AgentReport{withLabels(report("a", false, down), "asn", "1"), withLabels(report("b", false, down), "asn", "1")}, t0)
	if s := e.Sites(t0)[0]; s.State != VerdictUnknown {
		t.Fatalf("one domain: %s, want unknown", s.State)
	}
	b := withLabels(report("b", false, down), "asn", "2")
	b.SampleTime = t0.Add(time.Second)
	if c, _ := e.Apply([]AgentReport{b}, t0.Add(time.Second)); len(c) != 1 || c[0].To != VerdictLost {
		t.Fatalf("b moved to asn 2: changes %+v, want unknown -> lost", c)
	}
	checkEngine(t, e, t0.Add(time.Second))
}

// TestForget: agents silent for forget_after leave, and so do the sites nobody reports;
// a majority then counts the present agents only, so a site whose agents were replaced
// can be lost again.
func TestForget(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{Majority: true}, MaxUpFraction: DefaultMaxUpFraction,
		ForgetAfter: Duration{Duration: 10 * time.Minute}})
	up := map[string]string{"pangyo": "up", "old-name": "up"}
	var first []AgentReport
	for _, a := range []string{"a", "b", "c", "d", "e"} {
		first = append(first, report(a, false, up))
	}
	e.Apply(first, t0)
	// The five agents are replaced by two that report pangyo only.
	later := t0.Add(11 * time.Minute)
	down := map[string]string{"pangyo": "down"}
	newer := []AgentReport{report("x", false, down), report("y", false, down)}
	for i := range newer {
		newer[i].SampleTime = later
	}
	if c, _ := e.Apply(newer, later); len(c) != 0 {
		// Seven agents reported pangyo: a majority is four, and only two are fresh.
		if c[0].To == VerdictLost {
			t.Fatalf("lost before the old agents were forgotten: %+v", c)
		}
	}
	changes := e.Forget(later)
	var lost, forgotten bool
	for _, c := range changes {
		switch {
		case c.Site == "pangyo" && c.To == VerdictLost:
			lost = true
		case c.Site == "old-name" && c.To == VerdictForgotten:
			forgotten = true
		}
	}
	if !lost || !forgotten {
		t.Fatalf("changes %+v: want pangyo lost (majority of the two present) and old-name forgotten", changes)
	}
	sites := e.Sites(later)
	if len(sites) != 1 || sites[0].Name != "pangyo" || len(sites[0].Agents) != 2 {
		t.Fatalf("sites %+v: want pangyo alone, with x and y", sites)
	}
	counts, fresh, stale := e.Counts()
	if counts[VerdictLost] != 1 || counts[VerdictUp] != 0 || fresh != 2 || stale != 0 {
		t.Errorf("counts %v, %d fresh, %d stale; want one lost, 2 fresh, none stale", counts, fresh, stale)
	}
	checkEngine(t, e, later)
}

// TestSampleTimeBounds: a push dated far from the view's clock, either way, or without a
// sample time, changes nothing when max_sample_age is set.
func TestSampleTimeBounds(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 1}, MaxUpFraction: DefaultMaxUpFraction, MaxSampleAge: Duration{Duration: time.Minute}})
	down := map[string]string{"s": "down"}
	ahead := report("a", false, down)
	ahead.SampleTime = t0.Add(time.Hour)
	zero := report("b", false, down)
	zero.SampleTime = time.Time{}
	none := report("c", false, down)
	none.HasSamples = false
	fine := report("d", false, map[string]string{"s": "up"})
	fine.SampleTime = t0.Add(30 * time.Second)
	_, ignored := e.Apply([]AgentReport{ahead, zero, none, fine}, t0)
	if ignored != 3 {
		t.Fatalf("ignored %d reports, want the three dated an hour ahead, at year 1, and without samples", ignored)
	}
	if s := e.Sites(t0)[0]; s.State != VerdictUp || len(s.Agents) != 1 {
		t.Fatalf("site %+v: want up on d's word alone", s)
	}
}

// TestEngineBounds: the engine keeps at most max_agents agents, max_sites sites and
// max_reports site and target reports. A push past one is refused whole, naming the
// bound; agents already kept go on pushing what they pushed; forget_after frees room.
func TestEngineBounds(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction,
		ForgetAfter: Duration{Duration: 10 * time.Minute}, MaxAgents: 3, MaxSites: 4, MaxReports: 7})
	up := func(sites ...string) map[string]string {
		m := map[string]string{}
		for _, s := range sites {
			m[s] = "up"
		}
		return m
	}
	apply := func(at time.Time, rs ...AgentReport) error {
		t.Helper()
		for i := range rs {
			rs[i].SampleTime = at
		}
		if err := e.Fits(rs); err != nil {
			return err
		}
		e.Apply(rs, at)
		return nil
	}
	wantFull := func(err error, limit string) {
		t.Helper()
		var full *ErrFull
		if !errors.As(err, &full) || full.Limit != limit {
			t.Fatalf("err %v, want one naming %s", err, limit)
		}
	}
	if err := apply(t0, report("a", false, up("s1", "s2")), report("b", false, up("s1", "s2")), report("c", false, up("s1"))); err != nil {
		t.Fatal(err)
	}
	// Five reports kept; a fourth agent is one too many, and nothing of its push is kept.
	wantFull(apply(t0, report("d", false, up("s1"))), "max_agents")
	// Two new sites in one push (and repeated by a second agent) pass max_sites 4 with s1
	// and s2 kept only once each.
	wantFull(apply(t0, report("a", false, up("s1", "s3", "s4", "s5"))), "max_sites")
	// c reporting s1..s4 brings three reports more: 8 > 7.
	wantFull(apply(t0, report("c", false, up("s1", "s2", "s3", "s4"))), "max_reports")
	if got := len(e.Sites(t0)); got != 2 {
		t.Fatalf("%d sites after refused pushes, want the 2 applied", got)
	}
	// What is kept may go on: the same pushes again, and a swap of one site for another.
	if err := apply(t0.Add(time.Second), report("a", false, up("s1", "s2")), report("c", false, up("s2"))); err != nil {
		t.Fatalf("pushes of kept agents: %v", err)
	}
	// Once a and b are forgotten, d fits.
	later := t0.Add(11 * time.Minute)
	if err := apply(later.Add(-time.Minute), report("c", false, up("s1"))); err != nil {
		t.Fatal(err)
	}
	e.Forget(later)
	if err := apply(later, report("d", false, up("s1", "s2", "s3"))); err != nil {
		t.Fatalf("after forget_after: %v", err)
	}
	if e.reports != 4 {
		t.Errorf("%d reports counted, want 4 (c: s1; d: s1, s2, s3)", e.reports)
	}
}

// TestEngineFullOfSites: at max_sites, agents may still push any site the engine keeps,
// their own or another agent's, and a push naming one more is refused.
func TestEngineFullOfSites(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction, MaxSites: 2})
	push := func(agent string, sites ...string) error {
		t.Helper()
		m := map[string]string{}
		for _, s := range sites {
			m[s] = "up"
		}
		rs := []AgentReport{report(agent, false, m)}
		rs[0].SampleTime = t0
		if err := e.Fits(rs); err != nil {
			return err
		}
		e.Apply(rs, t0)
		return nil
	}
	for _, p := range []struct {
		agent string
		sites []string
		full  bool
	}{
		{"a", []string{"s1"}, false},
		{"b", []string{"s2"}, false}, // the engine is full
		{"a", []string{"s1"}, false},
		{"a", []string{"s2"}, false},       // a site of b's, new to a
		{"b", []string{"s1", "s2"}, false}, // and one of a's, new to b
		{"a", []string{"s2", "s3"}, true},
		{"c", []string{"s1"}, false},
		{"c", []string{"s4"}, true},
	} {
		err := push(p.agent, p.sites...)
		var full *ErrFull
		if got := errors.As(err, &full) && full.Limit == "max_sites"; got != p.full || (!p.full && err != nil) {
			t.Fatalf("%s pushing %v: %v, want refused for max_sites %v", p.agent, p.sites, err, p.full)
		}
	}
	if got := len(e.Sites(t0)); got != 2 {
		t.Errorf("%d sites kept, want 2", got)
	}
}
