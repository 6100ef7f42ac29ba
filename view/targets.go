package view

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unique"

	"github.com/edgeprobe/edgeprobe/contract"
)

// The view keeps every agent's latest word on each of its targets, for the page's
// per-cell detail (GET /api/v1/sites/{site}); verdicts never read it. It has to fit
// 10,000 agents x 20 sites x 2 targets (400,000 targets) in the view's memory, so a
// target is one small struct in one slice per agent: its names are interned handles
// (every agent names the same few targets, so a name is stored once, and the unique
// package drops it when no agent reports it any more), its numbers are bytes and an RTT
// in microseconds. BenchmarkTargetMemory measures the heap per target.

// maxTargetsPerAgent bounds the targets one agent may report: ten per site at the site
// limit, far beyond any real agent, so a push cannot make the view keep without end.
const maxTargetsPerAgent = 10 * maxSitesPerAgent

// TargetReport is what an agent last pushed about one of a site's targets.
type TargetReport struct {
	Site, Name, Kind unique.Handle[string]
	RTTMicros        uint32 // probe_duration_seconds in µs, capped at about 71 minutes
	HasRTT           bool   // the push carried probe_duration_seconds
	Up               int8   // edgeprobe_target_up: 1 up (or suspect), 0 down, -1 not pushed
	OK               int8   // probe_success: 1, 0, or -1 not pushed (not probed yet)
	Reason           uint8  // edgeprobe_target_failure_reason's code; 0 none
}

// noKind is the Kind of a target whose series carried no kind label.
var noKind = unique.Make("")

func newTargetReport(site, name unique.Handle[string]) TargetReport {
	return TargetReport{Site: site, Name: name, Kind: noKind, Up: -1, OK: -1}
}

// compareTargets orders targets by site, then name: the order agents push them in and
// the one Engine.SiteTargets searches.
func compareTargets(a, b TargetReport) int {
	if c := strings.Compare(a.Site.Value(), b.Site.Value()); c != 0 {
		return c
	}
	return strings.Compare(a.Name.Value(), b.Name.Value())
}

// intern is the handle of the string b spells. unique.Make copies a string it keeps, and
// a []byte converted for a call that keeps nothing is not copied: no allocation for a
// name the view knows already.
func intern(b []byte) unique.Handle[string] { return unique.Make(string(b)) }

// target records one series of a target (edgeprobe_target_up, probe_success,
// probe_duration_seconds or edgeprobe_target_failure_reason) in agent p's report. A
// series without site (a control target's) or without target name belongs to no site's
// detail, and a NaN (a staleness marker) says nothing; both are ignored.
func (p *agentInProgress) target(d *pushDecoder, op shapeOp, site []byte, v float64, agent string) error {
	var name, kind []byte
	for _, l := range d.labels {
		switch string(l[0]) {
		case contract.LabelTarget:
			name = l[1]
		case contract.LabelKind:
			kind = l[1]
		}
	}
	if len(site) == 0 || len(name) == 0 {
		return nil
	}
	if math.IsNaN(v) {
		d.noShape() // whether the target is in the report depends on the value
		return nil
	}
	if len(name) > contract.MaxNameBytes {
		return rejectf("bad_content", "agent %q names a target of more than %d bytes at site %q", agent, contract.MaxNameBytes, site)
	}
	i, err := p.targetEntry(site, name, agent)
	if err != nil {
		return err
	}
	d.note(op, i)
	t := &p.targets[i]
	if len(kind) > 0 && t.Kind.Value() != string(kind) {
		t.Kind = p.internKind(kind)
	}
	readTargetSeries(t, op, v)
	return nil
}

// readTargetSeries sets the field of t that one series carries; values outside what the
// contract allows leave it as it was.
func readTargetSeries(t *TargetReport, op shapeOp, v float64) {
	switch op {
	case opTargetUp:
		if v == 0 || v == 1 {
			t.Up = int8(v)
		}
	case opProbeSuccess:
		if v == 0 || v == 1 {
			t.OK = int8(v)
		}
	case opProbeDuration:
		if v >= 0 && !math.IsInf(v, 1) {
			t.RTTMicros, t.HasRTT = uint32(min(math.Round(v*1e6), math.MaxUint32)), true
		}
	case opReason:
		if v >= 0 && v <= math.MaxUint8 && v == math.Trunc(v) {
			t.Reason = uint8(v)
		}
	}
}

// targetEntry finds (or adds) the target site/name in p's report: its index in p.targets.
// Agents push their targets in order (site, then name, each target's series together), so
// the last entry or a new one at the end is the rule; a push out of that order gets an
// index, once.
func (p *agentInProgress) targetEntry(site, name []byte, agent string) (int, error) {
	n := len(p.targets)
	if n > 0 {
		last := &p.targets[n-1]
		c := cmp.Or(compareBytes(last.Site.Value(), site), compareBytes(last.Name.Value(), name))
		if c == 0 {
			return n - 1, nil
		}
		if c > 0 && p.targetIndex == nil {
			p.targetIndex = make(map[targetKey]int, n)
			for i, t := range p.targets {
				p.targetIndex[targetKey{t.Site, t.Name}] = i
			}
		}
	}
	key := targetKey{p.internSite(site), intern(name)}
	if p.targetIndex != nil {
		if i, ok := p.targetIndex[key]; ok {
			return i, nil
		}
	}
	if n >= maxTargetsPerAgent {
		return 0, rejectf("bad_content", "agent %q reports more than %d targets", agent, maxTargetsPerAgent)
	}
	if p.targetIndex != nil {
		p.targetIndex[key] = n
	}
	if p.targets == nil {
		// The agent's site series came first: two targets a site is the usual guess, and
		// a slice of the right size is kept as it is (finishTargets).
		p.targets = make([]TargetReport, 0, max(4, 2*len(p.sites)))
	}
	p.targets = append(p.targets, newTargetReport(key.site, key.name))
	return n, nil
}

// compareBytes is strings.Compare(s, string(b)) without the conversion, which escapes
// there.
func compareBytes(s string, b []byte) int {
	for i := range min(len(s), len(b)) {
		if s[i] != b[i] {
			return cmp.Compare(s[i], b[i])
		}
	}
	return cmp.Compare(len(s), len(b))
}

type targetKey struct{ site, name unique.Handle[string] }

// internSite and internKind reuse the previous target's handle: an agent's targets come
// site by site, and most share their kind.
func (p *agentInProgress) internSite(b []byte) unique.Handle[string] {
	if n := len(p.targets); n > 0 && p.targets[n-1].Site.Value() == string(b) {
		return p.targets[n-1].Site
	}
	return intern(b)
}

func (p *agentInProgress) internKind(b []byte) unique.Handle[string] {
	for i := len(p.targets) - 1; i >= max(0, len(p.targets)-4); i-- {
		if k := p.targets[i].Kind; k.Value() == string(b) {
			return k
		}
	}
	return intern(b)
}

// finishTargets is p's targets as the report keeps them: sorted (unsorted says they
// came out of order), in a slice of their
// exact size (the engine holds it until the agent's next push).
func (p *agentInProgress) finishTargets(unsorted bool) []TargetReport {
	if len(p.targets) == 0 {
		return nil
	}
	if unsorted {
		slices.SortFunc(p.targets, compareTargets)
	}
	if spare := cap(p.targets) - len(p.targets); spare > len(p.targets)/8 {
		return slices.Clone(p.targets)
	}
	return slices.Clip(p.targets)
}

// TargetView is one target in GET /api/v1/sites/{site}: what its agent last pushed.
type TargetView struct {
	Name       string   `json:"name"`
	Kind       string   `json:"kind,omitempty"`
	Up         *bool    `json:"up,omitempty"`          // absent until the agent classified it
	OK         *bool    `json:"ok,omitempty"`          // the last probe; absent until probed
	RTTSeconds *float64 `json:"rtt_seconds,omitempty"` // the last probe's
	Reason     string   `json:"reason,omitempty"`      // why the last probe failed
}

// AgentTargets is one agent's report on a site with its targets there.
type AgentTargets struct {
	AgentView
	Targets []TargetView `json:"targets"`
}

// SiteDetail is GET /api/v1/sites/{site}: the site's verdict and, per agent that reports
// it, that agent's targets at the site.
type SiteDetail struct {
	SiteView
	Agents []AgentTargets `json:"agents"` // in place of SiteView's
}

// SiteTargets is one site's verdict and its agents' latest targets there; false when no
// agent reports the site.
func (e *Engine) SiteTargets(name string, now time.Time) (SiteDetail, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sites[name]
	if s == nil {
		return SiteDetail{}, false
	}
	d := SiteDetail{SiteView: e.view(s, now)}
	byName := make(map[string]*agentRecord, len(s.agents))
	for a := range s.agents {
		byName[a.name] = a
	}
	d.Agents = make([]AgentTargets, len(d.SiteView.Agents))
	for i, av := range d.SiteView.Agents {
		d.Agents[i] = AgentTargets{AgentView: av, Targets: targetViews(byName[av.Name].targets, name)}
	}
	d.SiteView.Agents = nil
	return d, true
}

// targetViews are the targets of site among ts (sorted by compareTargets).
func targetViews(ts []TargetReport, site string) []TargetView {
	i := sort.Search(len(ts), func(i int) bool { return ts[i].Site.Value() >= site })
	out := []TargetView{}
	for ; i < len(ts) && ts[i].Site.Value() == site; i++ {
		out = append(out, ts[i].view())
	}
	return out
}

func (t TargetReport) view() TargetView {
	v := TargetView{Name: t.Name.Value(), Kind: t.Kind.Value()}
	if t.Up >= 0 {
		up := t.Up == 1
		v.Up = &up
	}
	if t.OK >= 0 {
		ok := t.OK == 1
		v.OK = &ok
	}
	if t.HasRTT {
		rtt := float64(t.RTTMicros) / 1e6
		v.RTTSeconds = &rtt
	}
	if t.Reason != 0 {
		var known bool
		if v.Reason, known = contract.FailureReasonName(int(t.Reason)); !known {
			v.Reason = "code " + strconv.Itoa(int(t.Reason))
		}
	}
	return v
}
