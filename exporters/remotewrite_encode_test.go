package exporters

import (
	"bytes"
	"sort"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/probes"
)

// referenceEncode is the straightforward encoding the snapEncoder replaces: prompb
// messages from promState.series, sorted labels, proto.Marshal.
func referenceEncode(r *RemoteWrite, ms int64) []byte {
	req := &prompb.WriteRequest{}
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
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return raw
}

// TestSnapshotEncodingMatchesProto: the hand-written encoding is byte for byte what
// proto.Marshal makes of the same WriteRequest, through state changes, a kind change, a
// control target, zero and negative values, and agent labels sorting before __name__.
func TestSnapshotEncodingMatchesProto(t *testing.T) {
	rw, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/"}, "", "edge1",
		map[string]string{"Zone": "a", "region": "kr", "zz": "last"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
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
		if want := referenceEncode(rw, ms); !bytes.Equal(raw, want) {
			var req prompb.WriteRequest
			uerr := proto.Unmarshal(raw, &req)
			t.Fatalf("%s: encoding differs from proto.Marshal (%d vs %d bytes; decodes: %v)\n got %v", step, len(raw), len(want), uerr, &req)
		}
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
}
