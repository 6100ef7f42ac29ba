package view

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"
)

// The state of a view at the load of `make bench-view-load`: 10,000 agents x 20 sites,
// ten witnesses a site, two targets a site, as internal/viewload pushes them.
const (
	loadAgents, loadSitesPerAgent, loadWitnesses = 10000, 20, 10
)

// loadEngine is an engine fed by every agent's push twice, one second apart, the second
// read through the agent's connection's shape (shape.go) as the view reads it; it returns
// the shapes' slots, which the connections keep, and every agent's full report.
func loadEngine(b *testing.B, now time.Time) (*Engine, []*shapeSlot, [][]AgentReport) {
	b.Helper()
	e := NewEngine(DefaultConfig()) // its max_sites is the load's 20,000 sites
	slots := make([]*shapeSlot, loadAgents)
	reports := make([][]AgentReport, loadAgents)
	for a := range loadAgents {
		sites := make(map[string]string, loadSitesPerAgent)
		group := a / loadWitnesses // the agents of a group report the same sites
		for s := range loadSitesPerAgent {
			sites[fmt.Sprintf("site-%05d", group*loadSitesPerAgent+s)] = "up"
		}
		slots[a] = new(shapeSlot)
		for push := range 2 { // the first is decoded in full, the second by its shape
			at := now.Add(time.Duration(push) * time.Second)
			body := encodePushes(b, agentPush{agent: fmt.Sprintf("agent-%05d", a), interval: 1, sites: sites, since: now, detect: 1, at: at, targets: 2})
			slots[a].mu.Lock() // as handleWrite holds it, until the reports are applied
			r, err, replayed := decodeShaped(b, slots[a], body)
			if err != nil {
				b.Fatal(err)
			}
			if replayed != (push == 1) {
				b.Fatalf("agent %d's push %d: replayed %v", a, push, replayed)
			}
			if err := e.Fits(r); err != nil {
				b.Fatal(err)
			}
			e.Apply(r, at)
			slots[a].release()
			if push == 0 {
				reports[a] = r // decoded in full: the report is its own, not the slot's
			}
		}
	}
	if got := len(e.Sites(now)); got != loadAgents*loadSitesPerAgent/loadWitnesses {
		b.Fatalf("%d sites, want %d", got, loadAgents*loadSitesPerAgent/loadWitnesses)
	}
	return e, slots, reports
}

// BenchmarkMarkLiveHeap measures what the view's own state at that load costs the
// garbage collector: the median wall and CPU time of a full collection (runtime.GC) over
// the iterations, and the live heap and objects it marks. The connections' own state
// (net/http's, their goroutines) is not in it: that is the same for any view of as many
// agents. Numbers from one process to the next differ by up to a third; compare several
// alternating runs.
//
//	go test -run '^$' -bench MarkLiveHeap -benchtime 9x ./view/
func BenchmarkMarkLiveHeap(b *testing.B) {
	e, slots, _ := loadEngine(b, time.Now()) // the full reports are the benchmark's, not the view's
	runtime.GC()
	gcCPU := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	took := make([]time.Duration, 0, b.N)
	cpu := make([]float64, 0, b.N)
	b.ResetTimer()
	for range b.N {
		metrics.Read(gcCPU)
		before := gcCPU[0].Value.Float64()
		start := time.Now()
		runtime.GC()
		took = append(took, time.Since(start))
		metrics.Read(gcCPU)
		cpu = append(cpu, gcCPU[0].Value.Float64()-before)
	}
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	slices.Sort(took)
	slices.Sort(cpu)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms/GC")
	b.ReportMetric(cpu[len(cpu)/2]*1000, "CPU-ms/GC")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "MB-live")
	b.ReportMetric(float64(ms.HeapObjects)/1e6, "Mobjects")
	runtime.KeepAlive(slots)
	runtime.KeepAlive(e)
}

// BenchmarkApplyAtLoad measures what a push holds the view's apply lock for at that
// load (Fits, then Apply): the agents push in turn, one round a second of the engine's
// clock, so each push moves its agent from the front of the stale deadlines to the back,
// as at the view. No push changes a verdict.
//
//	go test -run '^$' -bench ApplyAtLoad ./view/
func BenchmarkApplyAtLoad(b *testing.B) {
	now := time.Now()
	e, _, reports := loadEngine(b, now)
	at := now.Add(2 * time.Second)
	step := time.Second / loadAgents
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reports[i%loadAgents]
		r[0].SampleTime = at // a push the engine has not seen
		if err := e.Fits(r); err != nil {
			b.Fatal(err)
		}
		if c, _ := e.Apply(r, at); len(c) != 0 {
			b.Fatalf("push %d changed %d verdicts (the first %+v), want none", i, len(c), c[0])
		}
		i++
		at = at.Add(step)
	}
}
