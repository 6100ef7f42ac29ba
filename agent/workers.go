package agent

import (
	"slices"
	"sync"
	"time"
)

// workers run blocking probes (DNS, HTTP, TCP) on goroutines that outlive one probe. A
// new goroutine per probe starts with a small stack and grows it again through the
// dialer, net/http and TLS on every probe: at 750 blocking probes a second that copying
// was about 7% of the agent's CPU. A probe goes to the worker that became idle last, or
// to a new one if none is idle. Last in, first out, so that under a steady load the same
// few workers stay busy and the rest of a burst's crowd (a dark site's probes all
// waiting out their timeouts) stays idle and ends after workerIdle.
//
// A job is handed a function that puts its worker back among the idle ones, and calls it
// when its probe is done but before handing over the result: once the scheduler has the
// result it may start the target's next probe, and that must find this worker idle.
// So a worker is busy only while a probe runs, and since a target never has two probes
// in flight there are never more workers than blocking targets (the soak asserts it; a
// worker parked only after its result, on a starved host, let the pool grow past them).
type workers struct {
	mu     sync.Mutex
	idle   []*worker // a stack: the most recently idle on top
	n      int       // workers alive, busy or idle
	closed bool
}

// job is a probe for a worker; it calls idle once its probe is done, before it hands the
// result on.
type job func(idle func())

type worker struct {
	jobs chan job // capacity 1: a job may be given while the worker still delivers
}

const workerIdle = 10 * time.Second

func newWorkers() *workers { return &workers{} }

func (ws *workers) run(j job) {
	ws.mu.Lock()
	if n := len(ws.idle); n > 0 {
		w := ws.idle[n-1]
		ws.idle = ws.idle[:n-1]
		ws.mu.Unlock()
		w.jobs <- j
		return
	}
	ws.n++
	ws.mu.Unlock()
	go ws.work(&worker{jobs: make(chan job, 1)}, j)
}

// size is how many workers are alive.
func (ws *workers) size() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.n
}

// park puts w on the idle stack, unless the pool is stopped.
func (ws *workers) park(w *worker) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return false
	}
	ws.idle = append(ws.idle, w)
	return true
}

func (ws *workers) work(w *worker, j job) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	defer func() {
		ws.mu.Lock()
		ws.n--
		ws.mu.Unlock()
	}()
	for {
		parked, asked := false, false
		j(func() { parked, asked = ws.park(w), true })
		if !asked {
			parked = ws.park(w)
		}
		if !parked {
			return // stopped
		}
		idle.Reset(workerIdle)
		var ok bool
		select {
		case j, ok = <-w.jobs:
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
		if j, ok = <-w.jobs; !ok {
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
