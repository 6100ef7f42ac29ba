package exporters

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/probes"
)

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// extraLabels checks the [agent].labels (which config has validated) and returns them
// sorted by name. A name Prometheus refuses, or one the exporters set themselves
// (contract.ReservedLabels), is an error: overriding agent or site would misattribute
// every series.
func extraLabels(labels map[string]string) ([]labelPair, error) {
	out := make([]labelPair, 0, len(labels))
	for name, value := range labels {
		switch {
		case !labelNameRE.MatchString(name) || strings.HasPrefix(name, "__"):
			return nil, fmt.Errorf("agent label %q: not a Prometheus label name (letters, digits and _, not starting with a digit or __)", name)
		case slices.Contains(contract.ReservedLabels, name):
			return nil, fmt.Errorf("agent label %q: reserved, edgeprobe sets it itself", name)
		case value == "":
			return nil, fmt.Errorf("agent label %q: empty value", name)
		}
		out = append(out, labelPair{name, value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

type labelPair struct{ name, value string }

type promSiteState struct {
	name string
	enc  *siteLabels // remote_write's encoded label sets, built on its first snapshot
	// /metrics' rendered labels (agent, agent labels, site), made with the site.
	pageBlock *labelBlock
	state     string
	since     time.Time // zero until the first EventSite
	detect    time.Duration
}

type promTargetKey struct{ site, target string }

func (k promTargetKey) less(o promTargetKey) bool {
	if k.site != o.site {
		return k.site < o.site
	}
	return k.target < o.target
}

type promTargetState struct {
	key promTargetKey
	enc *targetLabels // remote_write's encoded label sets, rebuilt when kind changes
	// /metrics' histogram and failure counters: cur is the set of the current kind, sets
	// every kind seen (sorted by kind). Only the Prometheus exporter's state has them.
	cur    *promSeriesSet
	sets   []*promSeriesSet
	kind   probes.Kind
	state  string // agent.Target* name
	probed bool   // a probe result has been seen
	ok     bool
	rtt    time.Duration
	reason probes.Reason // the last probe's; ReasonNone when it succeeded
	phases probes.Phases
	// certExpiry is the last completed TLS handshake's Result.CertExpiry; a probe without
	// one (the server down, a handshake refused) keeps it, so that an expiry alert keeps
	// firing while the certificate that caused it still stands.
	certExpiry time.Time
}

// promState is the agent's current state as both Prometheus exporters export it: the
// /metrics gauges are read from it at scrape time and every remote_write push carries
// all of it. Sites and targets appear when the first event names them.
type promState struct {
	mu       sync.Mutex
	isolated bool
	impaired bool
	// scheduler is the agent's last scheduler report (/metrics only; nil until the first).
	scheduler *agent.SchedulerReport
	sites     map[string]*promSiteState
	targets   map[promTargetKey]*promTargetState
	// The same, in export order (sites by name; targets by site, then name), kept sorted
	// as they appear so that a snapshot or scrape sorts nothing.
	siteList   []*promSiteState
	targetList []*promTargetState
	// pageLabels is set for the /metrics exporter: apply then also counts each probe
	// result in the target's promSeriesSet and renders label blocks as series appear.
	pageLabels *pageLabels
	// gone are the remote_write series that a removal (or a kind change) ended since the
	// last snapshot (remotewrite_encode.go); /metrics' state never has any.
	gone []goneSeries
}

func newPromState() *promState {
	return &promState{sites: map[string]*promSiteState{}, targets: map[promTargetKey]*promTargetState{}}
}

// apply records an event. changed reports a state change (site, target or agent), which
// remote_write pushes at once; t is the event's target, nil for site and agent events.
// A probe result of a known target costs one map lookup.
func (s *promState) apply(ev agent.Event) (changed bool, t *promTargetState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ev.Type == agent.EventAgent:
		s.isolated = ev.To == agent.AgentIsolated
		return true, nil
	case ev.Type == agent.EventImpaired:
		s.impaired = ev.To == agent.AgentImpaired
		return true, nil
	case ev.Type == agent.EventScheduler:
		if s.pageLabels != nil && ev.Scheduler != nil {
			if s.scheduler == nil {
				s.scheduler = new(agent.SchedulerReport)
			}
			*s.scheduler = *ev.Scheduler
		}
		return false, nil
	case ev.Type == agent.EventSite:
		site := s.site(ev.Site)
		site.state, site.since, site.detect = ev.To, ev.Time, ev.Detect
		return true, nil
	case ev.Type == agent.EventRemoved:
		if ev.Target != "" {
			s.removeTarget(promTargetKey{ev.Site, ev.Target})
		} else {
			s.removeSite(ev.Site)
		}
		return true, nil
	case ev.Target == "":
		return false, nil
	}
	key := promTargetKey{ev.Site, ev.Target}
	t = s.targets[key]
	if t == nil {
		if ev.Site != "" {
			s.site(ev.Site)
		}
		t = &promTargetState{key: key, state: agent.TargetUnknown}
		s.targets[key] = t
		s.targetList = slices.Insert(s.targetList, s.targetIndex(key), t)
	}
	if ev.Kind != "" {
		if ev.Kind != t.kind {
			t.certExpiry = time.Time{} // another kind's endpoint
		}
		t.kind = ev.Kind
	}
	if s.pageLabels != nil {
		if t.cur == nil || ev.Kind != "" && ev.Kind != t.cur.kind {
			t.cur = t.seriesSet(ev.Kind, s.pageLabels)
		}
		if ev.Type == agent.EventProbe && !ev.Inconclusive {
			t.cur.observe(ev.Result)
		}
	}
	switch ev.Type {
	case agent.EventTarget:
		t.state = ev.To
		return true, t
	case agent.EventProbe:
		if ev.Inconclusive {
			// Neither outcome is known: the last conclusive probe stands.
			return false, t
		}
		t.probed, t.ok, t.rtt, t.phases = true, ev.Result.OK, ev.Result.RTT, ev.Result.Phases
		if !ev.Result.CertExpiry.IsZero() {
			t.certExpiry = ev.Result.CertExpiry
		}
		t.reason = ev.Result.Reason
		if t.ok {
			t.reason = probes.ReasonNone
		}
	}
	return false, t
}

// targetIndex is where key is, or would go, in targetList. s.mu is held.
func (s *promState) targetIndex(key promTargetKey) int {
	return sort.Search(len(s.targetList), func(i int) bool { return !s.targetList[i].key.less(key) })
}

// removeTarget forgets a target (all its kinds' series). s.mu is held.
func (s *promState) removeTarget(key promTargetKey) {
	t, ok := s.targets[key]
	if !ok {
		return
	}
	s.endTarget(t)
	delete(s.targets, key)
	if i := s.targetIndex(key); i < len(s.targetList) && s.targetList[i].key == key {
		s.targetList = slices.Delete(s.targetList, i, i+1)
	}
}

// removeSite forgets a site and any target still listed under it. s.mu is held.
func (s *promState) removeSite(name string) {
	if site, ok := s.sites[name]; ok {
		s.endSite(site)
		delete(s.sites, name)
		s.siteList = slices.DeleteFunc(s.siteList, func(site *promSiteState) bool { return site.name == name })
	}
	for key := range s.targets {
		if key.site == name {
			s.removeTarget(key)
		}
	}
}

// site returns the named site's state, adding it (unknown) on first sight. s.mu is held.
func (s *promState) site(name string) *promSiteState {
	site := s.sites[name]
	if site == nil {
		site = &promSiteState{name: name, state: agent.SiteUnknown}
		if s.pageLabels != nil {
			site.pageBlock = s.pageLabels.block([]labelPair{{"site", name}}, "state")
		}
		s.sites[name] = site
		i := sort.Search(len(s.siteList), func(i int) bool { return s.siteList[i].name >= name })
		s.siteList = slices.Insert(s.siteList, i, site)
	}
	return site
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
