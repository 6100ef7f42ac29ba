package view

import (
	"maps"
	"math"
	"slices"
	"time"
	"unique"

	"github.com/edgeprobe/edgeprobe/contract"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// referenceDecode is the view's former decoder, kept as the reference the in-place one
// must agree with: snappy (github.com/golang/snappy, the format's reference, which like
// the view refuses S2's extensions), proto.Unmarshal into prompb messages, then
// reportsFrom.
func referenceDecode(body []byte, maxBody int64) ([]AgentReport, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, rejectf("bad_snappy", "decode snappy block: %v", err)
	}
	limit := max(int64(minDecodedLimit), maxBody*decodedPerCompressed)
	if int64(n) > limit {
		return nil, rejectf("too_large", "decoded body would be %d bytes, more than the limit of %d", n, limit)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, rejectf("bad_snappy", "decode snappy block: %v", err)
	}
	var req prompb.WriteRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		return nil, rejectf("bad_protobuf", "decode protobuf WriteRequest: %v", err)
	}
	return reportsFrom(&req)
}

// reportsFrom reads the push contract's series out of a decoded WriteRequest: the
// reference that decodeWriteRequest must agree with (FuzzDecodeWrite).
func reportsFrom(req *prompb.WriteRequest) ([]AgentReport, error) {
	byAgent := map[string]*AgentReport{}
	targets := map[string]*refTargets{}
	var order []string
	for i, ts := range req.GetTimeseries() {
		var name, agent, site, state string
		labels := map[string]string{}
		for _, l := range ts.GetLabels() {
			switch l.GetName() {
			case contract.LabelName:
				name = l.GetValue()
			case contract.LabelAgent:
				agent = l.GetValue()
			case contract.LabelSite:
				site = l.GetValue()
			case contract.LabelState:
				state = l.GetValue()
			default:
				labels[l.GetName()] = l.GetValue()
			}
		}
		if agent == "" {
			return nil, rejectf("no_agent", "series %d (%q) has no agent label", i, name)
		}
		samples := ts.GetSamples()
		if len(samples) == 0 {
			continue
		}
		latest := samples[0]
		for _, s := range samples[1:] {
			if s.GetTimestamp() >= latest.GetTimestamp() {
				latest = s
			}
		}
		r := byAgent[agent]
		if r == nil {
			if len(byAgent) >= maxAgentsPerPush {
				return nil, rejectf("bad_content", "more than %d agents in one push", maxAgentsPerPush)
			}
			r = &AgentReport{Agent: agent}
			byAgent[agent] = r
			order = append(order, agent)
		}
		if t := time.UnixMilli(latest.GetTimestamp()); !r.HasSamples || t.After(r.SampleTime) {
			r.SampleTime, r.HasSamples = t, true
		}
		v := latest.GetValue()
		switch name {
		case contract.MetricSiteState, contract.MetricSiteStateChange, contract.MetricSiteDetect:
			if site == "" {
				return nil, rejectf("bad_content", "series %s of agent %q has no site label", name, agent)
			}
			if r.Sites == nil {
				r.Sites = map[string]SiteReport{}
			}
			if math.IsNaN(v) {
				continue // a staleness marker: no state, no site
			}
			sr, seen := r.Sites[site]
			if !seen {
				if len(r.Sites) >= maxSitesPerAgent {
					return nil, rejectf("bad_content", "agent %q reports more than %d sites", agent, maxSitesPerAgent)
				}
				sr = SiteReport{Detect: -1}
			}
			if err := readSiteSeries(&sr, seriesOp([]byte(name), []byte(state)), []byte(state), v); err != nil {
				return nil, rejectf("bad_content", "agent %q site %q: %v", agent, site, err)
			}
			r.Sites[site] = sr
		case contract.MetricAgentIsolated:
			r.Isolated = v == 1
			if r.Labels == nil {
				r.Labels = map[string]string{}
			}
			maps.Copy(r.Labels, labels)
		case contract.MetricAgentImpaired:
			r.Impaired = v == 1
		case contract.MetricPushInterval:
			if !math.IsNaN(v) && v > 0 && v < 86400 {
				r.PushInterval = time.Duration(v * float64(time.Second))
			}
		case contract.MetricTargetUp, contract.MetricProbeSuccess, contract.MetricProbeDuration, contract.MetricTargetFailureReason:
			if targets[agent] == nil {
				targets[agent] = &refTargets{index: map[[2]string]int{}}
			}
			if err := targets[agent].add(agent, name, site, labels, v); err != nil {
				return nil, err
			}
		}
	}
	reports := make([]AgentReport, 0, len(order))
	for _, agent := range order {
		r := byAgent[agent]
		for site, sr := range r.Sites {
			if sr.State == "" {
				sr.State = siteUnknown
				r.Sites[site] = sr
			}
		}
		if ts := targets[agent]; ts != nil && len(ts.list) > 0 {
			r.Targets = ts.list
			slices.SortFunc(r.Targets, compareTargets)
		}
		reports = append(reports, *r)
	}
	return reports, nil
}

// refTargets are one agent's targets as the reference decoder reads them: a map by site
// and name, sorted at the end.
type refTargets struct {
	list  []TargetReport
	index map[[2]string]int
}

func (ts *refTargets) add(agent, metric, site string, labels map[string]string, v float64) error {
	name, kind := labels[contract.LabelTarget], labels[contract.LabelKind]
	if site == "" || name == "" || math.IsNaN(v) {
		return nil
	}
	i, ok := ts.index[[2]string{site, name}]
	if !ok {
		if len(ts.list) >= maxTargetsPerAgent {
			return rejectf("bad_content", "agent %q reports more than %d targets", agent, maxTargetsPerAgent)
		}
		i = len(ts.list)
		ts.index[[2]string{site, name}] = i
		ts.list = append(ts.list, newTargetReport(unique.Make(site), unique.Make(name)))
	}
	t := &ts.list[i]
	if kind != "" {
		t.Kind = unique.Make(kind)
	}
	readTargetSeries(t, seriesOp([]byte(metric), nil), v)
	return nil
}
