package agent

import (
	"time"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/probes"
)

// EventType says which part of an Event is meaningful.
type EventType uint8

// The events an agent emits, in the order data flows.
const (
	EventProbe  EventType = iota + 1 // one probe finished: Result is set
	EventTarget                      // a target changed state: From/To are TargetState names
	EventSite                        // a site changed state: From/To are SiteState names
	EventAgent                       // the agent's self-check changed: To is "ok" or "isolated"
	// EventRemoved: a reload removed a target (Target and Kind set) or a whole site (Target
	// empty). Sinks forget it: its series leave /metrics and the pushes. A target whose
	// kind changed is removed under its old kind and starts anew under the new one.
	EventRemoved
	// EventImpaired: the agent turned impaired (To AgentImpaired) or back (To AgentOK):
	// it is, or no longer is, too late to judge timeouts (see selfCheck). Detect is the
	// time it was late within the window that decided it.
	EventImpaired
	// EventScheduler: the scheduler's own figures (Scheduler): lateness histograms,
	// inconclusive probes, worker goroutines; about once a second while it runs.
	EventScheduler
)

// Target states.
const (
	TargetUnknown = "unknown" // not probed yet
	TargetUp      = "up"
	TargetSuspect = "suspect" // failed at least once, fewer than fail_threshold times in a row
	TargetDown    = "down"
)

// Site states, per agent: the push contract's (see contract.SiteStates).
const (
	SiteUnknown  = contract.SiteUnknown  // some target not probed yet, or the agent is isolated
	SiteUp       = contract.SiteUp       // every target up (suspect counts as up)
	SiteDegraded = contract.SiteDegraded // some targets down
	SiteDown     = contract.SiteDown     // every target down
)

// Removed is the To of an EventRemoved; its From is the last state.
const Removed = "removed"

// Agent self-check states.
const (
	AgentOK       = "ok"
	AgentIsolated = "isolated" // every site down at once, or the control targets failed
	AgentImpaired = "impaired" // too late, for too long, to judge its own timeouts
)

// Event is what the agent tells its sinks. It is passed by value; sinks must not keep
// pointers into it beyond Handle.
type Event struct {
	Type   EventType
	Time   time.Time // when it happened (for EventProbe, when the probe finished)
	Agent  string
	Site   string // "" for EventAgent and control targets
	Target string // target name, for EventProbe and EventTarget
	Kind   probes.Kind
	Result probes.Result // EventProbe only
	From   string        // previous state (EventTarget, EventSite, EventAgent)
	To     string        // new state
	// Detect is, for a change to down/degraded/isolated, the time from the start of the
	// first failed probe that led to it; for a change back up, from the first success.
	Detect time.Duration
	Reason probes.Reason // for target changes to suspect/down: the failure reason
	// Inconclusive marks an EventProbe failure the agent was too late to judge: it
	// changed no state (docs/architecture.md, "Lateness").
	Inconclusive bool
	// Scheduler is set for EventScheduler. It is the agent's own: read it within
	// Handle, do not keep it.
	Scheduler *SchedulerReport
}

// Sink receives events. Handle is called from the agent's Run goroutine alone, one event
// at a time and in the order they happened, and must not block: a sink that does I/O
// queues internally.
type Sink interface {
	Handle(Event)
}
