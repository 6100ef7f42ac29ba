//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// edgeprobe's round-trip times agree with fping's on the same targets,
// measured at the same time: the median of each within 10% or 50 µs of the other,
// whichever is larger. Both the agent (the engine that runs in production, through its
// JSON lines with results = "all") and fping ping every target 20 times; the agent's
// first two probes per target are left out (the socket opens then).
//
// On loopback an RTT is a few tens of microseconds, so there the 50 µs floor decides; a
// veth pair between namespaces (internal/testnet) adds the bridge and a second network
// stack, where times are somewhat larger. The kernel here has no netem, so no delay is
// added on top.
const (
	fpingCount    = 20
	fpingSkip     = 2 // agent probes per target left out at the start
	fpingInterval = 200 * time.Millisecond
	fpingTimeout  = 30 * time.Second
	fpingRelTol   = 0.10
	fpingAbsTol   = 50 * time.Microsecond
)

// fpingRequire stops the test without root or fping (testkit's skip policy).
func fpingRequire(t *testing.T) {
	t.Helper()
	testkit.RequireRoot(t, "raw ICMP for edgeprobe and fping")
	testkit.LookTool(t, "Debian package fping, scripts/deps/footprint.txt, make deps", "fping")
}

// TestFpingLoopback compares RTTs to eight loopback addresses.
func TestFpingLoopback(t *testing.T) {
	t.Parallel()
	fpingRequire(t)
	var targets []netip.Addr
	for i := 1; i <= 8; i++ {
		targets = append(targets, netip.AddrFrom4([4]byte{127, 0, 201, byte(i)}))
	}
	conf := fpingAgentConfig(t, targets)

	ctx, cancel := context.WithTimeout(context.Background(), fpingTimeout)
	defer cancel()
	agent := exec.Command(binary, "agent", "--config", conf)
	var stderr strings.Builder
	agent.Stderr = &stderr
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	exited, err := testkit.StartPinned(agent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	fping := func() (string, error) {
		cmd := exec.CommandContext(ctx, "fping", fpingArgs(targets)...)
		var e strings.Builder
		cmd.Stderr = &e
		err := cmd.Run()
		return e.String(), err
	}
	fpingCompare(t, ctx, targets, lines, fping, func() string { return stderr.String() })
}

// TestFpingNetns compares RTTs across a veth pair: the agent and fping run on an edge,
// the targets are four addresses of a site namespace.
func TestFpingNetns(t *testing.T) {
	t.Parallel()
	fpingRequire(t)
	n := testnet.New(t, testnet.Spec{Sites: []testnet.SiteSpec{{Name: "a", Hosts: 4}}, Edges: []string{"e0"}})
	var targets []netip.Addr
	for i := 0; i < 4; i++ {
		a, err := n.SiteAddr("a", i)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, a)
	}
	conf := fpingAgentConfig(t, targets)

	ctx, cancel := context.WithTimeout(context.Background(), fpingTimeout)
	defer cancel()
	agent, err := n.Start("e0", binary, "agent", "--config", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Stop() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		for {
			l, err := agent.Next(ctx)
			if err != nil {
				return
			}
			select {
			case lines <- l.Text:
			case <-ctx.Done():
				return
			}
		}
	}()
	fping := func() (string, error) {
		p, err := n.Start("e0", append([]string{"fping"}, fpingArgs(targets)...)...)
		if err != nil {
			return "", err
		}
		select {
		case <-p.Exited():
		case <-ctx.Done():
			p.Stop()
			return p.Stderr(), ctx.Err()
		}
		return p.Stderr(), p.Err()
	}
	fpingCompare(t, ctx, targets, lines, fping, agent.Stderr)
}

// fpingAgentConfig writes an agent config with one site of ICMP targets, probed every
// 200 ms, every result on stdout as JSON.
func fpingAgentConfig(t *testing.T, targets []netip.Addr) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[agent]\nname = \"fping\"\ninterval = %q\nstate_dir = \"\"\n\n[[site]]\nname = \"s\"\n", fpingInterval)
	for _, a := range targets {
		fmt.Fprintf(&b, "  [[site.icmp]]\n  address = %q\n", a)
	}
	b.WriteString("\n[exporters.stdout]\nformat = \"json\"\nresults = \"all\"\n")
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fpingArgs: fpingCount echoes per target, 100 ms apart per target, a 500 ms timeout,
// quiet except the per-packet summary (-C) on standard error.
func fpingArgs(targets []netip.Addr) []string {
	args := []string{"-C", strconv.Itoa(fpingCount), "-p", "100", "-t", "500", "-q"}
	for _, a := range targets {
		args = append(args, a.String())
	}
	return args
}

// parseFping reads fping -C's summary: "ADDR : 0.031 0.036 - ..." in milliseconds, "-"
// for a lost echo.
func fpingParse(out string) (map[netip.Addr][]time.Duration, error) {
	got := map[netip.Addr][]time.Duration{}
	for _, line := range strings.Split(out, "\n") {
		addr, times, ok := strings.Cut(line, " : ")
		if !ok {
			continue
		}
		a, err := netip.ParseAddr(strings.TrimSpace(addr))
		if err != nil {
			return nil, fmt.Errorf("fping line %q: %v", line, err)
		}
		for _, f := range strings.Fields(times) {
			if f == "-" {
				continue
			}
			ms, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return nil, fmt.Errorf("fping line %q: %v", line, err)
			}
			got[a] = append(got[a], time.Duration(ms*float64(time.Millisecond)))
		}
	}
	return got, nil
}

// fpingProbeLine is the part of the stdout exporter's probe line that matters here.
type fpingProbeLine struct {
	Type       string   `json:"type"`
	Target     string   `json:"target"`
	OK         *bool    `json:"ok"`
	RTTSeconds *float64 `json:"rtt_seconds"`
}

// compareWithFping starts fping once the agent's first results arrive, collects
// fpingCount RTTs per target from the agent meanwhile, and compares the medians.
func fpingCompare(t *testing.T, ctx context.Context, targets []netip.Addr, lines <-chan string,
	fping func() (string, error), agentStderr func() string) {
	t.Helper()
	type fpingOut struct {
		text string
		err  error
	}
	fpingDone := make(chan fpingOut, 1)
	started := false
	agent := map[netip.Addr][]time.Duration{}
	seen := map[netip.Addr]int{}
	failed := 0
	complete := func() bool {
		for _, a := range targets {
			if len(agent[a]) < fpingCount {
				return false
			}
		}
		return true
	}
	for !complete() {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
		}
		if !ok {
			t.Fatalf("agent stopped or %v passed before %d RTTs per target (have %v); stderr:\n%s", fpingTimeout, fpingCount, fpingCounts(agent), agentStderr())
		}
		var p fpingProbeLine
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("agent line %q: %v", line, err)
		}
		if p.Type != "probe" {
			continue
		}
		a, err := netip.ParseAddr(strings.TrimPrefix(p.Target, "icmp:"))
		if err != nil || !slices.Contains(targets, a) {
			t.Fatalf("probe line for an unknown target: %s", line)
		}
		if !started {
			started = true
			go func() {
				text, err := fping()
				fpingDone <- fpingOut{text, err}
			}()
		}
		if seen[a]++; seen[a] <= fpingSkip {
			continue
		}
		if p.OK == nil || !*p.OK || p.RTTSeconds == nil {
			failed++
			continue
		}
		if len(agent[a]) < fpingCount {
			agent[a] = append(agent[a], time.Duration(*p.RTTSeconds*float64(time.Second)))
		}
	}
	if failed > len(targets) {
		t.Errorf("agent: %d failed probes to targets that always answer", failed)
	}
	var res fpingOut
	select {
	case res = <-fpingDone:
	case <-ctx.Done():
		t.Fatalf("fping did not end within %v", fpingTimeout)
	}
	// fping exits 1 when some target did not answer every echo; its output still counts.
	if res.err != nil && !fpingIsExit(res.err, 1) {
		t.Fatalf("fping: %v; output:\n%s", res.err, res.text)
	}
	ref, err := fpingParse(res.text)
	if err != nil {
		t.Fatal(err)
	}
	var allAgent, allFping []time.Duration
	for _, a := range targets {
		if len(ref[a]) < fpingCount*3/4 {
			t.Fatalf("fping: %d of %d answers from %s; output:\n%s", len(ref[a]), fpingCount, a, res.text)
		}
		t.Logf("%-15s edgeprobe median %8v (min %8v)   fping median %8v (min %8v)",
			a, testkit.Median(agent[a]), slices.Min(agent[a]), testkit.Median(ref[a]), slices.Min(ref[a]))
		allAgent = append(allAgent, agent[a]...)
		allFping = append(allFping, ref[a]...)
	}
	ep, fp := testkit.Median(allAgent), testkit.Median(allFping)
	tol := max(time.Duration(fpingRelTol*float64(fp)), fpingAbsTol)
	diff := ep - fp
	t.Logf("all targets: edgeprobe median %v over %d probes, fping median %v over %d echoes, difference %v (tolerance %v)",
		ep, len(allAgent), fp, len(allFping), diff, tol)
	if diff > tol || diff < -tol {
		t.Errorf("edgeprobe's median RTT %v differs from fping's %v by %v, more than %v", ep, fp, diff, tol)
	}
}

func fpingCounts(m map[netip.Addr][]time.Duration) map[string]int {
	out := map[string]int{}
	for a, ds := range m {
		out[a.String()] = len(ds)
	}
	return out
}

func fpingIsExit(err error, code int) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == code
}
