package agent

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Run goroutine sleeps between batches on a Linux timerfd, read through the
// runtime's network poller, and not on a time.Timer.
//
// A time.Timer costs thread wake-ups beyond its own: when the goroutine that set it
// blocks, the runtime adds the timer and, if another processor is idle, starts a thread
// just to watch for it (wakeNetPoller), and the runtime's monitor thread (sysmon) sleeps
// only until the next timer, so it too wakes at every slot. A timerfd is a file: the
// thread that waits in the poller wakes when it fires, runs the batch and waits again,
// one context switch per slot. Its system calls are raw (no entersyscall), which does
// not wake sysmon either. Measured on 2-core amd64 with a loop that wakes every 25 ms
// and does 10 µs of work: a time.Timer 4.5-7 ms of CPU a second and 150-250 context
// switches; the timerfd 2.0-2.4 ms and 40, whatever GOMAXPROCS is.
type wakeTimer struct {
	file  *os.File
	raw   syscall.RawConn
	fd    uintptr
	buf   [8]byte // the expiration count a read returns, ignored
	errno syscall.Errno
	read  func(fd uintptr) bool
}

func newWakeTimer() (*wakeTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	t := &wakeTimer{file: os.NewFile(uintptr(fd), "timerfd"), fd: uintptr(fd)}
	if t.raw, err = t.file.SyscallConn(); err != nil {
		t.file.Close()
		return nil, err
	}
	t.read = func(fd uintptr) bool {
		_, _, e := syscall.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)))
		if e == unix.EAGAIN {
			return false
		}
		t.errno = e
		return true
	}
	return t, nil
}

// maxWait is the longest a timer is set for; longer (never) disarms it.
const maxWait = 24 * time.Hour

// set makes the timer fire after d, at once (a nanosecond) if d is not positive. It
// replaces any earlier setting and clears an expiry not yet read.
func (t *wakeTimer) set(d time.Duration) {
	var spec unix.ItimerSpec
	switch {
	case d > maxWait:
		// Zero disarms.
	case d <= 0:
		spec.Value.Nsec = 1
	default:
		spec.Value = unix.NsecToTimespec(int64(d))
	}
	// Only an invalid descriptor or value could fail, and neither can be here.
	syscall.RawSyscall6(unix.SYS_TIMERFD_SETTIME, t.fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
}

// wait blocks until the timer fires.
func (t *wakeTimer) wait() error {
	t.errno = 0
	if err := t.raw.Read(t.read); err != nil {
		return err
	}
	if t.errno != 0 {
		return os.NewSyscallError("read timerfd", t.errno)
	}
	return nil
}

func (t *wakeTimer) close() error { return t.file.Close() }

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
	pending  bool // put or wake since Run last took
	sleeping bool // Run waits on the timer
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

func (q *wakeQueue) put(r result) {
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
// or overwritten) and Run must set its deadline again.
func (q *wakeQueue) sleep() (waited bool, err error) {
	q.mu.Lock()
	if q.pending {
		q.mu.Unlock()
		return false, nil
	}
	q.sleeping = true
	q.mu.Unlock()
	err = q.timer.wait()
	q.mu.Lock()
	q.sleeping = false
	q.mu.Unlock()
	return true, err
}
