// Package agent turns a configuration into probes on a schedule, and probe results into
// target, site and agent states that it hands to sinks (the exporters).
//
// Data flows one way: config -> scheduler -> prober -> result -> state machines -> sinks.
// One goroutine owns the schedule and all state, so detection needs no locks, and one
// timer serves every target. An idle target costs a heap entry and nothing else.
//
// What a thousand probes a second cost is mostly the Go scheduler waking threads, not
// the probes: a goroutine, a timer and two channel hand-offs per probe each wake a thread
// through a futex or the poller's eventfd. So the scheduler works in batches. Probe slots
// sit on a grid of schedulerTick, and one wake-up of the timer (a timerfd: see
// wakeTimer) starts every probe due at that slot. ICMP probes (probes.AsyncProber)
// start without a goroutine: the Run goroutine writes the echo request, the engine's
// receive goroutine completes it, and the entry's deadline waits in the same timing
// heap, so no timer is armed per probe.
// Other kinds block, so they run on workers (see workers) for as long as the probe
// lasts. Finished probes queue under a lock and wake the Run goroutine once for however
// many arrived.
package agent

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/probes"
)

// Options are the parts of an agent that are not configuration.
type Options struct {
	Sinks  []Sink       // receive every event, in order, from the Run goroutine
	Logger *slog.Logger // diagnostics; default slog.Default()
	Env    *probes.Env  // shared probe resources; default built from the config
	now    func() time.Time
}

// Agent probes the configured targets until its context ends.
type Agent struct {
	opts     Options
	results  *wakeQueue
	reloads  chan reload
	done     chan struct{} // closed when Run returns
	ownEnv   bool
	schedule *schedule // owned by Run once it starts
}

// reload carries a new configuration to the Run goroutine and its verdict back.
type reload struct {
	cfg   *config.Config
	reply chan error
}

// schedule is everything derived from one configuration.
type schedule struct {
	cfg     *config.Config
	machine *machine
	entries []*entry
	byState map[*targetState]*entry
	byKey   map[targetKey]*entry // for reloads: the entry of a target by its identity
}

// entry is one target's place in the timing heap.
type entry struct {
	state       *targetState
	prober      probes.Prober
	async       probes.AsyncProber  // the prober, when it can start probes without a goroutine
	complete    func(probes.Result) // hands a result of this entry to the Run goroutine
	next        time.Time           // when to probe next; in flight: the async deadline, or never
	nextRegular time.Time           // the next slot of the regular interval
	lastStart   time.Time
	inFlight    bool
	retired     bool // removed by a reload; close the prober when its probe returns
	index       int  // position in the heap
}

// New checks that every target can be probed (an ICMP socket can be opened, a URL
// parses) and returns an agent ready to Run.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	a := &Agent{opts: opts, results: newWakeQueue(), reloads: make(chan reload, 1), done: make(chan struct{})}
	if a.opts.Env == nil {
		env, err := newEnv(cfg)
		if err != nil {
			return nil, err
		}
		a.opts.Env, a.ownEnv = env, true
	}
	s, err := a.build(cfg, nil)
	if err != nil {
		a.closeEnv()
		return nil, err
	}
	a.schedule = s
	return a, nil
}

// newEnv opens the shared resources the configuration needs. The ICMP sockets of the
// families in use are opened here, so a missing permission fails the start.
func newEnv(cfg *config.Config) (*probes.Env, error) {
	env := &probes.Env{}
	families := map[bool]bool{} // v6 -> needed
	for _, t := range cfg.Targets() {
		if spec, ok := t.Spec.(probes.ICMPSpec); ok {
			ip, err := netip.ParseAddr(spec.Address)
			families[spec.Family == "ip6" || (err == nil && ip.Unmap().Is6())] = true
		}
	}
	if len(families) == 0 {
		return env, nil
	}
	eng, err := probes.NewICMPEngine(cfg.Agent.ICMPMode)
	if err != nil {
		return nil, fmt.Errorf("icmp: %w", err)
	}
	for v6 := range families {
		if err := eng.Open(v6); err != nil {
			eng.Close()
			return nil, fmt.Errorf("icmp: %w", err)
		}
	}
	env.ICMP = eng
	return env, nil
}

func (a *Agent) closeEnv() {
	if a.ownEnv && a.opts.Env.ICMP != nil {
		a.opts.Env.ICMP.Close()
	}
}

// build makes a schedule for cfg. Targets that are identical to one in old keep their
// prober, state and timing, so a reload does not forget what is down.
func (a *Agent) build(cfg *config.Config, old *schedule) (*schedule, error) {
	targets := cfg.Targets()
	s := &schedule{cfg: cfg, byState: map[*targetState]*entry{}, byKey: map[targetKey]*entry{}}
	var states []*targetState
	s.machine, states = newMachine(cfg.Agent.Name, cfg.Agent.FailThreshold, targets, a.emit)
	now := a.opts.now()
	// Build every new prober first, so that a failure leaves the old schedule untouched.
	kept := map[*entry]bool{}
	entries := make([]*entry, len(targets))
	for i, t := range targets {
		if e := old.find(t); e != nil && !kept[e] {
			kept[e] = true
			entries[i] = e
			continue
		}
		p, err := probes.New(t.Kind, t.Spec, a.opts.Env)
		if err != nil {
			for _, e := range entries {
				if e != nil && !kept[e] {
					closeProber(e.prober)
				}
			}
			return nil, fmt.Errorf("site %q target %q: %w", t.Site, t.Name, err)
		}
		e := &entry{prober: p, nextRegular: now.Add(onGrid(stagger(t, targets)))}
		e.async, _ = p.(probes.AsyncProber)
		e.complete = func(r probes.Result) { a.results.put(result{e, r}) }
		e.next = e.nextRegular
		entries[i] = e
	}
	for i, e := range entries {
		// A kept target keeps its entry, so a probe in flight across the reload comes
		// back to it, and its detection state moves to the new machine.
		if kept[e] {
			carry(states[i], e.state)
		}
		e.state = states[i]
		s.byState[e.state] = e
		s.byKey[targetKey{e.state.target.Site, e.state.target.Name, e.state.target.Kind}] = e
	}
	s.entries = entries
	if old != nil {
		for _, site := range s.machine.sites {
			for _, prev := range old.machine.sites {
				if prev.name == site.name {
					site.published = prev.published
				}
			}
		}
		s.machine.isolated = old.machine.isolated
		for _, e := range old.entries {
			if !kept[e] {
				e.retired = true
				if !e.inFlight {
					closeProber(e.prober)
				}
			}
		}
	}
	return s, nil
}

// targetKey identifies a target within a configuration (names are unique per site and kind).
type targetKey struct {
	site, name string
	kind       probes.Kind
}

// find returns the entry probing exactly target t, if any.
func (s *schedule) find(t config.Target) *entry {
	if s == nil {
		return nil
	}
	if e := s.byKey[targetKey{t.Site, t.Name, t.Kind}]; e != nil && reflect.DeepEqual(e.state.target, t) {
		return e
	}
	return nil
}

// carry copies detection state to the same target in a new schedule.
func carry(to, from *targetState) {
	to.state, to.fails, to.firstFail, to.lastOK, to.reason, to.rto =
		from.state, from.fails, from.firstFail, from.lastOK, from.reason, from.rto
}

// stagger spreads the first probes so that a site's targets are evenly spaced over
// their interval, and sites are interleaved: with two sites of four targets at 1s,
// site A probes at 0, 250, 500, 750 ms and site B at 125, 375, 625, 875 ms. A fire is
// then noticed by the next of the site's probes, at most interval/len(targets) later.
func stagger(t config.Target, all []config.Target) time.Duration {
	var sites []string
	pos, n := 0, 0
	for _, o := range all {
		if len(sites) == 0 || sites[len(sites)-1] != o.Site {
			sites = append(sites, o.Site)
		}
		if o.Site == t.Site {
			if o.Name == t.Name && o.Kind == t.Kind {
				pos = n
			}
			n++
		}
	}
	siteIndex := 0
	for i, s := range sites {
		if s == t.Site {
			siteIndex = i
		}
	}
	slot := t.Interval / time.Duration(n)
	return slot*time.Duration(pos) + slot*time.Duration(siteIndex)/time.Duration(len(sites))
}

// schedulerTick is the grid of probe slots. Starting slots on a grid lets one timer
// wake-up start every probe due in it, and on an idle machine (a VM above all) a wake-up
// costs more than the probes it starts: at 1000 ICMP targets a second, side by side,
// 10 ms ticks cost 2.3-2.4% of a core and 25 ms ticks 1.7%. A slot starts at most 25 ms
// after its even spread, which delays the first probe into a dark site by 12 ms on
// average; each target keeps its exact interval, and confirm and witness probes are
// not on the grid.
const schedulerTick = 25 * time.Millisecond

// onGrid rounds an offset up to the scheduler's grid.
func onGrid(d time.Duration) time.Duration {
	return (d + schedulerTick - 1) / schedulerTick * schedulerTick
}

// never is the heap time of an entry waiting for a probe with no deadline of its own.
var never = time.Unix(1<<40, 0)

func closeProber(p probes.Prober) {
	if c, ok := p.(io.Closer); ok {
		c.Close()
	}
}

func closeProbers(es []*entry) {
	for _, e := range es {
		closeProber(e.prober)
	}
}

func (a *Agent) emit(ev Event) {
	for _, s := range a.opts.Sinks {
		s.Handle(ev)
	}
}

// Reload switches a running agent to cfg. Targets that did not change keep their state
// and schedule; new ones start unknown; removed ones stop. When a new target cannot be
// built, or the ICMP mode changed (that needs a restart), Reload fails and the running
// configuration stays.
func (a *Agent) Reload(cfg *config.Config) error {
	r := reload{cfg: cfg, reply: make(chan error, 1)}
	select {
	case a.reloads <- r:
		a.results.wake()
	case <-a.done:
		return errors.New("reload: the agent is not running")
	}
	select {
	case err := <-r.reply:
		return err
	case <-a.done:
		return errors.New("reload: the agent stopped")
	}
}

// apply builds the schedule for a reload; it runs on the Run goroutine.
func (a *Agent) apply(cfg *config.Config) (*schedule, error) {
	old := a.schedule
	if cfg.Agent.ICMPMode != old.cfg.Agent.ICMPMode {
		return nil, errors.New("agent.icmp_mode changed: restart the agent to apply it")
	}
	if a.opts.Env.ICMP == nil && a.ownEnv {
		env, err := newEnv(cfg)
		if err != nil {
			return nil, err
		}
		a.opts.Env.ICMP = env.ICMP
	}
	return a.build(cfg, old)
}

// result is one finished probe on its way back to the Run goroutine.
type result struct {
	e *entry
	r probes.Result
}

// Run probes until ctx ends, then ends the probes in flight (async ones expire at once,
// the others see their context cancelled), waits for their results and closes every
// prober.
func (a *Agent) Run(ctx context.Context) error {
	defer close(a.done)
	s := a.schedule
	h := &timingHeap{}
	for _, e := range s.entries {
		h.push(e)
	}
	inFlight := 0
	probeCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.results.open(); err != nil {
		return fmt.Errorf("agent: scheduler timer: %w", err)
	}
	defer a.results.close()
	stopWake := context.AfterFunc(ctx, a.results.wake)
	defer stopWake()
	var armed time.Time // what the timer is set for; zero once it may have fired
	var batch []result
	pool := newWorkers()
	defer pool.stop()

	launch := func(e *entry, now time.Time) {
		e.inFlight = true
		e.lastStart = now
		inFlight++
		for !e.nextRegular.After(now) {
			e.nextRegular = e.nextRegular.Add(e.state.target.Interval)
		}
		timeout := a.timeout(s.cfg, e.state)
		if e.async != nil && e.async.Start(e.complete) {
			// From the clock read now, not the batch's: a long batch on a busy host
			// must not eat into the probes sent last.
			e.next = a.opts.now().Add(timeout)
			return
		}
		e.next = never
		pool.run(func() {
			pctx, done := context.WithTimeout(probeCtx, timeout)
			r := e.prober.Probe(pctx)
			done()
			e.complete(r)
		})
	}
	for {
		now := a.opts.now()
		started := false // an async probe was started in this batch
		for due := heapKey(now); h.Len() > 0 && (*h)[0].at <= due; {
			e := (*h)[0].e
			if e.inFlight {
				// An async probe's deadline: its timeout (or its reply, if that won the
				// race) arrives through the result queue.
				e.next = never
				e.async.Expire()
			} else {
				launch(e, now)
				started = started || e.async != nil
			}
			h.fix(0)
		}
		if started && a.opts.Env.ICMP != nil {
			a.opts.Env.ICMP.Poll() // replies already in: see Poll
		}
		next := never
		if h.Len() > 0 {
			next = (*h)[0].e.next
		}
		if !next.Equal(armed) {
			armed = next
			a.results.arm(next.Sub(now))
		}
		waited, err := a.results.sleep()
		if err != nil {
			cancel()
			return fmt.Errorf("agent: scheduler timer: %w", err)
		}
		if waited {
			armed = time.Time{}
		}
		select {
		case <-ctx.Done():
			cancel()
			for _, sl := range *h {
				if e := sl.e; e.inFlight && e.async != nil {
					e.async.Expire()
				}
			}
			a.results.arm(never.Sub(now))
			for inFlight > 0 {
				batch = a.results.take(batch)
				for _, res := range batch {
					inFlight--
					if res.e.retired {
						closeProber(res.e.prober)
					}
				}
				if inFlight > 0 {
					if _, err := a.results.sleep(); err != nil {
						break
					}
				}
			}
			closeProbers(s.entries)
			a.closeEnv()
			return nil
		default:
		}
		batch = a.results.take(batch)
		for _, res := range batch {
			inFlight--
			a.finish(s, h, res)
		}
		select {
		case r := <-a.reloads:
			old := s
			ns, err := a.apply(r.cfg)
			if err == nil {
				a.emitRemoved(old, ns)
				// Probes in flight for removed targets stay in the heap until they
				// return, so that an async one still meets its deadline.
				var retired []*entry
				for _, sl := range *h {
					if e := sl.e; e.retired && e.inFlight {
						retired = append(retired, e)
					}
				}
				a.schedule, s = ns, ns
				*h = (*h)[:0]
				for _, e := range append(s.entries, retired...) {
					h.push(e)
				}
				armed = time.Time{}
				s.machine.evaluate(a.opts.now())
			}
			r.reply <- err
		default:
		}
	}
}

// workers run blocking probes (DNS, HTTP, TCP) on goroutines that outlive one probe. A
// new goroutine per probe starts with a small stack and grows it again through the
// dialer, net/http and TLS on every probe: at 750 blocking probes a second that copying
// was about 7% of the agent's CPU. A probe goes to the worker that became idle last, or
// to a new one if none is idle. Last in, first out, so that under a steady load the same
// few workers stay busy and the rest of a burst's crowd (a dark site's probes all
// waiting out their timeouts) stays idle and ends after workerIdle.
type workers struct {
	mu     sync.Mutex
	idle   []*worker // a stack: the most recently idle on top
	closed bool
}

type worker struct {
	jobs chan func() // capacity 1
}

const workerIdle = 10 * time.Second

func newWorkers() *workers { return &workers{} }

func (ws *workers) run(job func()) {
	ws.mu.Lock()
	if n := len(ws.idle); n > 0 {
		w := ws.idle[n-1]
		ws.idle = ws.idle[:n-1]
		ws.mu.Unlock()
		w.jobs <- job
		return
	}
	ws.mu.Unlock()
	go ws.work(&worker{jobs: make(chan func(), 1)}, job)
}

func (ws *workers) work(w *worker, job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		ws.mu.Lock()
		if ws.closed {
			ws.mu.Unlock()
			return
		}
		ws.idle = append(ws.idle, w)
		ws.mu.Unlock()
		idle.Reset(workerIdle)
		var ok bool
		select {
		case job, ok = <-w.jobs:
			if !ok {
				return // stopped
			}
			continue
		case <-idle.C:
		}
		ws.mu.Lock()
		if i := slices.Index(ws.idle, w); i >= 0 {
			ws.idle = slices.Delete(ws.idle, i, i+1)
			ws.mu.Unlock()
			return
		}
		// run took this worker off the stack just now: its job is on the way (or stop
		// closed the channel).
		ws.mu.Unlock()
		if job, ok = <-w.jobs; !ok {
			return
		}
	}
}

// stop ends the idle workers; busy ones end after their probe.
func (ws *workers) stop() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.closed = true
	for _, w := range ws.idle {
		close(w.jobs)
	}
	ws.idle = nil
}

// emitRemoved tells the sinks which targets and sites of old a reload left out of ns:
// without it they would export the last state of a target or site that is no longer
// probed, and a view would keep counting this agent as a witness of a removed site.
func (a *Agent) emitRemoved(old, ns *schedule) {
	now := a.opts.now()
	for _, e := range old.entries {
		if e.retired {
			t := e.state.target
			a.emit(Event{Type: EventRemoved, Time: now, Agent: old.machine.agent, Site: t.Site, Target: t.Name, Kind: t.Kind,
				From: e.state.state, To: Removed})
		}
	}
	for _, prev := range old.machine.sites {
		if !slices.ContainsFunc(ns.machine.sites, func(s *siteState) bool { return s.name == prev.name }) {
			a.emit(Event{Type: EventRemoved, Time: now, Agent: old.machine.agent, Site: prev.name,
				From: prev.published, To: Removed})
		}
	}
}

// finish applies a probe result and reschedules: a suspect target is re-probed after
// the confirm interval, and the targets the state machine names are probed at once.
func (a *Agent) finish(s *schedule, h *timingHeap, res result) {
	e := res.e
	e.inFlight = false
	if e.retired {
		heap.Remove(h, e.index)
		closeProber(e.prober)
		return
	}
	now := a.opts.now()
	trigger := s.machine.observe(e.state, res.r, now)
	e.next = e.nextRegular
	// Suspect targets, and every failing target of a site whose verdict waits for
	// uplink proof, are re-probed at the confirm interval; down ones at their interval.
	ts := e.state
	if ts.failing() && (ts.state != TargetDown || (ts.site != nil && ts.site.held)) {
		if confirm := e.lastStart.Add(s.cfg.Agent.ConfirmInterval.Duration); confirm.Before(e.next) {
			e.next = confirm
		}
	}
	h.fix(e.index)
	for _, ts := range trigger {
		if t := s.byState[ts]; t != nil && !t.inFlight {
			t.next = now
			h.fix(t.index)
		}
	}
}

// timeout is the probe deadline for a target: fixed, or adapted from its RTT.
func (a *Agent) timeout(cfg *config.Config, ts *targetState) time.Duration {
	t := ts.target.Timeout
	if !t.Auto {
		return t.Fixed
	}
	ceiling := min(cfg.Agent.TimeoutMax.Duration, ts.target.Interval)
	return ts.rto.timeout(cfg.Agent.TimeoutMin.Duration, ceiling)
}

// timingHeap orders entries by their next probe time. Each slot carries its entry's time
// as an integer beside the pointer, so that sifting compares within the heap's own
// array instead of loading an entry per comparison: at 1000 targets the comparisons
// were a third of the scheduler's own CPU, mostly cache misses on entries.
type timingHeap []heapSlot

type heapSlot struct {
	at int64 // heapKey(e.next)
	e  *entry
}

// heapEpoch is the origin of heap keys; it has a monotonic reading, so keys of times
// read from time.Now (all of the scheduler's) follow the monotonic clock.
var heapEpoch = time.Now()

// heapKey is t in nanoseconds from heapEpoch; never and anything past 292 years sort
// last.
func heapKey(t time.Time) int64 { return int64(t.Sub(heapEpoch)) }

// push adds e at its e.next.
func (h *timingHeap) push(e *entry) { heap.Push(h, heapSlot{heapKey(e.next), e}) }

// fix restores the order after the entry at i changed its e.next.
func (h *timingHeap) fix(i int) {
	(*h)[i].at = heapKey((*h)[i].e.next)
	heap.Fix(h, i)
}

func (h timingHeap) Len() int           { return len(h) }
func (h timingHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index, h[j].e.index = i, j
}
func (h *timingHeap) Push(x any) {
	sl := x.(heapSlot)
	sl.e.index = len(*h)
	*h = append(*h, sl)
}
func (h *timingHeap) Pop() any {
	old := *h
	sl := old[len(old)-1]
	*h = old[:len(old)-1]
	return sl
}
