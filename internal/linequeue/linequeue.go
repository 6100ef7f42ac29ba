// Package linequeue is a writer of log lines that never makes its caller wait for the
// reader: the agent's stdout exporter and the view's event log write through it.
package linequeue

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the lines waiting (the batch being written holds at most as many again): a
// line is one to a few hundred bytes, so this holds several thousand lines while a
// reader catches up.
const (
	MaxLines = 8192
	MaxBytes = 2 << 20
	// reportEvery is how often at most the diagnostics say that lines were dropped.
	reportEvery = 10 * time.Second
)

// Queue is the writer in front of a stream that a process must not wait for (stdout,
// read by a terminal, a pipe or journald). The agent emits lines from its probe
// scheduler and the view from under its apply lock, so a reader that stops reading (a
// stuck log shipper, a paused pager) would otherwise stop the probes, or freeze every
// verdict and the staleness timer with it. Write only queues a copy of the line; a
// goroutine, started when there is something to write and ending when there is not,
// writes the lines in order. Lines that do not fit in the buffer, or that the writer
// refused (stdout closed: EPIPE), are dropped, counted (Dropped, for a metric) and
// reported on the diagnostics at most every reportEvery.
type Queue struct {
	w    io.Writer
	log  *slog.Logger
	warn string // the diagnostic's message, which names the metric

	mu       sync.Mutex
	queue    [][]byte
	bytes    int
	writing  bool
	idle     *sync.Cond // broadcast when the writer goroutine ends
	reported time.Time
	unsaid   uint64 // drops not yet reported
	lastErr  error

	dropped atomic.Uint64
}

// New returns a queue in front of w; drops are reported on log with the message warn.
func New(w io.Writer, log *slog.Logger, warn string) *Queue {
	q := &Queue{w: w, log: log, warn: warn}
	q.idle = sync.NewCond(&q.mu)
	return q
}

// Dropped is how many lines were dropped so far.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Write queues one line (slog's handler and the stdout exporter write a whole line at
// once). It never blocks on the reader and never fails: a line that cannot be kept is
// counted.
func (q *Queue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) >= MaxLines || q.bytes+len(p) > MaxBytes {
		q.dropLocked(1, nil)
		return len(p), nil
	}
	q.queue = append(q.queue, append([]byte(nil), p...))
	q.bytes += len(p)
	if !q.writing {
		q.writing = true
		go q.drain()
	}
	return len(p), nil
}

func (q *Queue) drain() {
	for {
		q.mu.Lock()
		batch := q.queue
		q.queue, q.bytes = nil, 0
		if len(batch) == 0 {
			q.writing = false
			q.idle.Broadcast()
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		for i, line := range batch {
			if _, err := q.w.Write(line); err != nil {
				q.mu.Lock()
				q.dropLocked(uint64(len(batch)-i), err)
				q.mu.Unlock()
				break
			}
		}
	}
}

// dropLocked counts n dropped lines and reports them unless that was done lately.
func (q *Queue) dropLocked(n uint64, err error) {
	q.dropped.Add(n)
	q.unsaid += n
	if err != nil {
		q.lastErr = err
	}
	if now := time.Now(); now.Sub(q.reported) >= reportEvery {
		args := []any{"dropped", q.unsaid, "dropped_total", q.dropped.Load()}
		if q.lastErr != nil {
			args = append(args, "error", q.lastErr.Error())
		}
		// Not here: the caller may be publishing a verdict, and stderr may block too.
		go q.log.Warn(q.warn, args...)
		q.reported, q.unsaid, q.lastErr = now, 0, nil
	}
}

// Flush waits until the queued lines are written, at most timeout: for a clean exit.
func (q *Queue) Flush(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		q.mu.Lock()
		for q.writing {
			q.idle.Wait()
		}
		q.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
