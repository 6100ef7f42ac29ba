package view

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkApplyDuringReads measures what a reader of a large board costs the pushes: an
// engine of 200,000 sites (20 agents reporting 10,000 each) is read with Sites in a loop,
// as a busy /api/v1/sites would be, while an agent of 20 sites pushes a change each time;
// it reports the pushes' p50, p99 and worst latency, with the reader running and (the
// "idle" case, side by side) without. Reads copy 512 sites per hold of the lock
// (Engine.Sites), so a push waits for one such step at most, not for the whole board.
//
//	go test -run '^$' -bench ApplyDuringReads -benchtime 2000x ./view/
func BenchmarkApplyDuringReads(b *testing.B) {
	const agents, sitesPerAgent = 20, 10000
	e := NewEngine(&Config{Quorum: Quorum{N: 2}, MaxUpFraction: DefaultMaxUpFraction})
	for a := range agents {
		r := report(fmt.Sprintf("edge%02d", a), false, nil)
		for s := range sitesPerAgent {
			r.Sites[fmt.Sprintf("site%03d-%05d", a%2, s)] = SiteReport{State: "up", Detect: -1}
		}
		e.Apply([]AgentReport{r}, t0)
	}
	for _, reading := range []bool{false, true} {
		name := "idle"
		if reading {
			name = "reading"
		}
		b.Run(name, func(b *testing.B) {
			var stop atomic.Bool
			reads := make(chan time.Duration, 1)
			go func() {
				var worst time.Duration
				for reading && !stop.Load() {
					start := time.Now()
					e.Sites(t0)
					worst = max(worst, time.Since(start))
				}
				reads <- worst
			}()
			var took []time.Duration
			for i := range b.N {
				state := "down"
				if i%2 == 1 {
					state = "up"
				}
				sites := map[string]string{}
				for s := range 20 {
					sites[fmt.Sprintf("own-%02d", s)] = "up"
				}
				sites["own-00"] = state
				push := report("pusher", false, sites)
				push.SampleTime = t0.Add(time.Duration(i+1) * time.Millisecond)
				start := time.Now()
				e.Apply([]AgentReport{push}, push.SampleTime)
				took = append(took, time.Since(start))
			}
			stop.Store(true)
			worstRead := <-reads
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs/push")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs/push")
			b.ReportMetric(float64(took[len(took)-1].Microseconds()), "max-µs/push")
			if reading {
				b.ReportMetric(float64(worstRead.Milliseconds()), "ms/read")
			}
		})
	}
}
