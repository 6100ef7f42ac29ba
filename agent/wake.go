package agent

import (
	"sync"
	"time"
)

// wakeQueue carries finished probes to the Run goroutine and is what Run sleeps on. A
// producer (a probe's worker, the ICMP engine's receiver, or Run itself) never blocks:
// it appends under a lock and fires the timer only if Run sleeps, so a thousand
// results that arrive while Run works cost no system call, and a batch of ICMP replies
// that Run reads itself none either.
//
// Run's side: set the timer for its next deadline, then sleep. sleep returns at once if
// anything was put or woken since Run last took; otherwise it marks Run sleeping and
// waits. A producer that finds Run sleeping clears the mark and sets the timer to fire
// at once. It sets the timer after Run did (Run marks itself only after setting it), so
// a wake-up is never overwritten by Run's own deadline; a late one only makes Run look
// once more.
type wakeQueue struct {
	mu       sync.Mutex
	items    []result
	pending  bool      // put or wake since Run last took
	sleeping bool      // Run waits on the timer
	woke     time.Time // when a producer fired the timer for a sleeping Run
	timer    *wakeTimer
}

func newWakeQueue() *wakeQueue { return &wakeQueue{} }

// open creates the timer; Run calls it before any probe starts.
func (q *wakeQueue) open() error {
	t, err := newWakeTimer()
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.timer = t
	q.mu.Unlock()
	return nil
}

// close releases the timer; wakes after it do nothing.
func (q *wakeQueue) close() {
	q.mu.Lock()
	t := q.timer
	q.timer = nil
	q.mu.Unlock()
	if t != nil {
		t.close()
	}
}

// put queues a finished probe, stamped with the moment it finished (for the lateness of
// its handling, LateResult).
func (q *wakeQueue) put(r result) {
	r.done = time.Now()
	q.mu.Lock()
	q.items = append(q.items, r)
	q.signal()
	q.mu.Unlock()
}

// wake has Run look at its context and reloads.
func (q *wakeQueue) wake() {
	q.mu.Lock()
	q.signal()
	q.mu.Unlock()
}

// signal marks work pending and fires the timer if Run sleeps. q.mu is held, so the
// timer is not closed under it.
func (q *wakeQueue) signal() {
	q.pending = true
	if q.sleeping && q.timer != nil {
		q.sleeping = false
		q.woke = time.Now()
		q.timer.set(0)
	}
}

// take returns every queued result, handing the queue the spare slice to fill next.
func (q *wakeQueue) take(spare []result) []result {
	q.mu.Lock()
	out := q.items
	q.items = spare[:0]
	q.pending = false
	q.mu.Unlock()
	return out
}

// arm sets Run's next deadline; never (or anything a day away) disarms.
func (q *wakeQueue) arm(d time.Duration) {
	q.timer.set(d)
}

// sleep returns at once if work is pending; otherwise it waits until the timer fires
// or a producer fires it. waited says it waited, after which the timer is spent (fired
// or overwritten) and Run must set its deadline again; woke is when a producer fired it
// (zero if the timer fired on its own), the due time of the wake-up (LateWakeup).
func (q *wakeQueue) sleep() (waited bool, woke time.Time, err error) {
	q.mu.Lock()
	if q.pending {
		q.mu.Unlock()
		return false, time.Time{}, nil
	}
	q.sleeping = true
	q.woke = time.Time{}
	q.mu.Unlock()
	err = q.timer.wait()
	q.mu.Lock()
	q.sleeping = false
	woke = q.woke
	q.mu.Unlock()
	return true, woke, err
}
