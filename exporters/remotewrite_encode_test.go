package exporters

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/probes"
)

// referenceEncode is the straightforward encoding the snapEncoder replaces: prompb
// messages from promState.series, sorted labels, proto.Marshal. It also returns the
// series, as canonical label strings, for referenceStale.
func referenceEncode(r *RemoteWrite, ms int64) (raw []byte, keys map[string]bool) {
	req := &prompb.WriteRequest{}
	keys = map[string]bool{}
	for _, s := range r.state.series(r.cfg.PushInterval.Duration) {
		labels := []*prompb.Label{{Name: "__name__", Value: s.name}, {Name: "agent", Value: r.agentName}}
		for _, l := range r.extra {
			labels = append(labels, &prompb.Label{Name: l.name, Value: l.value})
		}
		for _, l := range s.labels {
			if l.value != "" {
				labels = append(labels, &prompb.Label{Name: l.name, Value: l.value})
			}
		}
		sort.Slice(labels, func(i, j int) bool { return labels[i].Name < labels[j].Name })
		req.Timeseries = append(req.Timeseries, &prompb.TimeSeries{Labels: labels, Samples: []*prompb.Sample{{Value: s.value, Timestamp: ms}}})
		keys[labelKey(labels)] = true
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return raw, keys
}

func labelKey(labels []*prompb.Label) string {
	var b strings.Builder
	for _, l := range labels {
		fmt.Fprintf(&b, "%s=%q,", l.Name, l.Value)
	}
	return b.String()
}

// checkSnapshot encodes a snapshot and holds it against the reference: the live series
// byte for byte as proto.Marshal makes them, then exactly the series the previous
// snapshot had and this one lacks (prev), each once with the staleness marker at the
// snapshot's timestamp. It returns this snapshot's series for the next call.
func checkSnapshot(t *testing.T, rw *RemoteWrite, step string, prev map[string]bool) map[string]bool {
	t.Helper()
	ms := time.Now().UnixMilli()
	rw.lastMs = ms - 1
	got, err := rw.encode(time.UnixMilli(ms))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := snappy.Decode(nil, got)
	if err != nil {
		t.Fatalf("%s: snappy: %v", step, err)
	}
	want, keys := referenceEncode(rw, ms)
	if !bytes.HasPrefix(raw, want) {
		var req prompb.WriteRequest
		uerr := proto.Unmarshal(raw, &req)
		t.Fatalf("%s: encoding differs from proto.Marshal (%d vs %d bytes; decodes: %v)\n got %v", step, len(raw), len(want), uerr, &req)
	}
	var tail prompb.WriteRequest
	if err := proto.Unmarshal(raw[len(want):], &tail); err != nil {
		t.Fatalf("%s: the series after the live ones do not decode: %v", step, err)
	}
	stale := map[string]bool{}
	for _, ts := range tail.Timeseries {
		key := labelKey(ts.Labels)
		if len(ts.Samples) != 1 || math.Float64bits(ts.Samples[0].Value) != contract.StaleNaN || ts.Samples[0].Timestamp != ms {
			t.Errorf("%s: %s: samples %v, want one staleness marker at %d", step, key, ts.Samples, ms)
		}
		if stale[key] {
			t.Errorf("%s: %s ended twice", step, key)
		}
		stale[key] = true
	}
	for key := range prev {
		if !keys[key] && !stale[key] {
			t.Errorf("%s: %s left the snapshot without a staleness marker", step, key)
		}
	}
	for key := range stale {
		if !prev[key] || keys[key] {
			t.Errorf("%s: staleness marker for %s, which the last snapshot did not carry or this one still does", step, key)
		}
	}
	return keys
}

// TestSnapshotEncodingMatchesProto: the hand-written encoding is byte for byte what
// proto.Marshal makes of the same WriteRequest, through state changes, a kind change, a
// control target, zero and negative values, and agent labels sorting before __name__;
// series that leave the snapshot are ended with one staleness marker each.
func TestSnapshotEncodingMatchesProto(t *testing.T) {
	rw, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/"}, "", "edge1",
		map[string]string{"Zone": "a", "region": "kr", "zz": "last"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var prev map[string]bool
	check := func(step string) {
		t.Helper()
		prev = checkSnapshot(t, rw, step, prev)
	}
	check("empty")
	now := time.Now()
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "b", Target: "web", Kind: probes.KindHTTP, Result: probes.Result{OK: true, RTT: 3 * time.Millisecond}})
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "a", Target: "ping", Kind: probes.KindICMP, Result: probes.Result{OK: false, RTT: 0}})
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Target: "gw", Kind: probes.KindICMP, Result: probes.Result{OK: true, RTT: time.Millisecond}})
	check("probed")
	rw.Handle(agent.Event{Type: agent.EventTarget, Time: now, Site: "a", Target: "ping", Kind: probes.KindICMP, From: agent.TargetUnknown, To: agent.TargetDown})
	rw.Handle(agent.Event{Type: agent.EventTarget, Time: now, Site: "b", Target: "web", Kind: probes.KindHTTP, From: agent.TargetUnknown, To: agent.TargetSuspect})
	rw.Handle(agent.Event{Type: agent.EventSite, Time: now, Site: "a", From: agent.SiteUnknown, To: agent.SiteDown, Detect: 250 * time.Millisecond})
	rw.Handle(agent.Event{Type: agent.EventAgent, Time: now, From: agent.AgentOK, To: agent.AgentIsolated})
	rw.Handle(agent.Event{Type: agent.EventImpaired, Time: now, From: agent.AgentOK, To: agent.AgentImpaired})
	rw.Handle(agent.Event{Type: agent.EventScheduler, Time: now, Scheduler: &agent.SchedulerReport{Inconclusive: 3}})
	check("changed")
	rw.Handle(agent.Event{Type: agent.EventSite, Time: time.Unix(-5, 0), Site: "b", From: agent.SiteUnknown, To: agent.SiteUp})
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "a", Target: "ping", Kind: probes.KindTCP, Result: probes.Result{OK: true, RTT: -time.Millisecond}})
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "a", Target: "aaa", Kind: probes.KindDNS, Result: probes.Result{OK: true, RTT: time.Hour}})
	check("kind changed, new target first in order, negative values")
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "b", Target: "web", Kind: probes.KindHTTP,
		Result: probes.Result{OK: false, Reason: probes.ReasonStatus, CertExpiry: time.Unix(1800000000, 0)}})
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "a", Target: "tls", Kind: probes.KindTCP,
		Result: probes.Result{OK: true, CertExpiry: time.Unix(-86400, 0)}})
	check("certificate expiry")
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "b", Target: "web", Kind: probes.KindHTTP,
		Result: probes.Result{OK: false, Reason: probes.ReasonRefused}})
	check("certificate expiry kept over a probe without a handshake")

	removed := func(site, target string, kind probes.Kind) {
		rw.Handle(agent.Event{Type: agent.EventRemoved, Time: now, Site: site, Target: target, Kind: kind, To: agent.Removed})
	}
	removed("a", "tls", probes.KindTCP)
	removed("", "gw", probes.KindICMP)
	check("a target and a control target removed")
	check("the markers went once")
	removed("b", "web", probes.KindHTTP)
	removed("b", "", "")
	check("a site and its target removed")
	// Removed and back (same kind) before the next snapshot: the series go on, unended;
	// those it has not got back yet (its state, its last probe) end.
	removed("a", "ping", probes.KindTCP)
	rw.Handle(agent.Event{Type: agent.EventTarget, Time: now, Site: "a", Target: "ping", Kind: probes.KindTCP, From: agent.TargetUnknown, To: agent.TargetUp})
	check("a target removed and added again")
	// A kind changed and changed back between snapshots, with a certificate expiry lost.
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Site: "a", Target: "ping", Kind: probes.KindTCP,
		Result: probes.Result{OK: true, CertExpiry: time.Unix(1900000000, 0)}})
	check("a certificate expiry")
	rw.Handle(agent.Event{Type: agent.EventTarget, Time: now, Site: "a", Target: "ping", Kind: probes.KindHTTP, From: agent.TargetUp, To: agent.TargetUp})
	rw.Handle(agent.Event{Type: agent.EventTarget, Time: now, Site: "a", Target: "ping", Kind: probes.KindTCP, From: agent.TargetUp, To: agent.TargetUp})
	check("a kind changed there and back")
	removed("a", "", "")
	rw.Handle(agent.Event{Type: agent.EventSite, Time: now, Site: "a", From: agent.SiteUnknown, To: agent.SiteUp})
	check("a site removed and back")
}

// TestTimestampsAcrossClockSteps: push timestamps increase across a wall-clock step back
// of up to contract.StalePushes push intervals, and follow the clock after a longer one
// (held an hour ahead, every push would be outside the view's max_sample_age).
func TestTimestampsAcrossClockSteps(t *testing.T) {
	rw, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/", PushInterval: duration(time.Second)}, "", "edge1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	stamp := func(at time.Time) int64 {
		t.Helper()
		if _, err := rw.encode(at); err != nil {
			t.Fatal(err)
		}
		return rw.lastMs
	}
	first := stamp(t0)
	if got := stamp(t0); got != first+1 {
		t.Errorf("same millisecond again: stamped %d, want %d", got, first+1)
	}
	if got := stamp(t0.Add(-2 * time.Second)); got != first+2 {
		t.Errorf("clock 2 s back (push interval 1s): stamped %d, want %d, still increasing", got, first+2)
	}
	back := t0.Add(-time.Hour)
	if got := stamp(back); got != back.UnixMilli() {
		t.Errorf("clock an hour back: stamped %d, want the clock's %d", got, back.UnixMilli())
	}
	if got := stamp(back.Add(time.Second)); got != back.Add(time.Second).UnixMilli() {
		t.Errorf("a push later: stamped %d, want %d", got, back.Add(time.Second).UnixMilli())
	}
}
