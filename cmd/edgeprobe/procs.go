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
// state). Every extra processor is another thread that the runtime wakes through a futex
// for such an event, and those wake-ups cost more than the probes: on 2-core amd64 with
// 1000 loopback ICMP targets (BenchmarkRunICMPLoopback) one processor used 12-14 µs of
// CPU per probe and two 18-24 µs. One processor is not the default, though: then any
// burst of other work in the process (a /metrics scrape, a remote_write snapshot and its
// compression) holds the probe scheduler back until the runtime preempts it, up to 10 ms,
// and probe timing must stay within 10 ms. Two processors keep the scheduler running
// beside such a burst; measured side by side on a loaded host with both, twice as many
// probe spacings strayed more than 10 ms on one processor as on two. GOMAXPROCS=N in the
// environment (for instance in a systemd drop-in) overrides this.
func agentProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > agentProcessors {
		runtime.GOMAXPROCS(agentProcessors)
	}
}
