package view

import (
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the event log's buffer: a verdict line is about 150 bytes, so this holds
// several thousand changes while a reader catches up.
const (
	logQueueMaxLines = 8192
	logQueueMaxBytes = 2 << 20
	// logQueueReport is how often at most the diagnostics say that lines were dropped.
	logQueueReport = 10 * time.Second
)

// logQueue is the writer behind the event log (one JSON line per verdict change, on
// stdout). Verdicts are published under the apply lock, so the line must never wait for
// its reader: a reader that stops reading (a stuck log shipper, a paused pager) would
// otherwise freeze every verdict and the staleness timer with it. Write only queues a
// copy of the line; a goroutine, started when there is something to write and ending
// when there is not, writes the lines in order. Lines that do not fit in the buffer, or
// that the writer refused (stdout closed: EPIPE), are dropped, counted in
// edgeprobe_view_log_dropped_total and reported on the diagnostics at most every
// logQueueReport.
type logQueue struct {
	w   io.Writer
	log *slog.Logger

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

func newLogQueue(w io.Writer, log *slog.Logger) *logQueue {
	l := &logQueue{w: w, log: log}
	l.idle = sync.NewCond(&l.mu)
	return l
}

// Write queues one line (slog's handler writes a whole record at once). It never
// blocks on the reader and never fails: a line that cannot be kept is counted.
func (l *logQueue) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) >= logQueueMaxLines || l.bytes+len(p) > logQueueMaxBytes {
		l.dropLocked(1, nil)
		return len(p), nil
	}
	l.queue = append(l.queue, append([]byte(nil), p...))
	l.bytes += len(p)
	if !l.writing {
		l.writing = true
		go l.drain()
	}
	return len(p), nil
}

func (l *logQueue) drain() {
	for {
		l.mu.Lock()
		batch := l.queue
		l.queue, l.bytes = nil, 0
		if len(batch) == 0 {
			l.writing = false
			l.idle.Broadcast()
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		for i, line := range batch {
			if _, err := l.w.Write(line); err != nil {
				l.mu.Lock()
				l.dropLocked(uint64(len(batch)-i), err)
				l.mu.Unlock()
				break
			}
		}
	}
}

// dropLocked counts n dropped lines and reports them unless that was done lately.
func (l *logQueue) dropLocked(n uint64, err error) {
	l.dropped.Add(n)
	l.unsaid += n
	if err != nil {
		l.lastErr = err
	}
	if now := time.Now(); now.Sub(l.reported) >= logQueueReport {
		args := []any{"dropped", l.unsaid, "dropped_total", l.dropped.Load()}
		if l.lastErr != nil {
			args = append(args, "error", l.lastErr.Error())
		}
		// Not here: the caller may be publishing a verdict, and stderr may block too.
		go l.log.Warn("event log: lines dropped, stdout is not read fast enough or failed (edgeprobe_view_log_dropped_total)", args...)
		l.reported, l.unsaid, l.lastErr = now, 0, nil
	}
}

// flush waits until the queued lines are written, at most timeout.
func (l *logQueue) flush(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		l.mu.Lock()
		for l.writing {
			l.idle.Wait()
		}
		l.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// FlushEvents waits until the event log's queued lines are written, at most timeout:
// for a clean exit, after Serve returned.
func (s *Server) FlushEvents(timeout time.Duration) { s.hard.events.flush(timeout) }
