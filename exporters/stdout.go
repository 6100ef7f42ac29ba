// Package exporters turns the agent's events into outputs for people and machines:
// lines on stdout, a Prometheus /metrics endpoint and remote_write pushes.
//
// Every exporter is an agent.Sink and knows nothing about probing: it sees only the
// events the agent emits, so a new output never touches the scheduler or the probes.
package exporters

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
)

var _ agent.Sink = (*Stdout)(nil)

// Stdout output formats and result selections, as written in [exporters.stdout].
const (
	FormatText     = "text"
	FormatJSON     = "json"
	ResultsChanges = "changes"
	ResultsAll     = "all"
)

// jsonTime has a fixed nine-digit fraction so that lines sort and align as text.
const jsonTime = "2006-01-02T15:04:05.000000000Z07:00"

// textTime is short: a person reading a terminal knows the date.
const textTime = "15:04:05.000"

// Stdout writes events as lines, one JSON object per line or aligned text.
//
// Handle writes synchronously through a bufio.Writer that is flushed after every line.
// That is enough for stdout: its reader is a terminal, a pipe or journald, which drain
// continuously, and a line of a hundred bytes fits a pipe buffer in microseconds. A queue
// would only add a goroutine, reordering and lines lost at exit; a reader that stops
// reading altogether is a broken deployment that no buffer would fix.
type Stdout struct {
	mu      sync.Mutex
	w       *bufio.Writer
	json    bool
	all     bool
	summary time.Duration

	// Text summary bookkeeping, updated from every event.
	sites        map[siteKey]string // last state per agent and site
	targets      map[targetKey]bool // true while the target is down
	isolated     map[string]bool    // agents whose self-check says isolated
	probes       int                // probe results since the last summary line
	windowStart  time.Time          // start of the current summary window
	summaryStart bool               // windowStart is set
}

type siteKey struct{ agent, site string }

type targetKey struct{ agent, site, target string }

// NewStdout returns a sink that writes to w as cfg says. An empty Format means text, an
// empty Results means state changes only, and a zero Summary turns the text summary off.
func NewStdout(w io.Writer, cfg agent.StdoutConfig) (*Stdout, error) {
	s := &Stdout{
		w:        bufio.NewWriter(w),
		summary:  cfg.Summary.Duration,
		sites:    make(map[siteKey]string),
		targets:  make(map[targetKey]bool),
		isolated: make(map[string]bool),
	}
	switch cfg.Format {
	case "", FormatText:
	case FormatJSON:
		s.json = true
	default:
		return nil, fmt.Errorf("stdout exporter: format %q: want %q or %q", cfg.Format, FormatText, FormatJSON)
	}
	switch cfg.Results {
	case "", ResultsChanges:
	case ResultsAll:
		s.all = true
	default:
		return nil, fmt.Errorf("stdout exporter: results %q: want %q or %q", cfg.Results, ResultsChanges, ResultsAll)
	}
	if s.summary < 0 {
		return nil, fmt.Errorf("stdout exporter: summary %s: want zero (off) or a positive duration", s.summary)
	}
	return s, nil
}

// Handle writes the event if the configuration selects it, and in text format a
// summary line when one is due. Errors writing stdout are dropped: there is nowhere
// better to report them, and the agent must keep probing regardless.
func (s *Stdout) Handle(ev agent.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.track(ev)
	if ev.Type != agent.EventProbe || s.all {
		if s.json {
			s.writeJSON(ev)
		} else {
			s.writeText(ev)
		}
	}
	if !s.json && s.summary > 0 {
		s.maybeSummary(ev.Time)
	}
	s.w.Flush()
}

func (s *Stdout) track(ev agent.Event) {
	switch ev.Type {
	case agent.EventProbe:
		s.probes++
		k := targetKey{ev.Agent, ev.Site, ev.Target}
		if _, seen := s.targets[k]; !seen {
			s.targets[k] = false
		}
	case agent.EventTarget:
		s.targets[targetKey{ev.Agent, ev.Site, ev.Target}] = ev.To == agent.TargetDown
	case agent.EventSite:
		s.sites[siteKey{ev.Agent, ev.Site}] = ev.To
	case agent.EventAgent:
		s.isolated[ev.Agent] = ev.To == agent.AgentIsolated
	}
}

var eventTypeNames = map[agent.EventType]string{
	agent.EventProbe:  "probe",
	agent.EventTarget: "target",
	agent.EventSite:   "site",
	agent.EventAgent:  "agent",
}

func typeName(t agent.EventType) string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event%d", t)
}

// jsonEvent is one output line. Pointers mark fields that are meaningful as zero
// (ok=false, an RTT of 0) and must appear exactly when the event type has them.
type jsonEvent struct {
	Time          string   `json:"time"`
	Type          string   `json:"type"`
	Agent         string   `json:"agent"`
	Site          string   `json:"site,omitempty"`
	Target        string   `json:"target,omitempty"`
	Kind          string   `json:"kind,omitempty"`
	OK            *bool    `json:"ok,omitempty"`
	RTTSeconds    *float64 `json:"rtt_seconds,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	Detail        string   `json:"detail,omitempty"`
	From          string   `json:"from,omitempty"`
	To            string   `json:"to,omitempty"`
	DetectSeconds *float64 `json:"detect_seconds,omitempty"`
}

func (s *Stdout) writeJSON(ev agent.Event) {
	line := jsonEvent{
		Time:   ev.Time.UTC().Format(jsonTime),
		Type:   typeName(ev.Type),
		Agent:  ev.Agent,
		Site:   ev.Site,
		Target: ev.Target,
		Kind:   string(ev.Kind),
	}
	if ev.Type == agent.EventProbe {
		ok := ev.Result.OK
		rtt := ev.Result.RTT.Seconds()
		line.OK, line.RTTSeconds = &ok, &rtt
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
		return // only strings and numbers: cannot fail
	}
	s.w.Write(b)
	s.w.WriteByte('\n')
}

// writeText writes one aligned line: time, event type, subject, what happened, details.
func (s *Stdout) writeText(ev agent.Event) {
	var subject, what string
	var details []string
	switch ev.Type {
	case agent.EventProbe:
		subject = targetName(ev.Site, ev.Target)
		what = "ok"
		if !ev.Result.OK {
			what = "FAIL " + string(ev.Result.Reason)
		}
		details = append(details, string(ev.Kind), "rtt "+formatDuration(ev.Result.RTT))
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
	// A first verdict (from unknown) has no failure or recovery to time.
	if ev.Type != agent.EventProbe && ev.Detect > 0 && ev.From != agent.TargetUnknown {
		details = append(details, "after "+formatDuration(ev.Detect))
	}
	line := fmt.Sprintf("%s  %-7s  %-24s  %-20s  %s", ev.Time.Format(textTime), typeName(ev.Type),
		subject, what, strings.Join(details, "  "))
	s.w.WriteString(strings.TrimRight(line, " "))
	s.w.WriteByte('\n')
}

// targetName is "site/target"; control targets belong to no site.
func targetName(site, target string) string {
	if site == "" {
		return "control/" + target
	}
	return site + "/" + target
}

// formatDuration keeps two or three significant digits, enough to read an RTT or a
// detection time without the noise of nanoseconds.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// maybeSummary writes the summary line when a Summary period has passed since the last
// one, measured on event times so that the output is a function of the events alone.
func (s *Stdout) maybeSummary(now time.Time) {
	if !s.summaryStart {
		s.windowStart, s.summaryStart, s.probes = now, true, 0
		return
	}
	elapsed := now.Sub(s.windowStart)
	if elapsed < s.summary {
		return
	}
	counts := map[string]int{}
	for _, state := range s.sites {
		counts[state]++
	}
	down := 0
	for _, isDown := range s.targets {
		if isDown {
			down++
		}
	}
	line := fmt.Sprintf("%s  %-7s  sites %d up, %d degraded, %d down", now.Format(textTime), "summary",
		counts[agent.SiteUp], counts[agent.SiteDegraded], counts[agent.SiteDown])
	if n := counts[agent.SiteUnknown]; n > 0 {
		line += fmt.Sprintf(", %d unknown", n)
	}
	line += fmt.Sprintf("; targets %d down of %d; %.1f probes/s", down, len(s.targets),
		float64(s.probes)/elapsed.Seconds())
	if names := s.downSites(); len(names) > 0 {
		line += "; down: " + strings.Join(names, ", ")
	}
	// An isolated agent's "down" sites are its own uplink's doing: say so on the same line.
	for _, name := range s.isolatedAgents() {
		line += "; agent " + name + " isolated"
	}
	s.w.WriteString(line)
	s.w.WriteByte('\n')
	s.windowStart, s.probes = now, 0
}

func (s *Stdout) downSites() []string {
	var names []string
	for k, state := range s.sites {
		if state == agent.SiteDown {
			names = append(names, k.site)
		}
	}
	sort.Strings(names)
	return names
}

func (s *Stdout) isolatedAgents() []string {
	var names []string
	for name, isolated := range s.isolated {
		if isolated {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
