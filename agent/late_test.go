package agent

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// lateRecorder keeps what TestRunLateOnPurpose asserts: state changes, the scheduler's
// last report and the inconclusive probes.
type lateRecorder struct {
	mu           sync.Mutex
	changes      []string
	report       SchedulerReport
	inconclusive int
	probes       int
}

func (r *lateRecorder) Handle(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Type {
	case EventProbe:
		r.probes++
		if ev.Inconclusive {
			r.inconclusive++
		}
	case EventScheduler:
		r.report = *ev.Scheduler
	case EventTarget, EventSite, EventAgent, EventImpaired:
		r.changes = append(r.changes, fmt.Sprintf("%d %s/%s %s>%s", ev.Type, ev.Site, ev.Target, ev.From, ev.To))
	}
}

func (r *lateRecorder) snapshot() (changes []string, report SchedulerReport, inconclusive, probes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.changes...), r.report, r.inconclusive, r.probes
}

// TestRunLateOnPurpose starves the agent of its processor: one P (GOMAXPROCS=1) and
// three goroutines spinning on it, which the Go runtime preempts only every 10 ms. The
// targets are TCP listeners on loopback, whose connects the kernel completes without any
// goroutine running, so every failure in the starved spell is the agent's own lateness:
// the worker wakes after its 20 ms deadline and the runtime reports the deadline. With
// the guard none of them may count: no target down, no site changed, while the agent
// measures itself late. Without it (lateness_allowance = "0s") the same run puts targets
// down (checked by hand: every run did).
func TestRunLateOnPurpose(t *testing.T) {
	testkit.SkipShort(t, "starves the process for seconds")
	var lines []string
	for _, site := range []string{"a", "b"} {
		lines = append(lines, fmt.Sprintf("[[site]]\nname = %q", site))
		for i := range 8 {
			ln := listen(t, fmt.Sprintf("127.0.%d.%d:0", map[string]int{"a": 71, "b": 72}[site], i+1))
			lines = append(lines, fmt.Sprintf("  [[site.tcp]]\n  address = %q", ln.Addr().String()))
		}
	}
	cfg, err := config.Parse([]byte(`
[agent]
name = "late"
interval = "50ms"
timeout = "20ms"
confirm_interval = "10ms"
`+strings.Join(lines, "\n")+"\n"), "late.toml")
	if err != nil {
		t.Fatal(err)
	}
	rec := &lateRecorder{}
	start(t, cfg, rec)
	defer func() {
		if t.Failed() {
			changes, report, inconclusive, probes := rec.snapshot()
			t.Logf("changes %v; %d probes, %d inconclusive; report %+v", changes, probes, inconclusive, report)
		}
	}()
	waitUntil(t, 5*time.Second, "both sites up", func() bool {
		changes, _, _, _ := rec.snapshot()
		n := 0
		for _, c := range changes {
			if strings.HasSuffix(c, "unknown>up") && strings.HasPrefix(c, fmt.Sprintf("%d ", EventSite)) {
				n++
			}
		}
		return n == 2
	})
	before, reportBefore, inconclusiveBefore, probesBefore := rec.snapshot()

	procs := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(procs)
	var stop atomic.Bool
	var spinning sync.WaitGroup
	for range 3 {
		spinning.Add(1)
		go func() {
			defer spinning.Done()
			for !stop.Load() {
			}
		}()
	}
	time.Sleep(3 * time.Second)
	stop.Store(true)
	spinning.Wait()
	runtime.GOMAXPROCS(procs)
	time.Sleep(1500 * time.Millisecond) // one scheduler report after the spell, at least

	after, report, inconclusive, probes := rec.snapshot()
	for _, c := range after[len(before):] {
		if !strings.HasPrefix(c, fmt.Sprintf("%d ", EventImpaired)) {
			t.Errorf("while the agent was starved: %s", c)
		}
	}
	late := func(r SchedulerReport) (n uint64) {
		for ev := range NumLatenessEvents {
			h := r.Histograms[ev]
			n += h.Count
			for i, le := range LatenessBuckets {
				if le <= config.DefaultLatenessAllowance {
					n -= h.Buckets[i]
				}
			}
		}
		return n
	}
	if n := late(report) - late(reportBefore); n == 0 {
		t.Errorf("no lateness sample beyond the allowance (%v) while starved", config.DefaultLatenessAllowance)
	}
	t.Logf("starved 3 s: %d probes, %d inconclusive, %d lateness samples beyond the allowance; changes %v",
		probes-probesBefore, inconclusive-inconclusiveBefore, late(report)-late(reportBefore), after[len(before):])
}

// waitUntil polls cond every 10 ms until it holds, failing the test after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
	}
}
