package view

import (
	"container/heap"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"
)

// Site verdicts (docs/architecture.md, "Verdicts at the view").
const (
	VerdictUp          = "up"
	VerdictDegraded    = "degraded"
	VerdictPartitioned = "partitioned"
	VerdictLost        = "lost"
	VerdictUnknown     = "unknown"
	// VerdictForgotten is the To of the change that ends a site no agent has reported
	// for forget_after: it leaves the board. It is never a site's verdict.
	VerdictForgotten = "forgotten"
)

// Verdicts lists the verdicts a site can have, in the order the metrics list them.
var Verdicts = []string{VerdictUp, VerdictDegraded, VerdictPartitioned, VerdictLost, VerdictUnknown}

// Per-agent site states, as agents push them (the push contract's).
const (
	siteUp       = contract.SiteUp
	siteDegraded = contract.SiteDegraded
	siteDown     = contract.SiteDown
	siteUnknown  = contract.SiteUnknown
)

// AgentReport is what one push says about one agent: its complete current state.
type AgentReport struct {
	Agent    string
	Isolated bool
	Impaired bool // the agent finds itself too late to judge timeouts
	// Labels are the agent's own labels ([agent] labels in agent.toml), read from its
	// agent-wide series; quorum_by reads its failure domain from them.
	Labels       map[string]string
	PushInterval time.Duration // 0 when the push did not announce it
	// Sites is nil when the push carried no site state; the agent's sites are then kept.
	Sites map[string]SiteReport
	// Targets are the agent's targets at its sites, sorted by site then name (nil when
	// the push carried none); kept for the page's detail, never read by a verdict.
	Targets    []TargetReport
	SampleTime time.Time // the newest sample timestamp, on the agent's clock
	HasSamples bool      // some series carried a sample (SampleTime is then meaningful)
}

// SiteReport is one agent's view of one site.
type SiteReport struct {
	State  string    // up, degraded, down or unknown
	Since  time.Time // when the agent entered State (zero if not reported)
	Detect float64   // seconds from the first failed (or good) probe to that change; <0 unknown

	seen time.Time // when the view first received State from this agent, on the view's clock
}

// Change is a verdict change of one site. ID is set by the server when it publishes it.
type Change struct {
	ID            uint64    `json:"id"`
	Site          string    `json:"site"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	Time          time.Time `json:"time"`
	DetectSeconds *float64  `json:"detect_seconds,omitempty"`
	Witnesses     int       `json:"witnesses"`
	Down          int       `json:"down"`
	Up            int       `json:"up"`
	Silenced      bool      `json:"silenced,omitempty"`
}

// SiteView is one entry of GET /api/v1/sites.
type SiteView struct {
	Name          string      `json:"name"`
	State         string      `json:"state"`
	Since         time.Time   `json:"since"`
	Witnesses     int         `json:"witnesses"`
	Down          int         `json:"down"`
	Up            int         `json:"up"`
	Agents        []AgentView `json:"agents"`
	DetectSeconds *float64    `json:"detect_seconds,omitempty"`
	Silenced      bool        `json:"silenced"`

	// agentsJSON, when set, is Agents as JSON, and appendJSON writes it instead.
	agentsJSON []byte
}

// AgentView is one agent's report on a site. Stale is set only for agents that stopped
// pushing, which stay listed (until forget_after) so that an operator sees who is missing.
type AgentView struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Isolated bool   `json:"isolated"`
	Impaired bool   `json:"impaired,omitempty"`
	Stale    bool   `json:"stale,omitempty"`
	Domain   string `json:"domain,omitempty"` // the quorum_by label's value
}

// siteAgent is an agent that reports a site, and the state it reports (siteRecord.byName).
type siteAgent struct {
	a     *agentRecord
	state string
}

// agentSite is an agent's report on a site, with the site's record: a push moves the
// agent's counts at its sites without looking them up by name.
type agentSite struct {
	SiteReport
	site *siteRecord
}

type agentRecord struct {
	name       string
	lastPush   time.Time // arrival, on the view's clock
	interval   time.Duration
	isolated   bool
	impaired   bool
	domain     string // failure domain: the quorum_by label's value, or the agent's own
	domainSet  bool   // the agent carries the quorum_by label
	sites      map[string]agentSite
	targets    []TargetReport // the latest push's (targets.go)
	sampleTime time.Time

	// counted says the agent's known site states are in its sites' witness counts: it is
	// fresh (by the last look at the clock), not isolated and not impaired.
	counted  bool
	deadline time.Time // lastPush + its staleness period
	heapIdx  int       // in Engine.expiry while fresh, -1 once stale
}

type siteRecord struct {
	name         string
	state        string
	since        time.Time
	detect       *float64
	witnesses    int
	down         int
	lastReported time.Time // the last push of an agent that reports the site
	// lastCalm and lastTrouble are the last evaluations that found the site up, and
	// in trouble (lost, partitioned or degraded): they tell which witnesses' reports
	// belong to the current change.
	lastCalm    time.Time
	lastTrouble time.Time

	// agents report the site (fresh or not); up, degraded and down count the witnesses
	// (fresh, non-isolated, non-impaired agents) by the state they report. Kept up to date
	// on every push and expiry, so a verdict costs the same with 3 agents or 3000.
	agents                map[*agentRecord]struct{}
	upN, degradedN, downN int
	// byName is agents sorted by name, with the state each reports, for readers: nil
	// after an agent came or went or its state here changed, and rebuilt by the next
	// reader. A board is read far more often than that happens, and a read of 20,000
	// sites sorted every site's agents and looked up every agent's report anew.
	byName []siteAgent
	// answer is the JSON of the agents in the answer of GET /api/v1/sites (answerInto):
	// nil when byName is, or when what the site shows of one of its agents changed
	// (reshow); never changed once built, so a reader may hold it past the lock.
	answer []byte
	gone   bool // forgotten: no longer in the engine's sites
	// With quorum_by, the same by failure domain: domain -> agents in it that count
	// (witnesses, down witnesses) or report the site at all (known).
	witnessDomains, downDomains, knownDomains map[string]int
	touched                                   bool // queued for evaluation
}

// Engine turns agents' reports into site verdicts. It takes the time as an argument
// everywhere rather than reading a clock, so tests drive it with any time they like and
// the server decides when to look (on every push, and when the next agent goes stale).
//
// Its cost per push is that of the pushing agent's sites, not of every agent: each site
// keeps its witness counts, a push moves its agent's contribution, and the agents' stale
// deadlines sit in a heap, so an expiry touches only the sites of the agent that expired.
// Readers (Sites) copy the state in steps of at most siteChunk sites or agentChunk
// agents' entries, so that a board of 200,000 sites, or of 10,000 agents a site, never
// holds a push up for longer than one step.
type Engine struct {
	quorum        Quorum
	quorumBy      string
	maxUpFraction float64
	staleAfter    time.Duration // 0: from each agent's push interval
	maxSampleAge  time.Duration
	forgetAfter   time.Duration // 0: never
	// The most agents, sites and reports (one per agent and site it reports, and per
	// agent and target) the engine keeps; Fits refuses a push beyond them.
	maxAgents, maxSites, maxReports int

	mu      sync.Mutex
	reports int // the sum over agents of len(sites) + len(targets)
	agents  map[string]*agentRecord
	sites   map[string]*siteRecord
	expiry  expiryHeap    // fresh agents by deadline
	touched []*siteRecord // sites to evaluate, reused between calls
	counts  map[string]int
	// sorted is every site by name for readers, nil after a site came or went; the
	// first reader after that builds a new slice (a reader holding the old one between
	// its steps is not disturbed), and a forgotten site in it is marked gone.
	sorted []*siteRecord
	// scratch is the view answerInto builds a site's JSON from, under the lock.
	scratch SiteView
}

// NewEngine makes an engine with the verdict settings of cfg.
func NewEngine(cfg *Config) *Engine {
	e := &Engine{
		quorum:        cfg.Quorum,
		quorumBy:      cfg.QuorumBy,
		maxUpFraction: cfg.MaxUpFraction,
		staleAfter:    cfg.StaleAfter.Duration,
		maxSampleAge:  cfg.MaxSampleAge.Duration,
		forgetAfter:   cfg.ForgetAfter.Duration,
		maxAgents:     cfg.MaxAgents,
		maxSites:      cfg.MaxSites,
		maxReports:    cfg.MaxReports,
		agents:        map[string]*agentRecord{},
		sites:         map[string]*siteRecord{},
		counts:        map[string]int{},
	}
	return e
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

// agentShown is what a site's answer shows of an agent beside its state there and its
// failure domain (AgentView; a new domain re-knows the agent at its sites, which drops
// their answers): a change of it drops the answers its sites keep (reshow).
type agentShown struct{ isolated, impaired, stale bool }

// shown is a's agentShown; a is stale when it is out of the expiry heap, which an
// Apply or Expire at now makes the same as !fresh(a, now).
func (a *agentRecord) shown() agentShown {
	return agentShown{isolated: a.isolated, impaired: a.impaired, stale: a.heapIdx < 0}
}

// reshow drops the answers that a's sites keep.
func (a *agentRecord) reshow() {
	for _, r := range a.sites {
		r.site.answer = nil
	}
}

// addDomain moves domain's count in m by sign, dropping it at zero.
func addDomain(m map[string]int, domain string, sign int) {
	if n := m[domain] + sign; n > 0 {
		m[domain] = n
	} else {
		delete(m, domain)
	}
}

// count adds (sign 1) or removes (sign -1) a's reports from its sites' witness counts,
// if a counts, and queues those sites for evaluation.
func (e *Engine) count(a *agentRecord, sign int) {
	for _, r := range a.sites {
		s := r.site
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
		default:
			continue
		}
		if e.quorumBy != "" {
			addDomain(s.witnessDomains, a.domain, sign)
			if r.State == siteDown {
				addDomain(s.downDomains, a.domain, sign)
			}
		}
	}
}

// know adds (sign 1) or removes (sign -1) a, in domain, from the agents that report
// site s.
func (e *Engine) know(s *siteRecord, a *agentRecord, domain string, sign int) {
	if sign > 0 {
		s.agents[a] = struct{}{}
	} else {
		delete(s.agents, a)
	}
	s.byName, s.answer = nil, nil
	if e.quorumBy != "" {
		addDomain(s.knownDomains, domain, sign)
	}
	e.touch(s)
}

// relist moves a, reporting sites in oldDomain, to its domain now.
func (e *Engine) relist(a *agentRecord, oldDomain string) {
	for _, r := range a.sites {
		e.know(r.site, a, oldDomain, -1)
		e.know(r.site, a, a.domain, 1)
	}
}

// resite makes sites, the push's, a's sites (copied: the caller may reuse its map), a in
// its domain now. A site in both stays as it is unless the domain changed: a push that
// says what the last one said costs no map operations beyond the copy. A state not
// changed keeps the time the view first saw it.
func (e *Engine) resite(a *agentRecord, oldDomain string, sites map[string]SiteReport, now time.Time) {
	moved := a.domain != oldDomain
	e.reports += len(sites) - len(a.sites)
	if a.sites == nil {
		a.sites = make(map[string]agentSite, len(sites))
	}
	if moved {
		// Every site leaves the old domain before any joins the new one.
		e.unsite(a, oldDomain, sites, true)
	}
	kept, before := 0, len(a.sites)
	for name, sr := range sites {
		old, was := a.sites[name]
		if was {
			kept++
		}
		if was && old.State == sr.State {
			sr.seen = old.seen
		} else {
			sr.seen = now
			if was {
				old.site.byName, old.site.answer = nil, nil
			}
		}
		if !was {
			if old.site = e.sites[name]; old.site == nil {
				old.site = e.addSite(name, now)
			}
		}
		a.sites[name] = agentSite{sr, old.site}
		if !was || moved {
			e.know(old.site, a, a.domain, 1)
		}
	}
	// Only a push that did not keep every site a had takes some away.
	if kept < before {
		e.unsite(a, oldDomain, sites, false)
	}
}

// unsite drops from a's sites those that the push's sites no longer name, and takes a
// (in oldDomain) out of those sites' agents; with all, out of the agents of every site
// a keeps, as a move to another failure domain needs.
func (e *Engine) unsite(a *agentRecord, oldDomain string, sites map[string]SiteReport, all bool) {
	for name, r := range a.sites {
		_, still := sites[name]
		if !still || all {
			e.know(r.site, a, oldDomain, -1)
		}
		if !still {
			delete(a.sites, name)
		}
	}
}

// retarget makes targets, the push's, a's targets, copied into the slice a keeps when it
// fits them without wasting much of it.
func (e *Engine) retarget(a *agentRecord, targets []TargetReport) {
	e.reports += len(targets) - len(a.targets)
	switch n := len(targets); {
	case n == 0:
		a.targets = nil
	case cap(a.targets) >= n && cap(a.targets) <= n+n/8:
		a.targets = append(a.targets[:0], targets...)
	default:
		a.targets = slices.Clone(targets)
	}
}

// expireDue takes the agents whose deadline is not after now out of the witness counts.
func (e *Engine) expireDue(now time.Time) {
	for len(e.expiry) > 0 && !e.expiry[0].deadline.After(now) {
		a := heap.Pop(&e.expiry).(*agentRecord)
		e.count(a, -1)
		a.counted = false
		a.reshow() // stale now
	}
}

// ignore says whether a report carries nothing about now: older than max_sample_age,
// dated further ahead than that (a clock far off), without a sample time at all, or a
// little older than the agent's last one (a retry that a newer push overtook; much older
// means the agent's clock stepped back, and its reports count again).
func (e *Engine) ignore(a *agentRecord, r AgentReport, now time.Time) bool {
	if e.maxSampleAge > 0 {
		if !r.HasSamples {
			return true
		}
		if age := now.Sub(r.SampleTime); age > e.maxSampleAge || age < -e.maxSampleAge {
			return true
		}
	}
	return a != nil && r.SampleTime.Before(a.sampleTime) && a.sampleTime.Sub(r.SampleTime) <= e.staleAfterFor(a)
}

// domainOf is the failure domain of an agent with labels: the quorum_by label's value,
// or, without it, a domain of its own (a key no label value can spell).
func (e *Engine) domainOf(name string, labels map[string]string) (string, bool) {
	if v, ok := labels[e.quorumBy]; ok && v != "" && e.quorumBy != "" {
		return v, true
	}
	return "\x00" + name, false
}

// ErrFull is a push that would take the engine past max_agents, max_sites or
// max_reports: what it keeps is bounded however many names senders invent, and forget_after
// frees the room of agents that went away.
type ErrFull struct{ Limit, What string }

func (e *ErrFull) Error() string { return e.What + " (" + e.Limit + ")" }

// Fits says whether Apply may take reports without going past the engine's bounds: nil,
// or an *ErrFull naming the bound. Reports of agents already kept fit as long as the
// reports they bring in all fit. The caller holds the lock that serialises Apply (only
// Apply adds), so that what fits still fits when Apply runs.
func (e *Engine) Fits(reports []AgentReport) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	agents, unknown, delta := 0, 0, 0
	for _, r := range reports {
		a := e.agents[r.Agent]
		if a == nil {
			agents++
		}
		if r.Sites != nil {
			unknown += unknownTo(a, r.Sites)
			delta += len(r.Sites)
			if a != nil {
				delta -= len(a.sites)
			}
		}
		if r.Sites != nil || r.Targets != nil {
			delta += len(r.Targets)
			if a != nil {
				delta -= len(a.targets)
			}
		}
	}
	// Which sites are new matters only where those the agents do not report yet could
	// pass max_sites: a view kept full by the same agents does not look its sites up.
	sites := 0
	if e.maxSites > 0 && len(e.sites)+unknown > e.maxSites {
		sites = e.newSites(reports)
	}
	switch {
	case e.maxAgents > 0 && agents > 0 && len(e.agents)+agents > e.maxAgents:
		return &ErrFull{"max_agents", fmt.Sprintf("the view keeps %d agents, and %d more would pass max_agents %d", len(e.agents), agents, e.maxAgents)}
	case e.maxSites > 0 && sites > 0 && len(e.sites)+sites > e.maxSites:
		return &ErrFull{"max_sites", fmt.Sprintf("the view keeps %d sites, and %d more would pass max_sites %d", len(e.sites), sites, e.maxSites)}
	case e.maxReports > 0 && delta > 0 && e.reports+delta > e.maxReports:
		return &ErrFull{"max_reports", fmt.Sprintf("the view keeps %d site and target reports, and %d more would pass max_reports %d", e.reports, delta, e.maxReports)}
	}
	return nil
}

// unknownTo counts the sites of a push that agent a (nil: a new one) does not report
// yet: at most this many are new to the engine (newSites says why).
func unknownTo(a *agentRecord, sites map[string]SiteReport) int {
	if a == nil {
		return len(sites)
	}
	n := 0
	for name := range sites {
		if _, ok := a.sites[name]; !ok {
			n++
		}
	}
	return n
}

// newSites counts the sites that reports name and the engine does not keep. A site an
// agent keeps is always one the engine keeps (Forget drops only sites no agent reports).
func (e *Engine) newSites(reports []AgentReport) int {
	n := 0
	var seen map[string]bool
	for _, r := range reports {
		for name := range r.Sites {
			if e.sites[name] != nil || seen[name] {
				continue
			}
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[name] = true
			n++
		}
	}
	return n
}

// Apply records reports that arrived at now and returns the verdicts that changed.
// It also returns how many reports were ignored (see ignore): they neither refresh the
// agent nor change its state. It keeps copies of what it keeps: the reports' maps and
// slices are the caller's again when it returns.
func (e *Engine) Apply(reports []AgentReport, now time.Time) (changes []Change, ignored int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireDue(now)
	for _, r := range reports {
		a := e.agents[r.Agent]
		if e.ignore(a, r, now) {
			ignored++
			continue
		}
		if a == nil {
			a = &agentRecord{name: r.Agent, heapIdx: -1}
			e.agents[r.Agent] = a
		}
		// Only the sites this agent reports, now or before, can change with its push.
		e.count(a, -1)
		shown := a.shown()
		a.lastPush = now
		a.sampleTime = r.SampleTime
		a.isolated, a.impaired = r.Isolated, r.Impaired
		if r.PushInterval > 0 {
			a.interval = r.PushInterval
		}
		oldDomain := a.domain
		if r.Labels != nil || a.domain == "" {
			a.domain, a.domainSet = e.domainOf(a.name, r.Labels)
		}
		if r.Sites != nil {
			e.resite(a, oldDomain, r.Sites, now)
		} else if a.domain != oldDomain {
			e.relist(a, oldDomain)
		}
		if r.Sites != nil || r.Targets != nil {
			e.retarget(a, r.Targets)
		}
		for _, r := range a.sites {
			r.site.lastReported = now
		}
		a.counted = !a.isolated && !a.impaired
		e.count(a, 1)
		a.deadline = now.Add(e.staleAfterFor(a))
		if a.heapIdx >= 0 {
			heap.Fix(&e.expiry, a.heapIdx)
		} else {
			heap.Push(&e.expiry, a)
		}
		if a.shown() != shown {
			a.reshow()
		}
	}
	return e.evaluate(now), ignored
}

func (e *Engine) addSite(name string, now time.Time) *siteRecord {
	s := &siteRecord{name: name, state: VerdictUnknown, since: now, agents: map[*agentRecord]struct{}{}}
	if e.quorumBy != "" {
		s.witnessDomains, s.downDomains, s.knownDomains = map[string]int{}, map[string]int{}, map[string]int{}
	}
	e.sites[name] = s
	e.sorted = nil
	e.counts[VerdictUnknown]++
	return s
}

// Expire takes the agents that stopped pushing by now out of the witnesses and returns
// the verdicts that changed.
func (e *Engine) Expire(now time.Time) []Change {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireDue(now)
	return e.evaluate(now)
}

// Forget drops the agents that have not pushed for forget_after, and then the sites that
// no agent has reported for as long: a renamed site leaves the board, and a majority
// counts only the agents of the present. Each forgotten site gives a change to
// VerdictForgotten; the verdicts its agents' departure changes come back as well.
func (e *Engine) Forget(now time.Time) []Change {
	if e.forgetAfter <= 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireDue(now)
	for name, a := range e.agents {
		if now.Sub(a.lastPush) < e.forgetAfter {
			continue
		}
		if a.heapIdx >= 0 {
			heap.Remove(&e.expiry, a.heapIdx)
			e.count(a, -1)
			a.counted = false
		}
		for _, r := range a.sites {
			e.know(r.site, a, a.domain, -1)
		}
		e.reports -= len(a.sites) + len(a.targets)
		delete(e.agents, name)
	}
	changes := e.evaluate(now)
	var gone []string
	for name, s := range e.sites {
		if len(s.agents) == 0 && now.Sub(s.lastReported) >= e.forgetAfter {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		s := e.sites[name]
		changes = append(changes, Change{Site: name, From: s.state, To: VerdictForgotten, Time: now})
		e.counts[s.state]--
		delete(e.sites, name)
		s.gone, e.sorted = true, nil
	}
	return changes
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

// evaluate recomputes the verdicts of the queued sites and returns the changes in name
// order. A site's verdict depends on that site alone, so the sites are evaluated in the
// order they were queued and only the changes, rarely more than one, are sorted: sorting
// the 20 sites a push touches was a third of the cost of evaluating them.
func (e *Engine) evaluate(now time.Time) []Change {
	var changes []Change
	for _, s := range e.touched {
		s.touched = false
		if s.gone {
			continue // forgotten meanwhile
		}
		state, witnesses, down, detect := e.verdict(s, now)
		s.witnesses, s.down = witnesses, down
		if state != s.state {
			changes = append(changes, Change{Site: s.name, From: s.state, To: state, Time: now, DetectSeconds: detect,
				Witnesses: witnesses, Down: down, Up: s.upN})
			e.counts[s.state]--
			e.counts[state]++
			s.state, s.since, s.detect = state, now, detect
		}
		switch state {
		case VerdictUp:
			s.lastCalm = now
		case VerdictLost, VerdictPartitioned, VerdictDegraded:
			s.lastTrouble = now
		}
	}
	clear(e.touched)
	e.touched = e.touched[:0]
	if len(changes) > 1 {
		slices.SortFunc(changes, func(x, y Change) int { return strings.Compare(x.Site, y.Site) })
	}
	return changes
}

// verdict applies the verdict rule (docs/architecture.md, "Verdicts at the view") to one site
// from its witness counts, first match wins. witnesses and down are counted in failure
// domains when quorum_by is set, in agents otherwise.
func (e *Engine) verdict(s *siteRecord, now time.Time) (state string, witnesses, down int, detect *float64) {
	agents := s.upN + s.degradedN + s.downN
	witnesses, down, known := agents, s.downN, len(s.agents)
	if e.quorumBy != "" {
		witnesses, down, known = len(s.witnessDomains), len(s.downDomains), len(s.knownDomains)
	}
	need := e.quorum.need(known)
	switch {
	case witnesses < need:
		return VerdictUnknown, witnesses, down, nil
	case down >= need && float64(s.upN) <= e.maxUpFraction*float64(agents):
		state = VerdictLost
	case down >= need:
		state = VerdictPartitioned
	case s.downN > 0 || s.degradedN > 0:
		state = VerdictDegraded
	default:
		state = VerdictUp
	}
	if state == s.state {
		return state, witnesses, down, s.detect
	}
	// Only a change needs the witnesses' reports themselves.
	reports := make([]SiteReport, 0, agents)
	for a := range s.agents {
		if r, ok := a.sites[s.name]; ok && e.witness(a, r.SiteReport) {
			reports = append(reports, r.SiteReport)
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
		case VerdictLost, VerdictPartitioned:
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

// siteChunk and agentChunk bound what a reader copies per hold of the engine's lock: up
// to siteChunk sites, and no further site once agentChunk agents' entries are copied. A
// site is always copied whole, so that it is consistent in itself; 512 sites of 10,000
// agents each would hold pushes up for the copy of five million entries.
const (
	siteChunk  = 512
	agentChunk = 4096
)

// Sites is the current verdict of every site, sorted by name, each with its agents
// sorted by name. It copies the state a few sites at a time (eachStep), so pushes are applied
// between the steps: each site is consistent in itself, the list is the state of a few
// milliseconds rather than of one instant.
func (e *Engine) Sites(now time.Time) []SiteView {
	var out []SiteView
	e.EachSites(now, func(chunk []SiteView) error {
		for _, v := range chunk {
			v.Agents = slices.Clone(v.Agents)
			out = append(out, v)
		}
		return nil
	})
	return out
}

// EachSites is Sites a chunk at a time, for an answer written as it is copied: fn gets
// the sites of one step, copied under one hold of the lock, in a slice (and agent
// lists) that the next call reuses. It stops at fn's first error and returns it.
func (e *Engine) EachSites(now time.Time, fn func([]SiteView) error) error {
	return e.eachStep(now, e.viewInto, fn)
}

// eachAnswer is EachSites for the answer of GET /api/v1/sites: each site's agents come
// as their JSON (agentsJSON, Agents left empty), which the site keeps until they change.
// A board of 20,000 sites changes a few sites a second and is read every second, and
// copying and writing every agent entry anew was most of a read's cost.
func (e *Engine) eachAnswer(now time.Time, fn func([]SiteView) error) error {
	return e.eachStep(now, e.answerInto, fn)
}

// eachStep walks the sites in name order, in steps bounded by siteChunk and
// agentChunk, filling a view of each under one hold of the lock a step.
func (e *Engine) eachStep(now time.Time, fill func(*SiteView, *siteRecord, time.Time), fn func([]SiteView) error) error {
	e.mu.Lock()
	if e.sorted == nil {
		e.sorted = make([]*siteRecord, 0, len(e.sites))
		for _, s := range e.sites {
			e.sorted = append(e.sorted, s)
		}
		slices.SortFunc(e.sorted, func(x, y *siteRecord) int { return strings.Compare(x.name, y.name) })
	}
	sites := e.sorted
	e.mu.Unlock()
	chunk := make([]SiteView, 0, min(siteChunk, len(sites)))
	for i := 0; i < len(sites); {
		chunk = chunk[:0]
		agents := 0
		e.mu.Lock()
		for ; i < len(sites) && len(chunk) < siteChunk && agents < agentChunk; i++ {
			if s := sites[i]; !s.gone {
				chunk = chunk[:len(chunk)+1]
				fill(&chunk[len(chunk)-1], s, now)
				agents += len(s.agents)
			}
		}
		e.mu.Unlock()
		if err := fn(chunk); err != nil {
			return err
		}
	}
	return nil
}

// Site is the current verdict of one site; false when no agent reports it.
func (e *Engine) Site(name string, now time.Time) (SiteView, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sites[name]
	if s == nil {
		return SiteView{}, false
	}
	return e.view(s, now), true
}

// view copies one site; e.mu is held.
func (e *Engine) view(s *siteRecord, now time.Time) SiteView {
	var v SiteView
	e.viewInto(&v, s, now)
	return v
}

// viewInto copies one site into v, reusing v's agent list; e.mu is held.
func (e *Engine) viewInto(v *SiteView, s *siteRecord, now time.Time) {
	agents := v.Agents[:0]
	if agents == nil {
		agents = make([]AgentView, 0, len(s.agents)) // [] in JSON, never null
	}
	*v = siteOwn(s)
	v.Agents = slices.Grow(agents, len(s.agents))
	if s.byName == nil {
		s.byName = make([]siteAgent, 0, len(s.agents))
		for a := range s.agents {
			s.byName = append(s.byName, siteAgent{a, a.sites[s.name].State})
		}
		slices.SortFunc(s.byName, func(x, y siteAgent) int { return strings.Compare(x.a.name, y.a.name) })
	}
	for _, sa := range s.byName {
		a := sa.a
		av := AgentView{Name: a.name, State: sa.state, Isolated: a.isolated, Impaired: a.impaired, Stale: !e.fresh(a, now)}
		if a.domainSet {
			av.Domain = a.domain
		}
		v.Agents = append(v.Agents, av)
	}
}

// answerInto copies s's own fields into v and its agents as the JSON of the answer,
// reusing the JSON s keeps; e.mu is held. The kept JSON is exact while no fresh agent is
// past its deadline: an agent turns stale in the JSON when Expire takes it out, and in
// the time between its deadline and that Expire (a few milliseconds; the server calls
// Expire at every deadline) the JSON is built anew on every read instead.
func (e *Engine) answerInto(v *SiteView, s *siteRecord, now time.Time) {
	b := s.answer
	exact := len(e.expiry) == 0 || now.Before(e.expiry[0].deadline)
	if b == nil || !exact {
		e.viewInto(&e.scratch, s, now)
		b = appendAgentsJSON(make([]byte, 0, 2+agentJSONGuess*len(s.agents)), e.scratch.Agents)
		if exact {
			s.answer = b
		}
	}
	*v = siteOwn(s)
	v.agentsJSON = b
}

// siteOwn is the view of s without its agents; e.mu is held.
func siteOwn(s *siteRecord) SiteView {
	return SiteView{Name: s.name, State: s.state, Since: s.since, Witnesses: s.witnesses, Down: s.down, Up: s.upN,
		DetectSeconds: s.detect}
}

// Counts returns how many sites have each verdict, and how many known agents are fresh
// (not yet expired by the staleness timer) and stale, without walking the sites.
func (e *Engine) Counts() (verdicts map[string]int, fresh, stale int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	verdicts = make(map[string]int, len(Verdicts))
	for _, v := range Verdicts {
		verdicts[v] = e.counts[v]
	}
	return verdicts, len(e.expiry), len(e.agents) - len(e.expiry)
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
