package view

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

func TestDecodeWrite(t *testing.T) {
	at := time.UnixMilli(time.Now().UnixMilli())
	since := at.Add(-2 * time.Second)
	good := agentPush{agent: "edge1", interval: 0.5, sites: map[string]string{"pangyo": "down", "seoul": "up"}, since: since, detect: 0.25, at: at}

	t.Run("valid push", func(t *testing.T) {
		reports, err := DecodeWrite(encodePushes(t, good, agentPush{agent: "edge2", isolated: true, at: at}), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(reports) != 2 {
			t.Fatalf("got %d reports, want 2", len(reports))
		}
		r := reports[0]
		if r.Agent != "edge1" || r.Isolated || r.PushInterval != 500*time.Millisecond || !r.SampleTime.Equal(at) {
			t.Errorf("report %+v: want edge1, not isolated, 500ms interval, sample time %v", r, at)
		}
		p := r.Sites["pangyo"]
		if p.State != "down" || p.Detect != 0.25 || p.Since.Sub(since).Abs() > time.Microsecond {
			t.Errorf("pangyo %+v: want down since %v detect 0.25", p, since)
		}
		if r.Sites["seoul"].State != "up" {
			t.Errorf("seoul %+v, want up", r.Sites["seoul"])
		}
		if !reports[1].Isolated || reports[1].Sites != nil {
			t.Errorf("edge2 %+v: want isolated with no site state", reports[1])
		}
	})

	bad := []struct {
		name   string
		body   func(t *testing.T) []byte
		reason string
		msg    string
	}{
		{"not snappy", func(t *testing.T) []byte { return []byte("\xff\xff\xff\xff\xffnot snappy") }, "bad_snappy", "decode snappy block"},
		{"not protobuf", func(t *testing.T) []byte { return snappy.Encode(nil, []byte("\x0a\xff\xff\xff\xff\x0fjunk")) }, "bad_protobuf", "decode protobuf WriteRequest"},
		{"no agent label", func(t *testing.T) []byte {
			return encodeWrite(t, series(metricSiteState, 1, at, "site", "pangyo", "state", "down"))
		}, "no_agent", "has no agent label"},
		{"state set with two states", func(t *testing.T) []byte {
			return encodeWrite(t, series(metricSiteState, 1, at, "agent", "a", "site", "p", "state", "down"),
				series(metricSiteState, 1, at, "agent", "a", "site", "p", "state", "up"))
		}, "bad_content", "both down and up"},
		{"unknown state", func(t *testing.T) []byte {
			return encodeWrite(t, series(metricSiteState, 1, at, "agent", "a", "site", "p", "state", "on-fire"))
		}, "bad_content", `state "on-fire"`},
		{"site series without site", func(t *testing.T) []byte {
			return encodeWrite(t, series(metricSiteState, 1, at, "agent", "a", "state", "up"))
		}, "bad_content", "has no site label"},
		{"expands beyond the limit", func(t *testing.T) []byte {
			return snappy.Encode(nil, make([]byte, 2<<20))
		}, "too_large", "more than the limit"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeWrite(tt.body(t), 1024)
			var pe *pushError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a push error", err)
			}
			if pe.reason != tt.reason || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %s: %v; want %s containing %q", pe.reason, err, tt.reason, tt.msg)
			}
		})
	}
}

// TestDecodeWriteLatestSample: several samples in one series (a batched push) count by
// their newest timestamp, whatever their order.
func TestDecodeWriteLatestSample(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	ts := &prompb.TimeSeries{
		Labels: []*prompb.Label{{Name: "__name__", Value: metricAgentIsolated}, {Name: "agent", Value: "a"}},
		Samples: []*prompb.Sample{
			{Value: 0, Timestamp: at.Add(2 * time.Second).UnixMilli()},
			{Value: 1, Timestamp: at.UnixMilli()},
		},
	}
	reports, err := DecodeWrite(encodeWrite(t, ts), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if reports[0].Isolated || !reports[0].SampleTime.Equal(at.Add(2*time.Second)) {
		t.Errorf("report %+v: want the newest sample (not isolated, at+2s)", reports[0])
	}
}

// FuzzDecodeWrite: no body, however malformed, panics the decoder or yields a report
// without an agent.
func FuzzDecodeWrite(f *testing.F) {
	at := time.UnixMilli(1_700_000_000_000)
	f.Add(encodePushes(f, agentPush{agent: "edge1", interval: 1, sites: map[string]string{"pangyo": "down"}, since: at, detect: 0.3, at: at}))
	f.Add(encodePushes(f, agentPush{agent: "edge2", isolated: true, at: at}))
	f.Add([]byte{})
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		reports, err := DecodeWrite(body, 64<<10)
		if err != nil {
			return
		}
		for _, r := range reports {
			if r.Agent == "" {
				t.Fatalf("report without agent: %+v", r)
			}
			for site, sr := range r.Sites {
				switch sr.State {
				case "up", "degraded", "down", "unknown":
				default:
					t.Fatalf("site %q has state %q", site, sr.State)
				}
			}
		}
	})
}

// BenchmarkPush decodes and applies one agent's push of 20 sites into a view that knows
// 100 agents: the work a view does per push (make view-bench).
func BenchmarkPush(b *testing.B) {
	at := time.Now()
	sites := map[string]string{}
	for i := range 20 {
		sites[fmt.Sprintf("site%02d", i)] = "up"
	}
	e := NewEngine(DefaultConfig())
	for i := range 100 {
		reports, err := DecodeWrite(encodePushes(b, agentPush{agent: fmt.Sprintf("edge%03d", i), interval: 1, sites: sites, since: at, at: at}), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		e.Apply(reports, at)
	}
	body := encodePushes(b, agentPush{agent: "edge000", interval: 1, sites: sites, since: at, at: at})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		reports, err := DecodeWrite(body, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		e.Apply(reports, at)
	}
}
