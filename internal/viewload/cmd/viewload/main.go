// Command viewload plays many edgeprobe agents against a view on loopback and prints the
// view's cost and verdict latency (make bench-view-load). With --view it starts that
// edgeprobe binary's view itself, as a separate process, and reads its CPU time and RSS
// from /proc over the measured window; with --url it pushes to a running view. It says
// which side limits: beside each process's CPU, how long its threads waited for a CPU,
// how late the generator sent its pushes, and the machine's load average.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/viewload"
	edgeview "github.com/edgeprobe/edgeprobe/view"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("viewload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg viewload.Config
	viewBin := fs.String("view", "", "edgeprobe `binary` whose view to start on a free loopback port and measure")
	fs.StringVar(&cfg.URL, "url", "", "base `URL` of a running view on loopback (instead of --view)")
	fs.StringVar(&cfg.Token, "token", "", "bearer `token` for the pushes")
	fs.IntVar(&cfg.Agents, "agents", 1000, "simulated agents")
	fs.IntVar(&cfg.Sites, "sites", 20, "sites per agent")
	fs.IntVar(&cfg.Targets, "targets", 2, "targets per site")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "measured window, after the warm-up (1.5 intervals, then until every site is up, at most 30 s)")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "push interval of every agent")
	fs.IntVar(&cfg.Quorum, "quorum", 2, "the view's quorum")
	fs.IntVar(&cfg.Witnesses, "witnesses", 0, "agents reporting each site; a flip changes a site on all of them (default 10, or all agents when fewer)")
	fs.DurationVar(&cfg.FlipEvery, "flip-every", 500*time.Millisecond, "a flip (next site down, or back up) this often")
	fs.DurationVar(&cfg.ReadEvery, "read-every", 0, "read /api/v1/sites, / and /metrics this often during the window (0: never)")
	fs.DurationVar(&cfg.ReadPhase, "read-phase", 5*time.Second, "with --read-every: read only in every second phase this long, to compare pushes with and without reads")
	cpuProfile := fs.String("cpuprofile", "", "with --view: have the view write a CPU profile to `file`")
	memProfile := fs.String("memprofile", "", "with --view: have the view write a heap profile to `file` when it stops")
	selfProfile := fs.String("load-cpuprofile", "", "write the load generator's own CPU profile to `file`")
	writeConfig := fs.Bool("write-config", true, "with --view: give the view a config raising max_connections and max_sites where the agents need more (false for a view that predates those keys)")
	viewCPUs := fs.String("view-cpus", "", "with --view: run the view on these `CPUs` only (taskset -c LIST); pin the generator with taskset itself")
	loadProcs := fs.Int("load-procs", 1, "run the load generator's Go code on this many `processors` (GOMAXPROCS) once the view has started: its agents mostly wait on sockets, and a second processor costs more CPU in waking and parking threads than it brings")
	loadNice := fs.Int("load-nice", 0, "run the load generator at this `niceness` (0 to 19) once the view has started, so that on a machine the two share the view has the CPU when it wants it, as when its agents are elsewhere")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*viewBin == "") == (cfg.URL == "") {
		fmt.Fprintln(stderr, "viewload: give exactly one of --view BINARY or --url URL")
		return 2
	}
	if *loadProcs < 1 {
		fmt.Fprintln(stderr, "viewload: --load-procs: want 1 or more")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var view *exec.Cmd
	var viewErr bytes.Buffer
	var viewStarted, windowBegan, windowEnded time.Time
	var before, after testkit.Proc
	if *viewBin != "" {
		addr, err := testkit.FreeLoopback()
		if err != nil {
			fmt.Fprintln(stderr, "viewload:", err)
			return 1
		}
		viewArgs := []string{"view", "--listen", addr}
		if conf := viewConfig(cfg); conf != "" && *writeConfig {
			dir, err := os.MkdirTemp("", "viewload-")
			if err != nil {
				fmt.Fprintln(stderr, "viewload:", err)
				return 1
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, "view.toml")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				fmt.Fprintln(stderr, "viewload:", err)
				return 1
			}
			fmt.Fprintf(stderr, "viewload: the view's config raises its limits for %d agents:\n%s", cfg.Agents, conf)
			viewArgs = append(viewArgs, "--config", path)
		}
		if *cpuProfile != "" {
			viewArgs = append(viewArgs, "--cpuprofile", *cpuProfile)
		}
		if *memProfile != "" {
			viewArgs = append(viewArgs, "--memprofile", *memProfile)
		}
		bin := *viewBin
		if *viewCPUs != "" {
			viewArgs = append([]string{"-c", *viewCPUs, bin}, viewArgs...)
			bin = "taskset"
		}
		view = exec.Command(bin, viewArgs...)
		view.Stderr = &viewErr // the event log (stdout) goes to /dev/null
		// The runtime's line on each collection (gc.go) lets the report tell the pushes
		// that met one from the rest.
		view.Env = append(os.Environ(), "GODEBUG="+withGCTrace(os.Getenv("GODEBUG")))
		viewStarted = time.Now()
		if err := view.Start(); err != nil {
			fmt.Fprintln(stderr, "viewload: start the view:", err)
			return 1
		}
		defer func() {
			if view.ProcessState == nil {
				_ = view.Process.Signal(syscall.SIGTERM)
				_ = view.Wait()
			}
		}()
		cfg.URL = "http://" + addr
		if err := waitUp(ctx, cfg.URL); err != nil {
			fmt.Fprintf(stderr, "viewload: %v\nview stderr:\n%s", err, viewErr.String())
			return 1
		}
		pid := view.Process.Pid
		cfg.Window = func(begin bool) {
			s, err := testkit.ReadProc(pid)
			if err != nil {
				fmt.Fprintln(stderr, "viewload: read the view's /proc:", err)
			}
			if begin {
				before = s
			} else {
				after = s
			}
		}
	}
	runtime.GOMAXPROCS(*loadProcs)
	if *loadNice != 0 {
		if err := renice(*loadNice); err != nil {
			fmt.Fprintln(stderr, "viewload: --load-nice:", err)
			return 2
		}
	}
	var selfBefore, selfAfter testkit.Proc
	var machineBefore, machineAfter machine
	inner := cfg.Window
	cfg.Window = func(begin bool) {
		if inner != nil {
			inner(begin)
		}
		if begin {
			selfBefore, _ = testkit.ReadProc(os.Getpid())
			machineBefore = readMachine()
			windowBegan = time.Now()
		} else {
			selfAfter, _ = testkit.ReadProc(os.Getpid())
			machineAfter = readMachine()
			windowEnded = time.Now()
		}
	}
	if *selfProfile != "" {
		f, err := os.Create(*selfProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "viewload: cpu profile:", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	res, err := viewload.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "viewload:", err)
		return 1
	}
	if view != nil {
		// SIGTERM ends the view cleanly, which also writes its CPU profile.
		_ = view.Process.Signal(syscall.SIGTERM)
		if err := view.Wait(); err != nil {
			fmt.Fprintf(stderr, "viewload: the view exited with %v; stderr:\n%s", err, viewErr.String())
		}
	}
	var gcs []collection
	if view != nil {
		gcs = parseGCTrace(viewErr.String(), viewStarted)
	}
	report(stdout, res, before, after, selfBefore, selfAfter, machineBefore, machineAfter, *loadProcs, *loadNice, view != nil,
		gcs, within(gcs, windowBegan, windowEnded))
	if res.Errors > 0 || res.Verdicts < res.Flips {
		return 1
	}
	return 0
}

// report writes what the run measured; gcs are the view's collections and inWindow those
// that began in the window, known (traced) when it started the view itself. Pushes are
// split by all of them: one that began just before the window shadows its first second.
func report(w io.Writer, r *viewload.Result, before, after, selfBefore, selfAfter testkit.Proc, machineBefore, machineAfter machine, loadProcs, loadNice int, traced bool, gcs, inWindow []collection) {
	fmt.Fprintf(w, "\nview under load: %d agents x %d sites (%d series a push, %d witnesses a site), window %.1f s (then %.1f s for the last verdicts)\n\n",
		r.Agents, r.Sites, r.SeriesPerPush, r.Witnesses, r.Elapsed.Seconds(), r.Drain.Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	secs := r.Elapsed.Seconds()
	perPush := func(cpu time.Duration) string {
		if r.Pushes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(r.Pushes))
	}
	// A process whose threads waited for a CPU about as long as they ran was short of
	// CPU time, not of work: the machine limited it.
	waited := func(b, a testkit.Proc) string {
		cpu, wait := a.CPU-b.CPU, a.RunDelay-b.RunDelay
		return fmt.Sprintf("waited for a CPU %.2f s (%.0f%% of its CPU time)", wait.Seconds(), 100*wait.Seconds()/max(cpu.Seconds(), 1e-3))
	}
	row("load average (1 min)", machineBefore.load+" at the start, "+machineAfter.load+" at the end")
	if machineAfter.total > machineBefore.total {
		total := machineAfter.total - machineBefore.total
		// On a virtual machine the host may run something else on its CPUs: the time it
		// took is steal, and the two processes here had that much less to share.
		row("CPU time stolen by the host", fmt.Sprintf("%.1f%% of the machine's CPU time over the window", 100*float64(machineAfter.steal-machineBefore.steal)/float64(total)))
	}
	if after.CPU > 0 {
		cpu := after.CPU - before.CPU
		row("view CPU", fmt.Sprintf("%.2f cores (%.2f s user+sys), %s a push; %s", cpu.Seconds()/secs, cpu.Seconds(), perPush(cpu), waited(before, after)))
		row("view RSS", fmt.Sprintf("%.1f MiB at the end, %.1f MiB peak", float64(after.RSS)/(1<<20), float64(after.HWM)/(1<<20)))
		if r.Allocated >= 0 && r.Pushes > 0 {
			row("view allocated", fmt.Sprintf("%.1f MB/s, %.2f KB a push", float64(r.Allocated)/1e6/secs, float64(r.Allocated)/1e3/float64(r.Pushes)))
		}
		if traced {
			row("view garbage collections", gcSummary(inWindow, r.Elapsed, cpu))
		}
	}
	self := selfAfter.CPU - selfBefore.CPU
	gen := fmt.Sprintf("load generator CPU (GOMAXPROCS %d", loadProcs)
	if loadNice != 0 {
		gen += fmt.Sprintf(", nice %d", loadNice)
	}
	gen += ")"
	row(gen, fmt.Sprintf("%.2f cores, %s a push; %s", self.Seconds()/secs, perPush(self), waited(selfBefore, selfAfter)))
	row("warm-up", fmt.Sprintf("%.1f s, then %d of %d sites up", r.Warmup.Seconds(), r.SitesUp, r.SitesTotal))
	pushes := fmt.Sprintf("%d (%.0f/s); periodic ones due %d, slots missed %d", r.Pushes, r.PushesPerSecond, r.Due, r.Missed)
	if r.DecodedByShape >= 0 {
		pushes += fmt.Sprintf("; the view decoded %d by their shape, %d in full", r.DecodedByShape, r.DecodedInFull)
	}
	row("pushes", pushes)
	errs := fmt.Sprint(r.Errors)
	if len(r.ErrorKinds) > 0 {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.ErrorKinds[k]))
		}
		errs += " (" + strings.Join(kinds, ", ") + ")"
	}
	if r.ErrorSample != "" {
		errs += "; first: " + r.ErrorSample
	}
	row("errors", errs)
	unexpected := fmt.Sprint(r.Unexpected)
	if len(r.UnexpectedSample) > 0 {
		unexpected += "; first: " + strings.Join(r.UnexpectedSample, ", ")
	}
	row("flips / verdicts seen", fmt.Sprintf("%d / %d (unexpected verdict changes: %s)", r.Flips, r.Verdicts, unexpected))
	lat := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(testkit.Percentile(ds, 50)), ms(testkit.Percentile(ds, 99)), ms(testkit.Percentile(ds, 100)), len(ds))
	}
	// byGC writes the rows that split latencies by the view's collections, when known.
	byGC := func(sent []time.Time, ds []time.Duration) {
		if traced {
			in, out := splitByGC(gcs, sent, ds)
			row(fmt.Sprintf("  sent in a collection or the %v after", gcShadow), lat(in))
			row("  sent at other times", lat(out))
		}
	}
	row("deciding push -> SSE verdict", lat(r.EventLatency))
	byGC(r.EventSent, r.EventLatency)
	row("deciding push -> the view's decision", lat(r.DecideLatency))
	for _, path := range []string{"/api/v1/sites", "/", "/metrics"} {
		if ds := r.ReadLatency[path]; len(ds) > 0 {
			row("read "+path, lat(ds))
		}
	}
	row("deciding push -> its response", lat(r.ResponseLatency))
	row("any push -> response (1 in 10)", lat(r.PushLatency))
	byGC(r.PushSent, r.PushLatency)
	row("push sent after its slot (1 in 10)", lat(r.Lateness))
	if len(r.PushPhases) > 0 {
		row("push -> response, no read under way", phases(r.PushPhases, false))
		row("push -> response, beside a read", phases(r.PushPhases, true))
	}
	tw.Flush()
}

// phases sums up the push latency of one class (beside reads or not) over the window's
// phases: the median over phases of each phase's p50 and p99, so that one phase that met
// a burst of other work on the machine does not decide the figure, and the samples in all.
func phases(ps []viewload.PushPhase, beside bool) string {
	var p50s, p99s []time.Duration
	n := 0
	for _, p := range ps {
		xs := p.Quiet
		if beside {
			xs = p.Beside
		}
		n += len(xs)
		if len(xs) < 20 { // too few for a p99 of the phase
			continue
		}
		p50s = append(p50s, testkit.Percentile(xs, 50))
		p99s = append(p99s, testkit.Percentile(xs, 99))
	}
	if len(p50s) == 0 {
		return fmt.Sprintf("too few samples (n=%d)", n)
	}
	return fmt.Sprintf("median of phases: p50 %s  p99 %s  (%d phases of at least 20, n=%d)", ms(testkit.Median(p50s)), ms(testkit.Median(p99s)), len(p50s), n)
}

// viewConfig is the view.toml that raises the view's limits where cfg needs more than
// their defaults, or "" when it needs none: each simulated agent keeps a connection, as
// a real one does (max_connections, view/README.md "Limits"), and the sites it reports
// must fit max_sites.
func viewConfig(cfg viewload.Config) string {
	var b strings.Builder
	// The reader and the event stream take a connection each; the rest is margin for
	// connections being replaced.
	if need := cfg.Agents + 16; need > edgeview.DefaultMaxConnections {
		fmt.Fprintf(&b, "max_connections = %d\n", need)
	}
	if need := cfg.SitesNeeded(); need > edgeview.DefaultMaxSites {
		fmt.Fprintf(&b, "max_sites = %d\n", need)
	}
	return b.String()
}

// loadAverage is the machine's 1-minute load average, from /proc/loadavg.
// machine is what the report says of the machine at the start and end of the window:
// the 1-minute load average, and from /proc/stat's cpu line the time stolen by the host
// (its eighth value) and all time, in clock ticks (zero where /proc/stat is not).
type machine struct {
	load         string
	steal, total uint64
}

func readMachine() machine {
	m := machine{load: "?"}
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		m.load = f[0]
	}
	b, err = os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	if f := strings.Fields(line); err == nil && len(f) >= 9 && f[0] == "cpu" {
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return machine{load: m.load}
			}
			// guest and guest_nice (the ninth and tenth) are already in user and nice.
			if i < 8 {
				m.total += n
			}
			if i == 7 {
				m.steal = n
			}
		}
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func waitUp(ctx context.Context, base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Get(base + "/api/v1/sites")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the view did not answer " + base + "/api/v1/sites within 10 s")
}

// renice sets the niceness of every thread of this process. Linux keeps a niceness per
// thread, and a thread the Go runtime starts later inherits it from the one that
// starts it; the view, started before, keeps its own.
func renice(nice int) error {
	if nice < 0 || nice > 19 {
		return fmt.Errorf("niceness %d: want 0 to 19", nice)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("setpriority of thread %d: %w", tid, err)
		}
	}
	return nil
}
