package exporters

import (
	"bytes"
	"math"
	"net/http"
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

// removalEvents extends sampleEvents (site pangyo: web, gw) with a site seoul, then
// removes pangyo's web and the whole of seoul, as a reload that drops them emits.
func removalEvents(agentName string) (before, removal []agent.Event) {
	now := time.Now()
	dns := agent.Event{Agent: agentName, Site: "seoul", Target: "dns", Kind: probes.KindDNS}
	probe := dns
	probe.Type, probe.Time, probe.Result = agent.EventProbe, now, probes.Result{Start: now, OK: true, RTT: time.Millisecond}
	up := dns
	up.Type, up.Time, up.From, up.To = agent.EventTarget, now, agent.TargetUnknown, agent.TargetUp
	before = append(sampleEvents(agentName), probe, up,
		agent.Event{Type: agent.EventSite, Time: now, Agent: agentName, Site: "seoul", From: agent.SiteUnknown, To: agent.SiteUp})
	removal = []agent.Event{
		{Type: agent.EventRemoved, Time: now, Agent: agentName, Site: "pangyo", Target: "web", Kind: probes.KindHTTP, From: agent.TargetUp, To: agent.Removed},
		{Type: agent.EventRemoved, Time: now, Agent: agentName, Site: "seoul", Target: "dns", Kind: probes.KindDNS, From: agent.TargetUp, To: agent.Removed},
		{Type: agent.EventRemoved, Time: now, Agent: agentName, Site: "seoul", From: agent.SiteUp, To: agent.Removed},
	}
	return before, removal
}

// TestPrometheusForgetsRemoved: after a reload removes a target and a site, none of
// their series stays on /metrics; the rest do.
func TestPrometheusForgetsRemoved(t *testing.T) {
	p := startPrometheus(t, config.PrometheusConfig{})
	before, removal := removalEvents("edge1")
	for _, ev := range before {
		p.Handle(ev)
	}
	url := "http://" + p.Addr() + "/metrics"
	page := string(scrape(t, http.DefaultClient, url))
	for _, want := range []string{`target="web"`, `target="dns"`, `site="seoul"`, `target="gw"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("before the removal the page has no %s", want)
		}
	}
	for _, ev := range removal {
		p.Handle(ev)
	}
	page = string(scrape(t, http.DefaultClient, url))
	for _, gone := range []string{`target="web"`, `target="dns"`, `site="seoul"`} {
		for _, line := range strings.Split(page, "\n") {
			if strings.Contains(line, gone) {
				t.Errorf("after the removal the page still has %s: %s", gone, line)
				break
			}
		}
	}
	for _, kept := range []string{`target="gw"`, `site="pangyo"`} {
		if !strings.Contains(page, kept) {
			t.Errorf("the removal took %s with it", kept)
		}
	}
	promtoolCheckMetrics(t, []byte(page))
}

// TestRemoteWriteForgetsRemoved: the push after the removal carries the removed
// target's and site's series only with the staleness marker, so that a receiver ends them
// at once and a view stops counting this agent as a witness there; the push after that
// carries them no more.
func TestRemoteWriteForgetsRemoved(t *testing.T) {
	rw, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/"}, "", "edge1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// labels returns the label pairs of the series the next push carries with a value,
	// and those it ends with the staleness marker.
	labels := func() (live, ended map[string]bool) {
		t.Helper()
		ms := time.Now().UnixMilli()
		rw.lastMs = ms - 1
		got, err := rw.encode(time.UnixMilli(ms))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := snappy.Decode(nil, got)
		if err != nil {
			t.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Fatal(err)
		}
		live, ended = map[string]bool{}, map[string]bool{}
		for _, ts := range req.Timeseries {
			into := live
			if math.Float64bits(ts.Samples[0].Value) == contract.StaleNaN {
				into = ended
			}
			for _, l := range ts.Labels {
				into[l.Name+"="+l.Value] = true
			}
		}
		return live, ended
	}
	before, removal := removalEvents("edge1")
	for _, ev := range before {
		rw.Handle(ev)
	}
	if live, ended := labels(); !live["target=web"] || !live["site=seoul"] || len(ended) > 0 {
		t.Fatalf("before the removal the push lacks target web or site seoul, or ends something: %v, %v", live, ended)
	}
	for _, ev := range removal {
		rw.Handle(ev)
	}
	live, ended := labels()
	for _, gone := range []string{"target=web", "target=dns", "site=seoul"} {
		if live[gone] {
			t.Errorf("after the removal the push still carries %s", gone)
		}
		if !ended[gone] {
			t.Errorf("the push after the removal does not end the series of %s", gone)
		}
	}
	if !live["target=gw"] || !live["site=pangyo"] || ended["target=gw"] {
		t.Errorf("the removal took target gw or site pangyo with it: %v, %v", live, ended)
	}
	if live, ended := labels(); len(ended) > 0 || live["target=web"] || live["site=seoul"] {
		t.Errorf("the second push after the removal: %v, ended %v; want neither web nor seoul", live, ended)
	}
}

// TestStdoutRemoved: removals are written as lines, and the text summary stops counting
// what was removed.
func TestStdoutRemoved(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	_, removal := removalEvents("edge1")
	for i := range removal {
		removal[i].Time = at
	}
	var buf bytes.Buffer
	s, err := NewStdout(&buf, config.StdoutConfig{Format: config.FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle(removal[0])
	s.Handle(removal[2])
	want := `{"time":"2026-11-27T09:30:00.000000000Z","type":"removed","agent":"edge1","site":"pangyo","target":"web","kind":"http","from":"up","to":"removed"}` + "\n" +
		`{"time":"2026-11-27T09:30:00.000000000Z","type":"removed","agent":"edge1","site":"seoul","from":"up","to":"removed"}` + "\n"
	if buf.String() != want {
		t.Errorf("json lines:\n got %q\nwant %q", buf.String(), want)
	}

	buf.Reset()
	s, err = NewStdout(&buf, config.StdoutConfig{Summary: config.Duration{Duration: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	before, removal := removalEvents("edge1")
	for _, ev := range append(before, removal...) {
		s.Handle(ev)
	}
	if got := len(s.sites); got != 1 {
		t.Errorf("summary tracks %d sites after seoul's removal, want 1 (pangyo)", got)
	}
	if _, ok := s.targets[targetKey{"edge1", "pangyo", "web"}]; ok {
		t.Error("summary still tracks the removed target pangyo/web")
	}
	text := buf.String()
	for _, want := range []string{"removed  pangyo/web", "up -> removed", "removed  seoul "} {
		if !strings.Contains(text, want) {
			t.Errorf("text output has no %q:\n%s", want, text)
		}
	}
}
