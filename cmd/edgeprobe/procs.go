package main

import (
	"os"
	"runtime"
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
