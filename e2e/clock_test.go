//go:build linux && clockjump

package e2e

// The wall-clock jump test. It sets the machine's real clock
// (clock_settime(CLOCK_REALTIME), root only), which every process on the machine sees, so
// it has its own build tag and runs alone: `make test-clock`, after `go test ./...`.
//
// The clock is always put back to the true time, computed from a CLOCK_MONOTONIC reading
// taken with a CLOCK_REALTIME reading before the first step (the monotonic clock never
// steps): after each phase, in a t.Cleanup (which also runs when the test fails or
// panics), by a watchdog timer if a step outlives its phase, and by a guard process that
// restores it when the test process dies in any other way (killed, timed out).

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// clockGuardEnv carries "REALTIME_NS MONOTONIC_NS" to the guard process.
const clockGuardEnv = "EDGEPROBE_CLOCK_GUARD"

// A test binary started with clockGuardEnv set is the guard: it waits for its standard
// input to end, and unless the test wrote "done" first, it sets the clock to the true
// time. It ignores the terminal's signals, so a Ctrl-C that kills the test leaves it to
// clean up.
func init() {
	base := os.Getenv(clockGuardEnv)
	if base == "" {
		return
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	var wall0, mono0 int64
	if _, err := fmt.Sscan(base, &wall0, &mono0); err != nil {
		fmt.Fprintf(os.Stderr, "clock guard: bad %s=%q: %v\n", clockGuardEnv, base, err)
		os.Exit(2)
	}
	sc := bufio.NewScanner(os.Stdin)
	done := false
	for sc.Scan() {
		done = sc.Text() == "done"
	}
	if !done {
		if err := setTrueTime(wall0, mono0, 0); err != nil {
			fmt.Fprintf(os.Stderr, "clock guard: restoring the clock: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "clock guard: the test ended without restoring the clock; restored it")
	}
	os.Exit(0)
}

func monotonicNS() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux
	}
	return ts.Nano()
}

// setTrueTime sets the real clock to the true time plus offset: wall0 plus the monotonic
// time elapsed since mono0.
func setTrueTime(wall0, mono0 int64, offset time.Duration) error {
	ts := unix.NsecToTimespec(wall0 + (monotonicNS() - mono0) + int64(offset))
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// clockStepper steps the real clock and puts it back.
type clockStepper struct {
	t            testing.TB
	wall0, mono0 int64

	mu       sync.Mutex
	offset   time.Duration
	watchdog *time.Timer
	guard    io.WriteCloser // the guard's standard input
}

var clockDry = flag.Bool("clock-dry", false, "TestClockJump: do not step the clock (checks the harness only; the test then proves nothing about clocks)")

// maxStep is the longest a step may last before the watchdog restores the clock.
const maxStep = 30 * time.Second

func newClockStepper(t testing.TB) *clockStepper {
	t.Helper()
	c := &clockStepper{t: t}
	// The two readings are taken back to back; the pair is off by the microsecond between.
	var rt unix.Timespec
	c.mono0 = monotonicNS()
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &rt); err != nil {
		t.Fatal(err)
	}
	c.wall0 = rt.Nano()
	// Setting the clock to the true time is a no-op step: it tells whether we may.
	if err := setTrueTime(c.wall0, c.mono0, 0); err != nil {
		testkit.SkipUnlessCI(t, "setting the clock needs root with CAP_SYS_TIME: clock_settime: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", clockGuardEnv, c.wall0, c.mono0))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // out of the terminal's signals
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the clock guard: %v", err)
	}
	c.guard = stdin
	t.Cleanup(func() {
		c.restore()
		io.WriteString(c.guard, "done\n")
		c.guard.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("clock guard: %v", err)
		}
		if off := c.error(); off > 50*time.Millisecond || off < -50*time.Millisecond {
			t.Errorf("after the test the clock is off the true time by %v", off)
		}
	})
	return c
}

// step sets the clock to the true time plus offset.
func (c *clockStepper) step(offset time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if *clockDry {
		return
	}
	if err := setTrueTime(c.wall0, c.mono0, offset); err != nil {
		c.t.Fatalf("stepping the clock by %v: %v", offset, err)
	}
	c.offset = offset
	if c.watchdog != nil {
		c.watchdog.Stop()
	}
	c.watchdog = time.AfterFunc(maxStep, c.restore)
}

// restore sets the clock to the true time; safe to call at any time, any number of times.
func (c *clockStepper) restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watchdog != nil {
		c.watchdog.Stop()
		c.watchdog = nil
	}
	if c.offset == 0 {
		return
	}
	if err := setTrueTime(c.wall0, c.mono0, 0); err != nil {
		c.t.Errorf("restoring the clock: %v", err)
		return
	}
	c.offset = 0
}

// trueTime is the true time at t, a time.Time read in this process (its monotonic
// reading counts, not its wall time).
func (c *clockStepper) trueTime(t time.Time) time.Time {
	return time.Unix(0, c.wall0+(monotonicNS()-c.mono0)).Add(-time.Since(t))
}

// error is how far the real clock is from the true time now.
func (c *clockStepper) error() time.Duration {
	var rt unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &rt)
	want := c.wall0 + (monotonicNS() - c.mono0)
	return time.Duration(rt.Nano() - want)
}

// requireAlone fails the test when other Go test binaries run on the machine: a step of
// the real clock would disturb them.
func requireAlone(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.HasSuffix(strings.TrimSpace(string(comm)), ".test") {
			others = append(others, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
		}
	}
	if len(others) > 0 {
		t.Fatalf("other test processes run on this machine: %s; stepping the real clock would disturb them. Run `make test-clock` alone.",
			strings.Join(others, ", "))
	}
}

// Site c: slowHosts addresses whose ICMP echo replies come slowEcho late, probed with a
// fixed timeout of slowTimeout (an adaptive one would close in on the fixed delay).
const (
	slowHosts   = 4
	slowEcho    = 300 * time.Millisecond
	slowTimeout = "900ms"
	// fixedTimeout is the other targets' timeout. The default adaptive one goes down to
	// 20 ms, and on a busy machine a lone late answer is then a timeout that has nothing
	// to do with clocks; a timer that followed the wall clock would fire at once on the
	// step forwards, whatever its length.
	fixedTimeout = "500ms"
)

// clockProbe is one probe result of the stdout exporter (results = "all").
type clockProbe struct {
	agent, target string
	ok            bool
	rtt           float64
	wall          time.Time // the event's own time: the agent's wall clock
	arrived       time.Time // here, monotonic
}

// clockPhase is one stretch of the test with the clock at one offset.
type clockPhase struct {
	name       string
	offset     time.Duration
	lasts      time.Duration
	start, end time.Time // monotonic, here
}

// TestClockJump: two agents (1 s interval, fixed timeouts) probe two sites (ICMP, DNS,
// HTTP, TCP) and a third whose ICMP echo replies come 300 ms late, and push to a view while the real clock jumps an hour forwards, back to the true time, an hour
// backwards and back again. Intervals and timeouts must stay on the monotonic clock:
// every target is probed once per interval throughout (no gap, no burst), no probe fails
// or times out, no RTT exceeds the timeout ceiling, no target, site or agent changes
// state, and the view keeps both sites up with both witnesses fresh. It reports the
// pushes the view ignored as too old (max_sample_age compares sample timestamps with the
// view's clock) around each step.
func TestClockJump(t *testing.T) {
	testnet.Require(t)
	if !*clockDry {
		requireAlone(t)
	}
	edges := []string{"e0", "e1"}
	spec := testnet.Spec{Sites: twoSites.Sites, Edges: edges, Hosts: []string{"view"}}
	// Site c: ICMP only, answered slowly, so that probes are in flight when the clock steps.
	spec.Sites = append(slices.Clone(spec.Sites), testnet.SiteSpec{Name: "c", Hosts: slowHosts})
	n := testnet.New(t, spec)
	var sites []siteTargets
	for _, s := range []string{"a", "b"} {
		svc, err := n.Serve(s, 0)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, siteTargets{Name: s, Services: svc})
	}
	if err := serveSlowEcho(t, n, "c", slowHosts, slowEcho); err != nil {
		t.Fatal(err)
	}
	slowSite := "\n[[site]]\nname = \"c\"\n"
	for i := range slowHosts {
		addr, err := n.SiteAddr("c", i)
		if err != nil {
			t.Fatal(err)
		}
		slowSite += fmt.Sprintf("  [[site.icmp]]\n  address = %q\n  timeout = %q\n", addr, slowTimeout)
	}
	v := startView(t, n, "view", viewPort, "")
	var agents []*agentRun
	for _, e := range edges {
		a, _ := startAgentSpec(t, n, agentSpec{Name: e, Sites: sites, Push: []string{v.pushURL()}, Results: "all",
			Timeout: fixedTimeout, Extra: slowSite})
		agents = append(agents, a)
	}
	upWith2 := func(got map[string]siteVerdict) bool {
		for _, s := range []string{"a", "b", "c"} {
			if got[s].State != "up" || got[s].Witnesses != 2 {
				return false
			}
		}
		return true
	}
	v.client.poll("both sites up with two witnesses", startTimeout, upWith2, nil)
	time.Sleep(2 * time.Second) // every target's RTT estimate has samples
	stream := followEvents(t, v)

	// Read every agent's lines from now on; what they said while starting is dropped.
	for _, a := range agents {
		for {
			if _, err := a.next(time.Now().Add(50 * time.Millisecond)); err != nil {
				break
			}
		}
	}
	var mu sync.Mutex
	var probes []clockProbe
	var changes []event
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for _, a := range agents {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e, err := a.next(time.Now().Add(200 * time.Millisecond))
				if err != nil {
					if strings.Contains(err.Error(), "exited") {
						t.Errorf("%v", err)
						return
					}
					continue
				}
				mu.Lock()
				if e.Type == "probe" {
					var r struct {
						RTT *float64 `json:"rtt_seconds"`
					}
					json.Unmarshal([]byte(e.line), &r)
					p := clockProbe{agent: e.Agent, target: e.Site + "/" + e.Target, ok: e.OK != nil && *e.OK, wall: e.Time, arrived: e.arrived}
					if r.RTT != nil {
						p.rtt = *r.RTT
					}
					probes = append(probes, p)
				} else {
					changes = append(changes, e)
				}
				mu.Unlock()
			}
		})
	}
	ignored := func() float64 {
		x, err := promValue(v.client.http, v.metricsURL(), "edgeprobe_view_reports_ignored_total")
		if err != nil {
			t.Fatalf("view metrics: %v", err)
		}
		return x
	}

	clock := newClockStepper(t)
	phases := []*clockPhase{
		{name: "before", lasts: 6 * time.Second},
		{name: "+1h", offset: time.Hour, lasts: 10 * time.Second},
		{name: "back to true", lasts: 6 * time.Second},
		{name: "-1h", offset: -time.Hour, lasts: 10 * time.Second},
		{name: "back to true again", lasts: 6 * time.Second},
	}
	ignoredIn := make([]float64, len(phases))
	var badReadings []string
	for i, ph := range phases {
		before := ignored()
		if i > 0 {
			if ph.offset == 0 {
				clock.restore()
			} else {
				clock.step(ph.offset)
			}
		}
		ph.start = time.Now()
		for time.Since(ph.start) < ph.lasts {
			got, err := v.client.sites()
			switch {
			case err != nil:
				badReadings = append(badReadings, fmt.Sprintf("%s: %v", ph.name, err))
			case !upWith2(got):
				badReadings = append(badReadings, fmt.Sprintf("%s: %s", ph.name, verdictSummary(got)))
			}
			for _, s := range got {
				for _, a := range s.Agents {
					if a.Stale {
						badReadings = append(badReadings, fmt.Sprintf("%s: agent %s stale for site %s", ph.name, a.Name, s.Name))
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		ph.end = time.Now()
		ignoredIn[i] = ignored() - before
	}
	clock.restore()
	close(stop)
	readers.Wait()
	events := stream.all()

	// Every probe: per target, the gaps between results (read here, on the monotonic
	// clock) stay near the 1 s interval, and none failed.
	const interval = time.Second
	byTarget := map[string][]clockProbe{}
	for _, p := range probes {
		k := p.agent + " " + p.target
		byTarget[k] = append(byTarget[k], p)
		if !p.ok {
			t.Errorf("probe failed: %s %s at %v", p.agent, p.target, p.wall)
		}
	}
	if want := len(edges) * (8 + slowHosts); len(byTarget) != want {
		t.Errorf("probe results for %d targets, want %d (4 in a, 4 in b, %d in c, per agent)", len(byTarget), want, slowHosts)
	}
	var minGap, maxGap time.Duration = time.Hour, 0
	for k, ps := range byTarget {
		for i := 1; i < len(ps); i++ {
			gap := ps[i].arrived.Sub(ps[i-1].arrived)
			minGap, maxGap = min(minGap, gap), max(maxGap, gap)
			if gap < interval/2 || gap > interval*3/2 {
				t.Errorf("%s: %v between results %d and %d (wall times %v, %v), want about %v",
					k, gap, i, i+1, ps[i-1].wall.Format(time.TimeOnly), ps[i].wall.Format(time.TimeOnly), interval)
			}
		}
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tclock\tlasted\tprobes\tper target per s\tfailed\tmax RTT\tRTT > 1 s\tagent wall-time shift\tpushes ignored by the view\t")
	var badRTT []string
	for i, ph := range phases {
		count, failed, maxRTT, overlong := 0, 0, 0.0, 0
		var shifts []time.Duration
		for _, p := range probes {
			if p.arrived.Before(ph.start) || !p.arrived.Before(ph.end) {
				continue
			}
			count++
			if !p.ok {
				failed++
			}
			maxRTT = max(maxRTT, p.rtt)
			if p.rtt >= 1 {
				overlong++
				badRTT = append(badRTT, fmt.Sprintf("phase %s: %s %s reported an RTT of %.3f s (timeout ceiling 1 s)", ph.name, p.agent, p.target, p.rtt))
			}
			// How far the event's wall time is from the true time of its arrival: the
			// clock's offset as the agent saw it.
			shifts = append(shifts, p.wall.Sub(clock.trueTime(p.arrived)))
		}
		var shift time.Duration
		if len(shifts) > 0 {
			shift = testkit.Median(shifts)
		}
		rate := float64(count) / ph.end.Sub(ph.start).Seconds() / float64(len(byTarget))
		fmt.Fprintf(tw, "%s\t%v\t%.1f s\t%d\t%.2f\t%d\t%.1f ms\t%d\t%v\t%.0f\t\n", ph.name, ph.offset, ph.end.Sub(ph.start).Seconds(),
			count, rate, failed, maxRTT*1000, overlong, shift.Round(time.Second), ignoredIn[i])
		if rate < 0.8 || rate > 1.2 {
			t.Errorf("phase %s: %.2f probes per target per second, want about 1", ph.name, rate)
		}
	}
	tw.Flush()
	// An RTT beyond the timeout can only be measured on the wall clock across a step: the
	// ICMP engine subtracts the send time from the kernel's receive timestamp
	// (SCM_TIMESTAMPNS, wall clock) and falls back to the monotonic clock only when the
	// difference is negative, so a step forwards while a probe is in flight adds the step.
	t.Run("ICMPRTTOnMonotonicClock", func(t *testing.T) {
		for _, b := range badRTT {
			t.Error(b)
		}
	})
	if *clockDry {
		fmt.Println("-clock-dry: the clock was not stepped; the clock column is what a real run would do")
	}
	fmt.Printf("gaps between one target's results: %v to %v (interval %v)\n", minGap.Round(time.Millisecond), maxGap.Round(time.Millisecond), interval)

	for _, e := range changes {
		t.Errorf("state change while only the clock moved: %s", e)
	}
	for _, e := range events {
		t.Errorf("verdict change at the view while only the clock moved: %s", e)
	}
	for _, r := range badReadings {
		t.Errorf("view reading: %s", r)
	}
}
