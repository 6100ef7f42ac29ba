package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/probes"
)

// recorder keeps the state-change events as short strings, e.g. "site pangyo up>down 300ms".
type recorder struct{ lines []string }

func (r *recorder) Handle(ev Event) {
	switch ev.Type {
	case EventTarget:
		r.lines = append(r.lines, fmt.Sprintf("target %s/%s %s>%s", ev.Site, ev.Target, ev.From, ev.To))
	case EventSite:
		r.lines = append(r.lines, fmt.Sprintf("site %s %s>%s %v", ev.Site, ev.From, ev.To, ev.Detect))
	case EventAgent:
		r.lines = append(r.lines, fmt.Sprintf("agent %s>%s", ev.From, ev.To))
	}
}

// only returns the lines that start with prefix.
func (r *recorder) only(prefix string) []string {
	var out []string
	for _, l := range r.lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// fakeClock hands the machine explicit times: the machine reads no clock itself, so a
// test is a sequence of results at chosen instants.
type fakeClock struct{ now time.Time }

func (c *fakeClock) at(ms int) time.Time {
	c.now = time.Unix(1_800_000_000, 0).Add(time.Duration(ms) * time.Millisecond)
	return c.now
}

type harness struct {
	t     *testing.T
	m     *machine
	rec   *recorder
	clock fakeClock
	byKey map[string]*targetState
}

// newHarness builds a machine for targets written "site/name" ("/name" for control).
func newHarness(t *testing.T, keys ...string) *harness {
	h := &harness{t: t, rec: &recorder{}, byKey: map[string]*targetState{}}
	var targets []config.Target
	for _, k := range keys {
		site, name, _ := strings.Cut(k, "/")
		targets = append(targets, config.Target{Site: site, Name: name, Kind: probes.KindTCP, Interval: time.Second})
	}
	var states []*targetState
	h.m, states = newMachine("edge1", 3, targets, h.rec.Handle)
	for i, k := range keys {
		h.byKey[k] = states[i]
	}
	return h
}

// probe feeds one result for key: a probe that started at ms and took 1 ms.
func (h *harness) probe(key string, ms int, ok bool) []*targetState {
	h.t.Helper()
	ts := h.byKey[key]
	if ts == nil {
		h.t.Fatalf("no target %q", key)
	}
	start := h.clock.at(ms)
	r := probes.Result{Start: start, OK: ok, RTT: time.Millisecond}
	if !ok {
		r.Reason, r.RTT = probes.ReasonTimeout, 20*time.Millisecond
	}
	return h.m.observe(ts, r, start.Add(r.RTT))
}

// all feeds one result for every key at ms.
func (h *harness) all(ms int, ok bool, keys ...string) {
	for _, k := range keys {
		h.probe(k, ms, ok)
	}
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var twoSites = []string{"a/icmp", "a/http", "b/icmp", "b/http"}

func TestTargetStates(t *testing.T) {
	h := newHarness(t, "a/x")
	h.probe("a/x", 0, true)
	h.probe("a/x", 1000, false)
	h.probe("a/x", 1100, false)
	h.probe("a/x", 1200, false)
	h.probe("a/x", 1300, false) // already down: no event
	h.probe("a/x", 2300, true)
	h.probe("a/x", 3300, false)
	h.probe("a/x", 3400, true) // one success ends a suspicion
	equal(t, "target events", h.rec.only("target"), []string{
		"target a/x unknown>up",
		"target a/x up>suspect",
		"target a/x suspect>down",
		"target a/x down>up",
		"target a/x up>suspect",
		"target a/x suspect>up",
	})
}

func TestWholeSiteDown(t *testing.T) {
	h := newHarness(t, twoSites...)
	h.all(0, true, twoSites...)
	// Site b burns at 500 ms: its probes fail, site a keeps answering.
	h.all(600, false, "b/icmp", "b/http")
	h.all(620, true, "a/icmp") // the witness asked for at b's first failure
	h.all(700, false, "b/icmp", "b/http")
	h.all(800, false, "b/icmp", "b/http")
	equal(t, "site events", h.rec.only("site"), []string{
		"site a unknown>up 1ms",
		"site b unknown>up 1ms",
		"site b up>down 220ms", // no degraded on the way: every target was failing
	})
	if h.m.isolated {
		t.Error("agent isolated, want ok: site a answers")
	}
}

func TestWebOnlyIsDegradedNeverDown(t *testing.T) {
	h := newHarness(t, twoSites...)
	h.all(0, true, twoSites...)
	for ms := 100; ms <= 2000; ms += 100 {
		h.probe("a/http", ms, false)
		h.probe("a/icmp", ms+10, true)
	}
	equal(t, "site a events", h.rec.only("site a"), []string{
		"site a unknown>up 1ms",
		"site a up>degraded 220ms",
	})
}

func TestUplinkCutIsIsolationNotLostSites(t *testing.T) {
	h := newHarness(t, twoSites...)
	h.all(0, true, twoSites...)
	// Everything fails from 300 ms: the agent's own uplink is cut.
	for ms := 300; ms <= 600; ms += 100 {
		h.all(ms, false, twoSites...)
	}
	// Heal.
	h.all(1000, true, twoSites...)
	for _, l := range h.rec.only("site") {
		if strings.Contains(l, ">down") || strings.Contains(l, ">degraded") {
			t.Errorf("uplink cut reported as a site failure: %s", l)
		}
	}
	equal(t, "agent events", h.rec.only("agent"), []string{"agent ok>isolated", "agent isolated>ok"})
	equal(t, "site events", h.rec.only("site"), []string{
		"site a unknown>up 1ms",
		"site b unknown>up 1ms",
		"site a up>unknown 520ms",
		"site b up>unknown 520ms",
		"site a unknown>up 1ms",
		"site b unknown>up 1ms",
	})
}

func TestSiteDownWaitsForUplinkProof(t *testing.T) {
	h := newHarness(t, twoSites...)
	h.all(0, true, twoSites...)
	h.all(100, false, "a/icmp", "a/http")
	h.all(200, false, "a/icmp", "a/http")
	h.all(300, false, "a/icmp", "a/http")
	// a is down on its own targets, but nothing has proven our path since 100 ms.
	if got := h.rec.only("site a up>"); len(got) != 0 {
		t.Fatalf("site a reported before any witness answered: %v", got)
	}
	if !h.m.sites[0].held {
		t.Fatal("site a not held while waiting for proof")
	}
	// A witness answers, but after a's latest failure: that proves nothing about the
	// time a was failing, so a stays held until it fails again after the proof.
	h.probe("b/http", 350, true)
	if got := h.rec.only("site a up>"); len(got) != 0 {
		t.Fatalf("site a reported on a proof older than its failures: %v", got)
	}
	h.all(400, false, "a/icmp", "a/http")
	equal(t, "site a events", h.rec.only("site a"), []string{
		"site a unknown>up 1ms",
		"site a up>down 320ms", // the detection time includes the wait for proof
	})
}

func TestControlTargets(t *testing.T) {
	t.Run("control answers: all sites down is real", func(t *testing.T) {
		h := newHarness(t, "a/x", "b/x", "/ctl")
		h.all(0, true, "a/x", "b/x", "/ctl")
		for ms := 100; ms <= 300; ms += 100 {
			h.all(ms, false, "a/x", "b/x")
			h.probe("/ctl", ms+5, true)
		}
		equal(t, "events", h.rec.only("site"), []string{
			"site a unknown>up 1ms", "site b unknown>up 1ms",
			"site a up>down 220ms", "site b up>down 220ms",
		})
		equal(t, "agent", h.rec.only("agent"), nil)
	})
	t.Run("control fails: isolated even with one site", func(t *testing.T) {
		h := newHarness(t, "a/x", "/ctl")
		h.all(0, true, "a/x", "/ctl")
		for ms := 100; ms <= 300; ms += 100 {
			h.all(ms, false, "a/x", "/ctl")
		}
		equal(t, "agent", h.rec.only("agent"), []string{"agent ok>isolated"})
		for _, l := range h.rec.only("site") {
			if strings.Contains(l, ">down") {
				t.Errorf("site reported down while isolated: %s", l)
			}
		}
	})
}

func TestSingleSiteWithoutWitnessReportsWhatItSees(t *testing.T) {
	h := newHarness(t, "a/x", "a/y")
	h.all(0, true, "a/x", "a/y")
	h.all(100, false, "a/x", "a/y")
	h.all(200, false, "a/x", "a/y")
	h.all(300, false, "a/x", "a/y")
	equal(t, "site", h.rec.only("site"), []string{
		"site a unknown>up 1ms", "site a up>down 220ms"})
	equal(t, "agent", h.rec.only("agent"), nil)
}

func TestFirstSuspicionTriggersSiteAndWitnesses(t *testing.T) {
	h := newHarness(t, "a/1", "a/2", "a/3", "b/1", "b/2", "c/1", "/ctl")
	h.all(0, true, "a/1", "a/2", "a/3", "b/1", "b/2", "c/1", "/ctl")
	got := names(h.probe("a/2", 100, false))
	equal(t, "first failure in a", got, []string{"a/1", "a/3", "b/1", "c/1", "/ctl"})
	equal(t, "second failure in a", names(h.probe("a/1", 110, false)), nil)
	equal(t, "a/2 again", names(h.probe("a/2", 200, false)), nil)
}

func names(ts []*targetState) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.target.Site+"/"+t.target.Name)
	}
	return out
}

func TestRTO(t *testing.T) {
	var e rto
	floor, ceiling := 20*time.Millisecond, time.Second
	if got := e.timeout(floor, ceiling); got != ceiling {
		t.Errorf("no sample: %v, want the ceiling %v", got, ceiling)
	}
	e.observe(100 * time.Millisecond) // srtt 100, rttvar 50
	if got := e.timeout(floor, ceiling); got != 300*time.Millisecond {
		t.Errorf("one sample of 100ms: %v, want 300ms", got)
	}
	for range 50 {
		e.observe(50 * time.Microsecond)
	}
	if got := e.timeout(floor, ceiling); got != floor {
		t.Errorf("LAN RTTs: %v, want the floor %v", got, floor)
	}
	for range 50 {
		e.observe(5 * time.Second)
	}
	if got := e.timeout(floor, ceiling); got != ceiling {
		t.Errorf("slow RTTs: %v, want the ceiling %v", got, ceiling)
	}
}

func TestStagger(t *testing.T) {
	var all []config.Target
	for _, k := range []string{"a/1", "a/2", "a/3", "a/4", "b/1", "b/2", "b/3", "b/4"} {
		site, name, _ := strings.Cut(k, "/")
		all = append(all, config.Target{Site: site, Name: name, Interval: time.Second})
	}
	var got []string
	for _, t := range all {
		got = append(got, stagger(t, all).String())
	}
	equal(t, "offsets", got, []string{"0s", "250ms", "500ms", "750ms", "125ms", "375ms", "625ms", "875ms"})
}

// TestHealAfterIsolationNeedsFreshFailures: a probe sent into the cut that times out
// after the heal must not turn into a degraded site, although a witness already answers.
func TestHealAfterIsolationNeedsFreshFailures(t *testing.T) {
	h := newHarness(t, twoSites...)
	h.all(0, true, twoSites...)
	for ms := 300; ms <= 500; ms += 100 {
		h.all(ms, false, twoSites...)
	}
	equal(t, "agent", h.rec.only("agent"), []string{"agent ok>isolated"})
	h.probe("a/icmp", 1000, true) // healed at 995
	h.probe("b/http", 1000, true) // b half back
	h.probe("b/icmp", 990, false) // sent before the heal, timed out after it
	h.probe("a/http", 1001, true)
	h.probe("b/icmp", 1100, true)
	for _, l := range h.rec.only("site") {
		if strings.Contains(l, ">degraded") || strings.Contains(l, ">down") {
			t.Errorf("healing reported as a failure: %s", l)
		}
	}
	equal(t, "site b", h.rec.only("site b"), []string{
		"site b unknown>up 1ms", "site b up>unknown 520ms", "site b unknown>up 1ms"})
}

// step is one finished probe for TestInconclusiveFailures: target key, start (ms), ok;
// a failure is a timeout with a 20 ms deadline, given up late ms after that deadline.
// A step with a stall instead records that the agent did not run from stall[0] to
// stall[1] (a wake-up that late).
type step struct {
	key   string
	ms    int
	ok    bool
	late  int
	stall [2]int
}

// TestInconclusiveFailures: timeouts the agent was too late to judge are neither
// failures nor successes; those it judged on time count as before. Allowance 5 ms.
func TestInconclusiveFailures(t *testing.T) {
	up := []step{{"a/icmp", 0, true, 0, [2]int{}}, {"a/http", 0, true, 0, [2]int{}}, {"b/icmp", 0, true, 0, [2]int{}}, {"b/http", 0, true, 0, [2]int{}}}
	fail := func(key string, ms, late int) step { return step{key: key, ms: ms, late: late} }
	ok := func(key string, ms int) step { return step{key: key, ms: ms, ok: true} }
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // target and site events after every site is up
		incon int      // inconclusive failures counted
	}{
		{"a stopped agent's timeouts change nothing", []step{
			fail("a/icmp", 500, 300), fail("a/http", 500, 300), fail("b/icmp", 500, 300), fail("b/http", 500, 300),
			ok("a/icmp", 830), ok("a/http", 830), ok("b/icmp", 830), ok("b/http", 830),
		}, nil, 4},
		{"only the failures judged on time count", []step{
			fail("a/http", 100, 0), fail("a/http", 200, 40), ok("a/icmp", 250), fail("a/http", 300, 1), fail("a/http", 400, 2),
		}, []string{"target a/http up>suspect", "target a/http suspect>down", "site a up>degraded 322ms"}, 1},
		{"an inconclusive failure neither ends nor extends a suspicion", []step{
			fail("a/http", 100, 0), fail("a/http", 200, 50), ok("a/http", 300),
		}, []string{"target a/http up>suspect", "target a/http suspect>up"}, 1},
		{"a stall across the deadline makes an on-time give-up inconclusive", []step{
			{stall: [2]int{110, 130}}, fail("a/http", 100, 1), fail("a/http", 200, 1),
		}, []string{"target a/http up>suspect"}, 1},
		{"a whole site lost while the agent is on time", []step{
			fail("b/icmp", 600, 0), fail("b/http", 600, 1), ok("a/icmp", 620),
			fail("b/icmp", 700, 0), fail("b/http", 700, 0), fail("b/icmp", 800, 2), fail("b/http", 800, 0),
		}, []string{"target b/icmp up>suspect", "target b/http up>suspect", "target b/icmp suspect>down",
			"target b/http suspect>down", "site b up>down 220ms"}, 0},
		{"a whole site lost, one of its timeouts handled late", []step{
			fail("b/icmp", 600, 0), fail("b/http", 600, 0), ok("a/icmp", 620),
			fail("b/icmp", 700, 0), fail("b/http", 700, 30), fail("b/icmp", 800, 0), fail("b/http", 800, 0),
			fail("b/http", 830, 0),
		}, []string{"target b/icmp up>suspect", "target b/http up>suspect", "target b/icmp suspect>down",
			"target b/http suspect>down", "site b up>down 250ms"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, twoSites...)
			self := newSelfCheck(5 * time.Millisecond)
			run := func(steps []step) {
				for _, s := range steps {
					if s.key == "" {
						self.sample(LateWakeup, h.clock.at(s.stall[0]), h.clock.at(s.stall[1]))
						continue
					}
					start := h.clock.at(s.ms)
					r := probes.Result{Start: start, OK: true, RTT: time.Millisecond}
					deadline := start.Add(20 * time.Millisecond)
					if !s.ok {
						r.OK, r.Reason, r.RTT = false, probes.ReasonTimeout, 20*time.Millisecond+time.Duration(s.late)*time.Millisecond
					}
					h.m.judge(self, h.byKey[s.key], r, window{slot: start, deadline: deadline}, start.Add(r.RTT))
				}
			}
			run(up)
			h.rec.lines = nil
			run(tc.steps)
			var got []string
			for _, l := range h.rec.lines {
				if strings.HasPrefix(l, "target") || strings.HasPrefix(l, "site") {
					got = append(got, l)
				}
			}
			equal(t, "events", got, tc.want)
			if n := self.report.Inconclusive; n != uint64(tc.incon) {
				t.Errorf("%d inconclusive, want %d", n, tc.incon)
			}
		})
	}
}

// TestInconclusiveAsksForNoWitnesses: a first failure asks for the site-wide
// confirmation; one the agent could not judge asks for nothing.
func TestInconclusiveAsksForNoWitnesses(t *testing.T) {
	h := newHarness(t, "a/1", "a/2", "b/1")
	h.all(0, true, "a/1", "a/2", "b/1")
	self := newSelfCheck(5 * time.Millisecond)
	start := h.clock.at(100)
	late := probes.Result{Start: start, RTT: 300 * time.Millisecond, Reason: probes.ReasonTimeout}
	trigger, inconclusive := h.m.judge(self, h.byKey["a/1"], late, window{slot: start, deadline: start.Add(20 * time.Millisecond)}, start.Add(late.RTT))
	if !inconclusive || trigger != nil {
		t.Errorf("late timeout: inconclusive %v, trigger %v; want true and none", inconclusive, names(trigger))
	}
	onTime := probes.Result{Start: start, RTT: 21 * time.Millisecond, Reason: probes.ReasonTimeout}
	trigger, inconclusive = h.m.judge(self, h.byKey["a/1"], onTime, window{slot: start, deadline: start.Add(20 * time.Millisecond)}, start.Add(onTime.RTT))
	if inconclusive {
		t.Error("on-time timeout judged inconclusive")
	}
	equal(t, "witnesses", names(trigger), []string{"a/2", "b/1"})
	// An async probe (no deadline from a worker: ICMP, judged by kernel timestamps) is
	// never inconclusive, however late.
	if _, inconclusive = h.m.judge(self, h.byKey["a/2"], late, window{}, start.Add(late.RTT)); inconclusive {
		t.Error("async timeout judged inconclusive")
	}
}
