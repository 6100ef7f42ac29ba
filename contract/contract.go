// Package contract holds the names that the agents' pushes and the view agree on: the
// series an agent sends by remote_write and on /metrics, their labels, and the states
// their values stand for. The agent's exporters write them, the view reads them, the
// load generator imitates them and the shipped Prometheus rules query them; each side
// imports this one list instead of spelling the names again. docs/DESIGN.md describes
// the contract for people and for receivers that are not edgeprobe.
package contract

// Series of an agent's state. Every series also carries LabelAgent and the agent's own
// labels ([agent] labels in agent.toml).
const (
	// MetricSiteState is 1 for the site's current state and 0 for the others
	// (labels site, state; state one of SiteStates).
	MetricSiteState = "edgeprobe_site_state"
	// MetricSiteStateChange is the Unix time the agent's site state began (label site).
	MetricSiteStateChange = "edgeprobe_site_state_change_timestamp_seconds"
	// MetricSiteDetect is the time from the first failed (or, for a recovery, good) probe
	// to that change, in seconds (label site).
	MetricSiteDetect = "edgeprobe_site_detect_seconds"
	// MetricAgentIsolated is 1 while the agent sees every site down at once or its
	// control targets fail: its own uplink is the likely cause.
	MetricAgentIsolated = "edgeprobe_agent_isolated"
	// MetricAgentImpaired is 1 while the agent is too late, for too long, to judge its own
	// probes' timeouts (docs/DESIGN.md, "Lateness"): its reports are not to be trusted as
	// a witness's.
	MetricAgentImpaired = "edgeprobe_agent_impaired"
	// MetricPushInterval is the agent's push interval in seconds: a receiver's measure of
	// when the agent is overdue.
	MetricPushInterval = "edgeprobe_push_interval_seconds"
	// MetricTargetUp is 1 while a target is up or suspect, 0 while down (labels site,
	// target, kind).
	MetricTargetUp = "edgeprobe_target_up"
	// MetricProbeSuccess and MetricProbeDuration are the last probe's outcome and round
	// trip, under blackbox_exporter's names (labels site, target, kind).
	MetricProbeSuccess  = "probe_success"
	MetricProbeDuration = "probe_duration_seconds"
)

// Label names.
const (
	LabelName   = "__name__"
	LabelAgent  = "agent"
	LabelSite   = "site"
	LabelTarget = "target"
	LabelKind   = "kind"
	LabelState  = "state"
)

// Site states as one agent sees a site: the values of MetricSiteState's state label.
const (
	SiteUp       = "up"       // every target up (suspect counts as up)
	SiteDegraded = "degraded" // some targets down, others answer
	SiteDown     = "down"     // every target down
	SiteUnknown  = "unknown"  // not every target probed yet, or the agent is isolated
)

// SiteStates is the state set of MetricSiteState, in the order it is exported: every
// state on every push, so that a reader never has to know which were seen.
var SiteStates = []string{SiteUp, SiteDegraded, SiteDown, SiteUnknown}

// ReservedLabels are the label names edgeprobe sets itself on some series (agent, site,
// target, kind, state; phase and reason on /metrics; le on histograms; version and
// goversion on build info; receiver on remote_write counters) or that Prometheus sets on
// scrape (instance, job). An agent's own labels may use none of them.
var ReservedLabels = []string{
	LabelAgent, LabelSite, LabelTarget, LabelKind, LabelState,
	"phase", "reason", "le", "version", "goversion", "receiver", "instance", "job",
}
