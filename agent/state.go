package agent

import (
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/probes"
)

// This file holds the detection logic: per-target, per-site and agent-wide state,
// driven only by probe results and their timestamps. It has no goroutines and reads no
// clock, so tests feed it results with made-up times and check every transition.
//
// Target: one success makes it up; a failure makes it suspect; fail_threshold failures in
// a row make it down.
//
// Site: up when no target is down, degraded when some are, down when all are; unknown
// until every target has been probed.
//
// Uplink proof: a site may only be reported worse (degraded or down) once something else
// proves that our own path worked while the site was failing: a success of a target that
// is not failing (another site's, a control target's, or for degraded, one of the site's
// own) whose probe started after the site's first failure began and before its latest
// failure began: the site then failed while our path was seen working. Without that rule an agent whose uplink was cut would report every site lost
// before it noticed that it is the one cut off, and on healing it would report as down
// the sites it had not re-probed yet. The machine asks the scheduler to probe witnesses
// at once (see observe's return value) and to keep re-probing a site that is held, so
// the proof costs a round trip, not an interval.
//
// Isolation: without control targets, the agent is isolated when it has two sites or
// more and every one of them is down at once; with control targets ([control]), when
// every control target is down, and then only (while they answer, every site down is
// real). An isolated agent reports its sites unknown, since it cannot see them.

// targetState is the detection state of one target.
type targetState struct {
	target    config.Target
	site      *siteState // nil for control targets
	state     string
	fails     int           // consecutive failures
	firstFail time.Time     // start of the first failure of the current run
	lastOK    time.Time     // start of the last successful probe
	lastFail  time.Time     // start of the last failed probe
	reason    probes.Reason // reason of the last failure
	rto       rto
}

// failing reports a target whose last probe failed.
func (t *targetState) failing() bool { return t.fails > 0 }

// siteState is one site as this agent sees it.
type siteState struct {
	name      string
	targets   []*targetState
	published string // the state last reported to sinks
	held      bool   // worse than published, waiting for uplink proof
}

// machine is the whole agent's detection state.
type machine struct {
	agent     string
	threshold int
	sites     []*siteState
	control   []*targetState
	isolated  bool
	emit      func(Event)
	// evaluate's inputs: a target changed state since it last ran (dirty), or a site is
	// held waiting for uplink proof, which any success may bring (anyHeld). With
	// neither, evaluate would find nothing to do, so a steady success skips it.
	dirty, anyHeld bool
}

// newMachine builds the state for the given targets, all unknown.
func newMachine(agentName string, threshold int, targets []config.Target, emit func(Event)) (*machine, []*targetState) {
	m := &machine{agent: agentName, threshold: threshold, emit: emit}
	bySite := map[string]*siteState{}
	states := make([]*targetState, len(targets))
	for i, t := range targets {
		ts := &targetState{target: t, state: TargetUnknown}
		states[i] = ts
		if t.Site == "" {
			m.control = append(m.control, ts)
			continue
		}
		s := bySite[t.Site]
		if s == nil {
			s = &siteState{name: t.Site, published: SiteUnknown}
			bySite[t.Site] = s
			m.sites = append(m.sites, s)
		}
		s.targets = append(s.targets, ts)
		ts.site = s
	}
	return m, states
}

// observe applies one probe result, emits the events it causes, and returns the targets
// that should be probed at once: the rest of a site on its first suspicion, and one
// witness per other site plus the control targets, whose answers prove our uplink.
func (m *machine) observe(t *targetState, r probes.Result, now time.Time) []*targetState {
	m.emit(Event{Type: EventProbe, Time: now, Agent: m.agent, Site: t.target.Site,
		Target: t.target.Name, Kind: t.target.Kind, Result: r})

	var trigger []*targetState
	if r.OK {
		t.rto.observe(r.RTT)
		t.lastOK = r.Start
		if t.failing() && t.site != nil && allFailing(t.site) {
			// The first sign of recovery: ask the rest of the site now rather than at
			// their next interval, so the site is back in a round trip.
			trigger = siteOthers(t)
		}
		t.fails = 0
		if t.state != TargetUp {
			m.changeTarget(t, TargetUp, now, now.Sub(r.Start), "")
		}
	} else {
		t.fails++
		t.reason = r.Reason
		t.lastFail = r.Start
		if t.fails == 1 {
			t.firstFail = r.Start
			if t.site != nil && !m.siteFailing(t.site, t) {
				trigger = m.witnesses(t)
			}
		}
		switch {
		case t.fails >= m.threshold && t.state != TargetDown:
			m.changeTarget(t, TargetDown, now, now.Sub(t.firstFail), r.Reason)
		case t.fails < m.threshold && t.state != TargetSuspect:
			m.changeTarget(t, TargetSuspect, now, now.Sub(t.firstFail), r.Reason)
		}
	}
	if m.dirty || m.anyHeld {
		m.evaluate(now)
	}
	return trigger
}

// judge applies a finished probe as observe does, unless it is a blocking probe's
// timeout (w is its window; zero for an async probe) that the agent was too late to judge
// (selfCheck.inconclusive): then the sinks see it, marked, no state changes, and no
// target is asked to probe (docs/architecture.md, "Lateness").
func (m *machine) judge(c *selfCheck, t *targetState, r probes.Result, w window, now time.Time) (trigger []*targetState, inconclusive bool) {
	if r.Reason == probes.ReasonTimeout && !w.deadline.IsZero() && c.inconclusive(w, r.Start, r.Start.Add(r.RTT)) {
		m.emit(Event{Type: EventProbe, Time: now, Agent: m.agent, Site: t.target.Site,
			Target: t.target.Name, Kind: t.target.Kind, Result: r, Inconclusive: true})
		return nil, true
	}
	return m.observe(t, r, now), false
}

// siteFailing reports whether any target of s other than except is failing: if one is,
// the site-wide confirmation has already been asked for.
func (m *machine) siteFailing(s *siteState, except *targetState) bool {
	for _, o := range s.targets {
		if o != except && o.failing() {
			return true
		}
	}
	return false
}

// witnesses lists the targets to probe at once when t's site first looks suspect: the
// rest of the site, one healthy target of every other site, and every control target.
// t itself keeps its confirm interval.
func (m *machine) witnesses(t *targetState) []*targetState {
	s := t.site
	out := siteOthers(t)
	for _, o := range m.sites {
		if o == s {
			continue
		}
		for _, w := range o.targets {
			if !w.failing() {
				out = append(out, w)
				break
			}
		}
	}
	return append(out, m.control...)
}

func (m *machine) changeTarget(t *targetState, to string, now time.Time, detect time.Duration, reason probes.Reason) {
	from := t.state
	t.state = to
	m.dirty = true
	m.emit(Event{Type: EventTarget, Time: now, Agent: m.agent, Site: t.target.Site,
		Target: t.target.Name, Kind: t.target.Kind, From: from, To: to, Detect: detect, Reason: reason})
}

// siteOthers lists the targets of t's site other than t.
func siteOthers(t *targetState) []*targetState {
	var out []*targetState
	for _, o := range t.site.targets {
		if o != t {
			out = append(out, o)
		}
	}
	return out
}

// rawState is the site's state from its targets alone.
func rawState(s *siteState) string {
	down := 0
	for _, t := range s.targets {
		switch t.state {
		case TargetUnknown:
			return SiteUnknown
		case TargetDown:
			down++
		}
	}
	switch {
	case down == 0:
		return SiteUp
	case down == len(s.targets):
		return SiteDown
	}
	return SiteDegraded
}

// evaluate recomputes isolation and publishes site changes that are proven.
func (m *machine) evaluate(now time.Time) {
	m.dirty, m.anyHeld = false, false
	raw := make([]string, len(m.sites))
	down := 0
	for i, s := range m.sites {
		raw[i] = rawState(s)
		if raw[i] == SiteDown {
			down++
		}
	}
	// Control targets, where configured, decide alone: while they answer, every site
	// being down is real. Without them, every site down at once means we are cut off.
	isolated := len(m.sites) >= 2 && down == len(m.sites)
	if len(m.control) > 0 {
		isolated = m.controlDown()
	}
	if isolated != m.isolated {
		m.isolated = isolated
		from, to := AgentOK, AgentIsolated
		if !isolated {
			from, to = AgentIsolated, AgentOK
		}
		m.emit(Event{Type: EventAgent, Time: now, Agent: m.agent, From: from, To: to,
			Detect: now.Sub(m.earliestFailure())})
	}
	for i, s := range m.sites {
		to := raw[i]
		if m.isolated {
			to = SiteUnknown
		}
		s.held = false
		if to == s.published {
			continue
		}
		// A site whose targets are all failing is heading for down: saying degraded
		// on the way would be noise, as would a down that the uplink cannot vouch for.
		if !m.isolated && worse(to, s.published) && (to == SiteDegraded && allFailing(s) || !m.uplinkProven(s)) {
			s.held = true // until a witness answers, or isolation is declared
			m.anyHeld = true
			continue
		}
		from := s.published
		s.published = to
		m.emit(Event{Type: EventSite, Time: now, Agent: m.agent, Site: s.name, From: from, To: to,
			Detect: now.Sub(siteSince(s, worse(to, from)))})
	}
}

func allFailing(s *siteState) bool {
	for _, t := range s.targets {
		if !t.failing() {
			return false
		}
	}
	return true
}

// worse reports whether moving to state to is a degradation that needs uplink proof.
func worse(to, from string) bool {
	return to == SiteDown || (to == SiteDegraded && from != SiteDown)
}

// uplinkProven reports whether some target that is not failing answered a probe that
// started while site s was failing: after its first failed probe began, before its
// latest failed probe began. A probe sent before a heal that times out after it proves
// nothing, so the bound is the start, not the end, of the failure.
func (m *machine) uplinkProven(s *siteState) bool {
	if len(m.sites) == 1 && len(m.control) == 0 {
		return true // nothing else to ask: report what we see
	}
	from := earliest(s.targets)
	var until time.Time
	for _, t := range s.targets {
		if t.failing() && t.lastFail.After(until) {
			until = t.lastFail
		}
	}
	proves := func(ts []*targetState) bool {
		for _, t := range ts {
			if !t.failing() && t.lastOK.After(from) && t.lastOK.Before(until) {
				return true
			}
		}
		return false
	}
	for _, o := range m.sites {
		if proves(o.targets) {
			return true
		}
	}
	return proves(m.control)
}

func (m *machine) controlDown() bool {
	if len(m.control) == 0 {
		return false
	}
	for _, t := range m.control {
		if t.state != TargetDown {
			return false
		}
	}
	return true
}

// earliest is the start of the oldest current failure run among ts (zero if none fails).
func earliest(ts []*targetState) time.Time {
	var first time.Time
	for _, t := range ts {
		if t.failing() && (first.IsZero() || t.firstFail.Before(first)) {
			first = t.firstFail
		}
	}
	return first
}

func (m *machine) earliestFailure() time.Time {
	var all []*targetState
	for _, s := range m.sites {
		all = append(all, s.targets...)
	}
	return earliest(append(all, m.control...))
}

// siteSince is when the site's new state began: its first failure for a worse state,
// the newest success start of its targets for a recovery.
func siteSince(s *siteState, worse bool) time.Time {
	if worse {
		if first := earliest(s.targets); !first.IsZero() {
			return first
		}
	}
	var last time.Time
	for _, t := range s.targets {
		if t.lastOK.After(last) {
			last = t.lastOK
		}
	}
	return last
}
