// Command viewload plays many edgeprobe agents against a view on loopback and prints the
// view's cost and verdict latency (make bench-view-load). With --view it starts that
// edgeprobe binary's view itself, as a separate process, and reads its CPU time and RSS
// from /proc over the measured window; with --url it pushes to a running view.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/viewload"
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
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "measured window, after a warm-up of 1.5 intervals")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "push interval of every agent")
	fs.IntVar(&cfg.Quorum, "quorum", 2, "the view's quorum: a flip changes a site on this many agents")
	fs.DurationVar(&cfg.FlipEvery, "flip-every", 500*time.Millisecond, "a flip (next site down, or back up) this often")
	fs.DurationVar(&cfg.ReadEvery, "read-every", 0, "read /api/v1/sites, / and /metrics this often during the window (0: never)")
	cpuProfile := fs.String("cpuprofile", "", "with --view: have the view write a CPU profile to `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*viewBin == "") == (cfg.URL == "") {
		fmt.Fprintln(stderr, "viewload: give exactly one of --view BINARY or --url URL")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var view *exec.Cmd
	var viewErr bytes.Buffer
	var before, after testkit.Proc
	if *viewBin != "" {
		addr, err := freePort()
		if err != nil {
			fmt.Fprintln(stderr, "viewload:", err)
			return 1
		}
		viewArgs := []string{"view", "--listen", addr}
		if *cpuProfile != "" {
			viewArgs = append(viewArgs, "--cpuprofile", *cpuProfile)
		}
		view = exec.Command(*viewBin, viewArgs...)
		view.Stderr = &viewErr // the event log (stdout) goes to /dev/null
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
	selfBefore, _ := testkit.ReadProc(os.Getpid())
	res, err := viewload.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "viewload:", err)
		return 1
	}
	selfAfter, _ := testkit.ReadProc(os.Getpid())
	if view != nil {
		// SIGTERM ends the view cleanly, which also writes its CPU profile.
		_ = view.Process.Signal(syscall.SIGTERM)
		if err := view.Wait(); err != nil {
			fmt.Fprintf(stderr, "viewload: the view exited with %v; stderr:\n%s", err, viewErr.String())
		}
	}
	report(stdout, res, before, after, selfAfter.CPU-selfBefore.CPU)
	if res.Errors > 0 || res.Verdicts < res.Flips {
		return 1
	}
	return 0
}

func report(w io.Writer, r *viewload.Result, before, after testkit.Proc, selfCPU time.Duration) {
	fmt.Fprintf(w, "\nview under load: %d agents x %d sites (%d series a push), window %.1f s\n\n",
		r.Agents, r.Sites, r.SeriesPerPush, r.Elapsed.Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	if after.CPU > 0 {
		cpu := after.CPU - before.CPU
		row("view CPU", fmt.Sprintf("%.1f%% of one core (%.2f s user+sys)", 100*cpu.Seconds()/r.Elapsed.Seconds(), cpu.Seconds()))
		row("view RSS", fmt.Sprintf("%.1f MiB at the end, %.1f MiB peak", float64(after.RSS)/(1<<20), float64(after.HWM)/(1<<20)))
	}
	row("load generator CPU", fmt.Sprintf("%.1f%% of one core", 100*selfCPU.Seconds()/r.Elapsed.Seconds()))
	row("pushes", fmt.Sprintf("%d (%.0f/s)", r.Pushes, r.PushesPerSecond))
	errs := fmt.Sprint(r.Errors)
	if r.ErrorSample != "" {
		errs += " (first: " + r.ErrorSample + ")"
	}
	row("errors", errs)
	row("flips / verdicts seen", fmt.Sprintf("%d / %d (unexpected verdict changes: %d)", r.Flips, r.Verdicts, r.Unexpected))
	lat := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(testkit.Percentile(ds, 50)), ms(testkit.Percentile(ds, 99)), ms(testkit.Percentile(ds, 100)), len(ds))
	}
	row("deciding push -> SSE verdict", lat(r.EventLatency))
	for _, path := range []string{"/api/v1/sites", "/", "/metrics"} {
		if ds := r.ReadLatency[path]; len(ds) > 0 {
			row("read "+path, lat(ds))
		}
	}
	row("deciding push -> its response", lat(r.ResponseLatency))
	row("any push -> response (1 in 10)", lat(r.PushLatency))
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

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
