package view

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
)

// decodeShaped decodes body through slot, checks that it decodes as DecodeWrite does
// without one, and says whether the slot's shape read it.
func decodeShaped(t testing.TB, slot *shapeSlot, body []byte) (reports []AgentReport, err error, replayed bool) {
	t.Helper()
	n, err := snappyClaim(body, int(decodedLimit(1<<20)))
	if err == nil {
		reports, replayed, err = decodeWrite(body, n, slot)
	}
	want, wantErr := DecodeWrite(body, 1<<20)
	sameRefusal(t, err, wantErr)
	if err == nil && !reflect.DeepEqual(reports, want) {
		t.Fatalf("decoded with the shape (replayed %v)\n%+v\nin full\n%+v", replayed, reports, want)
	}
	return reports, err, replayed
}

func sameRefusal(t testing.TB, err, want error) {
	t.Helper()
	if (err == nil) != (want == nil) {
		t.Fatalf("with the shape: error %v; in full: error %v", err, want)
	}
	if err != nil {
		var pe, wpe *pushError
		if !errors.As(err, &pe) || !errors.As(want, &wpe) || pe.reason != wpe.reason || err.Error() != want.Error() {
			t.Fatalf("with the shape refused with %v; in full with %v", err, want)
		}
	}
}

// TestShapeReplay: a connection's pushes of one shape are read from their samples,
// whatever their values say, and decode exactly as in full; a push of another shape, or
// whose values change what it means, is decoded in full.
func TestShapeReplay(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	push := func(at time.Time, down ...string) agentPush {
		sites := benchSites()
		for _, s := range down {
			sites[s] = "down"
		}
		return agentPush{agent: "edge1", interval: 1, sites: sites, since: at.Add(-time.Minute), detect: 0.4, at: at, targets: 2, labels: []string{"region", "kr"}}
	}
	// The series of p with the value of series i set to v.
	with := func(p agentPush, i int, v float64) []byte {
		ts := p.series()
		ts[i].Samples[0].Value = v
		return encodeWrite(t, ts...)
	}
	// The series of p with every target's series in reverse order (not the report's).
	reversed := func(p agentPush) []byte {
		ts := p.series()
		first := slices.IndexFunc(ts, func(s *prompb.TimeSeries) bool { return s.Labels[0].Value == contract.MetricTargetUp })
		slices.Reverse(ts[first:])
		return encodeWrite(t, ts...)
	}
	detect := func(p agentPush, v float64) []byte {
		p.detect = v
		return encodePushes(t, p)
	}
	sec := func(k int) time.Time { return at.Add(time.Duration(k) * time.Second) }
	// site00's series: the four states from index 2 on (isolated and interval first).
	const site00Down = 2 + 2
	steps := []struct {
		name     string
		body     []byte
		replayed bool
		refused  bool
	}{
		{"first push", encodePushes(t, push(sec(0))), false, false},
		{"a second later", encodePushes(t, push(sec(1))), true, false},
		// A value of 0 is left out of its sample (proto3's rule, which the exporter
		// keeps), so a state change is a new shape.
		{"site03 down", encodePushes(t, push(sec(2), "site03")), false, false},
		{"site03 still down", encodePushes(t, push(sec(3), "site03")), true, false},
		{"other detect seconds", detect(push(sec(4), "site03"), 0.7), true, false},
		{"state set with two states at 1", with(push(sec(5), "site03"), site00Down, 1), false, true},
		{"after the refusal", encodePushes(t, push(sec(6), "site03")), true, false},
		{"a staleness marker", with(push(sec(7), "site03"), site00Down, math.NaN()), false, false},
		{"after the marker", encodePushes(t, push(sec(8))), false, false},
		{"again", encodePushes(t, push(sec(9))), true, false},
		{"a target's staleness marker", with(push(sec(10)), len(push(at).series())-2, math.NaN()), false, false},
		{"after it", encodePushes(t, push(sec(11))), false, false},
		{"a new site", encodePushes(t, push(sec(12), "site20")), false, false},
		{"the new shape", encodePushes(t, push(sec(13), "site20")), true, false},
		{"a timestamp of another length", encodePushes(t, push(time.UnixMilli(1))), false, false},
		{"two agents", encodePushes(t, push(sec(14)), agentPush{agent: "edge2", interval: 1, sites: benchSites(), at: sec(14)}), false, false},
		{"after two agents", encodePushes(t, push(sec(15))), false, false},
		{"targets out of order", reversed(push(sec(16))), false, false},
		{"out of order again", reversed(push(sec(17))), true, false},
		{"not a push", []byte("\x05hello"), false, true},
		{"after garbage", reversed(push(sec(18))), true, false},
	}
	slot := new(shapeSlot)
	for _, st := range steps {
		reports, err, replayed := decodeShaped(t, slot, st.body)
		if replayed != st.replayed || (err != nil) != st.refused {
			t.Errorf("%s: replayed %v (want %v), error %v (want refused %v)", st.name, replayed, st.replayed, err, st.refused)
		}
		if st.name == "other detect seconds" {
			r := reports[0]
			if r.Sites["site03"].State != "down" || r.Sites["site04"].State != "up" || r.Sites["site04"].Detect != 0.7 ||
				r.Labels["region"] != "kr" || !r.SampleTime.Equal(sec(4)) || len(r.Targets) != 40 || r.Targets[6].Up != 0 {
				t.Errorf("%s: report %+v", st.name, r)
			}
		}
	}
}

// TestShapeReplayPooled: what a replay reads into goes back to a pool once its push is
// applied and serves the next push on any connection, so connections of other shapes
// (more sites or fewer, targets or none, a degraded site) that take turns each still
// decode exactly as in full, and a slot keeps nothing of a replay once released.
func TestShapeReplayPooled(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	few := map[string]string{"pangyo": "degraded", "gasan": "up", "seoul": "down"}
	pushes := []agentPush{
		{agent: "edge1", interval: 1, sites: benchSites(), since: at, detect: 0.3, targets: 2},
		{agent: "edge2", interval: 1, sites: few, since: at, detect: 1.5},
		{agent: "edge3", interval: 1, sites: few, targets: 4, labels: []string{"rack", "r1"}},
		{agent: "edge4", interval: 1, isolated: true},
	}
	slots := make([]*shapeSlot, len(pushes))
	for i := range slots {
		slots[i] = new(shapeSlot)
	}
	for round := range 4 {
		for i, p := range pushes {
			p.at = at.Add(time.Duration(round) * time.Second)
			slots[i].mu.Lock()
			_, err, replayed := decodeShaped(t, slots[i], encodePushes(t, p))
			if err != nil {
				t.Fatal(err)
			}
			if replayed != (round > 0) {
				t.Errorf("%s's push %d: replayed %v, want %v", p.agent, round, replayed, round > 0)
			}
			slots[i].release()
			if slots[i].read != nil {
				t.Fatalf("%s's slot keeps what its replay read after release", p.agent)
			}
		}
	}
}

// TestShapeBound: a push whose shape would take more than maxShapeBytes keeps none.
func TestShapeBound(t *testing.T) {
	sites := map[string]string{}
	for i := range 200 {
		sites[siteName(i)] = "up"
	}
	slot := new(shapeSlot)
	body := encodePushes(t, agentPush{agent: "edge1", interval: 1, sites: sites, at: time.Now(), targets: 4})
	if _, err, _ := decodeShaped(t, slot, body); err != nil {
		t.Fatal(err)
	}
	if slot.shape != nil {
		t.Fatalf("a push of 200 sites x 4 targets kept a shape of %d bytes (bound %d)", slot.shape.cost(), maxShapeBytes)
	}
	small := encodePushes(t, agentPush{agent: "edge1", interval: 1, sites: benchSites(), at: time.Now(), targets: 2})
	if _, err, _ := decodeShaped(t, slot, small); err != nil || slot.shape == nil || slot.shape.cost() > maxShapeBytes/2 {
		t.Fatalf("a push of 20 sites x 2 targets: error %v, shape %v", err, slot.shape)
	}
}

func siteName(i int) string {
	return "site" + string(rune('a'+i/26%26)) + string(rune('a'+i%26)) + string(rune('a'+i/676))
}

// FuzzDecodeShape: a push decoded through the shape of the push before it decodes, and
// is refused, exactly as in full. The second push is the first with the contents of its
// samples overwritten from values, which keeps the shape: any value, NaN, a broken
// sample message.
func FuzzDecodeShape(f *testing.F) {
	nan := math.Float64bits(math.NaN())
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed, []byte{})
		f.Add(seed, []byte("\x09\x00\x00\x00\x00\x00\x00\xf0\x3f\x10"))                                         // 1.0
		f.Add(seed, []byte{0x09, byte(nan), byte(nan >> 8), 0, 0, 0, 0, 0xf8, 0x7f})                            // NaN
		f.Add(seed, []byte("\x09\x00\x00\x00\x00\x00\x00\x00\x00\x10\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01")) // a bad varint
	}
	f.Fuzz(func(t *testing.T, body, values []byte) {
		if !minimalHeader(body) {
			return
		}
		slot := new(shapeSlot)
		if _, err, _ := decodeShaped(t, slot, body); err != nil || slot.shape == nil {
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		if len(values) > 0 {
			k := 0
			for _, s := range slot.shape.samples {
				for i := range int(s.n) {
					raw[int(s.off)+i] = values[k%len(values)]
					k++
				}
			}
		}
		decodeShaped(t, slot, snappy.Encode(nil, raw))
	})
}

// TestShapedPushesServed: a view served as `edgeprobe view` serves reads an agent's
// repeated pushes on its keep-alive connection from their shape, and its verdicts follow
// what they say: up, then lost once both witnesses push the site down.
func TestShapedPushesServed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Defaults()
	base := serveView(t, cfg, Options{})
	// One keep-alive connection an agent, as the exporter keeps: a connection that
	// carries two agents' pushes in turn has a new shape every push.
	clients := map[string]*http.Client{}
	for _, a := range []string{"edge1", "edge2"} {
		clients[a] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer clients[a].CloseIdleConnections()
	}
	push := func(agent, state string, at time.Time) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(encodePushes(t,
			agentPush{agent: agent, interval: 1, sites: map[string]string{"pangyo": state, "seoul": "up"}, since: at, at: at, targets: 2})))
		if err != nil {
			t.Fatal(err)
		}
		setPushHeaders(req.Header)
		resp, err := clients[agent].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push of %s: %s", agent, resp.Status)
		}
	}
	now := time.Now()
	for k, state := range []string{"up", "up", "up", "down", "down"} {
		for _, a := range []string{"edge1", "edge2"} {
			push(a, state, now.Add(time.Duration(k)*time.Millisecond))
		}
	}
	doc := getSites(t, base)
	if len(doc.Sites) != 2 || doc.Sites[0].Name != "pangyo" || doc.Sites[0].State != VerdictLost || doc.Sites[1].State != VerdictUp {
		t.Fatalf("sites %+v, want pangyo lost and seoul up", doc.Sites)
	}
	text := metricsText(t, base)
	var byShape, inFull float64
	for _, l := range strings.Split(text, "\n") {
		fmt.Sscanf(l, `edgeprobe_view_pushes_decoded_total{by="shape"} %g`, &byShape)
		fmt.Sscanf(l, `edgeprobe_view_pushes_decoded_total{by="full"} %g`, &inFull)
	}
	// Each agent's first push, and its first down one, are decoded in full (a value of 0
	// is left out of a sample: another shape); the others are read from their shapes.
	if byShape != 6 || inFull != 4 {
		t.Fatalf("pushes decoded by shape %v, in full %v: want 6 and 4", byShape, inFull)
	}
}
