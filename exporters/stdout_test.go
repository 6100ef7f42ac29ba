package exporters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/probes"
)

var t0 = time.Date(2026, 11, 24, 19, 30, 0, 120000000, time.UTC)

// scenario is a short site loss as the agent reports it: a good probe, a failed probe,
// the target going suspect then down, the site going down, and the agent isolated.
var scenario = []agent.Event{
	{Type: agent.EventProbe, Time: t0, Agent: "edge1", Site: "beta", Target: "http", Kind: probes.KindHTTP,
		Result: probes.Result{OK: true, RTT: 1500 * time.Microsecond}},
	{Type: agent.EventProbe, Time: t0.Add(time.Second), Agent: "edge1", Site: "beta", Target: "http", Kind: probes.KindHTTP,
		Result: probes.Result{Start: t0.Add(750 * time.Millisecond), OK: false, RTT: 250 * time.Millisecond, Reason: probes.ReasonTimeout, Detail: "no answer"}},
	{Type: agent.EventTarget, Time: t0.Add(time.Second), Agent: "edge1", Site: "beta", Target: "http", Kind: probes.KindHTTP,
		From: agent.TargetUp, To: agent.TargetSuspect, Reason: probes.ReasonTimeout},
	{Type: agent.EventTarget, Time: t0.Add(1300 * time.Millisecond), Agent: "edge1", Site: "beta", Target: "http", Kind: probes.KindHTTP,
		From: agent.TargetSuspect, To: agent.TargetDown, Reason: probes.ReasonTimeout, Detect: 300 * time.Millisecond},
	{Type: agent.EventSite, Time: t0.Add(1300 * time.Millisecond), Agent: "edge1", Site: "beta",
		From: agent.SiteUp, To: agent.SiteDown, Detect: 312500 * time.Microsecond},
	{Type: agent.EventAgent, Time: t0.Add(1400 * time.Millisecond), Agent: "edge1", From: agent.AgentOK, To: agent.AgentIsolated},
}

func TestStdoutLines(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.StdoutConfig
		want []string
	}{
		{
			name: "json every result",
			cfg:  config.StdoutConfig{Format: config.FormatJSON, Results: config.ResultsAll},
			want: []string{
				`{"time":"2026-11-24T19:30:00.120000000Z","type":"probe","agent":"edge1","site":"beta","target":"http","kind":"http","ok":true,"rtt_seconds":0.0015}`,
				`{"time":"2026-11-24T19:30:01.120000000Z","type":"probe","agent":"edge1","site":"beta","target":"http","kind":"http","ok":false,"start":"2026-11-24T19:30:00.870000000Z","rtt_seconds":0.25,"reason":"timeout","detail":"no answer"}`,
				`{"time":"2026-11-24T19:30:01.120000000Z","type":"target","agent":"edge1","site":"beta","target":"http","kind":"http","reason":"timeout","from":"up","to":"suspect"}`,
				`{"time":"2026-11-24T19:30:01.420000000Z","type":"target","agent":"edge1","site":"beta","target":"http","kind":"http","reason":"timeout","from":"suspect","to":"down","detect_seconds":0.3}`,
				`{"time":"2026-11-24T19:30:01.420000000Z","type":"site","agent":"edge1","site":"beta","from":"up","to":"down","detect_seconds":0.3125}`,
				`{"time":"2026-11-24T19:30:01.520000000Z","type":"agent","agent":"edge1","from":"ok","to":"isolated"}`,
			},
		},
		{
			name: "json changes only",
			cfg:  config.StdoutConfig{Format: config.FormatJSON, Results: config.ResultsChanges},
			want: []string{
				`{"time":"2026-11-24T19:30:01.120000000Z","type":"target","agent":"edge1","site":"beta","target":"http","kind":"http","reason":"timeout","from":"up","to":"suspect"}`,
				`{"time":"2026-11-24T19:30:01.420000000Z","type":"target","agent":"edge1","site":"beta","target":"http","kind":"http","reason":"timeout","from":"suspect","to":"down","detect_seconds":0.3}`,
				`{"time":"2026-11-24T19:30:01.420000000Z","type":"site","agent":"edge1","site":"beta","from":"up","to":"down","detect_seconds":0.3125}`,
				`{"time":"2026-11-24T19:30:01.520000000Z","type":"agent","agent":"edge1","from":"ok","to":"isolated"}`,
			},
		},
		{
			name: "text every result",
			cfg:  config.StdoutConfig{Results: config.ResultsAll},
			want: []string{
				"19:30:00.120  probe    beta/http                 ok                    http  rtt 1.5ms",
				"19:30:01.120  probe    beta/http                 FAIL timeout          http  rtt 250ms  no answer",
				"19:30:01.120  target   beta/http                 up -> suspect         http  timeout",
				"19:30:01.420  target   beta/http                 suspect -> down       http  timeout  after 300ms",
				"19:30:01.420  site     beta                      up -> down            after 313ms",
				"19:30:01.520  agent    edge1                     ok -> isolated",
			},
		},
		{
			name: "text changes with summary",
			cfg:  config.StdoutConfig{Format: config.FormatText, Summary: config.Duration{Duration: time.Second}},
			want: []string{
				"19:30:01.120  summary  sites 0 up, 0 degraded, 0 down; targets 0 down of 1; 1.0 probes/s",
				"19:30:01.120  target   beta/http                 up -> suspect         http  timeout",
				"19:30:01.420  target   beta/http                 suspect -> down       http  timeout  after 300ms",
				"19:30:01.420  site     beta                      up -> down            after 313ms",
				"19:30:01.520  agent    edge1                     ok -> isolated",
			},
		},
		{
			name: "text summary of an isolated agent",
			cfg:  config.StdoutConfig{Summary: config.Duration{Duration: 100 * time.Millisecond}},
			want: []string{
				"19:30:01.120  summary  sites 0 up, 0 degraded, 0 down; targets 0 down of 1; 1.0 probes/s",
				"19:30:01.120  target   beta/http                 up -> suspect         http  timeout",
				"19:30:01.420  target   beta/http                 suspect -> down       http  timeout  after 300ms",
				"19:30:01.420  summary  sites 0 up, 0 degraded, 0 down; targets 1 down of 1; 0.0 probes/s",
				"19:30:01.420  site     beta                      up -> down            after 313ms",
				"19:30:01.520  agent    edge1                     ok -> isolated",
				"19:30:01.520  summary  sites 0 up, 0 degraded, 1 down; targets 1 down of 1; 0.0 probes/s; down: beta; agent edge1 isolated",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			s, err := NewStdout(&buf, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range scenario {
				s.Handle(ev)
			}
			got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("lines differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestStdoutSummaryCountsStates(t *testing.T) {
	var buf bytes.Buffer
	s, err := NewStdout(&buf, config.StdoutConfig{Summary: config.Duration{Duration: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s.Handle(agent.Event{Type: agent.EventSite, Time: at(0), Agent: "a", Site: "alpha", From: agent.SiteUnknown, To: agent.SiteUp})
	s.Handle(agent.Event{Type: agent.EventSite, Time: at(0), Agent: "a", Site: "beta", From: agent.SiteUnknown, To: agent.SiteDegraded})
	s.Handle(agent.Event{Type: agent.EventSite, Time: at(0), Agent: "a", Site: "gamma", From: agent.SiteUnknown, To: agent.SiteDown})
	s.Handle(agent.Event{Type: agent.EventTarget, Time: at(0), Agent: "a", Site: "gamma", Target: "dns", From: agent.TargetSuspect, To: agent.TargetDown})
	for i := 1; i <= 40; i++ {
		s.Handle(agent.Event{Type: agent.EventProbe, Time: at(i * 250), Agent: "a", Site: "alpha", Target: fmt.Sprint("t", i%4),
			Result: probes.Result{OK: true}})
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := "19:30:10.120  summary  sites 1 up, 1 degraded, 1 down; targets 1 down of 5; 4.0 probes/s; down: gamma"
	if last := lines[len(lines)-1]; last != want {
		t.Errorf("summary line\ngot:  %s\nwant: %s", last, want)
	}
	if len(lines) != 5 {
		t.Errorf("got %d lines, want 4 changes and 1 summary:\n%s", len(lines), buf.String())
	}
}

func TestNewStdoutRejects(t *testing.T) {
	tests := []struct {
		cfg  config.StdoutConfig
		want string
	}{
		{config.StdoutConfig{Format: "yaml"}, `stdout exporter: format "yaml": want "text" or "json"`},
		{config.StdoutConfig{Results: "some"}, `stdout exporter: results "some": want "changes" or "all"`},
		{config.StdoutConfig{Summary: config.Duration{Duration: -time.Second}}, `stdout exporter: summary -1s: want zero (off) or a positive duration`},
	}
	for _, tt := range tests {
		_, err := NewStdout(&bytes.Buffer{}, tt.cfg)
		if err == nil || err.Error() != tt.want {
			t.Errorf("NewStdout(%+v) error = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// TestStdoutConcurrent checks that lines from concurrent Handle calls never interleave:
// every line must be one whole JSON object.
func TestStdoutConcurrent(t *testing.T) {
	var out testkit.Buffer
	s, err := NewStdout(&out, config.StdoutConfig{Format: config.FormatJSON, Results: config.ResultsAll})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s.Handle(agent.Event{Type: agent.EventProbe, Time: t0, Agent: "edge1", Site: "s", Target: fmt.Sprintf("t%d-%d", w, i),
					Kind: probes.KindTCP, Result: probes.Result{OK: false, Reason: probes.ReasonRefused, Detail: strings.Repeat("x", 300)}})
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != writers*each {
		t.Fatalf("got %d lines, want %d", len(lines), writers*each)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var v jsonEvent
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line is not one JSON object (%v): %.80s", err, l)
		}
		seen[v.Target] = true
	}
	if len(seen) != writers*each {
		t.Errorf("got %d distinct targets, want %d", len(seen), writers*each)
	}
}

// TestStdoutScheduler: an inconclusive probe is marked, the impaired changes are lines of
// their own (with the late time), the lateness report is no line, and the summary names
// an impaired agent.
func TestStdoutLateness(t *testing.T) {
	report := &agent.SchedulerReport{Inconclusive: 1}
	events := []agent.Event{
		{Type: agent.EventProbe, Time: t0, Agent: "edge1", Site: "beta", Target: "http", Kind: probes.KindHTTP, Inconclusive: true,
			Result: probes.Result{Start: t0.Add(-320 * time.Millisecond), RTT: 320 * time.Millisecond, Reason: probes.ReasonTimeout, Detail: "no answer"}},
		{Type: agent.EventScheduler, Time: t0, Agent: "edge1", Scheduler: report},
		{Type: agent.EventImpaired, Time: t0.Add(time.Second), Agent: "edge1", From: agent.AgentOK, To: agent.AgentImpaired, Detect: 1200 * time.Millisecond},
		{Type: agent.EventProbe, Time: t0.Add(2 * time.Second), Agent: "edge1", Site: "beta", Target: "http", Kind: probes.KindHTTP,
			Result: probes.Result{OK: true, RTT: time.Millisecond}},
		{Type: agent.EventImpaired, Time: t0.Add(3 * time.Second), Agent: "edge1", From: agent.AgentImpaired, To: agent.AgentOK, Detect: 50 * time.Millisecond},
	}
	for _, tt := range []struct {
		name string
		cfg  config.StdoutConfig
		want []string
	}{
		{"json every result", config.StdoutConfig{Format: config.FormatJSON, Results: config.ResultsAll}, []string{
			`{"time":"2026-11-24T19:30:00.120000000Z","type":"probe","agent":"edge1","site":"beta","target":"http","kind":"http","ok":false,"start":"2026-11-24T19:29:59.800000000Z","rtt_seconds":0.32,"reason":"timeout","detail":"no answer","inconclusive":true}`,
			`{"time":"2026-11-24T19:30:01.120000000Z","type":"impaired","agent":"edge1","from":"ok","to":"impaired","detect_seconds":1.2}`,
			`{"time":"2026-11-24T19:30:02.120000000Z","type":"probe","agent":"edge1","site":"beta","target":"http","kind":"http","ok":true,"rtt_seconds":0.001}`,
			`{"time":"2026-11-24T19:30:03.120000000Z","type":"impaired","agent":"edge1","from":"impaired","to":"ok","detect_seconds":0.05}`,
		}},
		{"text with summary", config.StdoutConfig{Results: config.ResultsAll, Summary: config.Duration{Duration: 1500 * time.Millisecond}}, []string{
			"19:30:00.120  probe    beta/http                 FAIL timeout          http  rtt 320ms  inconclusive (the agent was late)  no answer",
			"19:30:01.120  impaired  edge1                     ok -> impaired        late 1.2s of the last 5s",
			"19:30:02.120  probe    beta/http                 ok                    http  rtt 1ms",
			"19:30:02.120  summary  sites 0 up, 0 degraded, 0 down; targets 0 down of 1; 0.5 probes/s; agent edge1 impaired",
			"19:30:03.120  impaired  edge1                     impaired -> ok        late 50ms of the last 5s",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			s, err := NewStdout(&buf, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				s.Handle(ev)
			}
			got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("lines differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
