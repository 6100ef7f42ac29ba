package view

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"

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
			return encodeWrite(t, series(contract.MetricSiteState, 1, at, "site", "pangyo", "state", "down"))
		}, "no_agent", "has no agent label"},
		{"state set with two states", func(t *testing.T) []byte {
			return encodeWrite(t, series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "down"),
				series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "up"))
		}, "bad_content", "both down and up"},
		{"unknown state", func(t *testing.T) []byte {
			return encodeWrite(t, series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "on-fire"))
		}, "bad_content", `state "on-fire"`},
		{"site series without site", func(t *testing.T) []byte {
			return encodeWrite(t, series(contract.MetricSiteState, 1, at, "agent", "a", "state", "up"))
		}, "bad_content", "has no site label"},
		{"site name too long", func(t *testing.T) []byte {
			return encodeWrite(t, series(contract.MetricSiteState, 1, at, "agent", "a", "site", strings.Repeat("p", contract.MaxNameBytes+1), "state", "up"))
		}, "bad_content", "of more than 256 bytes"},
		{"target name too long", func(t *testing.T) []byte {
			return encodeWrite(t, series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "up"),
				series(contract.MetricTargetUp, 1, at, "agent", "a", "site", "p", "target", strings.Repeat("t", contract.MaxNameBytes+1), "kind", "icmp"))
		}, "bad_content", "names a target of more than 256 bytes"},
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
		Labels: []*prompb.Label{{Name: "__name__", Value: contract.MetricAgentIsolated}, {Name: "agent", Value: "a"}},
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

// fuzzSeeds are the committed seed corpus of FuzzDecodeWrite and FuzzPush (with the
// files under testdata/fuzz/): real pushes of one and several agents, each kind of
// refusal, and protobuf shapes a hand-written decoder could get wrong.
func fuzzSeeds(f *testing.F) [][]byte {
	at := time.UnixMilli(1_700_000_000_000)
	raw := func(b []byte) []byte { return snappy.Encode(nil, b) }
	return [][]byte{
		encodePushes(f, agentPush{agent: "edge1", interval: 1, sites: map[string]string{"pangyo": "down"}, since: at, detect: 0.3, at: at}),
		encodePushes(f, agentPush{agent: "edge2", isolated: true, at: at}),
		encodePushes(f, agentPush{agent: "edge1", interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up", "busan": "degraded"}, since: at, at: at},
			agentPush{agent: "edge2", interval: 2, sites: map[string]string{"pangyo": "down", "seoul": "unknown"}, since: at, at: at}),
		encodePushes(f, agentPush{agent: "edge1", interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up"}, since: at, at: at, targets: 2}),
		// targets out of order, one twice apart, a control target, a NaN, odd values and codes
		encodeWrite(f, series(contract.MetricProbeSuccess, 1, at, "agent", "a", "site", "s", "target", "y", "kind", "tcp"),
			series(contract.MetricTargetUp, 0, at, "agent", "a", "site", "s", "target", "x", "kind", "icmp"),
			series(contract.MetricProbeDuration, 0.002, at, "agent", "a", "site", "s", "target", "y"),
			series(contract.MetricTargetFailureReason, 13, at, "agent", "a", "site", "r", "target", "x", "kind", "dns"),
			series(contract.MetricProbeSuccess, math.NaN(), at, "agent", "a", "site", "s", "target", "z", "kind", "tcp"),
			series(contract.MetricProbeSuccess, 1, at, "agent", "a", "target", "gw", "kind", "icmp"),
			series(contract.MetricTargetUp, 0.5, at, "agent", "a", "site", "s", "target", "y", "kind", "http"),
			series(contract.MetricProbeDuration, math.Inf(1), at, "agent", "a", "site", "s", "target", "x")),
		encodeWrite(f, series(contract.MetricSiteState, 1, at, "site", "pangyo", "state", "down")),
		encodeWrite(f, series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "down"), series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "up")),
		encodeWrite(f, series(contract.MetricSiteState, 1, at, "agent", "a", "site", "p", "state", "on-fire")),
		encodeWrite(f, series(contract.MetricSiteState, 1, at, "agent", "a", "state", "up")),
		encodeWrite(f, series(contract.MetricPushInterval, math.NaN(), at, "agent", "a"), series(contract.MetricSiteDetect, math.Inf(1), at, "agent", "a", "site", "p")),
		raw([]byte("\x0a\x0c\x0a\x0a\x0a\x05agent\x12\x01\xff")),     // a label value that is not UTF-8
		raw([]byte("\x0a\x09\x0a\x07\x0a\x05agent\x12\x00\x08\x01")), // a stray varint field
		raw([]byte("\x0a\x04\x12\x02\x08\x01\x0b\x0c")),              // a group in the request
		raw([]byte("\x08\x01")),                     // timeseries with the wrong wire type
		raw([]byte("\x0a\x05\x12\x03\x09\x01\x02")), // a truncated double
		raw([]byte("\x95\x95\x95\x9500000000000")),  // a field number above the largest valid one
		raw(make([]byte, 64)),
		{},
		[]byte("\x00"),
		[]byte("\xff\xff\xff\xff\xffnot snappy"),
	}
}

// FuzzDecodeWrite: no body, however malformed, panics the decoder, and the in-place
// decoder accepts and refuses exactly what the former proto.Unmarshal-based one did
// (referenceDecode), with the same reports and the same refusal reason. The seed
// 8fcffd31d29b7336 is a valid S2 block that is not snappy: the former decoder read it.
func FuzzDecodeWrite(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !minimalHeader(body) {
			return // the view may refuse what the reference reads: FuzzSnappyStrict's case
		}
		reports, err := DecodeWrite(body, 64<<10)
		want, wantErr := referenceDecode(body, 64<<10)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("DecodeWrite error %v, reference error %v", err, wantErr)
		}
		if err != nil {
			var pe, wpe *pushError
			if !errors.As(err, &pe) || !errors.As(wantErr, &wpe) || pe.reason != wpe.reason {
				t.Fatalf("DecodeWrite refused with %v, reference with %v", err, wantErr)
			}
			return
		}
		if !reflect.DeepEqual(reports, want) {
			t.Fatalf("DecodeWrite reports\n%+v\nreference\n%+v", reports, want)
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

// benchSites is the push of one agent that watches 20 sites, all up.
func benchSites() map[string]string {
	sites := map[string]string{}
	for i := range 20 {
		sites[fmt.Sprintf("site%02d", i)] = "up"
	}
	return sites
}

// benchEngine is an engine that knows n agents reporting benchSites, at at.
func benchEngine(b *testing.B, n int, at time.Time) *Engine {
	e := NewEngine(DefaultConfig())
	for i := range n {
		reports, err := DecodeWrite(encodePushes(b, agentPush{agent: fmt.Sprintf("edge%04d", i), interval: 1, sites: benchSites(), since: at, at: at, targets: 2}), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		e.Apply(reports, at)
	}
	return e
}

// BenchmarkDecodePush: decoding one agent's push of 20 sites, in place (DecodeWrite),
// through the shape of the same agent's previous push (Shaped) and with the former
// proto.Unmarshal-based decoder (Reference), side by side.
func BenchmarkDecodePush(b *testing.B) {
	at := time.Now()
	body := encodePushes(b, agentPush{agent: "edge0000", interval: 1, sites: benchSites(), since: at, detect: 0.3, at: at, targets: 2})
	// Shaped: through a connection's shape, primed by the push before (shape.go).
	slot := new(shapeSlot)
	shaped := func(body []byte, maxBody int64) ([]AgentReport, error) {
		n, err := snappyClaim(body, int(decodedLimit(maxBody)))
		if err != nil {
			return nil, err
		}
		reports, _, err := decodeWrite(body, n, slot)
		return reports, err
	}
	for _, bm := range []struct {
		name   string
		decode func([]byte, int64) ([]AgentReport, error)
	}{{"InPlace", DecodeWrite}, {"Shaped", shaped}, {"Reference", referenceDecode}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(body, 1<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyPush: applying one agent's decoded push of 20 sites to an engine that
// knows 1000 agents reporting the same 20 sites (the load of view/README.md), without a change and
// with a verdict change each time (the site flips between lost and up).
func BenchmarkApplyPush(b *testing.B) {
	at := time.Now()
	e := benchEngine(b, 1000, at)
	decode := func(agent, state string) AgentReport {
		sites := benchSites()
		sites["site00"] = state
		r, err := DecodeWrite(encodePushes(b, agentPush{agent: agent, interval: 1, sites: sites, since: at, at: at, targets: 2}), 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		return r[0]
	}
	b.Run("NoChange", func(b *testing.B) {
		r := decode("edge0000", "up")
		b.ReportAllocs()
		for b.Loop() {
			// Apply copies what it keeps: the decoder reuses its map, as this loop does.
			e.Apply([]AgentReport{r}, at)
		}
	})
	b.Run("Flip", func(b *testing.B) {
		e.Apply([]AgentReport{decode("edge0001", "down")}, at)
		down, up := decode("edge0000", "down"), decode("edge0000", "up")
		// The function may run more than once on e (-count): start from edge0000 up,
		// whatever the run before left.
		e.Apply([]AgentReport{up}, at)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := up
			if i++; i%2 == 1 {
				r = down
			}
			if c, _ := e.Apply([]AgentReport{r}, at); len(c) != 1 {
				b.Fatalf("changes %+v, want one", c)
			}
		}
	})
}

// BenchmarkPush decodes and applies one agent's push of 20 sites into a view that knows
// 1000 agents: the work a view does per push (make view-bench).
func BenchmarkPush(b *testing.B) {
	at := time.Now()
	e := benchEngine(b, 1000, at)
	body := encodePushes(b, agentPush{agent: "edge0000", interval: 1, sites: benchSites(), since: at, at: at, targets: 2})
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

// FuzzPush: whatever a push holds, an engine that applies what DecodeWrite accepts keeps
// valid verdicts: every site's witness counts equal a count from scratch, its verdict is
// the one the verdict rule (docs/architecture.md) gives for them, and the expiry heap is sound; a refused push
// changes nothing. Then every agent goes stale and every site turns unknown.
func FuzzPush(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	at := time.UnixMilli(1_700_000_000_000)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, cfg := range []*Config{
			{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction},
			{Quorum: Quorum{Majority: true}, QuorumBy: "region", MaxUpFraction: DefaultMaxUpFraction},
		} {
			fuzzPush(t, cfg, body, at)
		}
	})
}

func fuzzPush(t *testing.T, cfg *Config, body []byte, at time.Time) {
	{
		e := NewEngine(cfg)
		base := map[string]string{"pangyo": "up", "seoul": "down"}
		for i, a := range []string{"edge1", "edge2", "edge3"} {
			r := report(a, false, base)
			r.SampleTime = at
			r.Labels = map[string]string{"region": []string{"kr", "kr", "jp"}[i]}
			e.Apply([]AgentReport{r}, at)
		}
		before := e.Sites(at)
		now := at.Add(500 * time.Millisecond)
		reports, err := DecodeWrite(body, 64<<10)
		if err != nil {
			if after := e.Sites(at); !reflect.DeepEqual(before, after) {
				t.Fatalf("a refused push changed the engine")
			}
			return
		}
		changes, _ := e.Apply(reports, now)
		for _, c := range changes {
			if c.From == c.To || !validVerdict(c.To) || !validVerdict(c.From) {
				t.Fatalf("change %+v", c)
			}
		}
		checkEngine(t, e, now)
		later := now.Add(time.Hour)
		e.Expire(later)
		checkEngine(t, e, later)
		for _, s := range e.Sites(later) {
			if s.State != VerdictUnknown || s.Witnesses != 0 {
				t.Fatalf("site %s is %s with %d witnesses an hour after the last push", s.Name, s.State, s.Witnesses)
			}
		}
	}
}

func validVerdict(v string) bool {
	switch v {
	case VerdictUp, VerdictDegraded, VerdictPartitioned, VerdictLost, VerdictUnknown:
		return true
	}
	return false
}

// checkEngine recounts every site's witnesses from the agents' reports and checks the
// engine's incremental counts, verdicts and expiry heap against that.
func checkEngine(t *testing.T, e *Engine, now time.Time) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, a := range e.expiry {
		if a.heapIdx != i {
			t.Fatalf("agent %s at heap index %d thinks it is at %d", a.name, i, a.heapIdx)
		}
		if i > 0 && e.expiry[(i-1)/2].deadline.After(a.deadline) {
			t.Fatalf("expiry heap out of order at %d", i)
		}
	}
	for _, a := range e.agents {
		if want := e.fresh(a, now) && !a.isolated && !a.impaired; a.counted != want {
			t.Fatalf("agent %s counted %v, want %v", a.name, a.counted, want)
		}
		if (a.heapIdx >= 0) != e.fresh(a, now) {
			t.Fatalf("agent %s in the heap %v, fresh %v", a.name, a.heapIdx >= 0, e.fresh(a, now))
		}
	}
	if e.sorted != nil {
		if len(e.sorted) != len(e.sites) {
			t.Fatalf("the sites by name list %d sites, the engine has %d", len(e.sorted), len(e.sites))
		}
		for i, s := range e.sorted {
			if e.sites[s.name] != s || s.gone || i > 0 && e.sorted[i-1].name >= s.name {
				t.Fatalf("the sites by name at %d: %s (gone %v) not the engine's, or out of order", i, s.name, s.gone)
			}
		}
	}
	for name, s := range e.sites {
		if s.byName != nil {
			if len(s.byName) != len(s.agents) {
				t.Fatalf("site %s lists %d agents by name, has %d", name, len(s.byName), len(s.agents))
			}
			for i, sa := range s.byName {
				if _, in := s.agents[sa.a]; !in || i > 0 && s.byName[i-1].a.name >= sa.a.name {
					t.Fatalf("site %s's agents by name at %d: %s not its agent, or out of order", name, i, sa.a.name)
				}
				if want := sa.a.sites[name].State; sa.state != want {
					t.Fatalf("site %s's agents by name: %s reports %q, kept as %q", name, sa.a.name, want, sa.state)
				}
			}
		}
		known, up, degraded, down := 0, 0, 0, 0
		knownDom, witnessDom, downDom := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, a := range e.agents {
			r, ok := a.sites[name]
			if !ok {
				continue
			}
			if r.site != s {
				t.Fatalf("agent %s's report on site %s points at another site's record", a.name, name)
			}
			known++
			knownDom[a.domain] = true
			if _, in := s.agents[a]; !in {
				t.Fatalf("site %s misses agent %s", name, a.name)
			}
			if !a.counted {
				continue
			}
			switch r.State {
			case siteUp:
				up++
			case siteDegraded:
				degraded++
			case siteDown:
				down++
				downDom[a.domain] = true
			default:
				continue
			}
			witnessDom[a.domain] = true
		}
		if known != len(s.agents) || up != s.upN || degraded != s.degradedN || down != s.downN {
			t.Fatalf("site %s counts known %d up %d degraded %d down %d, recounted %d %d %d %d",
				name, len(s.agents), s.upN, s.degradedN, s.downN, known, up, degraded, down)
		}
		witnesses, downCount, knownCount := up+degraded+down, down, known
		if e.quorumBy != "" {
			witnesses, downCount, knownCount = len(witnessDom), len(downDom), len(knownDom)
		}
		need := e.quorum.need(knownCount)
		want := VerdictUp
		switch {
		case witnesses < need:
			want = VerdictUnknown
		case downCount >= need && float64(up) <= e.maxUpFraction*float64(up+degraded+down):
			want = VerdictLost
		case downCount >= need:
			want = VerdictPartitioned
		case down > 0 || degraded > 0:
			want = VerdictDegraded
		}
		if s.state != want || s.witnesses != witnesses || s.down != downCount {
			t.Fatalf("site %s is %s (%d witnesses, %d down), want %s (%d, %d)", name, s.state, s.witnesses, s.down, want, witnesses, downCount)
		}
	}
}

// TestReadLabel: the common layout (0a len name 12 len value) and every other one read the
// same, and a string that is not UTF-8 is refused in either.
func TestReadLabel(t *testing.T) {
	label := func(fields ...any) []byte {
		var b []byte
		for i := 0; i < len(fields); i += 2 {
			b = protowire.AppendTag(b, protowire.Number(fields[i].(int)), protowire.BytesType)
			b = protowire.AppendString(b, fields[i+1].(string))
		}
		return b
	}
	long := strings.Repeat("x", 200) // a two-byte length
	for _, tc := range []struct {
		name        string
		b           []byte
		key, value  string
		wantInvalid bool
	}{
		{"common layout", label(1, "site", 2, "alpha"), "site", "alpha", false},
		{"empty strings", label(1, "", 2, ""), "", "", false},
		{"multi-byte UTF-8", label(1, "größe", 2, "日本"), "größe", "日本", false},
		{"value first", label(2, "alpha", 1, "site"), "site", "alpha", false},
		{"name twice, the last wins", label(1, "a", 1, "site", 2, "alpha"), "site", "alpha", false},
		{"long value", label(1, "site", 2, long), "site", long, false},
		{"name only", label(1, "site"), "site", "", false},
		{"name not UTF-8", label(1, "si\xffte", 2, "alpha"), "", "", true},
		{"value not UTF-8", label(1, "site", 2, "al\xc3"), "", "", true},
		{"a sequence cut by the framing", append(label(1, "site\xe6"), label(2, "\x97\xa5")...), "", "", true},
		{"value not UTF-8, long", label(1, "site", 2, long+"\xff"), "", "", true},
	} {
		k, v, err := readLabel(tc.b)
		switch {
		case tc.wantInvalid && err == nil:
			t.Errorf("%s: read %q=%q, want a refusal", tc.name, k, v)
		case !tc.wantInvalid && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.wantInvalid && (string(k) != tc.key || string(v) != tc.value):
			t.Errorf("%s: read %q=%q, want %q=%q", tc.name, k, v, tc.key, tc.value)
		}
	}
}
