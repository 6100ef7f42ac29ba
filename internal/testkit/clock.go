package testkit

import (
	"fmt"
	"sync"
	"time"
)

// ClockGap is a stretch of time over which this process did not see the clock run as it
// should: it was not scheduled at all (the machine paused, or this process starved), or
// the wall clock stepped away from the monotonic clock. A test that compares the
// wall-clock times another process writes (an agent's probe lines) can tell by these
// what the machine did to it from what the other process did.
type ClockGap struct {
	From, To time.Time     // the wall clock read either side (no monotonic reading)
	Ran      time.Duration // monotonic time between the two readings
}

// Step is how far the wall clock moved beyond the monotonic clock over the gap: 0 for a
// pause, positive or negative for a step of the system clock.
func (g ClockGap) Step() time.Duration { return g.To.Sub(g.From) - g.Ran }

// Span is the wall-clock time the gap covers (negative for a step back).
func (g ClockGap) Span() time.Duration { return g.To.Sub(g.From) }

// Overlaps says whether the gap lies at least partly within the wall-clock times
// [from, to].
func (g ClockGap) Overlaps(from, to time.Time) bool {
	lo, hi := g.From, g.To
	if hi.Before(lo) {
		lo, hi = hi, lo
	}
	return !hi.Before(from) && !lo.After(to)
}

func (g ClockGap) String() string {
	return fmt.Sprintf("%s to %s (ran %v, wall clock stepped %v)", g.From.Format("15:04:05.000"),
		g.To.Format("15:04:05.000"), g.Ran.Round(time.Millisecond), g.Step().Round(time.Millisecond))
}

// ClockWatch samples the clock every tick while a test runs (WatchClock).
type ClockWatch struct {
	mu   sync.Mutex
	gaps []ClockGap
}

// WatchClock samples the clock every tick until tb's test ends and records a gap where
// two samples were least or more apart, by either clock. Beside two busy loops on a
// 2-core machine a goroutine waking every 10 ms is late by tens of milliseconds at most;
// a gap of seconds is the machine's, not the load's.
func WatchClock(tb TB, tick, least time.Duration) *ClockWatch {
	w := &ClockWatch{}
	stop, done := make(chan struct{}), make(chan struct{})
	// The first reading is taken here, not by the goroutine: one that had not run yet
	// when the process stopped would read the clock first after it, and miss the gap.
	prev := time.Now()
	t := time.NewTicker(tick)
	go func() {
		defer close(done)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			now := time.Now()
			g := ClockGap{From: prev.Round(0), To: now.Round(0), Ran: now.Sub(prev)}
			if g.Ran >= least || g.Step().Abs() >= least {
				w.mu.Lock()
				w.gaps = append(w.gaps, g)
				w.mu.Unlock()
			}
			prev = now
		}
	}()
	tb.Cleanup(func() { close(stop); <-done })
	return w
}

// Gaps lists the gaps recorded so far that overlap the wall-clock times [from, to].
func (w *ClockWatch) Gaps(from, to time.Time) []ClockGap {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ClockGap
	for _, g := range w.gaps {
		if g.Overlaps(from.Round(0), to.Round(0)) {
			out = append(out, g)
		}
	}
	return out
}
