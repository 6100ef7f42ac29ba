package exporters

import (
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/probes"
)

// The state as plain gauges, built the simple way: the reference the tests hold the
// hand-written /metrics page (prompage_test.go) and remote_write encoding
// (remotewrite_encode_test.go) against. The exporters themselves write from promState
// directly.

// promSeries is one gauge value of the agent's current state: a metric name, the labels
// beyond agent and the agent labels, and the value.
type promSeries struct {
	name   string
	labels []labelPair
	value  float64
}

// series returns the current state as gauges in a stable order: agent-wide first, then
// sites by name, then targets by site and name. pushInterval, when positive, adds
// edgeprobe_push_interval_seconds (remote_write only: it tells receivers when a push is late).
func (s *promState) series(pushInterval time.Duration) []promSeries {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []promSeries{
		{name: "edgeprobe_agent_isolated", value: boolValue(s.isolated)},
		{name: "edgeprobe_agent_impaired", value: boolValue(s.impaired)},
	}
	if pushInterval > 0 {
		out = append(out, promSeries{name: "edgeprobe_push_interval_seconds", value: pushInterval.Seconds()})
	}
	for _, site := range s.siteList {
		name := site.name
		siteLabel := []labelPair{{"site", name}}
		for _, state := range contract.SiteStates {
			out = append(out, promSeries{"edgeprobe_site_state",
				[]labelPair{{"site", name}, {"state", state}}, boolValue(site.state == state)})
		}
		if !site.since.IsZero() {
			out = append(out,
				promSeries{"edgeprobe_site_state_change_timestamp_seconds", siteLabel,
					float64(site.since.UnixNano()) / 1e9},
				promSeries{"edgeprobe_site_detect_seconds", siteLabel, site.detect.Seconds()})
		}
	}
	for _, t := range s.targetList {
		key := t.key
		labels := []labelPair{{"site", key.site}, {"target", key.target}, {"kind", string(t.kind)}}
		switch t.state {
		case agent.TargetUp, agent.TargetSuspect:
			out = append(out, promSeries{"edgeprobe_target_up", labels, 1})
		case agent.TargetDown:
			out = append(out, promSeries{"edgeprobe_target_up", labels, 0})
		}
		if t.probed {
			out = append(out,
				promSeries{"probe_success", labels, boolValue(t.ok)},
				promSeries{"probe_duration_seconds", labels, t.rtt.Seconds()},
				promSeries{"edgeprobe_target_failure_reason", labels, float64(failureCode(t.reason))})
		}
		if !t.certExpiry.IsZero() {
			out = append(out, promSeries{"probe_ssl_earliest_cert_expiry", labels, float64(t.certExpiry.Unix())})
		}
	}
	return out
}

// failureCode is the code table of edgeprobe_target_failure_reason written out (the
// contract's FailureReasons order), so that a reordered table fails the encoding tests.
func failureCode(r probes.Reason) int {
	return map[probes.Reason]int{"": 0, "timeout": 1, "refused": 2, "unreachable": 3, "resolve": 4, "rcode": 5,
		"answer": 6, "status": 7, "body": 8, "tls": 9, "protocol": 10, "permission": 11, "error": 12}[r]
}

// httpPhases returns, per HTTP target that has been probed, the last probe's phase
// timings in blackbox_exporter's probe_http_duration_seconds{phase} shape.
func (s *promState) httpPhases() []promSeries {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []promSeries
	for key, t := range s.targets {
		if t.kind != probes.KindHTTP || !t.probed {
			continue
		}
		for _, p := range []struct {
			phase string
			d     time.Duration
		}{
			{"resolve", t.phases.Resolve}, {"connect", t.phases.Connect}, {"tls", t.phases.TLS},
			{"processing", t.phases.Processing}, {"transfer", t.phases.Transfer},
		} {
			out = append(out, promSeries{"probe_http_duration_seconds", []labelPair{
				{"site", key.site}, {"target", key.target}, {"kind", string(t.kind)}, {"phase", p.phase},
			}, p.d.Seconds()})
		}
	}
	return out
}

// TestExtraLabelsRefuseReserved: an agent label may not take a name the exporters set
// themselves; config refuses it first (config.TestLoadInvalidFiles), and an exporter
// built in code refuses it too instead of dropping it silently.
func TestExtraLabelsRefuseReserved(t *testing.T) {
	for _, name := range contract.ReservedLabels {
		if _, err := extraLabels(map[string]string{"region": "kr", name: "x"}); err == nil {
			t.Errorf("extraLabels accepts the reserved label %q", name)
		}
		if _, err := NewPrometheus(config.PrometheusConfig{Listen: "127.0.0.1:0"}, "edge1", map[string]string{name: "x"}, nil); err == nil {
			t.Errorf("NewPrometheus accepts the reserved label %q", name)
		}
	}
	got, err := extraLabels(map[string]string{"zone": "a", "region": "kr"})
	if err != nil || len(got) != 2 || got[0].name != "region" || got[1].name != "zone" {
		t.Errorf("extraLabels = %v, %v; want region, zone in order", got, err)
	}
}
