//go:build linux && bench

package e2e

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

var timingFor = flag.Duration("timing-for", 30*time.Second, "how long TestBenchFaultTiming measures each case")

// TestBenchFaultTiming (make bench-faults) records the probe timing that the remote_write
// fault tests only log: the agent of faults_remotewrite_test.go (two sites probing the
// same two loopback TCP servers at 500 ms, a push every 100 ms), once per remote_write
// condition for -timing-for each, one case after the other, and prints per case
// |spacing - interval| at the median, the 99th percentile and the maximum, the shortest
// and longest spacing, the latest start behind its slot (testkit.GridSlots), the failed
// probes and the load average. What the fault tests
// assert (no probe missed, none doubled or skipped, none started while the previous was
// running) fails it too; the figures never do. The no-fault row is the control: it says
// how much of a fault's jitter the machine makes.
func TestBenchFaultTiming(t *testing.T) {
	const down = -1 // the receiver closed: connection refused
	cases := []struct {
		name  string
		mode  int
		spool bool
	}{
		{"no fault", rwOK, true},
		{"receiver refuses, spool", down, true},
		{"receiver never answers", rwHang, false},
		{"receiver answers 500", rw500, false},
	}
	type row struct {
		name string
		pt   probeTiming
		load string
	}
	var rows []row
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recv := newRWReceiver(t)
			recv.up(rwOK)
			cfg := faultConfig{Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
				URL: recv.url(), PushInterval: 100 * time.Millisecond, Timeout: time.Second, QueueSize: 1000, Spool: tc.spool}
			if tc.spool {
				cfg.StateDir = t.TempDir()
			}
			a := startFaultAgent(t, cfg)
			recv.waitFullState(15*time.Second, cfg)
			if tc.mode == down {
				recv.down()
			} else {
				recv.setMode(tc.mode)
			}
			start := time.Now()
			time.Sleep(*timingFor)
			pt := a.checkTiming(tc.name, start, time.Now())
			load, _ := os.ReadFile("/proc/loadavg")
			a.stop(syscall.SIGTERM)
			rows = append(rows, row{tc.name, pt, strings.Fields(string(load) + " -")[0]})
		})
	}

	fmt.Printf("\nprobe timing under remote_write faults: %d targets at %v for %v per case\n\n", 2*len(faultSites), 500*time.Millisecond, *timingFor)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tprobes\tfailed\t|spacing-interval| p50\tp99\tmax\tshortest spacing\tlongest\tlatest behind slot\tload (1 min)\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	for _, r := range rows {
		spread := "-"
		if r.pt.gridChecked {
			spread = ms(r.pt.maxLate)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.pt.probes, r.pt.failed,
			ms(r.pt.p50), ms(r.pt.p99), ms(r.pt.max), ms(r.pt.shortest), ms(r.pt.longest), spread, r.load)
	}
	tw.Flush()
}
