package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// gcShadow is how long after a collection's mark ends its cost is still felt: on a
// machine the view shares with the generator, the pushes queued while the collector
// took its CPU are drained in the time after it (view/README.md, "Performance").
const gcShadow = time.Second

// collection is one of the view's garbage collections, read from the line the Go
// runtime writes for it with GODEBUG=gctrace=1 (the runtime package's documentation
// gives the format).
type collection struct {
	start      time.Time     // when it began, on this process's clock
	clock      time.Duration // from its start to the end of its mark termination
	assist     time.Duration // CPU the view's goroutines spent helping it mark
	background time.Duration // CPU of its background mark workers, idle time not counted
	liveMB     int           // the heap marked live
}

// parseGCTrace reads the collections out of a process's stderr, started being when the
// process was started (the lines say seconds since then). Other lines are skipped, and
// so is a gc line this parser does not understand: a runtime that changes the format
// leaves the report without collections, not wrong.
func parseGCTrace(stderr string, started time.Time) []collection {
	var out []collection
	for _, line := range strings.Split(stderr, "\n") {
		if c, ok := parseGCLine(line, started); ok {
			out = append(out, c)
		}
	}
	return out
}

// parseGCLine reads one line such as
//
//	gc 13 @31.697s 2%: 0.30+330+0.012 ms clock, 0.60+74/183/0+0.025 ms cpu, 512->517->328 MB, 604 MB goal, ...
func parseGCLine(line string, started time.Time) (collection, bool) {
	f := strings.Fields(line)
	if len(f) < 11 || f[0] != "gc" || !strings.HasPrefix(f[2], "@") || f[5] != "ms" || f[6] != "clock," || f[8] != "ms" || f[9] != "cpu," {
		return collection{}, false
	}
	at, err := strconv.ParseFloat(strings.TrimSuffix(f[2][1:], "s"), 64)
	if err != nil {
		return collection{}, false
	}
	clock, ok := msSum(f[4])
	if !ok {
		return collection{}, false
	}
	// CPU: sweep termination + assist/background/idle + mark termination.
	cpu := strings.Split(f[7], "+")
	if len(cpu) != 3 {
		return collection{}, false
	}
	mark := strings.Split(cpu[1], "/")
	if len(mark) != 3 {
		return collection{}, false
	}
	assist, ok1 := msSum(mark[0])
	background, ok2 := msSum(mark[1])
	heap := strings.Split(f[10], "->")
	live, err := strconv.Atoi(heap[len(heap)-1])
	if !ok1 || !ok2 || err != nil {
		return collection{}, false
	}
	return collection{
		start:      started.Add(time.Duration(at * float64(time.Second))),
		clock:      clock,
		assist:     assist,
		background: background,
		liveMB:     live,
	}, true
}

// msSum adds up milliseconds written as "a+b+c".
func msSum(s string) (time.Duration, bool) {
	var sum float64
	for _, p := range strings.Split(s, "+") {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 {
			return 0, false
		}
		sum += v
	}
	return time.Duration(sum * float64(time.Millisecond)), true
}

// within keeps the collections that began in [from, to).
func within(cs []collection, from, to time.Time) []collection {
	var out []collection
	for _, c := range cs {
		if !c.start.Before(from) && c.start.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// shadowed says whether t falls in a collection or in the gcShadow after it.
func shadowed(cs []collection, t time.Time) bool {
	for _, c := range cs {
		if !t.Before(c.start) && t.Before(c.start.Add(c.clock+gcShadow)) {
			return true
		}
	}
	return false
}

// splitByGC splits latencies by whether what they measure was sent in the shadow of a
// collection (shadowed) or not.
func splitByGC(cs []collection, sent []time.Time, lat []time.Duration) (in, out []time.Duration) {
	for i, d := range lat {
		if i < len(sent) && shadowed(cs, sent[i]) {
			in = append(in, d)
		} else {
			out = append(out, d)
		}
	}
	return in, out
}

// gcSummary is the report's line on the window's collections.
func gcSummary(cs []collection, window time.Duration, viewCPU time.Duration) string {
	if len(cs) == 0 {
		return "none in the window"
	}
	var clocks, cpus, assists, backgrounds []time.Duration
	var total time.Duration
	var lives []int
	for _, c := range cs {
		clocks = append(clocks, c.clock)
		cpus = append(cpus, c.assist+c.background)
		assists = append(assists, c.assist)
		backgrounds = append(backgrounds, c.background)
		lives = append(lives, c.liveMB)
		total += c.assist + c.background
	}
	share := ""
	if viewCPU > 0 {
		share = fmt.Sprintf(", %.1f%% of the view's", 100*total.Seconds()/viewCPU.Seconds())
	}
	return fmt.Sprintf("%d (one every %.1f s), live heap p50 %d MB; each: %s from start to end of mark p50, max %s; CPU p50 %s (assist %s, background %s); %.2f s CPU in all%s",
		len(cs), window.Seconds()/float64(len(cs)), testkit.Median(lives),
		ms(testkit.Median(clocks)), ms(testkit.Percentile(clocks, 100)),
		ms(testkit.Median(cpus)), ms(testkit.Median(assists)), ms(testkit.Median(backgrounds)),
		total.Seconds(), share)
}

// withGCTrace is a GODEBUG value that also asks for the runtime's line on each collection.
func withGCTrace(godebug string) string {
	if godebug == "" {
		return "gctrace=1"
	}
	return godebug + ",gctrace=1"
}
