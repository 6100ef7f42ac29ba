package agent

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/probes"
)

// BenchmarkObserveSuccess is the state machines' cost of one steady successful probe
// (the common case) at 20 sites x 50 targets: no allocation, no site re-evaluation.
func BenchmarkObserveSuccess(b *testing.B) {
	cfg := icmpConfig(b, 20, 50, "1s")
	m, states := newMachine("bench", 3, cfg.Targets(), func(Event) {})
	now := time.Now()
	for _, ts := range states {
		m.observe(ts, probes.Result{Start: now, OK: true, RTT: 50 * time.Microsecond}, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := probes.Result{Start: now, OK: true, RTT: 50 * time.Microsecond}
		m.observe(states[i%len(states)], r, now)
	}
}

// probeCounter counts finished probes and closes reached when the count hits target,
// so that waiting for it costs no CPU of its own.
type probeCounter struct {
	n       atomic.Int64
	target  atomic.Int64
	reached chan struct{}
}

func (c *probeCounter) Handle(ev Event) {
	if ev.Type == EventProbe && c.n.Add(1) == c.target.Load() {
		close(c.reached)
	}
}

// wait blocks until n probes in all have finished.
func (c *probeCounter) wait(n int64) {
	c.reached = make(chan struct{})
	c.target.Store(n)
	if c.n.Load() >= n {
		return
	}
	<-c.reached
}

// BenchmarkRunICMPLoopback runs the whole agent loop (schedule, raw ICMP socket,
// receiver, state machines) on 1000 loopback targets at 1 s, the footprint budget's scale (e2e/README.md), and
// reports the CPU time of the process per probe (cpu-ns/probe) besides wall time per
// probe. At 1000 probes a second, 10000 cpu-ns/probe is 1% of a core. Root only.
func BenchmarkRunICMPLoopback(b *testing.B) {
	testkit.RequireRoot(b, "opens a raw ICMP socket")
	cfg := icmpConfig(b, 20, 50, "1s")
	count := &probeCounter{reached: make(chan struct{})}
	a, err := New(cfg, Options{Sinks: []Sink{count}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	count.wait(1000) // one full interval: every socket open, every target up
	base := count.n.Load()
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	count.wait(base + int64(b.N))
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/probe")
}

// cpuTime is the user plus system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
