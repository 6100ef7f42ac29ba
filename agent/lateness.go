package agent

import "time"

// This file holds the agent's check on itself (docs/architecture.md, "Detection at the agent",
// "Lateness"): how late the scheduler and the probes run against their due times, which
// timed-out probes the agent was too late to judge, and whether it stays so late that it
// is impaired. Like state.go it reads no clock and has no goroutines: Run hands it the
// times, and tests hand it made-up ones.
//
// Why: a probe's timeout is judged by the Go runtime's timer in the probe's goroutine. An
// agent that is not running (its host's CPUs busy with other work, the process stopped,
// a VM descheduled) finds on waking both its deadline passed and, often, the answer
// waiting in the socket; the runtime reports the deadline first, and the agent would
// count a failure that the target never caused. The idea is Lifeguard's (HashiCorp
// memberlist): a member that sees itself slow distrusts its own failure reports.
//
// A timed-out probe is inconclusive when its deadline was handled more than the
// allowance late (its prober gave up later than that after the deadline), or when any
// other measurement shows the agent not running across that deadline (a stall: a
// wake-up, start, timeout or result handled more than the allowance late, whose
// interval from due to done holds the deadline), or when it started more than the
// allowance after its slot and is not itself such a probe's retry: it was then one of the
// backlog a stall leaves, whose probes start together and wait behind each other for a
// processor while their answers sit in the sockets, each meeting a deadline its timer
// reports on time. The retry, started at once, judges the target. ICMP probes are
// exempt: the engine judges them by the kernel's receive timestamps after draining the
// socket, so a late agent reads them right.

// LatenessEvent names what a lateness sample measured.
type LatenessEvent uint8

const (
	// LateWakeup: the scheduler's wake-up against its due time, the timer's deadline or
	// the moment a finished probe signalled it.
	LateWakeup LatenessEvent = iota
	// LateStart: a probe's start (a blocking probe's worker running it, an ICMP echo sent)
	// against its slot.
	LateStart
	// LateTimeout: a timed-out probe, when its prober gave up against its deadline: what
	// the inconclusive rule judges.
	LateTimeout
	// LateResult: a finished probe, when the scheduler handled it against when it finished.
	LateResult
	// NumLatenessEvents is the number of lateness events.
	NumLatenessEvents
)

var latenessEventNames = [NumLatenessEvents]string{"wakeup", "start", "timeout", "result"}

func (e LatenessEvent) String() string { return latenessEventNames[e] }

// LatenessBuckets are the upper bounds of the lateness histograms: a healthy agent's
// wake-ups are late by tens of microseconds, a loaded host's by milliseconds, and
// what breaks a 20 ms timeout is tens of milliseconds and more.
var LatenessBuckets = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// LatenessHistogram counts samples of one event since the agent started.
type LatenessHistogram struct {
	Buckets [len(LatenessBuckets)]uint64 // samples at most LatenessBuckets[i] (not cumulative)
	Count   uint64                       // every sample, including those beyond the last bucket
	Sum     time.Duration
}

func (h *LatenessHistogram) observe(d time.Duration) {
	h.Count++
	h.Sum += d
	for i, le := range &LatenessBuckets {
		if d <= le {
			h.Buckets[i]++
			return
		}
	}
}

// SchedulerReport is what EventScheduler carries: the agent's lateness histograms and its
// inconclusive probes since it started, and its probe workers now.
type SchedulerReport struct {
	Histograms [NumLatenessEvents]LatenessHistogram
	// Inconclusive counts failed probes the agent was too late to judge.
	Inconclusive uint64
	// Workers is how many worker goroutines run blocking probes, busy or idle (see
	// workers): at most the number of blocking targets, since a target never has two
	// probes in flight; the rest of the agent's goroutines are fixed.
	Workers int
}

// Thresholds of the impaired state. The agent turns impaired when its wake-ups were late
// by more than the allowance for impairedOn of the last impairedWindow (the time from
// each such wake-up's due time to the wake-up, overlaps counted once) and in at least
// impairedSeconds of its seconds, and ok again once that share is below impairedOff.
// One stall (a process stopped for a second, a burst of other work) leaves it ok; a
// host that keeps the agent waiting second after second does not.
const (
	// ImpairedWindow is exported for the sinks' wording.
	ImpairedWindow  = impairedWindow
	impairedWindow  = 5 * time.Second
	impairedOn      = 0.50
	impairedSeconds = 3
	impairedOff     = 0.10
	// latenessSecond is the resolution of that window, and how often EventScheduler goes
	// out while there are samples.
	latenessSecond = time.Second
)

// stallRing is how many recent stalls the agent remembers to judge timeouts by. Merged
// when they overlap, so a long stall is one entry; a timeout is judged within about a
// timeout (at most a second) of its deadline, and more distinct stalls than this within a
// second make the agent impaired anyway.
const stallRing = 64

type stall struct{ from, to time.Time }

// selfCheck is the agent's lateness bookkeeping, owned by the Run goroutine.
type selfCheck struct {
	// allowance is the lateness beyond which the agent distrusts its own timeouts; zero
	// turns the guard off (every timeout counts, never impaired).
	allowance time.Duration
	report    SchedulerReport
	dirty     bool // report changed since the last EventScheduler

	stalls [stallRing]stall
	nstall int // stalls recorded so far; the newest is at (nstall-1) % stallRing

	// The impaired window: late time per latenessSecond, a ring, the newest at cur.
	late      [impairedWindow / latenessSecond]time.Duration
	cur       int
	second    time.Time // start of the current second; zero before the first sample
	judged    time.Time // the second tick last judged at the start of
	lateUntil time.Time // end of the late wake-up time counted so far
	impaired  bool
}

func newSelfCheck(allowance time.Duration) *selfCheck { return &selfCheck{allowance: allowance} }

// sample records that ev, due at due, happened at at.
func (c *selfCheck) sample(ev LatenessEvent, due, at time.Time) {
	late := max(at.Sub(due), 0)
	c.report.Histograms[ev].observe(late)
	c.dirty = true
	if c.allowance <= 0 || late <= c.allowance {
		return
	}
	c.addStall(due, at)
	if ev == LateWakeup {
		// Wake-ups come one after another, so their late time is counted as a union.
		from := laterOf(due, c.lateUntil)
		if from.Before(at) {
			c.rotate(at)
			c.late[c.cur] += at.Sub(from)
			c.lateUntil = at
		}
	}
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// addStall remembers that the agent did not run from from to to, merging it into the
// newest stall when they overlap.
func (c *selfCheck) addStall(from, to time.Time) {
	if c.nstall > 0 {
		last := &c.stalls[(c.nstall-1)%stallRing]
		if !from.After(last.to) && !to.Before(last.from) {
			last.from, last.to = earlierOf(last.from, from), laterOf(last.to, to)
			return
		}
	}
	c.stalls[c.nstall%stallRing] = stall{from, to}
	c.nstall++
}

func earlierOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// window is what the scheduler knows of a blocking probe besides its result: the slot
// it was due at, the deadline its worker set, and whether it retries an inconclusive one.
type window struct {
	slot, deadline time.Time
	retry          bool
}

// inconclusive decides whether a blocking probe that timed out, having started at start
// and given up at gaveUp, says nothing about its target, and counts it if so.
func (c *selfCheck) inconclusive(w window, start, gaveUp time.Time) bool {
	if c.allowance <= 0 {
		return false
	}
	startedLate := !w.retry && !w.slot.IsZero() && start.Sub(w.slot) > c.allowance
	if gaveUp.Sub(w.deadline) <= c.allowance && !c.stalledAt(w.deadline) && !startedLate {
		return false
	}
	c.report.Inconclusive++
	c.dirty = true
	return true
}

// stalledAt reports whether a remembered stall holds t.
func (c *selfCheck) stalledAt(t time.Time) bool {
	for i := range min(c.nstall, stallRing) {
		if s := c.stalls[i]; !t.Before(s.from) && !t.After(s.to) {
			return true
		}
	}
	return false
}

// rotate moves the impaired window forward to the second that holds now, clearing the
// seconds it passes.
func (c *selfCheck) rotate(now time.Time) {
	if c.second.IsZero() {
		c.second = now
		return
	}
	for n := 0; now.Sub(c.second) >= latenessSecond; n++ {
		c.second = c.second.Add(latenessSecond)
		c.cur = (c.cur + 1) % len(c.late)
		c.late[c.cur] = 0
		if n == len(c.late) {
			// Asleep for longer than the window: every second in it was quiet.
			c.second = now
		}
	}
}

// tick is called by Run after every batch. It moves the window forward to now and says
// whether the lateness report is due (a second passed with new samples) and whether the
// agent turned impaired or back (impaired is then the new state, lateFor the late time
// within the window).
func (c *selfCheck) tick(now time.Time) (report, changed bool) {
	c.rotate(now)
	if c.second.Equal(c.judged) {
		return false, false
	}
	c.judged = c.second
	report, c.dirty = c.dirty, false
	if c.allowance <= 0 {
		return report, false
	}
	share, seconds := c.lateShare()
	switch {
	case !c.impaired && share >= impairedOn && seconds >= impairedSeconds:
		c.impaired = true
		return report, true
	case c.impaired && share < impairedOff:
		c.impaired = false
		return report, true
	}
	return report, false
}

// lateFor is the late time within the impaired window.
func (c *selfCheck) lateFor() time.Duration {
	var sum time.Duration
	for _, d := range c.late {
		sum += d
	}
	return sum
}

// lateShare is the late time's share of the impaired window, and in how many of the
// window's seconds the agent was late.
func (c *selfCheck) lateShare() (share float64, seconds int) {
	for _, d := range c.late {
		if d > 0 {
			seconds++
		}
	}
	return float64(c.lateFor()) / float64(impairedWindow), seconds
}
