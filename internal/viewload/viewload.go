// Package viewload plays many edgeprobe agents against one view, on loopback only, to
// measure what the view costs and how fast it decides (the load of view/README.md: up
// to 10,000 agents x 20 sites at one push a second).
//
// Each simulated agent pushes its complete state every interval, exactly the series an
// agent's remote_write exporter sends (exporters/README.md, "push contract"): the state
// set of every site, its change timestamp and detect time, every target's
// edgeprobe_target_up, probe_success, probe_duration_seconds and
// edgeprobe_target_failure_reason, and the agent-wide
// edgeprobe_agent_isolated and edgeprobe_push_interval_seconds, each a prompb.TimeSeries
// with sorted labels and one sample stamped with the push's wall-clock millisecond,
// marshalled with the protobuf runtime and snappy block-compressed, as the exporter does.
// The exporter has no exported encoder, so the bytes are built here from exporters/prompb.
// An agent's WriteRequest is marshalled and compressed again only when its state
// changes; between changes only the samples' timestamps move, and they are rewritten in
// the compressed block itself (stampedBlock; a millisecond timestamp's varint keeps its
// length for decades). The view still gets and decodes a snappy block of the whole
// request, as from an agent; the generator's CPU goes to HTTP, since at 10,000 agents a
// push a second it shares the machine with the view it measures, where real agents
// would be elsewhere.
//
// Agents' pushes are spread evenly over the interval (agent i starts at i/N of it), each
// on its own schedule (a push that overruns its slot skips the slots it overran; they
// are counted as missed) and over its own keep-alive connection, with the exporter's
// push timeout.
//
// Agents come in groups of Witnesses (the last group takes the remainder), and each
// group reports its own Sites sites, so that every site has that many witnesses. On a
// schedule, a site goes down on all of its group's agents, one after the other (each
// pushes its change at once, as a real agent does: the view says lost only once enough
// witnesses agree, docs/architecture.md), and later comes back up. The deciding push is the
// one after which the view's rule says lost (a quorum down and at most max_up_fraction
// still up), and on the way back the group's last; the verdict latency is from just
// before it is sent to the verdict's arrival on the view's /api/v1/events stream, and,
// separately, to the push's response (the view decides before it answers).
package viewload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/view"
)

// Bounds: the generator is a test tool, never a flood.
const (
	MaxAgents   = 10000
	MaxSites    = 500
	MaxDuration = 30 * time.Minute
)

// Config says what to play.
type Config struct {
	// URL is the view's base URL (http://127.0.0.1:9470); it must be on loopback.
	URL      string
	Token    string // bearer token, if the view wants one
	Agents   int
	Sites    int
	Targets  int           // targets per site (default 2: an ICMP and an HTTP one)
	Interval time.Duration // push interval (default 1s)
	Duration time.Duration // the measured window, after the warm-up (see Run)
	// Quorum is the view's quorum (default 2) and MaxUpFraction its max_up_fraction
	// (default the view's): with them a flip knows which of its pushes decides.
	Quorum        int
	MaxUpFraction float64
	// Witnesses is how many agents report each site (default 10, or all agents when
	// fewer, and at least Quorum): a flip turns a site down (or up) on all of them. With
	// 20 sites an agent, 10,000 agents then report 20,000 sites, the view's default
	// max_sites.
	Witnesses int
	// FlipEvery is how often a flip starts (default 500ms); each flips the next site, down
	// if it is up, up if it is down.
	FlipEvery time.Duration
	// VerdictTimeout is how long a flip's verdict may take before it counts as missing.
	VerdictTimeout time.Duration
	// ReadEvery, if set, has a reader fetch /api/v1/sites, the page and /metrics this
	// often during the window, as a dashboard and a scraper would: in every second
	// phase of ReadPhase (default 5s), starting with a phase without reads, so that
	// pushes beside reads and pushes without are measured side by side in one run, on
	// the same machine load (Result.PushPhases).
	ReadEvery time.Duration
	ReadPhase time.Duration
	// Window, if set, is called when the measured window begins (true) and ends (false),
	// so a caller can read the view's CPU time over exactly that window. The window is
	// Duration long; the last flips' verdicts are awaited after it (Result.Drain).
	Window func(begin bool)
}

// Result is what a run measured.
type Result struct {
	Agents, Sites, SeriesPerPush int
	Witnesses                    int
	Elapsed                      time.Duration // the measured window
	Drain                        time.Duration // after it: the wait for the last flips and their verdicts
	Pushes                       int64         // pushes answered 2xx in the window
	Due                          int64         // periodic pushes the agents' schedules had in the window
	Missed                       int64         // of them, slots skipped because the agent's previous push overran
	Errors                       int64         // transport errors and non-2xx answers, window and drain
	ErrorSample                  string        // the first error
	ErrorKinds                   map[string]int64
	PushesPerSecond              float64
	Flips                        int           // flips scheduled
	Verdicts                     int           // flips whose verdict arrived on /api/v1/events
	SitesUp, SitesTotal          int           // sites up at once when the window began, of all
	Warmup                       time.Duration // from the first push to the window
	// DecodedByShape and DecodedInFull are the window's pushes the view read from the
	// shape of the connection's previous push and those it decoded in full
	// (edgeprobe_view_pushes_decoded_total); -1 when /metrics did not say.
	DecodedByShape, DecodedInFull int64
	// Allocated is the bytes the view allocated over the window
	// (go_memstats_alloc_bytes_total), -1 when /metrics did not say: what sets how
	// often it collects garbage.
	Allocated        int64
	Unexpected       int             // verdict changes no flip asked for
	UnexpectedSample []string        // the first few of them, as site: from -> to
	EventLatency     []time.Duration // deciding push sent -> verdict on /api/v1/events
	EventSent        []time.Time     // when each of those deciding pushes was sent
	ResponseLatency  []time.Duration // deciding push sent -> its response
	// DecideLatency is deciding push sent -> the time the view stamped on the verdict
	// (its clock when it applied the push, the same machine's): EventLatency less the
	// wait for the engine's lock, the event's way out and the generator's own wait to
	// read it. The rest is the push's wait to be read and decoded.
	DecideLatency []time.Duration
	PushLatency   []time.Duration // every periodic push: sent -> response (a sample)
	PushSent      []time.Time     // when each push of that sample was sent
	// Lateness is, for the same sample of periodic pushes, how long after its slot the
	// generator sent it: a generator short of CPU shows here rather than in the view's
	// figures.
	Lateness []time.Duration
	// ReadLatency is, per path read (ReadEvery), request sent -> whole answer read.
	ReadLatency map[string][]time.Duration
	// PushPhases is, with ReadEvery, the same sample of periodic pushes by phase of
	// ReadPhase and by whether a read was under way while the push was (a read started
	// in a phase with reads may run into the next one).
	PushPhases []PushPhase
}

// PushPhase is the push latency sample of one phase of the window, split by reads.
type PushPhase struct {
	Reads  bool            // a phase in which reads start
	Quiet  []time.Duration // pushes during which no read was under way
	Beside []time.Duration // pushes during which one was
}

func (c *Config) defaults() {
	if c.Targets == 0 {
		c.Targets = 2
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Quorum == 0 {
		c.Quorum = 2
	}
	if c.MaxUpFraction == 0 {
		c.MaxUpFraction = view.DefaultMaxUpFraction
	}
	if c.Witnesses == 0 {
		c.Witnesses = max(c.Quorum, min(10, c.Agents))
	}
	if c.FlipEvery == 0 {
		c.FlipEvery = 500 * time.Millisecond
	}
	if c.VerdictTimeout == 0 {
		c.VerdictTimeout = 5 * time.Second
	}
	if c.ReadPhase == 0 {
		c.ReadPhase = 5 * time.Second
	}
}

// Validate refuses what the generator will not do: another host than loopback, or more
// than its bounds.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("view URL %q: want http://127.0.0.1:PORT", c.URL)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("view URL %q: %s is not a loopback address; the load generator only pushes to loopback", c.URL, host)
	}
	switch {
	case c.Agents < 1 || c.Agents > MaxAgents:
		return fmt.Errorf("agents %d: want 1 to %d", c.Agents, MaxAgents)
	case c.Sites < 1 || c.Sites > MaxSites:
		return fmt.Errorf("sites %d: want 1 to %d", c.Sites, MaxSites)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("duration %v: want more than 0 and at most %v", c.Duration, MaxDuration)
	case c.Targets < 0 || c.Targets > 20:
		return fmt.Errorf("targets %d per site: want 0 to 20", c.Targets)
	case c.Interval < 10*time.Millisecond:
		return fmt.Errorf("interval %v: want at least 10ms", c.Interval)
	case c.Quorum < 1 || c.Quorum > c.Agents:
		return fmt.Errorf("quorum %d: want 1 to the number of agents (%d)", c.Quorum, c.Agents)
	case c.Witnesses < c.Quorum || c.Witnesses > c.Agents:
		return fmt.Errorf("witnesses %d: want the quorum (%d) to the number of agents (%d)", c.Witnesses, c.Quorum, c.Agents)
	case c.MaxUpFraction < 0 || c.MaxUpFraction >= 1:
		return fmt.Errorf("max_up_fraction %g: want at least 0 and less than 1", c.MaxUpFraction)
	}
	return nil
}

// SitesNeeded is how many sites the view will keep for cfg (after defaults): what its
// max_sites must allow.
func (c Config) SitesNeeded() int {
	c.defaults()
	return c.groups() * c.Sites
}

// simAgent is one simulated agent: its state and its WriteRequest, marshalled when the
// state changes, whose samples' timestamps are rewritten in place before every push.
type simAgent struct {
	name string
	conn *pushConn

	mu     sync.Mutex // held across a push: one push at a time, like the exporter's send loop
	down   []bool     // per site
	since  []time.Time
	lastMs int64
	// Every series as the exporter keeps it: its labels marshalled (TimeSeries.labels
	// fields, series k's from labelEnd[k-1] to labelEnd[k] in labels) and its value. No
	// prompb messages are kept: 10,000 agents' trees were 2.5 GB of pointers, whose
	// marking by the collector took seconds of CPU from the view beside it.
	labels   []byte
	labelEnd []int32
	values   []float64
	// per site: indexes into values of the four state series, change and detect, of the
	// targets' up and success series, and of their failure reasons.
	stateIdx  [][4]int
	changeIdx []int
	detectIdx []int
	targetIdx [][]int
	reasonIdx [][]int
	// raw is the WriteRequest marshalled; tsAt holds the offsets in raw of every sample's
	// timestamp varint, each tsLen bytes long; dirty says the state changed since. block
	// is raw compressed, the push's body.
	raw   []byte
	block stampedBlock
	tsAt  []int
	tsLen int
	dirty bool
}

func siteName(group, i int) string { return fmt.Sprintf("g%04d-site%03d", group, i) }

// groups is the number of agent groups; agent i is in group min(i/Witnesses, groups-1).
func (c *Config) groups() int { return max(1, c.Agents/c.Witnesses) }

func (c *Config) group(agent int) int { return min(agent/c.Witnesses, c.groups()-1) }

// members is the first agent of group g and the one after its last.
func (c *Config) members(g int) (first, end int) {
	first, end = g*c.Witnesses, (g+1)*c.Witnesses
	if g == c.groups()-1 {
		end = c.Agents
	}
	return first, end
}

// deciding is how many of a group of n witnesses must report a site down before the
// view's rule says lost: at least the quorum, and at most max_up_fraction of them still
// up (docs/architecture.md, "Verdicts at the view"). Back up, all n must report it up.
func (c *Config) deciding(n int) int {
	for k := c.Quorum; k < n; k++ {
		if float64(n-k) <= c.MaxUpFraction*float64(n) {
			return k
		}
	}
	return n
}

func newSimAgent(name string, group int, cfg *Config, start time.Time) (*simAgent, error) {
	// One keep-alive connection per agent, as the exporter keeps, and its push timeout.
	conn, err := newPushConn(cfg.URL, cfg.Token, config.DefaultPushTimeout)
	if err != nil {
		return nil, err
	}
	a := &simAgent{
		name:  name,
		conn:  conn,
		down:  make([]bool, cfg.Sites),
		since: make([]time.Time, cfg.Sites),
		dirty: true,
	}
	var addErr error
	add := func(value float64, labels ...string) int {
		ls := make([]*prompb.Label, 0, len(labels)/2)
		for i := 0; i+1 < len(labels); i += 2 {
			ls = append(ls, &prompb.Label{Name: labels[i], Value: labels[i+1]})
		}
		slices.SortFunc(ls, func(x, y *prompb.Label) int { return strings.Compare(x.Name, y.Name) })
		var err error
		if a.labels, err = (proto.MarshalOptions{Deterministic: true}).MarshalAppend(a.labels, &prompb.TimeSeries{Labels: ls}); err != nil {
			addErr = fmt.Errorf("marshal labels: %w", err)
		}
		a.labelEnd = append(a.labelEnd, int32(len(a.labels)))
		a.values = append(a.values, value)
		return len(a.values) - 1
	}
	add(0, contract.LabelName, contract.MetricAgentIsolated, contract.LabelAgent, name)
	add(cfg.Interval.Seconds(), contract.LabelName, contract.MetricPushInterval, contract.LabelAgent, name)
	for i := range cfg.Sites {
		a.since[i] = start
		site := siteName(group, i)
		var idx [4]int
		for j, st := range contract.SiteStates {
			idx[j] = add(0, contract.LabelName, contract.MetricSiteState, contract.LabelAgent, name, contract.LabelSite, site, contract.LabelState, st)
		}
		a.stateIdx = append(a.stateIdx, idx)
		a.changeIdx = append(a.changeIdx, add(0, contract.LabelName, contract.MetricSiteStateChange, contract.LabelAgent, name, contract.LabelSite, site))
		a.detectIdx = append(a.detectIdx, add(0.4, contract.LabelName, contract.MetricSiteDetect, contract.LabelAgent, name, contract.LabelSite, site))
	}
	// Targets come after the sites, ordered by site and target, as the exporter orders them.
	for i := range cfg.Sites {
		site := siteName(group, i)
		var idx, reasons []int
		for k := range cfg.Targets {
			target, kind := fmt.Sprintf("t%d-icmp", k), "icmp"
			if k%2 == 1 {
				target, kind = fmt.Sprintf("t%d-http", k), "http"
			}
			idx = append(idx,
				add(1, contract.LabelName, contract.MetricTargetUp, contract.LabelAgent, name, contract.LabelSite, site, contract.LabelTarget, target, contract.LabelKind, kind),
				add(1, contract.LabelName, contract.MetricProbeSuccess, contract.LabelAgent, name, contract.LabelSite, site, contract.LabelTarget, target, contract.LabelKind, kind))
			add(0.0012, contract.LabelName, contract.MetricProbeDuration, contract.LabelAgent, name, contract.LabelSite, site, contract.LabelTarget, target, contract.LabelKind, kind)
			reasons = append(reasons,
				add(0, contract.LabelName, contract.MetricTargetFailureReason, contract.LabelAgent, name, contract.LabelSite, site, contract.LabelTarget, target, contract.LabelKind, kind))
		}
		a.targetIdx = append(a.targetIdx, idx)
		a.reasonIdx = append(a.reasonIdx, reasons)
	}
	if addErr != nil {
		return nil, addErr
	}
	return a, nil
}

// setDown records that site i went down (or up) at now; the next push marshals anew.
// The caller holds a.mu.
func (a *simAgent) setDown(i int, down bool, now time.Time) {
	a.down[i], a.since[i], a.dirty = down, now, true
}

// encode writes the agent's current state, stamped now, into a.block. The caller holds a.mu.
func (a *simAgent) encode(now time.Time) {
	ms := now.UnixMilli()
	if ms <= a.lastMs {
		ms = a.lastMs + 1
	}
	a.lastMs = ms
	if a.dirty || protowire.SizeVarint(uint64(ms)) != a.tsLen {
		a.marshal(ms)
		a.block.build(a.raw, a.tsAt, a.tsLen)
		return
	}
	a.block.stamp(ms, a.raw, a.tsAt)
}

// marshal writes the WriteRequest, every sample stamped ms, into raw, as the exporter
// does (exporters/remotewrite_encode.go): a value of +0 is left out, as proto3 does, and
// notes where the timestamps are.
func (a *simAgent) marshal(ms int64) {
	for i, down := range a.down {
		st := 0
		if down {
			st = 2
		}
		for j, k := range a.stateIdx[i] {
			a.values[k] = b2f(j == st)
		}
		a.values[a.changeIdx[i]] = float64(a.since[i].UnixNano()) / 1e9
		for _, k := range a.targetIdx[i] {
			a.values[k] = b2f(!down)
		}
		for _, k := range a.reasonIdx[i] {
			a.values[k] = b2f(down) * float64(contract.FailureReasonCode(contract.ReasonTimeout))
		}
	}
	raw, at := a.raw[:0], a.tsAt[:0]
	var from int32
	for k, end := range a.labelEnd {
		var ts int
		raw, ts = prompb.AppendTimeSeries(raw, a.labels[from:end], a.values[k], ms)
		at = append(at, ts)
		from = end
	}
	a.raw, a.tsAt = raw, at
	a.tsLen, a.dirty = protowire.SizeVarint(uint64(ms)), false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// push sends the current state; the caller holds a.mu. before runs just before the
// request leaves (after encoding), for the deciding push's clock.
func (a *simAgent) push(ctx context.Context, before func()) error {
	a.encode(time.Now())
	if before != nil {
		before()
	}
	code, msg, err := a.conn.post(ctx, a.block.block)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return &statusError{agent: a.name, status: strconv.Itoa(code) + " " + http.StatusText(code), msg: string(bytes.TrimSpace(msg))}
	}
	return nil
}

// statusError is a push answered with something else than 2xx.
type statusError struct{ agent, status, msg string }

func (e *statusError) Error() string { return e.agent + ": " + e.status + ": " + e.msg }

// errorKind sorts errors for the report: the HTTP status, or what went wrong with the
// connection.
func errorKind(err error) string {
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return "HTTP " + se.status
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EMFILE):
		return "out of local ports or files"
	}
	return "other"
}

// pending is a flip waiting for its verdict.
type pending struct {
	to     string
	sent   time.Time
	respAt time.Time
	seen   bool
}

type run struct {
	cfg    Config
	agents []*simAgent

	mu         sync.Mutex
	pending    map[string]*pending // by site
	everUp     map[string]bool     // sites the view has said up
	upNow      map[string]bool     // sites whose latest verdict is up
	allUp      chan struct{}       // closed once every site is up at once
	allUpDone  bool
	res        Result
	measuring  atomic.Bool  // errors and latencies are recorded
	counting   atomic.Bool  // pushes are counted: the window
	window     time.Time    // the window's start, set before counting
	reading    atomic.Int64 // reads under way
	readStarts atomic.Int64 // reads started so far
	pushes     atomic.Int64
	due        atomic.Int64
	missed     atomic.Int64
	errors     atomic.Int64
	firstError atomic.Pointer[string]
}

func (r *run) fail(err error) {
	if !r.measuring.Load() {
		return
	}
	r.errors.Add(1)
	msg := err.Error()
	r.firstError.CompareAndSwap(nil, &msg)
	r.mu.Lock()
	if r.res.ErrorKinds == nil {
		r.res.ErrorKinds = map[string]int64{}
	}
	r.res.ErrorKinds[errorKind(err)]++
	r.mu.Unlock()
}

// Run plays cfg against the view for a warm-up and then the measured window of
// cfg.Duration, then waits up to the verdict timeout for the last flips' verdicts, or
// until ctx ends. The warm-up lasts one and a half intervals, and then until every site
// is up at once (at most warmupMax): on a loaded machine thousands of agents' first
// pushes (a new connection each, every label new to the view, some refused busy) take
// longer than that, some agents go stale before their next push gets through, and their
// sites' up inside the window would read as verdicts no flip asked for.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	start := time.Now()
	r := &run{cfg: cfg, pending: map[string]*pending{}, everUp: map[string]bool{}, upNow: map[string]bool{}, allUp: make(chan struct{})}
	for i := range cfg.Agents {
		a, err := newSimAgent(fmt.Sprintf("load%04d", i), cfg.group(i), &cfg, start)
		if err != nil {
			return nil, err
		}
		r.agents = append(r.agents, a)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		for _, a := range r.agents {
			a.conn.close() // the agents' loops are done
		}
	}()

	events, err := r.follow(ctx)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	first := time.Now()
	for i, a := range r.agents {
		offset := cfg.Interval * time.Duration(i) / time.Duration(cfg.Agents)
		wg.Go(func() { r.agentLoop(ctx, a, first.Add(offset)) })
	}
	// Warm-up: every agent pushes once and the sites settle to up.
	if err := sleep(ctx, cfg.Interval+cfg.Interval/2); err != nil {
		return nil, err
	}
	select {
	case <-r.allUp:
	case <-time.After(warmupMax):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if cfg.Window != nil {
		cfg.Window(true)
	}
	m0 := r.viewMetrics(ctx)
	windowStart := time.Now()
	r.window = windowStart
	r.mu.Lock()
	r.res.SitesUp, r.res.SitesTotal, r.res.Warmup = len(r.upNow), cfg.SitesNeeded(), windowStart.Sub(first)
	r.mu.Unlock()
	r.measuring.Store(true)
	r.counting.Store(true)
	end := windowStart.Add(cfg.Duration)
	if cfg.ReadEvery > 0 {
		wg.Go(func() { r.readLoop(ctx, end) })
	}
	var flips sync.WaitGroup
	r.flipLoop(ctx, end, &flips)
	if err := sleep(ctx, time.Until(end)); err != nil {
		return nil, err
	}
	r.counting.Store(false)
	elapsed := time.Since(windowStart)
	m1 := r.viewMetrics(ctx)
	if cfg.Window != nil {
		cfg.Window(false)
	}
	// Pushes go on while the flips under way finish and their verdicts are awaited.
	drainStart := time.Now()
	flipsDone := make(chan struct{})
	go func() { flips.Wait(); close(flipsDone) }()
	select {
	case <-flipsDone:
	case <-ctx.Done():
	}
	for wait := time.Now().Add(cfg.VerdictTimeout); time.Now().Before(wait) && ctx.Err() == nil; {
		r.mu.Lock()
		left := len(r.pending)
		r.mu.Unlock()
		if left == 0 {
			break
		}
		_ = sleep(ctx, 10*time.Millisecond)
	}
	r.measuring.Store(false)
	drain := time.Since(drainStart)
	cancel()
	<-flipsDone
	wg.Wait()
	<-events

	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.res
	res.Agents, res.Sites, res.SeriesPerPush, res.Witnesses = cfg.Agents, cfg.Sites, len(r.agents[0].values), cfg.Witnesses
	res.Elapsed, res.Drain = elapsed, drain
	res.Pushes, res.Errors = r.pushes.Load(), r.errors.Load()
	res.Due, res.Missed = r.due.Load(), r.missed.Load()
	if p := r.firstError.Load(); p != nil {
		res.ErrorSample = *p
	}
	res.PushesPerSecond = float64(res.Pushes) / elapsed.Seconds()
	res.DecodedByShape, res.DecodedInFull, res.Allocated = -1, -1, -1
	if m0.byShape >= 0 && m1.byShape >= 0 {
		res.DecodedByShape, res.DecodedInFull = m1.byShape-m0.byShape, m1.inFull-m0.inFull
	}
	if m0.allocated >= 0 && m1.allocated >= 0 {
		res.Allocated = m1.allocated - m0.allocated
	}
	return &res, nil
}

// counters is what the window's report takes from the view's /metrics: the pushes it
// decoded by shape and in full (edgeprobe_view_pushes_decoded_total) and the bytes it
// allocated (go_memstats_alloc_bytes_total); -1 where /metrics did not say.
type counters struct{ byShape, inFull, allocated int64 }

func (r *run) viewMetrics(ctx context.Context) counters {
	c := counters{-1, -1, -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+"/metrics", nil)
	if err != nil {
		return c
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return c
	}
	if f := families["go_memstats_alloc_bytes_total"]; f != nil && len(f.GetMetric()) == 1 {
		c.allocated = int64(f.GetMetric()[0].GetCounter().GetValue())
	}
	for _, m := range families["edgeprobe_view_pushes_decoded_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != "by" {
				continue
			}
			switch n := int64(m.GetCounter().GetValue()); l.GetValue() {
			case "shape":
				c.byShape = n
			case "full":
				c.inFull = n
			}
		}
	}
	return c
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// agentLoop pushes a's state at slot, slot+interval, ...: a push that overruns skips the
// slots it overran, as a ticker would, and they count as missed.
func (r *run) agentLoop(ctx context.Context, a *simAgent, slot time.Time) {
	for n := 0; ; n++ {
		if sleep(ctx, time.Until(slot)) != nil {
			return
		}
		counting := r.counting.Load()
		a.mu.Lock()
		reads, starts := r.reading.Load(), r.readStarts.Load()
		sent := time.Now()
		err := a.push(ctx, nil)
		took := time.Since(sent)
		beside := reads > 0 || r.readStarts.Load() != starts
		a.mu.Unlock()
		if counting {
			r.due.Add(1)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.fail(err)
		case counting:
			// Keep one latency sample in 10, enough for percentiles at any load.
			if r.pushes.Add(1)%10 == 0 {
				r.mu.Lock()
				r.res.PushLatency = append(r.res.PushLatency, took)
				r.res.PushSent = append(r.res.PushSent, sent)
				r.res.Lateness = append(r.res.Lateness, sent.Sub(slot))
				if r.cfg.ReadEvery > 0 {
					r.phase(sent, beside, took)
				}
				r.mu.Unlock()
			}
		}
		slot = slot.Add(r.cfg.Interval)
		if now := time.Now(); slot.Before(now) {
			skip := now.Sub(slot)/r.cfg.Interval + 1
			slot = slot.Add(skip * r.cfg.Interval)
			if counting {
				r.due.Add(int64(skip))
				r.missed.Add(int64(skip))
			}
		}
	}
}

// readPaths are what a dashboard and a scraper read from a view.
var readPaths = []string{"/api/v1/sites", "/", "/metrics"}

// phase records a push sent at sent in its phase of the window; r.mu is held.
func (r *run) phase(sent time.Time, beside bool, took time.Duration) {
	k := max(0, int(sent.Sub(r.window)/r.cfg.ReadPhase))
	for len(r.res.PushPhases) <= k {
		r.res.PushPhases = append(r.res.PushPhases, PushPhase{Reads: len(r.res.PushPhases)%2 == 1})
	}
	p := &r.res.PushPhases[k]
	if beside {
		p.Beside = append(p.Beside, took)
	} else {
		p.Quiet = append(p.Quiet, took)
	}
}

// readPhase says whether reads start at t: in every second phase of the window.
func (r *run) readPhase(t time.Time) bool {
	return int(t.Sub(r.window)/r.cfg.ReadPhase)%2 == 1
}

// readLoop reads readPaths every ReadEvery until end, one after the other, in the
// phases with reads (readPhase), and records
// how long each whole answer took.
func (r *run) readLoop(ctx context.Context, end time.Time) {
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(r.cfg.ReadEvery)
	defer tick.Stop()
	for now := time.Now(); ; {
		for _, path := range readPaths {
			if !r.readPhase(now) {
				break
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+path, nil)
			if err != nil {
				return
			}
			if r.cfg.Token != "" {
				req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
			}
			r.reading.Add(1)
			r.readStarts.Add(1)
			start := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			r.reading.Add(-1)
			if err == nil {
				if err == nil && resp.StatusCode != http.StatusOK {
					err = &statusError{agent: "reader", status: resp.Status, msg: "GET " + path}
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					r.fail(fmt.Errorf("read %s: %w", path, err))
				}
				continue
			}
			r.mu.Lock()
			if r.res.ReadLatency == nil {
				r.res.ReadLatency = map[string][]time.Duration{}
			}
			r.res.ReadLatency[path] = append(r.res.ReadLatency[path], time.Since(start))
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case now = <-tick.C:
			if now.After(end) {
				return
			}
		}
	}
}

// flipLoop starts a flip every FlipEvery until end (or ctx ends); flips is done once the
// flips' pushes are answered.
func (r *run) flipLoop(ctx context.Context, end time.Time, flips *sync.WaitGroup) {
	tick := time.NewTicker(r.cfg.FlipEvery)
	defer tick.Stop()
	down := make([]bool, r.cfg.groups()*r.cfg.Sites)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.After(end) {
				return
			}
		}
		// Every group in turn, and within a group every site in turn.
		group, site := n%r.cfg.groups(), (n/r.cfg.groups())%r.cfg.Sites
		k := group*r.cfg.Sites + site
		down[k] = !down[k]
		flips.Go(func() { r.flip(ctx, group, site, down[k]) })
	}
}

// flip turns a site of group down (or up) on every agent of the group, one after the
// other, each pushing its change at once; the deciding push is the one after which the
// view's rule gives the new verdict.
func (r *run) flip(ctx context.Context, group, site int, down bool) {
	name := siteName(group, site)
	to := view.VerdictUp
	first, end := r.cfg.members(group)
	decides := end - 1
	if down {
		to = view.VerdictLost
		decides = first + r.cfg.deciding(end-first) - 1
	}
	for j := first; j < end; j++ {
		a := r.agents[j]
		a.mu.Lock()
		a.setDown(site, down, time.Now())
		var before func()
		var p *pending
		if j == decides {
			p = &pending{to: to}
			before = func() {
				r.mu.Lock()
				p.sent = time.Now()
				r.pending[name] = p
				r.res.Flips++
				r.mu.Unlock()
			}
		}
		err := a.push(ctx, before)
		respAt := time.Now()
		a.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			continue
		}
		if r.counting.Load() {
			r.pushes.Add(1)
		}
		if p != nil {
			r.mu.Lock()
			p.respAt = respAt
			r.res.ResponseLatency = append(r.res.ResponseLatency, respAt.Sub(p.sent))
			r.mu.Unlock()
		}
	}
}

// follow reads /api/v1/events until ctx ends and matches verdicts to pending flips. It
// returns once the view has subscribed it, so no verdict of the run is missed.
func (r *run) follow(ctx context.Context) (done <-chan struct{}, err error) {
	events, err := testkit.DialEvents(ctx, r.cfg.URL+"/api/v1/events", testkit.EventsOptions{})
	if err != nil {
		return nil, fmt.Errorf("follow the view's events: %w", err)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for {
			e, err := events.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.fail(fmt.Errorf("events stream: %w", err))
				}
				return
			}
			var ev struct {
				Site, From, To string
				Time           time.Time
			}
			if json.Unmarshal([]byte(e.Data), &ev) != nil {
				continue
			}
			r.mu.Lock()
			firstUp := ev.To == view.VerdictUp && !r.everUp[ev.Site]
			if firstUp {
				r.everUp[ev.Site] = true
			}
			if ev.To == view.VerdictUp {
				r.upNow[ev.Site] = true
			} else {
				delete(r.upNow, ev.Site)
			}
			if !r.allUpDone && len(r.upNow) == r.cfg.SitesNeeded() {
				r.allUpDone = true
				close(r.allUp)
			}
			// An event read before the deciding push was sent is not its verdict (the
			// site got there another way, its agents going stale), however late this
			// loop gets to it on a loaded machine.
			if p := r.pending[ev.Site]; p != nil && p.to == ev.To && !p.seen && !p.sent.IsZero() && !e.Arrived.Before(p.sent) {
				p.seen = true
				r.res.Verdicts++
				r.res.EventLatency = append(r.res.EventLatency, e.Arrived.Sub(p.sent))
				r.res.EventSent = append(r.res.EventSent, p.sent)
				r.res.DecideLatency = append(r.res.DecideLatency, ev.Time.Sub(p.sent))
				delete(r.pending, ev.Site)
			} else if r.measuring.Load() && !flipStep(ev.To) && !firstUp {
				r.res.Unexpected++
				if len(r.res.UnexpectedSample) < 5 {
					r.res.UnexpectedSample = append(r.res.UnexpectedSample, fmt.Sprintf("%s: %s -> %s", ev.Site, ev.From, ev.To))
				}
			}
			r.mu.Unlock()
		}
	}()
	return ch, nil
}

// warmupMax bounds the wait for every site to be up at once; Result.SitesUp says
// whether it came.
const warmupMax = 30 * time.Second

// flipStep says whether a verdict change is a step a flip passes through before its
// deciding push: degraded (some witnesses down) and partitioned (a quorum down, more
// than max_up_fraction still up), on the way down and back up.
func flipStep(to string) bool {
	return to == view.VerdictDegraded || to == view.VerdictPartitioned
}
