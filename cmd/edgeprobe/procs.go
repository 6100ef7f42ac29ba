package main

import (
	"os"
	"runtime"
	"runtime/debug"
)

// agentProcessors is how many processors the agent's Go code gets by default.
const agentProcessors = 2

// agentProcs caps the agent's processors at agentProcessors unless GOMAXPROCS is set.
//
// The agent's work is a stream of tiny events (start a probe, read a reply, update a
// state), and every idle processor is one more thread that the runtime may wake through
// a futex when a goroutine becomes ready (a blocking probe's worker, a scrape). One
// processor is not the default: then any burst of other work in the process (a
// /metrics scrape, a remote_write snapshot and its compression) holds the probe
// scheduler back until the runtime preempts it, up to 10 ms, and probe timing must stay
// within 10 ms. Two processors keep the scheduler running beside such a burst. Since
// the scheduler sleeps on a timerfd (agent.wakeTimer) the choice costs nothing on the
// ICMP path: at 1000 loopback ICMP targets one and two processors measured the same,
// 1.5-1.7% of a core and 40-46 context switches a second. GOMAXPROCS=N in the
// environment (for instance in a systemd drop-in) overrides this.
func agentProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > agentProcessors {
		runtime.GOMAXPROCS(agentProcessors)
	}
}

// agentGCPercent is the agent's default GOGC.
const agentGCPercent = 50

// agentGC sets the garbage collector's target to agentGCPercent unless GOGC is set.
//
// The agent allocates nothing per probe, so its garbage comes from the exporters'
// periodic work (a /metrics scrape, a remote_write snapshot), and a collection finds
// a small live heap. Go's default (GOGC=100) lets the heap grow to twice that before
// collecting, and that headroom is most of the agent's memory beyond its state. At
// 1000 ICMP targets scraped every second, 50 took the RSS from 21.1-21.2 to 19.8-20.0
// MiB at the same CPU (2.2-2.5% of a core either way, 30 s runs side by side): a
// collection of a 3 MB heap costs about a millisecond.
func agentGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
}
