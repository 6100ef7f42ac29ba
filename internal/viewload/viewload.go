// Package viewload plays many edgeprobe agents against one view, on loopback only, to
// measure what the view costs and how fast it decides (the load of view/README.md: 1000 agents x 20 sites at
// one push a second).
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
// Agents' pushes are spread evenly over the interval (agent i starts at i/N of it).
//
// Agents come in groups of Quorum (the last group takes the remainder), and each group
// reports its own Sites sites, so that every site has a quorum of witnesses and no
// more. On a schedule, a site goes down on all of its group's agents (each agent pushes
// its change at once, as a real agent does: the view says lost only once its witnesses
// agree, docs/DESIGN.md) and later comes back up. The push of the group's last agent is
// the deciding push; the verdict latency is from just before it is sent to the
// verdict's arrival on the view's /api/v1/events stream, and, separately, to the push's
// response (the view decides before it answers).
package viewload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

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
	Duration time.Duration // how long to push, after one interval of warm-up
	// Quorum is the view's quorum: a flip turns a site down (or up) on this many agents.
	Quorum int
	// FlipEvery is how often a flip starts (default 500ms); each flips the next site, down
	// if it is up, up if it is down.
	FlipEvery time.Duration
	// VerdictTimeout is how long a flip's verdict may take before it counts as missing.
	VerdictTimeout time.Duration
	// ReadEvery, if set, has a reader fetch /api/v1/sites, the page and /metrics this
	// often during the window, as a dashboard and a scraper would.
	ReadEvery time.Duration
	// Window, if set, is called when the measured window begins (true) and ends (false),
	// so a caller can read the view's CPU time over exactly that window.
	Window func(begin bool)
}

// Result is what a run measured.
type Result struct {
	Agents, Sites, SeriesPerPush int
	Elapsed                      time.Duration // the measured window
	Pushes                       int64         // pushes answered 2xx in the window
	Errors                       int64         // transport errors and non-2xx answers
	ErrorSample                  string        // the first error
	PushesPerSecond              float64
	Flips                        int             // flips scheduled
	Verdicts                     int             // flips whose verdict arrived on /api/v1/events
	Unexpected                   int             // verdict changes no flip asked for
	EventLatency                 []time.Duration // deciding push sent -> verdict on /api/v1/events
	ResponseLatency              []time.Duration // deciding push sent -> its response
	PushLatency                  []time.Duration // every periodic push: sent -> response (a sample)
	// ReadLatency is, per path read (ReadEvery), request sent -> whole answer read.
	ReadLatency map[string][]time.Duration
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
	if c.FlipEvery == 0 {
		c.FlipEvery = 500 * time.Millisecond
	}
	if c.VerdictTimeout == 0 {
		c.VerdictTimeout = 5 * time.Second
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
	}
	return nil
}

// simAgent is one simulated agent: its state and its encoded-once WriteRequest, whose
// sample values and timestamps are rewritten in place before every push.
type simAgent struct {
	name   string
	client *http.Client

	mu      sync.Mutex // held across a push: one push at a time, like the exporter's send loop
	down    []bool     // per site
	since   []time.Time
	lastMs  int64
	req     *prompb.WriteRequest
	samples []*prompb.Sample // every series' one sample
	// per site: indexes into samples of the four state series, change and detect, of the
	// targets' up and success series, and of their failure reasons.
	stateIdx  [][4]int
	changeIdx []int
	detectIdx []int
	targetIdx [][]int
	reasonIdx [][]int
	raw, body []byte
}

func siteName(group, i int) string { return fmt.Sprintf("g%04d-site%03d", group, i) }

// groups is the number of agent groups; agent i is in group min(i/Quorum, groups-1).
func (c *Config) groups() int { return max(1, c.Agents/c.Quorum) }

func (c *Config) group(agent int) int { return min(agent/c.Quorum, c.groups()-1) }

func newSimAgent(name string, group int, cfg *Config, start time.Time) *simAgent {
	a := &simAgent{
		name:   name,
		down:   make([]bool, cfg.Sites),
		since:  make([]time.Time, cfg.Sites),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}},
		req:    &prompb.WriteRequest{},
	}
	add := func(value float64, labels ...string) int {
		ls := make([]*prompb.Label, 0, len(labels)/2)
		for i := 0; i+1 < len(labels); i += 2 {
			ls = append(ls, &prompb.Label{Name: labels[i], Value: labels[i+1]})
		}
		slices.SortFunc(ls, func(x, y *prompb.Label) int { return strings.Compare(x.Name, y.Name) })
		s := &prompb.Sample{Value: value}
		a.req.Timeseries = append(a.req.Timeseries, &prompb.TimeSeries{Labels: ls, Samples: []*prompb.Sample{s}})
		a.samples = append(a.samples, s)
		return len(a.samples) - 1
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
	return a
}

// encode writes the agent's current state, stamped now, into a.body. The caller holds a.mu.
func (a *simAgent) encode(now time.Time) error {
	ms := now.UnixMilli()
	if ms <= a.lastMs {
		ms = a.lastMs + 1
	}
	a.lastMs = ms
	for _, s := range a.samples {
		s.Timestamp = ms
	}
	for i, down := range a.down {
		st := 0
		if down {
			st = 2
		}
		for j, k := range a.stateIdx[i] {
			a.samples[k].Value = b2f(j == st)
		}
		a.samples[a.changeIdx[i]].Value = float64(a.since[i].UnixNano()) / 1e9
		for _, k := range a.targetIdx[i] {
			a.samples[k].Value = b2f(!down)
		}
		for _, k := range a.reasonIdx[i] {
			a.samples[k].Value = b2f(down) * float64(contract.FailureReasonCode(contract.ReasonTimeout))
		}
	}
	var err error
	a.raw, err = proto.MarshalOptions{}.MarshalAppend(a.raw[:0], a.req)
	if err != nil {
		return fmt.Errorf("marshal WriteRequest: %w", err)
	}
	a.body = snappy.Encode(a.body[:cap(a.body)], a.raw)
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// push sends the current state; the caller holds a.mu. before runs just before the
// request leaves (after encoding), for the deciding push's clock.
func (a *simAgent) push(ctx context.Context, base, token string, before func()) error {
	if err := a.encode(time.Now()); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/write", bytes.NewReader(a.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "edgeprobe-viewload")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if before != nil {
		before()
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s: %s", a.name, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
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
	res        Result
	measuring  atomic.Bool
	pushes     atomic.Int64
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
}

// Run plays cfg against the view until cfg.Duration has passed (after a warm-up of one
// interval plus the verdict timeout) or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	start := time.Now()
	r := &run{cfg: cfg, pending: map[string]*pending{}}
	for i := range cfg.Agents {
		r.agents = append(r.agents, newSimAgent(fmt.Sprintf("load%04d", i), cfg.group(i), &cfg, start))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		for _, a := range r.agents {
			a.client.CloseIdleConnections()
		}
	}()

	events, err := r.follow(ctx)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for i, a := range r.agents {
		offset := cfg.Interval * time.Duration(i) / time.Duration(cfg.Agents)
		wg.Go(func() { r.agentLoop(ctx, a, offset) })
	}
	// Warm-up: every agent pushes once and the sites settle to up.
	if err := sleep(ctx, cfg.Interval+cfg.Interval/2); err != nil {
		return nil, err
	}
	if cfg.Window != nil {
		cfg.Window(true)
	}
	r.measuring.Store(true)
	windowStart := time.Now()
	if cfg.ReadEvery > 0 {
		wg.Go(func() { r.readLoop(ctx, time.Now().Add(cfg.Duration)) })
	}
	r.flipLoop(ctx, time.Now().Add(cfg.Duration))
	// Pushes go on while the last flips' verdicts are awaited.
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
	elapsed := time.Since(windowStart)
	if cfg.Window != nil {
		cfg.Window(false)
	}
	cancel()
	wg.Wait()
	<-events

	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.res
	res.Agents, res.Sites, res.SeriesPerPush = cfg.Agents, cfg.Sites, len(r.agents[0].samples)
	res.Elapsed = elapsed
	res.Pushes, res.Errors = r.pushes.Load(), r.errors.Load()
	if p := r.firstError.Load(); p != nil {
		res.ErrorSample = *p
	}
	res.PushesPerSecond = float64(res.Pushes) / elapsed.Seconds()
	return &res, nil
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

// agentLoop pushes a's state every interval, first after offset.
func (r *run) agentLoop(ctx context.Context, a *simAgent, offset time.Duration) {
	if sleep(ctx, offset) != nil {
		return
	}
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		a.mu.Lock()
		sent := time.Now()
		err := a.push(ctx, r.cfg.URL, r.cfg.Token, nil)
		took := time.Since(sent)
		a.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.fail(err)
		case r.measuring.Load():
			// Keep one latency sample in 10, enough for percentiles at any load.
			if r.pushes.Add(1)%10 == 0 {
				r.mu.Lock()
				r.res.PushLatency = append(r.res.PushLatency, took)
				r.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readPaths are what a dashboard and a scraper read from a view.
var readPaths = []string{"/api/v1/sites", "/", "/metrics"}

// readLoop reads readPaths every ReadEvery until end, one after the other, and records
// how long each whole answer took.
func (r *run) readLoop(ctx context.Context, end time.Time) {
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(r.cfg.ReadEvery)
	defer tick.Stop()
	for {
		for _, path := range readPaths {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+path, nil)
			if err != nil {
				return
			}
			if r.cfg.Token != "" {
				req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
			}
			start := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("GET %s: %s", path, resp.Status)
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
		case now := <-tick.C:
			if now.After(end) {
				return
			}
		}
	}
}

// flipLoop starts a flip every FlipEvery until end (or ctx ends), and waits for the
// flips' pushes to be answered.
func (r *run) flipLoop(ctx context.Context, end time.Time) {
	tick := time.NewTicker(r.cfg.FlipEvery)
	defer tick.Stop()
	down := make([]bool, r.cfg.groups()*r.cfg.Sites)
	var wg sync.WaitGroup
	defer wg.Wait()
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
		wg.Go(func() { r.flip(ctx, group, site, down[k]) })
	}
}

// flip turns a site of group down (or up) on every agent of the group, one after the
// other, each pushing its change at once; the last push decides the verdict.
func (r *run) flip(ctx context.Context, group, site int, down bool) {
	name := siteName(group, site)
	to := view.VerdictUp
	if down {
		to = view.VerdictLost
	}
	first, last := group*r.cfg.Quorum, (group+1)*r.cfg.Quorum
	if group == r.cfg.groups()-1 {
		last = len(r.agents)
	}
	for j := first; j < last; j++ {
		a := r.agents[j]
		a.mu.Lock()
		a.down[site] = down
		a.since[site] = time.Now()
		var before func()
		var p *pending
		if j == last-1 {
			p = &pending{to: to}
			before = func() {
				r.mu.Lock()
				p.sent = time.Now()
				r.pending[name] = p
				r.res.Flips++
				r.mu.Unlock()
			}
		}
		err := a.push(ctx, r.cfg.URL, r.cfg.Token, before)
		respAt := time.Now()
		a.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			continue
		}
		r.pushes.Add(1)
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
			var ev struct{ Site, From, To string }
			if json.Unmarshal([]byte(e.Data), &ev) != nil {
				continue
			}
			r.mu.Lock()
			if p := r.pending[ev.Site]; p != nil && p.to == ev.To && !p.seen {
				p.seen = true
				r.res.Verdicts++
				r.res.EventLatency = append(r.res.EventLatency, e.Arrived.Sub(p.sent))
				delete(r.pending, ev.Site)
			} else if r.measuring.Load() && !flipStep(ev.From, ev.To) {
				r.res.Unexpected++
			}
			r.mu.Unlock()
		}
	}()
	return ch, nil
}

// flipStep says whether a verdict change is the expected step of a flip before its
// deciding push: degraded on the way down (from up) or up (from lost).
func flipStep(from, to string) bool {
	return to == view.VerdictDegraded && (from == view.VerdictUp || from == view.VerdictLost)
}
