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
type workers struct {
	mu     sync.Mutex
	idle   []*worker // a stack: the most recently idle on top
	n      int       // workers alive, busy or idle
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
	ws.n++
	ws.mu.Unlock()
	go ws.work(&worker{jobs: make(chan func(), 1)}, job)
}

// size is how many workers are alive.
func (ws *workers) size() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.n
}

func (ws *workers) work(w *worker, job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	defer func() {
		ws.mu.Lock()
		ws.n--
		ws.mu.Unlock()
	}()
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
