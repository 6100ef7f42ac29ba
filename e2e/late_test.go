//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// TestAgentStoppedNoFalseDown stops the agent's process with SIGSTOP for 300 ms, then
// SIGCONT, ten times, while every target answers. A probe in flight at the stop finds
// its deadline passed when the process runs again: the Go runtime often hands it the
// answer that waited (its poller returns before the timers run), but a probe between two
// steps (connected, request not yet written), or one of the backlog that starts at once
// after the stop (late against its slot) and waits for a processor, meets its deadline
// first. The agent must count such a timeout as inconclusive (docs/architecture.md, "Lateness")
// and let the probe's retry judge the target: at fail_threshold 1,
// where one false timeout is a target down, no target may go down for a probe whose
// window met a stop. It must also have measured itself late: a wake-up later than 0.1 s.
// Beside it agent e1 runs with the guard off (lateness_allowance = "0s") and is stopped
// at the same moments; its downs are reported, not asserted, as are both agents' downs
// away from the stops (a loaded machine keeping a server waiting past the timeout).
//
// 100 targets at 100 ms (as the soak) keep a blocking probe in flight at most moments;
// the servers are nginx and dnsmasq in the site namespaces, so that nothing the test
// process does delays an answer. The timeout is a fixed 100 ms rather than the adaptive
// one (20 ms on this network), so that few downs come from the machine's load; a stop of
// 300 ms outlasts it.
func TestAgentStoppedNoFalseDown(t *testing.T) {
	t.Parallel()
	spec := testnet.Spec{Edges: []string{"e0", "e1"}}
	for i := range soakSites {
		spec.Sites = append(spec.Sites, testnet.SiteSpec{Name: fmt.Sprintf("s%d", i+1), Hosts: soakHosts})
	}
	n := testnet.New(t, spec)
	testnet.RequireDaemons(t)
	var targets []siteTargets
	var sites []string
	for _, s := range spec.Sites {
		sites = append(sites, s.Name)
		svcs, err := n.ServeDaemons(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range svcs {
			targets = append(targets, siteTargets{Name: s.Name, Services: svc})
		}
	}
	type stopped struct {
		run     *agentRun
		pid     int
		metrics string
		guard   bool
	}
	var agents []stopped
	for _, e := range spec.Edges {
		addr, err := n.Addr(e)
		if err != nil {
			t.Fatal(err)
		}
		extra := "fail_threshold = 1\n"
		if e == "e1" {
			extra += "lateness_allowance = \"0s\"\n"
		}
		listen := fmt.Sprintf("%s:%d", addr, soakMetrics)
		run, config := startAgentSpec(t, n, agentSpec{Name: e, Sites: targets, Interval: soakInterval, Timeout: stopTimeout.String(),
			Confirm: soakConfirm, Metrics: listen, AgentExtra: extra})
		pid, err := procByArg(config)
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, stopped{run, pid, "http://" + listen + "/metrics", e == "e0"})
	}
	for _, a := range agents {
		a.run.waitUp(startTimeout, sites...)
	}
	// Let the first probes' timeouts settle (the ceiling until the first answers).
	for _, a := range agents {
		a.run.during(time.Second)
	}

	const stops, stopFor = 10, 300 * time.Millisecond
	type span struct{ from, to time.Time }
	var pauses []span
	for range stops {
		var sp span
		sp.from = time.Now()
		for _, a := range agents {
			if err := syscall.Kill(a.pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(stopFor)
		for _, a := range agents {
			if err := syscall.Kill(a.pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
		sp.to = time.Now()
		pauses = append(pauses, sp)
		time.Sleep(700 * time.Millisecond)
	}
	// A target down (at fail_threshold 1, one failed probe, which started detect_seconds
	// before the line) is the stop's doing when that probe's window, from its start to its
	// deadline, meets a stop or the backlog just after it; any other is the loaded
	// machine's (a server kept waiting beyond the timeout), reported only.
	// byStop says whether e is the stop's, and when its probe started against the nearest
	// SIGCONT (negative: before it), for the failure message.
	byStop := func(e event) (bool, time.Duration) {
		start := e.Time.Add(-time.Duration(e.DetectSeconds * float64(time.Second)))
		for _, sp := range pauses {
			if start.Before(sp.to.Add(stopBacklog)) && start.Add(stopTimeout).After(sp.from) {
				return true, start.Sub(sp.to)
			}
		}
		return false, 0
	}
	for i, a := range agents {
		events := a.run.during(2 * time.Second)
		var caused []string
		other := 0
		for _, e := range events {
			if e.Type != "target" || e.To != "down" {
				continue
			}
			if stop, since := byStop(e); stop {
				caused = append(caused, fmt.Sprintf("%s (probe started %v after SIGCONT)", e, since.Round(time.Millisecond)))
			} else {
				other++
			}
		}
		page, err := promPage(n.HTTPClient(spec.Edges[i]), a.metrics)
		if err != nil {
			t.Fatal(err)
		}
		const bucket = `edgeprobe_scheduler_lateness_seconds_bucket{event="wakeup",le=`
		lateWakeups := page[bucket+`"+Inf"}`] - page[bucket+`"0.1"}`]
		t.Logf("agent %s (guard %v): %d targets down for probes across a stop, %d others; %.0f inconclusive probes, %.0f wake-ups later than 0.1 s",
			spec.Edges[i], a.guard, len(caused), other, page["edgeprobe_probe_inconclusive_total"], lateWakeups)
		if !a.guard {
			continue
		}
		if len(caused) > 0 {
			t.Errorf("agent %s, stopped %d times for %v while every target answered, put targets down for probes across a stop:\n  %s",
				spec.Edges[i], stops, stopFor, strings.Join(caused, "\n  "))
		}
		if lateWakeups == 0 {
			t.Errorf("agent %s was stopped %d times for %v and measured no wake-up later than 0.1 s", spec.Edges[i], stops, stopFor)
		}
	}
}

const (
	stopTimeout = 100 * time.Millisecond // the agents' fixed timeout in TestAgentStoppedNoFalseDown
	// stopBacklog is how long after SIGCONT a probe still counts as the stop's: the
	// probes due during the stop all start at once then.
	stopBacklog = 200 * time.Millisecond
)
