// Package exporters turns the agent's events into outputs for people and machines:
// lines on stdout, a Prometheus /metrics endpoint and remote_write pushes.
//
// Every exporter is an agent.Sink and knows nothing about probing: it sees only the
// events the agent emits, so a new output never touches the scheduler or the probes.
package exporters

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/internal/jsonenc"
	"github.com/edgeprobe/edgeprobe/internal/linequeue"
)

var _ agent.Sink = (*Stdout)(nil)

// stdoutDroppedDesc counts what NewStdoutQueue dropped.
var stdoutDroppedDesc = prometheus.NewDesc("edgeprobe_stdout_lines_dropped_total",
	"Lines of the stdout exporter dropped because stdout was not read fast enough or failed.", nil, nil)

// NewStdoutQueue puts w (the agent's stdout) behind a queue that never blocks its
// writer, and returns a collector of the lines it dropped for /metrics.
func NewStdoutQueue(w io.Writer, logger *slog.Logger) (*linequeue.Queue, prometheus.Collector) {
	q := linequeue.New(w, logger, "stdout exporter: lines dropped, stdout is not read fast enough or failed (edgeprobe_stdout_lines_dropped_total)")
	return q, droppedCollector{q}
}

type droppedCollector struct{ q *linequeue.Queue }

func (c droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- stdoutDroppedDesc }

func (c droppedCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(stdoutDroppedDesc, prometheus.CounterValue, float64(c.q.Dropped()))
}

// jsonTime has a fixed nine-digit fraction so that lines sort and align as text.
const jsonTime = "2006-01-02T15:04:05.000000000Z07:00"

// textTime is short: a person reading a terminal knows the date.
const textTime = "15:04:05.000"

// Stdout writes events as lines, one JSON object per line or aligned text.
//
// Handle formats into a bufio.Writer that is flushed after every line, so each Write
// to w is whole lines. The agent gives it the queue of NewStdoutQueue, never stdout
// itself: Handle runs on the probe scheduler's goroutine, and a reader that stops
// reading (journald stalled, a pager paused, a pipe nobody drains) must cost lines,
// counted, not probes.
type Stdout struct {
	mu      sync.Mutex
	w       *bufio.Writer
	json    bool
	all     bool
	summary time.Duration
	buf     []byte // the line being written, reused

	// Text summary bookkeeping, updated from every event.
	sites        map[siteKey]string // last state per agent and site
	targets      map[targetKey]bool // true while the target is down
	isolated     map[string]bool    // agents whose self-check says isolated
	impaired     map[string]bool    // agents too late to judge their timeouts
	probes       int                // probe results since the last summary line
	windowStart  time.Time          // start of the current summary window
	summaryStart bool               // windowStart is set
}

type siteKey struct{ agent, site string }

type targetKey struct{ agent, site, target string }

// NewStdout returns a sink that writes to w as cfg says. An empty Format means text, an
// empty Results means state changes only, and a zero Summary turns the text summary off.
func NewStdout(w io.Writer, cfg config.StdoutConfig) (*Stdout, error) {
	s := &Stdout{
		w:        bufio.NewWriter(w),
		summary:  cfg.Summary.Duration,
		sites:    make(map[siteKey]string),
		targets:  make(map[targetKey]bool),
		isolated: make(map[string]bool),
		impaired: make(map[string]bool),
	}
	switch cfg.Format {
	case "", config.FormatText:
	case config.FormatJSON:
		s.json = true
	default:
		return nil, fmt.Errorf("stdout exporter: format %q: want %q or %q", cfg.Format, config.FormatText, config.FormatJSON)
	}
	switch cfg.Results {
	case "", config.ResultsChanges:
	case config.ResultsAll:
		s.all = true
	default:
		return nil, fmt.Errorf("stdout exporter: results %q: want %q or %q", cfg.Results, config.ResultsChanges, config.ResultsAll)
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
	if ev.Type == agent.EventProbe && !s.all && (s.json || s.summary == 0) {
		return // nothing to write and no summary to count it in
	}
	if ev.Type == agent.EventScheduler {
		return // histograms, for /metrics; the impaired events say what matters
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.json && s.summary > 0 {
		s.track(ev)
	}
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
	case agent.EventImpaired:
		s.impaired[ev.Agent] = ev.To == agent.AgentImpaired
	case agent.EventRemoved:
		if ev.Target != "" {
			delete(s.targets, targetKey{ev.Agent, ev.Site, ev.Target})
			return
		}
		delete(s.sites, siteKey{ev.Agent, ev.Site})
		for k := range s.targets {
			if k.agent == ev.Agent && k.site == ev.Site {
				delete(s.targets, k)
			}
		}
	}
}

var eventTypeNames = map[agent.EventType]string{
	agent.EventProbe:    "probe",
	agent.EventTarget:   "target",
	agent.EventSite:     "site",
	agent.EventAgent:    "agent",
	agent.EventRemoved:  "removed",
	agent.EventImpaired: "impaired",
}

func typeName(t agent.EventType) string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event%d", t)
}

// Lines are appended to buf by hand rather than with encoding/json and fmt: with
// results = "all" every probe is a line, and at 1000 probes a second the reflection and
// the intermediate strings were the exporter's whole cost. The bytes are those
// json.Marshal and the former Sprintf produced (TestStdoutLines, TestStdoutJSONEscaping).

// writeJSON writes one object; fields appear exactly when the event type has them
// (ok=false and an RTT of 0 included).
func (s *Stdout) writeJSON(ev agent.Event) {
	b := append(s.buf[:0], `{"time":"`...)
	b = ev.Time.UTC().AppendFormat(b, jsonTime)
	b = append(b, `","type":`...)
	b = jsonenc.AppendString(b, typeName(ev.Type))
	b = append(b, `,"agent":`...)
	b = jsonenc.AppendString(b, ev.Agent)
	b = appendJSONField(b, "site", ev.Site)
	b = appendJSONField(b, "target", ev.Target)
	b = appendJSONField(b, "kind", string(ev.Kind))
	if ev.Type == agent.EventProbe {
		b = append(b, `,"ok":`...)
		b = strconv.AppendBool(b, ev.Result.OK)
		if !ev.Result.Start.IsZero() {
			b = append(b, `,"start":"`...)
			b = ev.Result.Start.UTC().AppendFormat(b, jsonTime)
			b = append(b, '"')
		}
		b = append(b, `,"rtt_seconds":`...)
		b = jsonenc.AppendFloat(b, ev.Result.RTT.Seconds())
		b = appendJSONField(b, "reason", string(ev.Result.Reason))
		b = appendJSONField(b, "detail", ev.Result.Detail)
		if ev.Inconclusive {
			b = append(b, `,"inconclusive":true`...)
		}
	} else {
		b = appendJSONField(b, "reason", string(ev.Reason))
		b = appendJSONField(b, "from", ev.From)
		b = appendJSONField(b, "to", ev.To)
		if ev.Detect > 0 {
			b = append(b, `,"detect_seconds":`...)
			b = jsonenc.AppendFloat(b, ev.Detect.Seconds())
		}
	}
	b = append(b, "}\n"...)
	s.buf = b
	s.w.Write(b)
}

// appendJSONField appends ,"name":"value" unless value is empty (omitempty).
func appendJSONField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return jsonenc.AppendString(b, value)
}

// writeText writes one aligned line: time, event type, subject, what happened, details.
func (s *Stdout) writeText(ev agent.Event) {
	b := ev.Time.AppendFormat(s.buf[:0], textTime)
	b = append(b, ' ', ' ')
	b = appendPadded(b, 7, typeName(ev.Type))
	b = append(b, ' ', ' ')
	mark := len(b)
	switch {
	case ev.Type == agent.EventProbe || ev.Type == agent.EventTarget || ev.Type == agent.EventRemoved && ev.Target != "":
		if ev.Site == "" {
			b = append(b, "control"...)
		} else {
			b = append(b, ev.Site...)
		}
		b = append(b, '/')
		b = append(b, ev.Target...)
	case ev.Type == agent.EventSite || ev.Type == agent.EventRemoved:
		b = append(b, ev.Site...)
	default:
		b = append(b, ev.Agent...)
	}
	b = pad(b, mark, 24)
	b = append(b, ' ', ' ')
	mark = len(b)
	if ev.Type == agent.EventProbe {
		if ev.Result.OK {
			b = append(b, "ok"...)
		} else {
			b = append(b, "FAIL "...)
			b = append(b, ev.Result.Reason...)
		}
	} else {
		b = append(b, ev.From...)
		b = append(b, " -> "...)
		b = append(b, ev.To...)
	}
	b = pad(b, mark, 20)
	b = append(b, ' ', ' ')
	// details, two spaces apart
	sep := false
	detail := func(b []byte, parts ...string) []byte {
		if sep {
			b = append(b, ' ', ' ')
		}
		sep = true
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	switch ev.Type {
	case agent.EventProbe:
		b = detail(b, string(ev.Kind))
		b = detail(b, "rtt ")
		b = appendDuration(b, ev.Result.RTT)
		if ev.Inconclusive {
			b = detail(b, "inconclusive (the agent was late)")
		}
		if ev.Result.Detail != "" {
			b = detail(b, ev.Result.Detail)
		}
	case agent.EventImpaired:
		b = detail(b, "late ")
		b = appendDuration(b, ev.Detect)
		b = append(b, " of the last "...)
		b = appendDuration(b, agent.ImpairedWindow)
	case agent.EventTarget, agent.EventRemoved:
		if ev.Type == agent.EventTarget || ev.Kind != "" {
			b = detail(b, string(ev.Kind))
		}
		if ev.Reason != "" {
			b = detail(b, string(ev.Reason))
		}
	}
	// A first verdict (from unknown) has no failure or recovery to time.
	if ev.Type != agent.EventProbe && ev.Type != agent.EventImpaired && ev.Detect > 0 && ev.From != agent.TargetUnknown {
		b = detail(b, "after ")
		b = appendDuration(b, ev.Detect)
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	b = append(b, '\n')
	s.buf = b
	s.w.Write(b)
}

// appendPadded appends s left-aligned in width runes, as %-*s does.
func appendPadded(b []byte, width int, s string) []byte {
	mark := len(b)
	return pad(append(b, s...), mark, width)
}

// pad appends spaces until b[mark:] is width runes wide.
func pad(b []byte, mark, width int) []byte {
	for n := utf8.RuneCount(b[mark:]); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

// appendDuration appends formatDuration(d).
func appendDuration(b []byte, d time.Duration) []byte { return formatDurationTo(b, d) }

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
	var buf [32]byte
	return string(formatDurationTo(buf[:0], d))
}

// formatDurationTo appends formatDuration(d) to b.
func formatDurationTo(b []byte, d time.Duration) []byte {
	switch {
	case d < time.Millisecond:
		d = d.Round(time.Microsecond)
	case d < 10*time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	default:
		d = d.Round(time.Millisecond)
	}
	return appendDurationString(b, d)
}

// appendDurationString appends d.String() without allocating (the same algorithm as the
// time package's).
func appendDurationString(b []byte, d time.Duration) []byte {
	var buf [32]byte
	w := len(buf)
	u := uint64(d)
	neg := d < 0
	if neg {
		u = -u
	}
	if u < uint64(time.Second) {
		var prec int
		w--
		buf[w] = 's'
		w--
		switch {
		case u == 0:
			buf[w] = '0'
			return append(b, buf[w:]...)
		case u < uint64(time.Microsecond):
			prec = 0
			buf[w] = 'n'
		case u < uint64(time.Millisecond):
			prec = 3
			w-- // µ is two bytes
			copy(buf[w:], "µ")
		default:
			prec = 6
			buf[w] = 'm'
		}
		w, u = fmtFrac(buf[:w], u, prec)
		w = fmtInt(buf[:w], u)
	} else {
		w--
		buf[w] = 's'
		w, u = fmtFrac(buf[:w], u, 9)
		w = fmtInt(buf[:w], u%60)
		u /= 60
		if u > 0 {
			w--
			buf[w] = 'm'
			w = fmtInt(buf[:w], u%60)
			u /= 60
			if u > 0 {
				w--
				buf[w] = 'h'
				w = fmtInt(buf[:w], u)
			}
		}
	}
	if neg {
		w--
		buf[w] = '-'
	}
	return append(b, buf[w:]...)
}

func fmtFrac(buf []byte, v uint64, prec int) (int, uint64) {
	w := len(buf)
	print := false
	for range prec {
		digit := v % 10
		print = print || digit != 0
		if print {
			w--
			buf[w] = byte(digit) + '0'
		}
		v /= 10
	}
	if print {
		w--
		buf[w] = '.'
	}
	return w, v
}

func fmtInt(buf []byte, v uint64) int {
	w := len(buf)
	if v == 0 {
		w--
		buf[w] = '0'
		return w
	}
	for v > 0 {
		w--
		buf[w] = byte(v%10) + '0'
		v /= 10
	}
	return w
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
	for _, name := range trueKeys(s.isolated) {
		line += "; agent " + name + " isolated"
	}
	// An impaired agent's timeouts are its own lateness as much as the targets'.
	for _, name := range trueKeys(s.impaired) {
		line += "; agent " + name + " impaired"
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

// trueKeys are the agents m says true of, sorted.
func trueKeys(m map[string]bool) []string {
	var names []string
	for name, yes := range m {
		if yes {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
