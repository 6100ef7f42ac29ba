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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
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
	self     *selfCheck // owned by Run once it starts
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
	slot        time.Time // when the probe in flight was due (LateStart)
	deadline    time.Time // an async probe's deadline (LateTimeout)
	inFlight    bool
	// inconclusive counts the failures in a row the agent was too late to judge.
	inconclusive int
	retired      bool // removed by a reload; close the prober when its probe returns
	index        int  // position in the heap
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
	a.self = newSelfCheck(cfg.Agent.LatenessAllowance.Duration)
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
		e.complete = func(r probes.Result) { a.results.put(result{e: e, r: r}) }
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
