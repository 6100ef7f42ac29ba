package view

import (
	"sort"
	"sync"
	"time"
)

// Site verdicts.
const (
	VerdictUp       = "up"
	VerdictDegraded = "degraded"
	VerdictLost     = "lost"
	VerdictUnknown  = "unknown"
)

// Per-agent site states, as agents push them.
const (
	siteUp       = "up"
	siteDegraded = "degraded"
	siteDown     = "down"
	siteUnknown  = "unknown"
)

// AgentReport is what one push says about one agent: its complete current state.
type AgentReport struct {
	Agent        string
	Isolated     bool
	PushInterval time.Duration // 0 when the push did not announce it
	// Sites is nil when the push carried no site state; the agent's sites are then kept.
	Sites      map[string]SiteReport
	SampleTime time.Time // the newest sample timestamp, on the agent's clock
}

// SiteReport is one agent's view of one site.
type SiteReport struct {
	State  string    // up, degraded, down or unknown
	Since  time.Time // when the agent entered State (zero if not reported)
	Detect float64   // seconds from the first failed (or good) probe to that change; <0 unknown

	seen time.Time // when the view first received State from this agent, on the view's clock
}

// Change is a verdict change of one site.
type Change struct {
	Site          string    `json:"site"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	Time          time.Time `json:"time"`
	DetectSeconds *float64  `json:"detect_seconds,omitempty"`
	Witnesses     int       `json:"-"`
	Down          int       `json:"-"`
}

// SiteView is one entry of GET /api/v1/sites.
type SiteView struct {
	Name          string      `json:"name"`
	State         string      `json:"state"`
	Since         time.Time   `json:"since"`
	Witnesses     int         `json:"witnesses"`
	Down          int         `json:"down"`
	Agents        []AgentView `json:"agents"`
	DetectSeconds *float64    `json:"detect_seconds,omitempty"`
}

// AgentView is one agent's report on a site. Stale is set only for agents that stopped
// pushing, which stay listed so that an operator sees who is missing.
type AgentView struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Isolated bool   `json:"isolated"`
	Stale    bool   `json:"stale,omitempty"`
}

type agentRecord struct {
	name       string
	lastPush   time.Time // arrival, on the view's clock
	interval   time.Duration
	isolated   bool
	sites      map[string]SiteReport
	sampleTime time.Time
}

type siteRecord struct {
	name      string
	state     string
	since     time.Time
	detect    *float64
	witnesses int
	down      int
	// lastCalm and lastTrouble are the last evaluations that found the site up, and
	// lost or degraded: they tell which witnesses' reports belong to the current change.
	lastCalm    time.Time
	lastTrouble time.Time
}

// Engine turns agents' reports into site verdicts. It takes the time as an argument
// everywhere rather than reading a clock, so tests drive it with any time they like and
// the server decides when to look (on every push, and when the next agent goes stale).
type Engine struct {
	quorum       Quorum
	staleAfter   time.Duration // 0: from each agent's push interval
	maxSampleAge time.Duration

	mu     sync.Mutex
	agents map[string]*agentRecord
	sites  map[string]*siteRecord
}

// NewEngine makes an engine with the verdict settings of cfg.
func NewEngine(cfg *Config) *Engine {
	return &Engine{
		quorum:       cfg.Quorum,
		staleAfter:   time.Duration(cfg.StaleAfter),
		maxSampleAge: time.Duration(cfg.MaxSampleAge),
		agents:       map[string]*agentRecord{},
		sites:        map[string]*siteRecord{},
	}
}

// staleAfterFor is how long an agent stays fresh after a push.
func (e *Engine) staleAfterFor(a *agentRecord) time.Duration {
	if e.staleAfter > 0 {
		return e.staleAfter
	}
	interval := a.interval
	if interval <= 0 {
		interval = time.Second
	}
	return max(minStaleAfter, defaultStaleFactor*interval)
}

func (e *Engine) fresh(a *agentRecord, now time.Time) bool {
	return now.Sub(a.lastPush) < e.staleAfterFor(a)
}

// Apply records reports that arrived at now and returns the verdicts that changed.
// It also returns how many reports were ignored as old (a flushed backlog, or a retry
// overtaken by a newer push): they neither refresh the agent nor change its state.
func (e *Engine) Apply(reports []AgentReport, now time.Time) (changes []Change, ignored int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Only the sites these agents report, now or before, can change with this push.
	touched := map[string]bool{}
	for _, r := range reports {
		a := e.agents[r.Agent]
		if e.maxSampleAge > 0 && !r.SampleTime.IsZero() && now.Sub(r.SampleTime) > e.maxSampleAge {
			ignored++
			continue
		}
		// A push a little older than the last one is a retry that a newer push overtook;
		// much older means the agent's clock stepped back, and its reports count again.
		if a != nil && r.SampleTime.Before(a.sampleTime) && a.sampleTime.Sub(r.SampleTime) <= e.staleAfterFor(a) {
			ignored++
			continue
		}
		if a == nil {
			a = &agentRecord{name: r.Agent}
			e.agents[r.Agent] = a
		}
		for name := range a.sites {
			touched[name] = true
		}
		a.lastPush = now
		a.sampleTime = r.SampleTime
		a.isolated = r.Isolated
		if r.PushInterval > 0 {
			a.interval = r.PushInterval
		}
		if r.Sites != nil {
			for name, sr := range r.Sites {
				if old, ok := a.sites[name]; ok && old.State == sr.State {
					sr.seen = old.seen
				} else {
					sr.seen = now
				}
				r.Sites[name] = sr
			}
			a.sites = r.Sites
			for name := range r.Sites {
				touched[name] = true
				if e.sites[name] == nil {
					e.sites[name] = &siteRecord{name: name, state: VerdictUnknown, since: now}
				}
			}
		}
	}
	return e.evaluate(now, touched), ignored
}

// Expire re-evaluates every site at now, so that agents that stopped pushing stop
// counting as witnesses.
func (e *Engine) Expire(now time.Time) []Change {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.evaluate(now, nil)
}

// NextExpiry is the earliest moment after now at which a fresh agent turns stale, or
// the zero time when no agent is fresh.
func (e *Engine) NextExpiry(now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	var next time.Time
	for _, a := range e.agents {
		at := a.lastPush.Add(e.staleAfterFor(a))
		if at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next
}

// evaluate recomputes the verdicts of the sites in only (all when nil), in name order.
func (e *Engine) evaluate(now time.Time, only map[string]bool) []Change {
	var changes []Change
	for _, name := range e.siteNames() {
		if only != nil && !only[name] {
			continue
		}
		s := e.sites[name]
		state, witnesses, down, detect := e.verdict(s, now)
		s.witnesses, s.down = witnesses, down
		if state != s.state {
			changes = append(changes, Change{Site: name, From: s.state, To: state, Time: now, DetectSeconds: detect, Witnesses: witnesses, Down: down})
			s.state, s.since, s.detect = state, now, detect
		}
		switch state {
		case VerdictUp:
			s.lastCalm = now
		case VerdictLost, VerdictDegraded:
			s.lastTrouble = now
		}
	}
	return changes
}

// verdict applies DESIGN.md's rule to one site. Witnesses are fresh, non-isolated
// agents that report a known state for the site.
func (e *Engine) verdict(s *siteRecord, now time.Time) (state string, witnesses, down int, detect *float64) {
	known, degraded := 0, 0
	for _, a := range e.agents {
		r, ok := a.sites[s.name]
		if !ok {
			continue
		}
		known++
		if !e.witness(a, r, now) {
			continue
		}
		witnesses++
		switch r.State {
		case siteDown:
			down++
		case siteDegraded:
			degraded++
		}
	}
	need := e.quorum.need(known)
	switch {
	case down >= need:
		state = VerdictLost
	case witnesses < need:
		return VerdictUnknown, witnesses, down, nil
	case down > 0 || degraded > 0:
		state = VerdictDegraded
	default:
		state = VerdictUp
	}
	if state == s.state {
		return state, witnesses, down, s.detect
	}
	// Only a change needs the witnesses' reports themselves.
	reports := make([]SiteReport, 0, witnesses)
	for _, a := range e.agents {
		if r, ok := a.sites[s.name]; ok && e.witness(a, r, now) {
			reports = append(reports, r)
		}
	}
	previous := s.lastCalm
	if state == VerdictUp {
		previous = s.lastTrouble
	}
	return state, witnesses, down, detectDelay(state, reports, previous, now)
}

// witness says whether agent a, reporting r for a site, counts for its verdict.
func (e *Engine) witness(a *agentRecord, r SiteReport, now time.Time) bool {
	switch r.State {
	case siteUp, siteDegraded, siteDown:
		return !a.isolated && e.fresh(a, now)
	}
	return false
}

// detectDelay is the time from the earliest failure (or recovery) that the witnesses
// report to now. Reports the view received before the site was last calm (or, for a
// recovery, last in trouble) are left out when newer ones exist: an agent that has seen
// a site down for hours did not see this fire start hours ago.
func detectDelay(state string, reports []SiteReport, previous, now time.Time) *float64 {
	relevant := func(r SiteReport) bool {
		switch state {
		case VerdictLost:
			return r.State == siteDown
		case VerdictDegraded:
			return r.State == siteDown || r.State == siteDegraded
		default:
			return r.State == siteUp
		}
	}
	var starts, recent []time.Time
	for _, r := range reports {
		if !relevant(r) || r.Since.IsZero() || r.Detect < 0 {
			continue
		}
		start := r.Since.Add(-time.Duration(r.Detect * float64(time.Second)))
		starts = append(starts, start)
		if r.seen.After(previous) {
			recent = append(recent, start)
		}
	}
	if len(recent) > 0 {
		starts = recent
	}
	if len(starts) == 0 {
		return nil
	}
	earliest := starts[0]
	for _, t := range starts[1:] {
		if t.Before(earliest) {
			earliest = t
		}
	}
	d := max(0, now.Sub(earliest).Seconds())
	return &d
}

func (e *Engine) siteNames() []string {
	names := make([]string, 0, len(e.sites))
	for n := range e.sites {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Sites is the current verdict of every site, sorted by name, each with its agents
// sorted by name.
func (e *Engine) Sites(now time.Time) []SiteView {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]SiteView, 0, len(e.sites))
	for _, name := range e.siteNames() {
		s := e.sites[name]
		v := SiteView{Name: name, State: s.state, Since: s.since, Witnesses: s.witnesses, Down: s.down,
			Agents: []AgentView{}, DetectSeconds: s.detect}
		for _, a := range e.agents {
			r, ok := a.sites[name]
			if !ok {
				continue
			}
			v.Agents = append(v.Agents, AgentView{Name: a.name, State: r.State, Isolated: a.isolated, Stale: !e.fresh(a, now)})
		}
		sort.Slice(v.Agents, func(i, j int) bool { return v.Agents[i].Name < v.Agents[j].Name })
		out = append(out, v)
	}
	return out
}

// AgentCounts returns how many known agents are fresh and how many are stale.
func (e *Engine) AgentCounts(now time.Time) (fresh, stale int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.agents {
		if e.fresh(a, now) {
			fresh++
		} else {
			stale++
		}
	}
	return fresh, stale
}
