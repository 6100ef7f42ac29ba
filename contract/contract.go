// Package contract holds the names that the agents' pushes and the view agree on: the
// series an agent sends by remote_write and on /metrics, their labels, and the states
// their values stand for. The agent's exporters write them, the view reads them, the
// load generator imitates them and the shipped Prometheus rules query them; each side
// imports this one list instead of spelling the names again. docs/architecture.md describes
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
	// probes' timeouts (docs/architecture.md, "Lateness"; its own CPU starved): the view does
	// not count it as a witness.
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
	// MetricProbeCertExpiry is the Unix time the first of the certificates a TLS server
	// presented expires (its earliest NotAfter), under blackbox_exporter's name and
	// meaning (labels site, target, kind); HTTPS targets and TCP targets with TLS only.
	MetricProbeCertExpiry = "probe_ssl_earliest_cert_expiry"
	// MetricTargetFailureReason says why the target's last probe failed, as a number:
	// 0 when it succeeded, otherwise the reason's code (FailureReasonCode) (labels site,
	// target, kind; present once the target was probed, beside MetricProbeSuccess).
	//
	// A number rather than a reason label: with reason="timeout" as a label, every change
	// of reason (timeout, then refused, then timeout as a site goes dark and its hosts
	// come and go) ends one series and starts another, so a TSDB's index and head churn
	// during exactly the outages it records, and a state set of every reason (1 for the
	// current one) would multiply the per-target series by len(FailureReasons). The code
	// keeps one series per target whose value changes; blackbox_exporter likewise reports
	// the why of a probe as values (probe_http_status_code, probe_failed_due_to_regex),
	// not as label values that change. Readers turn the code back into a name with
	// FailureReasonName; docs/architecture.md's contract table lists the codes.
	MetricTargetFailureReason = "edgeprobe_target_failure_reason"
)

// StaleNaN is the bit pattern of Prometheus's staleness marker (value.StaleNaN in
// Prometheus): a NaN sample that ends a series at once rather than after the query
// lookback. An agent sends every series of a target or site that a reload removed once
// more with it; receivers read any NaN of a state series as no state.
const StaleNaN uint64 = 0x7ff0000000000002

// Failure reasons: why a probe failed, a closed vocabulary (probes.Reason uses these
// names; /metrics' edgeprobe_probe_failures_total carries them as its reason label).
const (
	ReasonTimeout     = "timeout"     // no answer before the deadline
	ReasonRefused     = "refused"     // connection refused
	ReasonUnreachable = "unreachable" // no route, network or host unreachable
	ReasonResolve     = "resolve"     // the target's host name did not resolve
	ReasonRcode       = "rcode"       // DNS answered with an rcode not accepted
	ReasonAnswer      = "answer"      // the DNS answer did not hold what was expected
	ReasonStatus      = "status"      // HTTP status code not accepted
	ReasonBody        = "body"        // HTTP body did not match, or exceeded its limit
	ReasonTLS         = "tls"         // TLS handshake or certificate verification failed
	ReasonProtocol    = "protocol"    // malformed or unexpected answer
	ReasonPermission  = "permission"  // the OS refused the probe (ICMP socket not permitted)
	ReasonError       = "error"       // anything else
)

// FailureReasons lists the failure reasons by code: FailureReasons[i] has code i+1 in
// MetricTargetFailureReason, and 0 means none. It only ever grows at its end: a stored
// series read back later must mean what it meant when it was written.
var FailureReasons = []string{
	ReasonTimeout, ReasonRefused, ReasonUnreachable, ReasonResolve, ReasonRcode, ReasonAnswer,
	ReasonStatus, ReasonBody, ReasonTLS, ReasonProtocol, ReasonPermission, ReasonError,
}

// FailureReasonCode is the code of a failure reason in MetricTargetFailureReason: 0 for
// "" (a success), the code of ReasonError for a name not in FailureReasons.
func FailureReasonCode(reason string) int {
	if reason == "" {
		return 0
	}
	for i, r := range FailureReasons {
		if r == reason {
			return i + 1
		}
	}
	return FailureReasonCode(ReasonError)
}

// FailureReasonName is the reason a code of MetricTargetFailureReason stands for: "" for
// 0, and false for a code this build does not know (a newer agent's).
func FailureReasonName(code int) (string, bool) {
	switch {
	case code == 0:
		return "", true
	case code > 0 && code <= len(FailureReasons):
		return FailureReasons[code-1], true
	}
	return "", false
}

// Label names.
const (
	LabelName   = "__name__"
	LabelAgent  = "agent"
	LabelSite   = "site"
	LabelTarget = "target"
	LabelKind   = "kind"
	LabelState  = "state"
)

// MaxNameBytes bounds an agent's, a site's and a target's name: the agent's config
// refuses a longer one, and the view a push that carries one, so that what the view
// keeps per report is bounded however the names are chosen.
const MaxNameBytes = 256

// StalePushes is how many push intervals an agent may go without a push before a view
// stops counting it as a witness (the view's default stale_after). The agent's
// remote_write keeps its sample timestamps increasing across a wall-clock step back no
// longer than this, and follows the clock after a longer one, which the view then reads
// as a clock that stepped back (view/README.md, "Verdicts").
const StalePushes = 3

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
