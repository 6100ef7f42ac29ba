//go:build linux

package e2e

import (
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestFaultTimingAcrossPauses is the check of checkTiming's reading of clock gaps
// (clockGapLeast): the agent stopped alone for 2 s is a stall the fault tests must
// report, and the agent and this process stopped together for 2 s, as when the machine
// pauses, is the machine's and must not fail them. Not parallel: it stops the whole test
// process, and no other test may run meanwhile.
func TestFaultTimingAcrossPauses(t *testing.T) {
	recv := newRWReceiver(t)
	recv.up(rwOK)
	cfg := faultConfig{StateDir: t.TempDir(), Interval: 500 * time.Millisecond, Targets: tcpTargets(t, 2), Sites: faultSites,
		URL: recv.url(), PushInterval: 100 * time.Millisecond, Timeout: time.Second, QueueSize: 1000}
	a := startFaultAgent(t, cfg)
	recv.waitFullState(15*time.Second, cfg)
	pid := a.cmd.Process.Pid

	from := time.Now()
	time.Sleep(2 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	mid := time.Now()
	time.Sleep(2 * time.Second)
	// One child stops both processes at once and continues them 2 s later.
	script := "kill -STOP " + strconv.Itoa(pid) + " $PPID; sleep 2; kill -CONT $PPID " + strconv.Itoa(pid)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -c %q: %v: %s", script, err, out)
	}
	time.Sleep(2 * time.Second)
	to := time.Now()
	for !a.readPast(to) && time.Since(to) < 10*time.Second {
		time.Sleep(50 * time.Millisecond)
	}

	alone := a.timing(from, mid)
	t.Logf("the agent stopped alone: %s", alone)
	if len(alone.problems()) == 0 {
		t.Errorf("the agent stopped alone for 2 s: no problem found (excused: %q)", alone.excused)
	}
	together := a.timing(mid, to)
	t.Logf("the agent and the test stopped together: %s", together)
	if p := together.problems(); len(p) != 0 {
		t.Errorf("the agent and the test stopped together for 2 s: %q", p)
	}
	if len(together.gaps) == 0 || len(together.excused) == 0 {
		t.Errorf("the pause of both: gaps %v, excused %q; want the pause seen and the spacings across it judged without it",
			together.gaps, together.excused)
	}
}
