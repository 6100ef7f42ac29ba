package viewload

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/view"
)

// TestSmoke plays 100 agents x 20 sites for 5 s against a real view on loopback: no push
// fails, every scheduled flip's verdict arrives on /api/v1/events, and no verdict changes
// that no flip asked for. make bench-view-load runs the full 10,000 x 20 against a view
// in its own process.
func TestSmoke(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := view.DefaultConfig()
	cfg.Listen = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	srv, err := view.New(cfg, view.Options{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("view: %v", err)
		}
	}()

	res, err := Run(context.Background(), Config{URL: "http://" + cfg.Listen, Agents: 100, Sites: 20, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pushes (%.0f/s), %d flips, %d verdicts, verdict p50 %v p99 %v",
		res.Pushes, res.PushesPerSecond, res.Flips, res.Verdicts, testkit.Percentile(res.EventLatency, 50), testkit.Percentile(res.EventLatency, 99))
	if res.Errors != 0 {
		t.Errorf("%d errors, first: %s", res.Errors, res.ErrorSample)
	}
	if res.Flips < 8 || res.Verdicts != res.Flips {
		t.Errorf("%d flips, %d verdicts seen: want at least 8 flips and a verdict for each", res.Flips, res.Verdicts)
	}
	// Every verdict seen carries the view's time: sent -> decided is measured for each,
	// after the push was sent and no later than the event was read.
	if len(res.DecideLatency) != res.Verdicts {
		t.Errorf("%d decision times for %d verdicts", len(res.DecideLatency), res.Verdicts)
	}
	for i, d := range res.DecideLatency {
		if d <= 0 || d > res.EventLatency[i] {
			t.Errorf("verdict %d decided %v after its push, read %v after it: the view's time is not the verdict's", i, d, res.EventLatency[i])
		}
	}
	if res.SitesTotal != 10*20 || res.SitesUp != res.SitesTotal {
		t.Errorf("%d of %d sites up after a warm-up of %v, want all of the 200 sites (10 groups of 10 agents, 20 sites each)", res.SitesUp, res.SitesTotal, res.Warmup)
	}
	if res.Unexpected != 0 {
		t.Errorf("%d verdict changes that no flip asked for, first %q", res.Unexpected, res.UnexpectedSample)
	}
	// 100 agents at 1 push/s for 5 s, plus the flips' pushes; allow for a loaded machine.
	if res.Pushes < 300 {
		t.Errorf("%d pushes in %v, want about 500", res.Pushes, res.Elapsed)
	}
	if res.SeriesPerPush != 2+20*6+20*2*4 {
		t.Errorf("%d series a push, want the agent's 282 for 20 sites of 2 targets", res.SeriesPerPush)
	}
}

// TestLoopbackOnly: the generator refuses any view that is not on loopback, and its bounds.
func TestLoopbackOnly(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "http://203.0.113.5:9470", Agents: 1, Sites: 1, Duration: time.Second}, "not a loopback address"},
		{Config{URL: "http://view.example:9470", Agents: 1, Sites: 1, Duration: time.Second}, "not a loopback address"},
		{Config{URL: "http://[::ffff:10.0.0.1]:9470", Agents: 1, Sites: 1, Duration: time.Second}, "not a loopback address"},
		{Config{URL: "http://127.0.0.1:9470", Agents: MaxAgents + 1, Sites: 1, Duration: time.Second}, "agents"},
		{Config{URL: "http://127.0.0.1:9470", Agents: 1, Sites: 1, Duration: time.Hour}, "duration"},
	} {
		_, err := Run(context.Background(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one containing %q", tt.cfg, err, tt.want)
		}
	}
}

// TestPushBytes: what a simulated agent sends is proto.Marshal's bytes for its series,
// and what the view decodes from it is the state the agent was given, before and after a
// site goes down and with the timestamps restamped in place.
func TestPushBytes(t *testing.T) {
	cfg := Config{URL: "http://127.0.0.1:1", Agents: 1, Sites: 3, Targets: 2, Interval: time.Second, Witnesses: 1}
	start := time.UnixMilli(1_800_000_000_000)
	a, err := newSimAgent("load00000", 0, &cfg, start)
	if err != nil {
		t.Fatal(err)
	}
	check := func(at time.Time, down int) {
		t.Helper()
		a.encode(at)
		raw, err := snappy.Decode(nil, a.block.block)
		if err != nil {
			t.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Fatal(err)
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, again) {
			t.Fatalf("the push (%d bytes) is not proto.Marshal's bytes for its own series (%d bytes)", len(raw), len(again))
		}
		for _, ts := range req.Timeseries {
			if len(ts.Samples) != 1 || ts.Samples[0].Timestamp != a.lastMs {
				t.Fatalf("series %v: samples %v, want one at %d", ts.Labels, ts.Samples, a.lastMs)
			}
		}
		reports, err := view.DecodeWrite(a.block.block, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(reports) != 1 || len(reports[0].Sites) != cfg.Sites {
			t.Fatalf("reports %+v, want one agent of %d sites", reports, cfg.Sites)
		}
		for i := range cfg.Sites {
			want := "up"
			if i == down {
				want = "down"
			}
			if got := reports[0].Sites[siteName(0, i)].State; got != want {
				t.Errorf("at %d: site %d is %q, want %q", at.UnixMilli(), i, got, want)
			}
		}
		if got := reports[0].SampleTime.UnixMilli(); got != a.lastMs {
			t.Errorf("sample time %d, want %d", got, a.lastMs)
		}
	}
	check(start, -1)
	check(start.Add(time.Second), -1) // restamped in place
	a.setDown(1, true, start.Add(1500*time.Millisecond))
	check(start.Add(2*time.Second), 1)
	check(start.Add(3*time.Second), 1)
	a.setDown(1, false, start.Add(3500*time.Millisecond))
	check(start.Add(4*time.Second), -1)
}
