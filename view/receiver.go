package view

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// Series and labels of the push contract (see README.md) that the view reads; other
// series are ignored.
const (
	metricSiteState     = "edgeprobe_site_state"
	metricSiteChange    = "edgeprobe_site_state_change_timestamp_seconds"
	metricSiteDetect    = "edgeprobe_site_detect_seconds"
	metricAgentIsolated = "edgeprobe_agent_isolated"
	metricPushInterval  = "edgeprobe_push_interval_seconds"
	labelName           = "__name__"
	labelAgent          = "agent"
	labelSite           = "site"
	labelState          = "state"
)

// Bounds on one push, so that a hostile body cannot make the view allocate without end.
const (
	// decodedPerCompressed is how far a body may expand over its compressed size (real
	// pushes, label-heavy text, expand about 5 to 10 times).
	decodedPerCompressed = 16
	minDecodedLimit      = 1 << 20
	maxSitesPerAgent     = 10000
	maxAgentsPerPush     = 10000
)

// pushError is a push refused as a whole; reason labels the rejection counter.
type pushError struct {
	reason string
	err    error
}

func (e *pushError) Error() string { return e.err.Error() }
func (e *pushError) Unwrap() error { return e.err }

func rejectf(reason, format string, args ...any) error {
	return &pushError{reason: reason, err: fmt.Errorf(format, args...)}
}

// DecodeWrite turns a remote_write 1.0 body (snappy block + protobuf WriteRequest, decoded
// with the same prompb messages the agents' exporter encodes with) into
// per-agent reports. maxBody bounds the compressed size the caller read; the decoded
// size is bounded too, so a small body cannot expand into an unbounded allocation.
// Any error refuses the whole push: a view never applies half of one.
func DecodeWrite(body []byte, maxBody int64) ([]AgentReport, error) {
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

// reportsFrom reads the push contract's series out of a WriteRequest.
func reportsFrom(req *prompb.WriteRequest) ([]AgentReport, error) {
	byAgent := map[string]*AgentReport{}
	var order []string
	for i, ts := range req.GetTimeseries() {
		var name, agent, site, state string
		for _, l := range ts.GetLabels() {
			switch l.GetName() {
			case labelName:
				name = l.GetValue()
			case labelAgent:
				agent = l.GetValue()
			case labelSite:
				site = l.GetValue()
			case labelState:
				state = l.GetValue()
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
		if t := time.UnixMilli(latest.GetTimestamp()); t.After(r.SampleTime) {
			r.SampleTime = t
		}
		v := latest.GetValue()
		switch name {
		case metricSiteState, metricSiteChange, metricSiteDetect:
			if site == "" {
				return nil, rejectf("bad_content", "series %s of agent %q has no site label", name, agent)
			}
			if r.Sites == nil {
				r.Sites = map[string]SiteReport{}
			}
			sr, seen := r.Sites[site]
			if !seen {
				if len(r.Sites) >= maxSitesPerAgent {
					return nil, rejectf("bad_content", "agent %q reports more than %d sites", agent, maxSitesPerAgent)
				}
				sr = SiteReport{Detect: -1}
			}
			if err := readSiteSeries(&sr, name, state, v); err != nil {
				return nil, rejectf("bad_content", "agent %q site %q: %v", agent, site, err)
			}
			r.Sites[site] = sr
		case metricAgentIsolated:
			r.Isolated = v == 1
		case metricPushInterval:
			if !math.IsNaN(v) && v > 0 && v < 86400 {
				r.PushInterval = time.Duration(v * float64(time.Second))
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
		reports = append(reports, *r)
	}
	return reports, nil
}

func readSiteSeries(sr *SiteReport, name, state string, v float64) error {
	finite := !math.IsNaN(v) && !math.IsInf(v, 0)
	switch name {
	case metricSiteState:
		switch state {
		case siteUp, siteDegraded, siteDown, siteUnknown:
		default:
			return fmt.Errorf("%s has state %q, want up, degraded, down or unknown", name, state)
		}
		if v != 1 {
			return nil
		}
		if sr.State != "" && sr.State != state {
			return errors.New("state set has both " + sr.State + " and " + state + " at 1")
		}
		sr.State = state
	case metricSiteChange:
		if finite && v > 0 && v < 1e11 {
			sec, frac := math.Modf(v)
			sr.Since = time.Unix(int64(sec), int64(frac*1e9))
		}
	case metricSiteDetect:
		if finite && v >= 0 && v < 86400 {
			sr.Detect = v
		}
	}
	return nil
}
