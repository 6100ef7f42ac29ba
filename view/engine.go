package view

import (
	"container/heap"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"
)

// Site verdicts.
const (
	VerdictUp       = "up"
	VerdictDegraded = "degraded"
	VerdictLost     = "lost"
	VerdictUnknown  = "unknown"
)

// Per-agent site states, as agents push them (the push contract's).
const (
	siteUp       = contract.SiteUp
	siteDegraded = contract.SiteDegraded
	siteDown     = contract.SiteDown
	siteUnknown  = contract.SiteUnknown
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

	// counted says the agent's known site states are in its sites' witness counts: it is
	// fresh (by the last look at the clock) and not isolated.
	counted  bool
	deadline time.Time // lastPush + its staleness period
	heapIdx  int       // in Engine.expiry while fresh, -1 once stale
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

	// agents report the site (fresh or not); up, degraded and down count the witnesses
	// (fresh, non-isolated agents) by the state they report. Kept up to date on every
	// push and expiry, so a verdict costs the same with 3 agents or 3000.
	agents                map[*agentRecord]struct{}
	upN, degradedN, downN int
	touched               bool // queued for evaluation
}

// Engine turns agents' reports into site verdicts. It takes the time as an argument
// everywhere rather than reading a clock, so tests drive it with any time they like and
// the server decides when to look (on every push, and when the next agent goes stale).
//
// Its cost per push is that of the pushing agent's sites, not of every agent: each site
// keeps its witness counts, a push moves its agent's contribution, and the agents' stale
// deadlines sit in a heap, so an expiry touches only the sites of the agent that expired.
type Engine struct {
	quorum       Quorum
	staleAfter   time.Duration // 0: from each agent's push interval
	maxSampleAge time.Duration

	mu      sync.Mutex
	agents  map[string]*agentRecord
	sites   map[string]*siteRecord
	expiry  expiryHeap    // fresh agents by deadline
	touched []*siteRecord // sites to evaluate, reused between calls
}

// NewEngine makes an engine with the verdict settings of cfg.
func NewEngine(cfg *Config) *Engine {
	return &Engine{
		quorum:       cfg.Quorum,
		staleAfter:   cfg.StaleAfter.Duration,
		maxSampleAge: cfg.MaxSampleAge.Duration,
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

// touch queues s for the next evaluate.
func (e *Engine) touch(s *siteRecord) {
	if !s.touched {
		s.touched = true
		e.touched = append(e.touched, s)
	}
}

// count adds (sign 1) or removes (sign -1) a's reports from its sites' witness counts,
// if a counts, and queues those sites for evaluation.
func (e *Engine) count(a *agentRecord, sign int) {
	for name, r := range a.sites {
		s := e.sites[name]
		e.touch(s)
		if !a.counted {
			continue
		}
		switch r.State {
		case siteUp:
			s.upN += sign
		case siteDegraded:
			s.degradedN += sign
		case siteDown:
			s.downN += sign
		}
	}
}

// expireDue takes the agents whose deadline is not after now out of the witness counts.
func (e *Engine) expireDue(now time.Time) {
	for len(e.expiry) > 0 && !e.expiry[0].deadline.After(now) {
		a := heap.Pop(&e.expiry).(*agentRecord)
		e.count(a, -1)
		a.counted = false
	}
}

// Apply records reports that arrived at now and returns the verdicts that changed.
// It also returns how many reports were ignored as old (a flushed backlog, or a retry
// overtaken by a newer push): they neither refresh the agent nor change its state.
func (e *Engine) Apply(reports []AgentReport, now time.Time) (changes []Change, ignored int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireDue(now)
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
			a = &agentRecord{name: r.Agent, heapIdx: -1}
			e.agents[r.Agent] = a
		}
		// Only the sites this agent reports, now or before, can change with its push.
		e.count(a, -1)
		a.lastPush = now
		a.sampleTime = r.SampleTime
		a.isolated = r.Isolated
		if r.PushInterval > 0 {
			a.interval = r.PushInterval
		}
		if r.Sites != nil {
			for name := range a.sites {
				if _, still := r.Sites[name]; !still {
					delete(e.sites[name].agents, a)
				}
			}
			for name, sr := range r.Sites {
				if old, ok := a.sites[name]; ok && old.State == sr.State {
					sr.seen = old.seen
				} else {
					sr.seen = now
				}
				r.Sites[name] = sr
				s := e.sites[name]
				if s == nil {
					s = &siteRecord{name: name, state: VerdictUnknown, since: now, agents: map[*agentRecord]struct{}{}}
					e.sites[name] = s
				}
				s.agents[a] = struct{}{}
			}
			a.sites = r.Sites
		}
		a.counted = !a.isolated
		e.count(a, 1)
		a.deadline = now.Add(e.staleAfterFor(a))
		if a.heapIdx >= 0 {
			heap.Fix(&e.expiry, a.heapIdx)
		} else {
			heap.Push(&e.expiry, a)
		}
	}
	return e.evaluate(now), ignored
}

// Expire takes the agents that stopped pushing by now out of the witnesses and returns
// the verdicts that changed.
func (e *Engine) Expire(now time.Time) []Change {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireDue(now)
	return e.evaluate(now)
}

// NextExpiry is the earliest deadline at which a fresh agent turns stale (possibly not
// after now, when Expire is due), or the zero time when no agent is fresh.
func (e *Engine) NextExpiry(now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.expiry) == 0 {
		return time.Time{}
	}
	return e.expiry[0].deadline
}

// evaluate recomputes the verdicts of the queued sites, in name order.
func (e *Engine) evaluate(now time.Time) []Change {
	var changes []Change
	slices.SortFunc(e.touched, func(x, y *siteRecord) int { return strings.Compare(x.name, y.name) })
	for _, s := range e.touched {
		s.touched = false
		state, witnesses, down, detect := e.verdict(s, now)
		s.witnesses, s.down = witnesses, down
		if state != s.state {
			changes = append(changes, Change{Site: s.name, From: s.state, To: state, Time: now, DetectSeconds: detect, Witnesses: witnesses, Down: down})
			s.state, s.since, s.detect = state, now, detect
		}
		switch state {
		case VerdictUp:
			s.lastCalm = now
		case VerdictLost, VerdictDegraded:
			s.lastTrouble = now
		}
	}
	clear(e.touched)
	e.touched = e.touched[:0]
	return changes
}

// verdict applies the verdict rule (docs/DESIGN.md) to one site from its witness counts. Witnesses are
// fresh, non-isolated agents that report a known state for the site.
func (e *Engine) verdict(s *siteRecord, now time.Time) (state string, witnesses, down int, detect *float64) {
	known := len(s.agents)
	witnesses, down = s.upN+s.degradedN+s.downN, s.downN
	need := e.quorum.need(known)
	switch {
	case down >= need:
		state = VerdictLost
	case witnesses < need:
		return VerdictUnknown, witnesses, down, nil
	case down > 0 || s.degradedN > 0:
		state = VerdictDegraded
	default:
		state = VerdictUp
	}
	if state == s.state {
		return state, witnesses, down, s.detect
	}
	// Only a change needs the witnesses' reports themselves.
	reports := make([]SiteReport, 0, witnesses)
	for a := range s.agents {
		if r, ok := a.sites[s.name]; ok && e.witness(a, r) {
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
func (e *Engine) witness(a *agentRecord, r SiteReport) bool {
	switch r.State {
	case siteUp, siteDegraded, siteDown:
		return a.counted
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
		for a := range s.agents {
			r := a.sites[name]
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

// expiryHeap orders fresh agents by their stale deadline.
type expiryHeap []*agentRecord

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *expiryHeap) Push(x any) {
	a := x.(*agentRecord)
	a.heapIdx = len(*h)
	*h = append(*h, a)
}
func (h *expiryHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	a.heapIdx = -1
	return a
}
