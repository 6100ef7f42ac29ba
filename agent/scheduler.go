package agent

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/probes"
)

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

// result is one finished probe on its way back to the Run goroutine.
type result struct {
	e        *entry
	r        probes.Result
	deadline time.Time // a blocking probe's deadline, as its worker set it; zero for async
	done     time.Time // when it was queued (wakeQueue.put)
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
		e.slot = e.next
		inFlight++
		for !e.nextRegular.After(now) {
			e.nextRegular = e.nextRegular.Add(e.state.target.Interval)
		}
		timeout := a.timeout(s.cfg, e.state)
		if e.async != nil && e.async.Start(e.complete) {
			// From the clock read now, not the batch's: a long batch on a busy host
			// must not eat into the probes sent last.
			e.next = a.opts.now().Add(timeout)
			e.deadline = e.next
			return
		}
		e.next = never
		pool.run(func(idle func()) {
			pctx, done := context.WithTimeout(probeCtx, timeout)
			deadline, _ := pctx.Deadline()
			r := e.prober.Probe(pctx)
			done()
			idle()
			a.results.put(result{e: e, r: r, deadline: deadline})
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
		waited, woke, err := a.results.sleep()
		if err != nil {
			cancel()
			return fmt.Errorf("agent: scheduler timer: %w", err)
		}
		if waited {
			// Due at the timer's deadline, or earlier when a finished probe woke Run.
			due := armed
			if !woke.IsZero() && woke.Before(due) {
				due = woke
			}
			if due.Before(never) {
				a.self.sample(LateWakeup, due, a.opts.now())
			}
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
					if _, _, err := a.results.sleep(); err != nil {
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
		// Every lateness of the batch first, so that a timeout is judged knowing about a
		// stall that a result handled after it reveals.
		handled := a.opts.now()
		for _, res := range batch {
			a.measure(res, handled)
		}
		for _, res := range batch {
			inFlight--
			a.finish(s, h, res)
		}
		a.selfTick(s, handled, pool)
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
				a.self.allowance = ns.cfg.Agent.LatenessAllowance.Duration
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
	w := window{slot: e.slot, deadline: res.deadline, retry: e.inconclusive > 0}
	trigger, inconclusive := s.machine.judge(a.self, e.state, res.r, w, now)
	if inconclusive {
		// Not a failure: probe again at once, then (if the agent stays late) at the
		// confirm pace, so that a late agent probes no faster than a suspect target.
		e.inconclusive++
		e.next = e.nextRegular
		if e.inconclusive == 1 {
			e.next = now
		} else if confirm := e.lastStart.Add(s.cfg.Agent.ConfirmInterval.Duration); confirm.Before(e.next) {
			e.next = confirm
		}
		h.fix(e.index)
		return
	}
	e.inconclusive = 0
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

// measure records the lateness a finished probe shows: its start against its slot, its
// handling against its end, and for a timeout its giving up against its deadline.
func (a *Agent) measure(res result, handled time.Time) {
	e, r := res.e, res.r
	if !r.Start.IsZero() {
		a.self.sample(LateStart, e.slot, r.Start)
	}
	a.self.sample(LateResult, res.done, handled)
	if r.Reason == probes.ReasonTimeout {
		deadline := res.deadline
		if deadline.IsZero() {
			deadline = e.deadline
		}
		a.self.sample(LateTimeout, deadline, r.Start.Add(r.RTT))
	}
}

// selfTick moves the self-check's window on and tells the sinks about the scheduler's
// figures once a second, and when the agent turns impaired or back.
func (a *Agent) selfTick(s *schedule, now time.Time, pool *workers) {
	if n := pool.size(); n != a.self.report.Workers {
		a.self.report.Workers, a.self.dirty = n, true
	}
	report, changed := a.self.tick(now)
	if report {
		a.emit(Event{Type: EventScheduler, Time: now, Agent: s.machine.agent, Scheduler: &a.self.report})
	}
	if changed {
		from, to := AgentOK, AgentImpaired
		if !a.self.impaired {
			from, to = AgentImpaired, AgentOK
		}
		a.emit(Event{Type: EventImpaired, Time: now, Agent: s.machine.agent, From: from, To: to, Detect: a.self.lateFor()})
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
