package exporters

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/probes"
)

// The per-target families of /metrics (probe_duration_seconds, the failure counters, and
// the state gauges) are written here in the text exposition format 0.0.4 straight from
// promState, not through client_golang. Measured at 1000 ICMP targets (23 series each,
// BenchmarkPrometheusScrape1000): client_golang's HistogramVec/CounterVec kept 4-5 MB of
// series live, and a scrape built the 2.8 MB page as 255,000 allocations (12 MB, ~50 ms of
// CPU); the agent's RSS went from 19 to 36 MiB on the first scrapes, beyond the footprint budget's
// 20 MiB budget. Here the numbers sit in one compact struct per target and kind, each
// series' label block is rendered once, and a scrape formats into pooled buffers.
// gzip is github.com/klauspost/compress/gzip (its snappy already encodes remote_write), not
// compress/gzip: at BestSpeed it compressed this page in 3.4 ms instead of 5.1 ms per scrape,
// to 90 KB instead of 91 KB.
// client_golang still serves everything small (build info, the Go and process collectors,
// the remote_write delivery counters): Gather, then expfmt, merged in name order.

// nBuckets is len(probeDurationBuckets).
const nBuckets = 16

// bucketLE are the le label values of probeDurationBuckets, formatted once as expfmt does.
var bucketLE = func() (le [nBuckets][]byte) {
	for i, b := range &probeDurationBuckets {
		le[i] = appendFloat(nil, b)
	}
	return le
}()

// pageLabels are the labels every series carries: the agent name and the agent labels.
type pageLabels struct {
	agent      string
	extra      []labelPair // sorted by name
	agentBlock *labelBlock // edgeprobe_agent_isolated's: agent and the agent labels
	eventBlock *labelBlock // the same, with a place for the lateness histogram's event
}

func newPageLabels(agentName string, extra []labelPair) *pageLabels {
	l := &pageLabels{agent: agentName, extra: extra}
	l.agentBlock = l.block(nil)
	l.eventBlock = l.block(nil, "event")
	return l
}

// latenessLE are the le label values of agent.LatenessBuckets, in seconds.
var latenessLE = func() (le [len(agent.LatenessBuckets)][]byte) {
	for i, b := range &agent.LatenessBuckets {
		le[i] = appendFloat(nil, b.Seconds())
	}
	return le
}()

// labelBlock is a series' labels rendered once for the page: `name="value",` for each label
// in name order (as client_golang writes them), each followed by a comma. at[i] is where
// the i-th label name given to block would go in that order (phase and reason for
// targets, state for sites), so a scrape adds that label by copying around it.
type labelBlock struct {
	b  []byte
	at [2]int
}

const (
	atPhase  = 0 // target blocks
	atReason = 1 // target blocks
	atState  = 0 // site blocks
	atEvent  = 0 // pageLabels.eventBlock
)

// block renders the agent labels plus pairs (not sorted) into a labelBlock, with insertion
// points for the label names ins.
func (l *pageLabels) block(pairs []labelPair, ins ...string) *labelBlock {
	all := make([]labelPair, 0, len(pairs)+1+len(l.extra))
	all = append(all, labelPair{"agent", l.agent})
	all = append(all, l.extra...)
	all = append(all, pairs...)
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	blk := &labelBlock{}
	var placed [2]bool
	for _, p := range all {
		for j, name := range ins {
			if !placed[j] && p.name > name {
				blk.at[j], placed[j] = len(blk.b), true
			}
		}
		blk.b = appendPair(blk.b, p.name, p.value)
	}
	for j := range ins {
		if !placed[j] {
			blk.at[j] = len(blk.b)
		}
	}
	return blk
}

// appendPair appends name="value", with the value escaped per the text format.
func appendPair(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, '=', '"')
	b = appendEscaped(b, value)
	return append(b, '"', ',')
}

// appendEscaped escapes a label value per the text format: \ " and newline. Invalid UTF-8
// (which client_golang refused with a panic) becomes U+FFFD, so the page stays parseable.
func appendEscaped(b []byte, v string) []byte {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat formats a sample value as expfmt does.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, '-', '1')
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// promSeriesSet is one target's histogram and failure counters for one kind: what
// client_golang's HistogramVec and CounterVec kept per label set. A target whose kind
// changes without a reload's removal event (sinks fed by hand) gets a second set beside
// the first; the agent removes the old kind first (agent.EventRemoved).
type promSeriesSet struct {
	kind     probes.Kind
	labels   *labelBlock      // site, target, kind; never changed once made
	buckets  [nBuckets]uint64 // not cumulative
	sum      float64
	count    uint64
	timeouts uint64        // reason timeout, on the page from the set's first event
	reasons  []reasonCount // other reasons, sorted, each from its first failure
}

type reasonCount struct {
	reason string
	n      uint64
}

// observe counts a probe result as client_golang's Histogram.Observe and Counter.Inc did:
// a success in the first bucket whose bound is >= its RTT (above the last: +Inf only), a
// failure in its reason's counter. It allocates only on a reason's first failure.
func (m *promSeriesSet) observe(r probes.Result) {
	if r.OK {
		v := r.RTT.Seconds()
		for i, b := range &probeDurationBuckets {
			if v <= b {
				m.buckets[i]++
				break
			}
		}
		m.sum += v
		m.count++
		return
	}
	if r.Reason == probes.ReasonTimeout {
		m.timeouts++
		return
	}
	reason := string(r.Reason)
	i := sort.Search(len(m.reasons), func(i int) bool { return m.reasons[i].reason >= reason })
	if i == len(m.reasons) || m.reasons[i].reason != reason {
		m.reasons = append(m.reasons, reasonCount{})
		copy(m.reasons[i+1:], m.reasons[i:])
		m.reasons[i] = reasonCount{reason: reason}
	}
	m.reasons[i].n++
}

// seriesSet returns the target's set for kind, making it (and rendering its labels) on
// first sight. s.mu is held.
func (t *promTargetState) seriesSet(kind probes.Kind, l *pageLabels) *promSeriesSet {
	for _, m := range t.sets {
		if m.kind == kind {
			return m
		}
	}
	m := &promSeriesSet{kind: kind, labels: l.block([]labelPair{
		{"site", t.key.site}, {"target", t.key.target}, {"kind", string(kind)},
	}, "phase", "reason")}
	i := sort.Search(len(t.sets), func(i int) bool { return t.sets[i].kind >= kind })
	t.sets = append(t.sets, nil)
	copy(t.sets[i+1:], t.sets[i:])
	t.sets[i] = m
	return m
}

// Snapshots of the state, copied under promState.mu in chunks and formatted outside it.

type targetSnap struct {
	labels     *labelBlock // of the current kind
	kind       probes.Kind
	state      string
	probed, ok bool
	reason     probes.Reason
	phases     probes.Phases
	certExpiry time.Time
	sets       [2]int // range in page.sets
}

type setSnap struct {
	labels   *labelBlock
	buckets  [nBuckets]uint64
	sum      float64
	count    uint64
	timeouts uint64
	reasons  [2]int // range in page.reasons
}

type siteSnap struct {
	labels *labelBlock
	state  string
	since  time.Time
	detect time.Duration
}

// scrapeChunk is how many targets a scrape copies per lock, and how often it yields.
const scrapeChunk = 100

// copyTargets copies up to scrapeChunk targets after the key after (from the first when
// first) into pg's snapshots and reports the last key copied; n is 0 at the end. Resuming
// by key, not index, keeps a target added meanwhile from being written twice or a
// neighbour skipped.
func (s *promState) copyTargets(pg *page, after promTargetKey, first bool) (last promTargetKey, n int) {
	pg.targets, pg.sets, pg.reasons = pg.targets[:0], pg.sets[:0], pg.reasons[:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	if !first {
		i = sort.Search(len(s.targetList), func(i int) bool { return after.less(s.targetList[i].key) })
	}
	for ; i < len(s.targetList) && n < scrapeChunk; i++ {
		t := s.targetList[i]
		if t.cur == nil {
			continue
		}
		ts := targetSnap{labels: t.cur.labels, kind: t.kind, state: t.state, probed: t.probed, ok: t.ok, reason: t.reason, phases: t.phases,
			certExpiry: t.certExpiry}
		ts.sets[0] = len(pg.sets)
		for _, m := range t.sets {
			ss := setSnap{labels: m.labels, buckets: m.buckets, sum: m.sum, count: m.count, timeouts: m.timeouts}
			ss.reasons[0] = len(pg.reasons)
			pg.reasons = append(pg.reasons, m.reasons...)
			ss.reasons[1] = len(pg.reasons)
			pg.sets = append(pg.sets, ss)
		}
		ts.sets[1] = len(pg.sets)
		pg.targets = append(pg.targets, ts)
		last = t.key
		n++
	}
	return last, n
}

// copySites copies the agent-wide and per-site state (a few entries per site).
func (s *promState) copySites(pg *page) {
	pg.sites = pg.sites[:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	pg.isolated, pg.impaired = s.isolated, s.impaired
	if pg.hasScheduler = s.scheduler != nil; pg.hasScheduler {
		pg.scheduler = *s.scheduler
	}
	for _, site := range s.siteList {
		pg.sites = append(pg.sites, siteSnap{labels: site.pageBlock, state: site.state, since: site.since, detect: site.detect})
	}
}

// page is one scrape's buffer and snapshots, pooled: a scrape's allocations do not grow
// with the number of series.
type page struct {
	buf      []byte
	out      io.Writer
	err      error
	header   []byte // HELP and TYPE of the family being written, until its first series
	targets  []targetSnap
	sets     []setSnap
	reasons  []reasonCount
	sites    []siteSnap
	isolated bool
	impaired bool
	// The agent's scheduler report, when it has sent one.
	scheduler    agent.SchedulerReport
	hasScheduler bool
}

// Free lists of pages and gzip writers between scrapes, at most two of each (a scrape
// and one concurrent). Not sync.Pools: the GC empties a pool between scrapes 15 s apart,
// and a new gzip writer is hundreds of KB of garbage per scrape, which showed in the RSS.
var (
	freePages = make(chan *page, 2)
	freeGzips = make(chan *gzip.Writer, 2)
)

func getPage() *page {
	select {
	case pg := <-freePages:
		return pg
	default:
		return &page{buf: make([]byte, 0, 64<<10)}
	}
}

func putPage(pg *page) {
	select {
	case freePages <- pg:
	default:
	}
}

func getGzip(w io.Writer) *gzip.Writer {
	select {
	case zw := <-freeGzips:
		zw.Reset(w)
		return zw
	default:
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // a valid level: no error
		return zw
	}
}

func putGzip(zw *gzip.Writer) {
	zw.Reset(io.Discard) // drop the reference to the response
	select {
	case freeGzips <- zw:
	default:
	}
}

// flushAt is the buffered size at which the page goes to the response writer.
const flushAt = 32 << 10

func (pg *page) flush() {
	if len(pg.buf) > 0 && pg.err == nil {
		_, pg.err = pg.out.Write(pg.buf)
	}
	pg.buf = pg.buf[:0]
}

func (pg *page) maybeFlush() {
	if len(pg.buf) >= flushAt {
		pg.flush()
	}
}

// The writer methods expfmt.MetricFamilyToText uses (it wraps anything else in a bufio.Writer).

func (pg *page) Write(b []byte) (int, error) {
	pg.buf = append(pg.buf, b...)
	pg.maybeFlush()
	return len(b), nil
}

func (pg *page) WriteString(s string) (int, error) {
	pg.buf = append(pg.buf, s...)
	pg.maybeFlush()
	return len(s), nil
}

func (pg *page) WriteByte(c byte) error {
	pg.buf = append(pg.buf, c)
	return nil
}

func (pg *page) WriteRune(r rune) (int, error) {
	n := len(pg.buf)
	pg.buf = utf8.AppendRune(pg.buf, r)
	return len(pg.buf) - n, nil
}

// family starts a family; its HELP and TYPE are written with its first series, so that a
// family without series is left out, as client_golang does.
func (pg *page) family(name, help, typ string) {
	pg.header = append(pg.header[:0], "# HELP "...)
	pg.header = append(pg.header, name...)
	pg.header = append(pg.header, ' ')
	for i := 0; i < len(help); i++ {
		switch c := help[i]; c {
		case '\\':
			pg.header = append(pg.header, '\\', '\\')
		case '\n':
			pg.header = append(pg.header, '\\', 'n')
		default:
			pg.header = append(pg.header, c)
		}
	}
	pg.header = append(pg.header, "\n# TYPE "...)
	pg.header = append(pg.header, name...)
	pg.header = append(pg.header, ' ')
	pg.header = append(pg.header, typ...)
	pg.header = append(pg.header, '\n')
}

// sample writes one line: name{labels with ins="insValue" at off, then le="le"} value.
func (pg *page) sample(name string, blk *labelBlock, off int, ins, insValue string, le []byte, v float64) {
	if len(pg.header) > 0 {
		pg.buf = append(pg.buf, pg.header...)
		pg.header = pg.header[:0]
	}
	b := append(pg.buf, name...)
	b = append(b, '{')
	b = append(b, blk.b[:off]...)
	if ins != "" {
		b = appendPair(b, ins, insValue)
	}
	b = append(b, blk.b[off:]...)
	if le != nil {
		b = append(b, `le="`...)
		b = append(b, le...)
		b = append(b, '"', ',')
	}
	b[len(b)-1] = '}' // every block has agent, so there is a trailing comma to replace
	b = append(b, ' ')
	b = appendFloat(b, v)
	pg.buf = append(b, '\n')
	pg.maybeFlush()
}

// eachTargetChunk copies the targets chunk by chunk and calls fn for each chunk outside
// the lock, yielding between chunks so that a probe scheduler on the same P runs.
func (pg *page) eachTargetChunk(s *promState, fn func()) {
	var last promTargetKey
	for first := true; ; first = false {
		var n int
		if last, n = s.copyTargets(pg, last, first); n == 0 {
			return
		}
		fn()
		runtime.Gosched()
	}
}

// pageFamily writes one of the families the exporter writes itself.
type pageFamily struct {
	name  string
	write func(pg *page, s *promState)
}

// The families of the push contract, and those that only /metrics carries.
const (
	famImpaired     = contract.MetricAgentImpaired
	famIsolated     = contract.MetricAgentIsolated
	famFailures     = "edgeprobe_probe_failures_total"
	famInconclusive = "edgeprobe_probe_inconclusive_total"
	famLateness     = "edgeprobe_scheduler_lateness_seconds"
	famWorkers      = "edgeprobe_scheduler_workers"
	famDetect       = contract.MetricSiteDetect
	famState        = contract.MetricSiteState
	famSince        = contract.MetricSiteStateChange
	famReason       = contract.MetricTargetFailureReason
	famUp           = contract.MetricTargetUp
	famDuration     = contract.MetricProbeDuration
	famHTTP         = "probe_http_duration_seconds"
	famCert         = contract.MetricProbeCertExpiry
	famSuccess      = contract.MetricProbeSuccess
)

// pageFamilies are in name order, the order client_golang writes families in.
var pageFamilies = []pageFamily{
	{famImpaired, func(pg *page, s *promState) {
		pg.family(famImpaired, "1 while the agent is too late, for too long, to judge its own timeouts.", "gauge")
		pg.sample(famImpaired, s.pageLabels.agentBlock, 0, "", "", nil, boolValue(pg.impaired))
	}},
	{famIsolated, func(pg *page, s *promState) {
		pg.family(famIsolated, "1 when the agent's self-check says its own uplink is the likely cause of failures.", "gauge")
		pg.sample(famIsolated, s.pageLabels.agentBlock, 0, "", "", nil, boolValue(pg.isolated))
	}},
	{famFailures, func(pg *page, s *promState) {
		pg.family(famFailures, "Failed probes by reason.", "counter")
		pg.eachTargetChunk(s, func() {
			for _, m := range pg.sets {
				timeoutDone := false
				for _, r := range pg.reasons[m.reasons[0]:m.reasons[1]] {
					if !timeoutDone && r.reason > string(probes.ReasonTimeout) {
						pg.sample(famFailures, m.labels, m.labels.at[atReason], "reason", string(probes.ReasonTimeout), nil, float64(m.timeouts))
						timeoutDone = true
					}
					pg.sample(famFailures, m.labels, m.labels.at[atReason], "reason", r.reason, nil, float64(r.n))
				}
				if !timeoutDone {
					pg.sample(famFailures, m.labels, m.labels.at[atReason], "reason", string(probes.ReasonTimeout), nil, float64(m.timeouts))
				}
			}
		})
	}},
	{famInconclusive, func(pg *page, s *promState) {
		if !pg.hasScheduler {
			return
		}
		pg.family(famInconclusive, "Failed probes the agent was too late to judge, counted as neither failure nor success.", "counter")
		pg.sample(famInconclusive, s.pageLabels.agentBlock, 0, "", "", nil, float64(pg.scheduler.Inconclusive))
	}},
	{famLateness, func(pg *page, s *promState) {
		if !pg.hasScheduler {
			return
		}
		pg.family(famLateness, "How late the agent runs against due times: wakeup (the scheduler's timer or a "+
			"finished probe), start (a probe against its slot), timeout (giving up against the deadline), result "+
			"(handling a finished probe).", "histogram")
		blk := s.pageLabels.eventBlock
		for ev := range agent.NumLatenessEvents {
			h := &pg.scheduler.Histograms[ev]
			name := ev.String()
			var acc uint64
			for i, n := range h.Buckets {
				acc += n
				pg.sample(famLateness+"_bucket", blk, blk.at[atEvent], "event", name, latenessLE[i], float64(acc))
			}
			pg.sample(famLateness+"_bucket", blk, blk.at[atEvent], "event", name, leInf, float64(h.Count))
			pg.sample(famLateness+"_sum", blk, blk.at[atEvent], "event", name, nil, h.Sum.Seconds())
			pg.sample(famLateness+"_count", blk, blk.at[atEvent], "event", name, nil, float64(h.Count))
		}
	}},
	{famWorkers, func(pg *page, s *promState) {
		if !pg.hasScheduler {
			return
		}
		pg.family(famWorkers, "Worker goroutines running blocking probes, busy or idle; each ends after 10 s idle.", "gauge")
		pg.sample(famWorkers, s.pageLabels.agentBlock, 0, "", "", nil, float64(pg.scheduler.Workers))
	}},
	{famDetect, func(pg *page, s *promState) {
		pg.family(famDetect, "Time from the first failed (or, on recovery, successful) probe to the last site change.", "gauge")
		for _, site := range pg.sites {
			if !site.since.IsZero() {
				pg.sample(famDetect, site.labels, 0, "", "", nil, site.detect.Seconds())
			}
		}
	}},
	{famState, func(pg *page, s *promState) {
		pg.family(famState, "State set of each site as this agent sees it: 1 for the current state.", "gauge")
		for _, site := range pg.sites {
			for _, state := range sortedSiteStates {
				pg.sample(famState, site.labels, site.labels.at[atState], "state", state, nil, boolValue(site.state == state))
			}
		}
	}},
	{famSince, func(pg *page, s *promState) {
		pg.family(famSince, "Unix time when the site entered its current state.", "gauge")
		for _, site := range pg.sites {
			if !site.since.IsZero() {
				pg.sample(famSince, site.labels, 0, "", "", nil, float64(site.since.UnixNano())/1e9)
			}
		}
	}},
	{famReason, func(pg *page, s *promState) {
		pg.family(famReason, failureReasonHelp, "gauge")
		pg.eachTargetChunk(s, func() {
			for _, t := range pg.targets {
				if t.probed {
					pg.sample(famReason, t.labels, 0, "", "", nil, float64(contract.FailureReasonCode(string(t.reason))))
				}
			}
		})
	}},
	{famUp, func(pg *page, s *promState) {
		pg.family(famUp, "1 when the target is up or suspect, 0 when down.", "gauge")
		pg.eachTargetChunk(s, func() {
			for _, t := range pg.targets {
				switch t.state {
				case agent.TargetUp, agent.TargetSuspect:
					pg.sample(famUp, t.labels, 0, "", "", nil, 1)
				case agent.TargetDown:
					pg.sample(famUp, t.labels, 0, "", "", nil, 0)
				}
			}
		})
	}},
	{famDuration, func(pg *page, s *promState) {
		pg.family(famDuration, "Round-trip time of successful probes.", "histogram")
		pg.eachTargetChunk(s, func() {
			for _, m := range pg.sets {
				var acc uint64
				for i, n := range m.buckets {
					acc += n
					pg.sample(famDuration+"_bucket", m.labels, 0, "", "", bucketLE[i], float64(acc))
				}
				pg.sample(famDuration+"_bucket", m.labels, 0, "", "", leInf, float64(m.count))
				pg.sample(famDuration+"_sum", m.labels, 0, "", "", nil, m.sum)
				pg.sample(famDuration+"_count", m.labels, 0, "", "", nil, float64(m.count))
			}
		})
	}},
	{famHTTP, func(pg *page, s *promState) {
		pg.family(famHTTP, "Phases of the last HTTP probe, as blackbox_exporter names them.", "gauge")
		pg.eachTargetChunk(s, func() {
			for _, t := range pg.targets {
				if t.kind != probes.KindHTTP || !t.probed {
					continue
				}
				at := t.labels.at[atPhase]
				pg.sample(famHTTP, t.labels, at, "phase", "connect", nil, t.phases.Connect.Seconds())
				pg.sample(famHTTP, t.labels, at, "phase", "processing", nil, t.phases.Processing.Seconds())
				pg.sample(famHTTP, t.labels, at, "phase", "resolve", nil, t.phases.Resolve.Seconds())
				pg.sample(famHTTP, t.labels, at, "phase", "tls", nil, t.phases.TLS.Seconds())
				pg.sample(famHTTP, t.labels, at, "phase", "transfer", nil, t.phases.Transfer.Seconds())
			}
		})
	}},
	{famCert, func(pg *page, s *promState) {
		pg.family(famCert, "Unix time the earliest of the certificates the server presented in the last completed TLS handshake expires.", "gauge")
		pg.eachTargetChunk(s, func() {
			for _, t := range pg.targets {
				if !t.certExpiry.IsZero() {
					pg.sample(famCert, t.labels, 0, "", "", nil, float64(t.certExpiry.Unix()))
				}
			}
		})
	}},
	{famSuccess, func(pg *page, s *promState) {
		pg.family(famSuccess, "1 when the last probe succeeded.", "gauge")
		pg.eachTargetChunk(s, func() {
			for _, t := range pg.targets {
				if t.probed {
					pg.sample(famSuccess, t.labels, 0, "", "", nil, boolValue(t.ok))
				}
			}
		})
	}},
}

var leInf = []byte("+Inf")

// failureReasonHelp names the codes of edgeprobe_target_failure_reason, so that a reader
// of the page needs no other document.
var failureReasonHelp = func() string {
	var b strings.Builder
	b.WriteString("Why the last probe failed: 0 when it succeeded, else")
	for i, r := range contract.FailureReasons {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %d %s", i+1, r)
	}
	b.WriteByte('.')
	return b.String()
}()

// sortedSiteStates is contract.SiteStates in the order client_golang sorts the series.
var sortedSiteStates = func() []string {
	s := append([]string(nil), contract.SiteStates...)
	sort.Strings(s)
	return s
}()

// acceptsGzip reports whether an Accept-Encoding header allows gzip (not with q=0).
func acceptsGzip(header string) bool {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ",")
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
		return err != nil || f > 0
	}
	return false
}

// servePage is the /metrics handler: the exporter's own families and the registry's,
// merged in name order, gzipped when the scraper accepts it.
func (p *Prometheus) servePage(w http.ResponseWriter, r *http.Request) {
	gathered, err := p.registry.Gather()
	if err != nil {
		// As promhttp's default (HTTPErrorOnError) did.
		p.logger.Warn("prometheus exporter: gather metrics", "err", err)
		http.Error(w, "An error has occurred while gathering metrics:\n\n"+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	h.Add("Vary", "Accept-Encoding")
	pg := getPage()
	pg.out, pg.err = w, nil
	var zw *gzip.Writer
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		zw = getGzip(w)
		pg.out = zw
	}
	p.writePage(pg, gathered)
	pg.flush()
	if zw != nil {
		if err := zw.Close(); err != nil && pg.err == nil {
			pg.err = err
		}
		putGzip(zw)
	}
	if pg.err != nil {
		p.logger.Debug("prometheus exporter: write /metrics", "err", pg.err)
	}
	pg.out, pg.err = nil, nil
	clear(pg.targets[:cap(pg.targets)]) // no references to old label blocks
	clear(pg.sets[:cap(pg.sets)])
	clear(pg.reasons[:cap(pg.reasons)])
	clear(pg.sites[:cap(pg.sites)])
	putPage(pg)
}

// writePage writes every family into pg in name order.
func (p *Prometheus) writePage(pg *page, gathered []*dto.MetricFamily) {
	p.state.copySites(pg)
	own := pageFamilies
	for _, mf := range gathered {
		for len(own) > 0 && own[0].name < mf.GetName() {
			own[0].write(pg, p.state)
			own = own[1:]
		}
		if _, err := expfmt.MetricFamilyToText(pg, mf); err != nil && pg.err == nil {
			pg.err = err
		}
	}
	for _, f := range own {
		f.write(pg, p.state)
	}
	pg.header = pg.header[:0]
}
