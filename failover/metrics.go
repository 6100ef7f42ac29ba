package failover

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names on the view's /metrics (README.md, "Metrics").
const (
	MetricActions     = "edgeprobe_view_actions_total"
	MetricHold        = "edgeprobe_view_failover_hold"
	MetricActive      = "edgeprobe_view_failover_active"
	MetricSites       = "edgeprobe_view_failover_sites"
	MetricAuditErrors = "edgeprobe_view_failover_audit_errors_total"
)

// Results of MetricActions: the decision of the record, ok for a step done.
const resultOK = "ok"

// actionResults lists the label pairs exported from the start, so that a rate() over
// them works before the first incident.
var actionResults = map[string][]string{
	ActionFailover:  {resultOK, DecisionAlreadyDone, DecisionConflict, DecisionRetry, DecisionError, DecisionHeld, DecisionDryRun},
	ActionFailback:  {resultOK, DecisionAlreadyDone, DecisionConflict, DecisionRetry, DecisionError, DecisionDryRun},
	DecisionHold:    {resultOK},
	DecisionRelease: {resultOK},
}

var siteStates = []string{StatePrimary, StateFailingOver, StateFailedOver, StateFailingBack, StateHeld}

type actionKey struct{ action, result string }

// counters are the controller's counts, kept under its lock.
type counters struct {
	actions     map[actionKey]uint64
	auditErrors uint64
}

// count files one audit record under {action, result}.
func (m *counters) count(r Record) {
	if m.actions == nil {
		m.actions = map[actionKey]uint64{}
	}
	k := actionKey{action: r.Action, result: r.Decision}
	switch r.Decision {
	case DecisionHold, DecisionRelease:
		k = actionKey{action: r.Decision, result: resultOK}
	case DecisionFailover, DecisionFailback:
		k.result = resultOK
	}
	m.actions[k]++
}

var (
	actionsDesc = prometheus.NewDesc(MetricActions,
		"Failover decisions and steps by action (failover, failback, hold, release) and result (ok, already_done, conflict, retry, error, held, dry_run).",
		[]string{"action", "result"}, nil)
	holdDesc   = prometheus.NewDesc(MetricHold, "1 while the failover actions are held (by an operator or by max_concurrent_failovers).", nil, nil)
	activeDesc = prometheus.NewDesc(MetricActive, "Sites failed over, failing over or failing back.", nil, nil)
	sitesDesc  = prometheus.NewDesc(MetricSites, "Sites with actions by failover state.", []string{"state"}, nil)
	auditDesc  = prometheus.NewDesc(MetricAuditErrors, "Audit log records or state saves that could not be written.", nil, nil)
)

// Collector returns the controller's metrics for the view's registry; they are read
// at scrape time, so they cannot drift from the API.
func (c *Controller) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Controller }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{actionsDesc, holdDesc, activeDesc, sitesDesc, auditDesc} {
		ch <- d
	}
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	c := k.c
	c.mu.Lock()
	actions := map[actionKey]uint64{}
	for action, results := range actionResults {
		for _, r := range results {
			actions[actionKey{action, r}] = 0
		}
	}
	for key, n := range c.metrics.actions {
		actions[key] = n
	}
	held := 0.0
	if c.hold != nil {
		held = 1
	}
	states := map[string]int{}
	active := 0
	for _, s := range c.sites {
		states[s.state]++
		if isActive(s.state) {
			active++
		}
	}
	auditErrors := c.metrics.auditErrors
	c.mu.Unlock()

	for key, n := range actions {
		ch <- prometheus.MustNewConstMetric(actionsDesc, prometheus.CounterValue, float64(n), key.action, key.result)
	}
	ch <- prometheus.MustNewConstMetric(holdDesc, prometheus.GaugeValue, held)
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(active))
	for _, st := range siteStates {
		ch <- prometheus.MustNewConstMetric(sitesDesc, prometheus.GaugeValue, float64(states[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(auditDesc, prometheus.CounterValue, float64(auditErrors))
}
