package exporters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/probes"
)

// jsonEvent and referenceJSON/referenceText are the stdout exporter's former encoders
// (encoding/json and fmt), kept as the reference the allocation-free ones must match.
type jsonEvent struct {
	Time          string   `json:"time"`
	Type          string   `json:"type"`
	Agent         string   `json:"agent"`
	Site          string   `json:"site,omitempty"`
	Target        string   `json:"target,omitempty"`
	Kind          string   `json:"kind,omitempty"`
	OK            *bool    `json:"ok,omitempty"`
	Start         string   `json:"start,omitempty"`
	RTTSeconds    *float64 `json:"rtt_seconds,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	Detail        string   `json:"detail,omitempty"`
	From          string   `json:"from,omitempty"`
	To            string   `json:"to,omitempty"`
	DetectSeconds *float64 `json:"detect_seconds,omitempty"`
}

func referenceJSON(ev agent.Event) string {
	line := jsonEvent{Time: ev.Time.UTC().Format(jsonTime), Type: typeName(ev.Type), Agent: ev.Agent,
		Site: ev.Site, Target: ev.Target, Kind: string(ev.Kind)}
	if ev.Type == agent.EventProbe {
		ok, rtt := ev.Result.OK, ev.Result.RTT.Seconds()
		line.OK, line.RTTSeconds = &ok, &rtt
		if !ev.Result.Start.IsZero() {
			line.Start = ev.Result.Start.UTC().Format(jsonTime)
		}
		line.Reason, line.Detail = string(ev.Result.Reason), ev.Result.Detail
	} else {
		line.From, line.To, line.Reason = ev.From, ev.To, string(ev.Reason)
		if ev.Detect > 0 {
			d := ev.Detect.Seconds()
			line.DetectSeconds = &d
		}
	}
	b, err := json.Marshal(line)
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

// referenceDuration is the former formatDuration.
func referenceDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

func TestFormatDurationMatchesReference(t *testing.T) {
	for _, d := range []time.Duration{0, 1, -1, 999, 1000, 1499, 1500, 999999, 1000000, 9999999, 10000000, 123456789,
		time.Second, 61 * time.Second, 3601*time.Second + 5*time.Millisecond, 100 * time.Hour, math.MaxInt64, math.MinInt64, -1500 * time.Microsecond} {
		if got, want := formatDuration(d), referenceDuration(d); got != want {
			t.Errorf("formatDuration(%d) = %q, want %q", int64(d), got, want)
		}
	}
}

func referenceText(ev agent.Event) string {
	var subject, what string
	var details []string
	switch ev.Type {
	case agent.EventProbe:
		subject = targetName(ev.Site, ev.Target)
		what = "ok"
		if !ev.Result.OK {
			what = "FAIL " + string(ev.Result.Reason)
		}
		details = append(details, string(ev.Kind), "rtt "+referenceDuration(ev.Result.RTT))
		if ev.Result.Detail != "" {
			details = append(details, ev.Result.Detail)
		}
	case agent.EventTarget:
		subject = targetName(ev.Site, ev.Target)
		what = ev.From + " -> " + ev.To
		details = append(details, string(ev.Kind))
		if ev.Reason != "" {
			details = append(details, string(ev.Reason))
		}
	case agent.EventSite:
		subject = ev.Site
		what = ev.From + " -> " + ev.To
	default:
		subject = ev.Agent
		what = ev.From + " -> " + ev.To
	}
	if ev.Type != agent.EventProbe && ev.Detect > 0 && ev.From != agent.TargetUnknown {
		details = append(details, "after "+referenceDuration(ev.Detect))
	}
	line := fmt.Sprintf("%s  %-7s  %-24s  %-20s  %s", ev.Time.Format(textTime), typeName(ev.Type),
		subject, what, strings.Join(details, "  "))
	return strings.TrimRight(line, " ") + "\n"
}

// TestStdoutMatchesReference: every line the hand-written encoders make equals what
// encoding/json and fmt made, over hostile strings (quotes, control characters, HTML,
// invalid UTF-8, U+2028, wide runes) and numbers across the float formats' ranges.
func TestStdoutMatchesReference(t *testing.T) {
	strs := []string{"", "web", `a"b\c`, "tab\there\nnl\r\b\f\x00\x1f", "<a href='x'>&</a>", "bad\xffutf8\xc3",
		"sep\u2028par\u2029", "서울-데이터센터", "emoji 🚀 ok", strings.Repeat("long", 20)}
	durs := []time.Duration{0, 1, 999, time.Microsecond, 1500 * time.Microsecond, 250 * time.Millisecond,
		3 * time.Second, time.Hour, math.MaxInt64, -time.Millisecond}
	types := []agent.EventType{agent.EventProbe, agent.EventTarget, agent.EventSite, agent.EventAgent, 9}
	times := []time.Time{time.Date(2026, 11, 24, 19, 30, 0, 120000000, time.UTC), time.Unix(0, 1).In(time.FixedZone("x", 3600)), {}}
	n := 0
	for i := range 4000 {
		ev := agent.Event{
			Type: types[i%len(types)], Time: times[i%len(times)],
			Agent: strs[i%len(strs)], Site: strs[(i/3)%len(strs)], Target: strs[(i/7)%len(strs)],
			Kind: probes.Kind(strs[(i/11)%len(strs)]), From: strs[(i/13)%len(strs)], To: strs[(i/17)%len(strs)],
			Detect: durs[(i/5)%len(durs)], Reason: probes.Reason(strs[(i/19)%len(strs)]),
			Result: probes.Result{OK: i%2 == 0, RTT: durs[i%len(durs)], Reason: probes.Reason(strs[(i/23)%len(strs)]), Detail: strs[(i/29)%len(strs)]},
		}
		for _, format := range []string{config.FormatJSON, config.FormatText} {
			var buf bytes.Buffer
			s, err := NewStdout(&buf, config.StdoutConfig{Format: format, Results: config.ResultsAll})
			if err != nil {
				t.Fatal(err)
			}
			s.Handle(ev)
			want := referenceText(ev)
			if format == config.FormatJSON {
				want = referenceJSON(ev)
			}
			if got := buf.String(); got != want {
				t.Fatalf("%s line of %+v:\n got %q\nwant %q", format, ev, got, want)
			}
			n++
		}
	}
	t.Logf("%d lines equal", n)
}
