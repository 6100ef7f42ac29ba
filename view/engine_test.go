package view

import (
	"fmt"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func report(agent string, isolated bool, sites map[string]string) AgentReport {
	r := AgentReport{Agent: agent, Isolated: isolated, PushInterval: time.Second, Sites: map[string]SiteReport{}, SampleTime: t0, HasSamples: true}
	for site, st := range sites {
		r.Sites[site] = SiteReport{State: st, Detect: -1}
	}
	return r
}

func impaired(r AgentReport) AgentReport {
	r.Impaired = true
	return r
}

func TestVerdicts(t *testing.T) {
	pangyo := func(st string) map[string]string { return map[string]string{"pangyo": st} }
	tests := []struct {
		name      string
		quorum    Quorum
		reports   []AgentReport
		want      string
		witnesses int
		down      int
	}{
		{"all up", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("up")), report("b", false, pangyo("up")), report("c", false, pangyo("up"))}, VerdictUp, 3, 0},
		{"quorum down, all agree, is lost", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("degraded"))}, VerdictLost, 3, 2},
		{"quorum down but one of three up is partitioned", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("up"))}, VerdictPartitioned, 3, 2},
		{"one up of six is within the up fraction", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("down")), report("d", false, pangyo("down")), report("e", false, pangyo("down")), report("f", false, pangyo("up"))}, VerdictLost, 6, 5},
		{"one up of five is beyond the up fraction", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("down")), report("d", false, pangyo("down")), report("f", false, pangyo("up"))}, VerdictPartitioned, 5, 4},
		{"impaired agents do not count", Quorum{N: 2}, []AgentReport{impaired(report("a", false, pangyo("down"))), report("b", false, pangyo("down")), report("c", false, pangyo("up"))}, VerdictDegraded, 2, 1},
		{"one down is degraded", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("up")), report("c", false, pangyo("up"))}, VerdictDegraded, 3, 1},
		{"agent-degraded is degraded", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("degraded")), report("b", false, pangyo("up"))}, VerdictDegraded, 2, 0},
		{"one witness is unknown", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("down"))}, VerdictUnknown, 1, 1},
		{"isolated agents do not count", Quorum{N: 2}, []AgentReport{report("a", true, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("up"))}, VerdictDegraded, 2, 1},
		{"isolated leave too few", Quorum{N: 2}, []AgentReport{report("a", true, pangyo("down")), report("b", true, pangyo("down")), report("c", false, pangyo("up"))}, VerdictUnknown, 1, 0},
		{"agent unknown is no witness", Quorum{N: 2}, []AgentReport{report("a", false, pangyo("unknown")), report("b", false, pangyo("up"))}, VerdictUnknown, 1, 0},
		{"quorum 3 needs three down", Quorum{N: 3}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("up"))}, VerdictDegraded, 3, 2},
		{"quorum 1 one down is lost", Quorum{N: 1}, []AgentReport{report("a", false, pangyo("down"))}, VerdictLost, 1, 1},
		{"majority of 5 needs 3", Quorum{Majority: true}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("up")), report("d", false, pangyo("up")), report("e", false, pangyo("up"))}, VerdictDegraded, 5, 2},
		{"majority of 5 with 3 down, 2 up", Quorum{Majority: true}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("down")), report("d", false, pangyo("up")), report("e", false, pangyo("up"))}, VerdictPartitioned, 5, 3},
		{"majority of 5 with 3 down, 2 degraded", Quorum{Majority: true}, []AgentReport{report("a", false, pangyo("down")), report("b", false, pangyo("down")), report("c", false, pangyo("down")), report("d", false, pangyo("degraded")), report("e", false, pangyo("degraded"))}, VerdictLost, 5, 3},
		{"majority never below 2", Quorum{Majority: true}, []AgentReport{report("a", false, pangyo("down"))}, VerdictUnknown, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(&Config{Quorum: tt.quorum, MaxUpFraction: DefaultMaxUpFraction})
			e.Apply(tt.reports, t0)
			sites := e.Sites(t0)
			if len(sites) != 1 {
				t.Fatalf("got %d sites, want 1", len(sites))
			}
			s := sites[0]
			if s.State != tt.want || s.Witnesses != tt.witnesses || s.Down != tt.down {
				t.Errorf("verdict %s witnesses %d down %d, want %s %d %d", s.State, s.Witnesses, s.Down, tt.want, tt.witnesses, tt.down)
			}
		})
	}
}

// TestStaleness walks one engine through time: agents stop counting exactly when
// 3 x their push interval has passed without a push, and NextExpiry says when that is.
func TestStaleness(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}})
	down := map[string]string{"pangyo": "down"}
	changes, _ := e.Apply([]AgentReport{report("a", false, down), report("b", false, down)}, t0)
	if len(changes) != 1 || changes[0].From != VerdictUnknown || changes[0].To != VerdictLost {
		t.Fatalf("changes %+v, want one unknown -> lost", changes)
	}
	b := report("b", false, down)
	b.SampleTime = t0.Add(2 * time.Second)
	if c, _ := e.Apply([]AgentReport{b}, t0.Add(2*time.Second)); len(c) != 0 {
		t.Fatalf("refresh of b changed verdicts: %+v", c)
	}
	if next := e.NextExpiry(t0.Add(2 * time.Second)); !next.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("NextExpiry = %v, want a's deadline %v", next, t0.Add(3*time.Second))
	}
	if c := e.Expire(t0.Add(3*time.Second - time.Millisecond)); len(c) != 0 {
		t.Fatalf("verdict changed before a's deadline: %+v", c)
	}
	c := e.Expire(t0.Add(3 * time.Second))
	if len(c) != 1 || c[0].To != VerdictUnknown {
		t.Fatalf("at a's deadline got %+v, want lost -> unknown", c)
	}
	sites := e.Sites(t0.Add(3 * time.Second))
	if !sites[0].Agents[0].Stale || sites[0].Agents[1].Stale {
		t.Errorf("agents %+v: want a stale, b fresh", sites[0].Agents)
	}
	if _, fresh, stale := e.Counts(); fresh != 1 || stale != 1 {
		t.Errorf("Counts = %d fresh %d stale, want 1 1", fresh, stale)
	}
}

func TestStaleAfterFixed(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 1}, StaleAfter: Duration{Duration: 500 * time.Millisecond}})
	e.Apply([]AgentReport{report("a", false, map[string]string{"s": "up"})}, t0)
	if next := e.NextExpiry(t0); !next.Equal(t0.Add(500 * time.Millisecond)) {
		t.Fatalf("NextExpiry = %v, want t0+500ms", next)
	}
}

// TestOldReportsIgnored: a retried or spooled push older than what the view has must not
// roll an agent's state back, nor keep a silent agent fresh.
func TestOldReportsIgnored(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 1}, MaxSampleAge: Duration{Duration: time.Minute}})
	up := report("a", false, map[string]string{"s": "up"})
	e.Apply([]AgentReport{up}, t0)
	old := report("a", false, map[string]string{"s": "down"})
	old.SampleTime = t0.Add(-time.Second)
	if c, ignored := e.Apply([]AgentReport{old}, t0.Add(time.Second)); len(c) != 0 || ignored != 1 {
		t.Fatalf("older report: changes %+v ignored %d, want none and 1", c, ignored)
	}
	stepped := report("a", false, map[string]string{"s": "up"})
	stepped.SampleTime = t0.Add(-30 * time.Second)
	if _, ignored := e.Apply([]AgentReport{stepped}, t0.Add(1500*time.Millisecond)); ignored != 0 {
		t.Fatalf("report after the agent's clock stepped back 30s was ignored")
	}
	backlog := report("a", false, map[string]string{"s": "down"})
	backlog.SampleTime = t0.Add(time.Second)
	if _, ignored := e.Apply([]AgentReport{backlog}, t0.Add(2*time.Minute)); ignored != 1 {
		t.Fatalf("report two minutes old was not ignored")
	}
	if got := e.Sites(t0.Add(2 * time.Minute))[0].Agents[0]; got.State != "up" || !got.Stale {
		t.Errorf("agent after ignored reports: %+v, want up and stale", got)
	}
}

func TestDetectDelay(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}})
	up := map[string]string{"pangyo": "up"}
	e.Apply([]AgentReport{report("a", false, up), report("b", false, up)}, t0)

	fire := t0.Add(500 * time.Millisecond)
	a := AgentReport{Agent: "a", PushInterval: time.Second, SampleTime: fire.Add(300 * time.Millisecond), HasSamples: true,
		Sites: map[string]SiteReport{"pangyo": {State: "down", Since: fire.Add(300 * time.Millisecond), Detect: 0.3}}}
	b := AgentReport{Agent: "b", PushInterval: time.Second, SampleTime: fire.Add(350 * time.Millisecond), HasSamples: true,
		Sites: map[string]SiteReport{"pangyo": {State: "down", Since: fire.Add(350 * time.Millisecond), Detect: 0.25}}}
	if c, _ := e.Apply([]AgentReport{a}, fire.Add(310*time.Millisecond)); len(c) != 1 || c[0].To != VerdictDegraded {
		t.Fatalf("first witness down: %+v, want degraded", c)
	}
	c, _ := e.Apply([]AgentReport{b}, fire.Add(400*time.Millisecond))
	if len(c) != 1 || c[0].To != VerdictLost || c[0].DetectSeconds == nil {
		t.Fatalf("second witness down: %+v, want lost with a detect delay", c)
	}
	// The earliest failure the witnesses report is a's, at the fire itself (300ms - 300ms).
	if got, want := *c[0].DetectSeconds, 0.4; math.Abs(got-want) > 1e-6 {
		t.Errorf("detect = %.3f s, want %.3f s", got, want)
	}
	site := e.Sites(fire.Add(time.Second))[0]
	if site.State != VerdictLost || !site.Since.Equal(fire.Add(400*time.Millisecond)) || site.DetectSeconds == nil {
		t.Errorf("site %+v: want lost since fire+400ms with detect", site)
	}
}

func TestSitesSorted(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 1}})
	e.Apply([]AgentReport{
		report("zeta", false, map[string]string{"seoul": "up", "busan": "up"}),
		report("alpha", false, map[string]string{"seoul": "up", "pangyo": "down"}),
	}, t0)
	sites := e.Sites(t0)
	var names []string
	for _, s := range sites {
		names = append(names, s.Name)
	}
	if len(names) != 3 || names[0] != "busan" || names[1] != "pangyo" || names[2] != "seoul" {
		t.Fatalf("sites %v, want busan pangyo seoul", names)
	}
	if ag := sites[2].Agents; len(ag) != 2 || ag[0].Name != "alpha" || ag[1].Name != "zeta" {
		t.Errorf("seoul agents %+v, want alpha then zeta", ag)
	}
}

// TestChangesInNameOrder: the verdict changes of one Apply or Expire come in site name
// order, however the sites were queued (an agent's sites are a map); events and
// notifications keep that order.
func TestChangesInNameOrder(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}})
	down := map[string]string{}
	for i := range 40 {
		down[fmt.Sprintf("site%02d", (i*17)%40)] = "down"
	}
	sorted := func(c []Change, what string) {
		t.Helper()
		if len(c) != len(down) {
			t.Fatalf("%s: %d changes, want %d", what, len(c), len(down))
		}
		for i := 1; i < len(c); i++ {
			if c[i-1].Site >= c[i].Site {
				t.Fatalf("%s: change %d is %s after %s: want name order", what, i, c[i].Site, c[i-1].Site)
			}
		}
	}
	c, _ := e.Apply([]AgentReport{report("a", false, down), report("b", false, down)}, t0)
	sorted(c, "both agents report every site down")
	sorted(e.Expire(t0.Add(3*time.Second)), "both agents stale")
}

// TestSiteDroppedFromPushes: an agent whose pushes stop carrying a site (a reload removed
// it, and the agent's sinks forgot it) is no longer its witness from that push on, so a
// site it had seen down is not held lost on its word.
func TestSiteDroppedFromPushes(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}})
	both := map[string]string{"pangyo": "down", "seoul": "up"}
	e.Apply([]AgentReport{report("a", false, both), report("b", false, both), report("c", false, both)}, t0)
	if s := siteNamed(t, e, "pangyo"); s.State != VerdictLost || s.Witnesses != 3 {
		t.Fatalf("before: pangyo %s with %d witnesses, want lost with 3", s.State, s.Witnesses)
	}
	later := t0.Add(100 * time.Millisecond)
	for _, a := range []string{"a", "b"} {
		r := report(a, false, map[string]string{"seoul": "up"})
		r.SampleTime = later
		e.Apply([]AgentReport{r}, later)
	}
	s := siteNamed(t, e, "pangyo")
	if s.Witnesses != 1 || s.State == VerdictLost {
		t.Errorf("after a and b dropped pangyo: %s with %d witnesses, want one witness and not lost", s.State, s.Witnesses)
	}
	for _, ag := range s.Agents {
		if ag.Name == "a" || ag.Name == "b" {
			t.Errorf("agent %s still listed under pangyo after dropping it", ag.Name)
		}
	}
	if s := siteNamed(t, e, "seoul"); s.State != VerdictUp || s.Witnesses != 3 {
		t.Errorf("seoul %s with %d witnesses, want up with 3", s.State, s.Witnesses)
	}
}

func siteNamed(t *testing.T, e *Engine, name string) SiteView {
	t.Helper()
	for _, s := range e.Sites(t0.Add(time.Second)) {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no site %q", name)
	return SiteView{}
}

// TestApplyKeepsCopies: the engine keeps copies of a report's sites and targets, so a
// decoder may reuse its map and slice for the next push (shape.go does): whatever the
// caller writes into them after Apply changes nothing the engine says.
func TestApplyKeepsCopies(t *testing.T) {
	e := NewEngine(&Config{Quorum: Quorum{N: 2}})
	sites := map[string]string{"pangyo": "up", "seoul": "up"}
	a, b := report("a", false, sites), report("b", false, sites)
	a.Targets = []TargetReport{newTargetReport(intern([]byte("pangyo")), intern([]byte("gw")))}
	a.Targets[0].Up = 1
	e.Apply([]AgentReport{a, b}, t0)
	// The caller's next push, written into the same map and slice.
	for _, r := range []AgentReport{a, b} {
		r.Sites["pangyo"] = SiteReport{State: siteDown, Detect: -1}
		delete(r.Sites, "seoul")
		r.Sites["busan"] = SiteReport{State: siteDown, Detect: -1}
	}
	a.Targets[0].Up = 0
	for _, name := range []string{"pangyo", "seoul"} {
		if s := siteNamed(t, e, name); s.State != VerdictUp || s.Witnesses != 2 {
			t.Errorf("%s: %s with %d witnesses after the caller reused its maps, want up with 2", name, s.State, s.Witnesses)
		}
	}
	for _, s := range e.Sites(t0) {
		if s.Name == "busan" {
			t.Errorf("busan, written into a map after Apply, is on the board: %+v", s)
		}
	}
	d, _ := e.SiteTargets("pangyo", t0)
	for _, ag := range d.Agents {
		if ag.Name == "a" && (len(ag.Targets) != 1 || ag.Targets[0].Up == nil || !*ag.Targets[0].Up) {
			t.Errorf("a's target at pangyo after the caller reused its slice: %+v, want up", ag.Targets)
		}
	}
	// The same maps, applied again, are the agents' new word.
	later := t0.Add(100 * time.Millisecond)
	a.SampleTime, b.SampleTime = later, later
	e.Apply([]AgentReport{a, b}, later)
	if s := siteNamed(t, e, "pangyo"); s.State != VerdictLost {
		t.Errorf("pangyo after both pushed it down: %s, want lost", s.State)
	}
	if s := siteNamed(t, e, "seoul"); len(s.Agents) != 0 {
		t.Errorf("seoul, dropped by both agents, still lists %+v", s.Agents)
	}
}
