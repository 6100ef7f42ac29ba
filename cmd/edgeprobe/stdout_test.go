package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// stdoutAgentConfig has ten TCP targets probed every 100 ms with every result on stdout:
// about a hundred lines a second, so a stalled reader fills a pipe in a few seconds.
func stdoutAgentConfig(t *testing.T, metrics string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var b strings.Builder
	fmt.Fprintf(&b, "[agent]\nname = \"stdout-test\"\nstate_dir = \"\"\ninterval = \"100ms\"\nconfirm_interval = \"50ms\"\n\n[[site]]\nname = \"lab\"\n")
	for i := range 10 {
		fmt.Fprintf(&b, "  [[site.tcp]]\n  name = \"t%d\"\n  address = %q\n", i, l.Addr().String())
	}
	fmt.Fprintf(&b, "\n[exporters.stdout]\nformat = \"json\"\nresults = \"all\"\n")
	if metrics != "" {
		fmt.Fprintf(&b, "\n[exporters.prometheus]\nlisten = %q\n", metrics)
	}
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startWithPipe starts the agent on config with its stdout a pipe whose read end the
// caller gets, and its stderr collected.
func startWithPipe(t *testing.T, config string) (*exec.Cmd, *os.File, *testkit.Buffer) {
	t.Helper()
	cmd := exec.Command(binary, "agent", "--config", config)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	stderr := &testkit.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return cmd, r, stderr
}

// TestAgentStdoutStalled: nobody reads the agent's stdout for 8 s, far longer than the
// pipe holds. The probes must go on meanwhile (the lines wait in the stdout queue), so
// once the reader comes back every target's results are evenly spaced through the
// stall; an agent that wrote stdout from its scheduler stopped probing until then.
func TestAgentStdoutStalled(t *testing.T) {
	cmd, r, stderr := startWithPipe(t, stdoutAgentConfig(t, ""))
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
	})
	const stall = 8 * time.Second
	time.Sleep(stall)
	stopped := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Read what the agent wrote until it exits (it flushes its queue first).
	last := map[string]time.Time{}
	var gaps []string
	lines, probes := 0, 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines++
		var v struct {
			Type, Target string
			Time         time.Time
		}
		if json.Unmarshal(sc.Bytes(), &v) != nil || v.Type != "probe" || v.Time.After(stopped) {
			continue
		}
		probes++
		if prev, ok := last[v.Target]; ok && v.Time.Sub(prev) > 2*time.Second {
			gaps = append(gaps, fmt.Sprintf("%s: %s to %s", v.Target, prev.Format("15:04:05.000"), v.Time.Format("15:04:05.000")))
		}
		last[v.Target] = v.Time
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent exited with %v after SIGTERM, want status 0\nstderr:\n%s", err, stderr)
	}
	t.Logf("%d lines, %d probe results before SIGTERM, over a stall of %v", lines, probes, stall)
	if len(last) != 10 {
		t.Errorf("results for %d targets, want 10\nstderr:\n%s", len(last), stderr)
	}
	for _, g := range gaps {
		t.Errorf("no result for over 2 s while stdout was not read (interval 100ms): %s", g)
	}
	// At 10 targets every 100 ms the stall holds about 800; half shows probing went on.
	if probes < 400 {
		t.Errorf("%d probe results during %v, want at least 400 (10 targets every 100ms)", probes, stall)
	}
}

// TestAgentStdoutClosed: stdout's reader is gone before the first line. The agent is not
// killed by SIGPIPE; it counts the lines it could not write on /metrics, says so on
// stderr and stops cleanly.
func TestAgentStdoutClosed(t *testing.T) {
	metrics := testkit.FreePort(t, "tcp")
	cmd, r, stderr := startWithPipe(t, stdoutAgentConfig(t, metrics))
	r.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitHTTP(t, "http://"+metrics+"/metrics")
	dropped := regexp.MustCompile(`(?m)^edgeprobe_stdout_lines_dropped_total(?:{[^}]*})? ([0-9]+)`)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m = dropped.FindStringSubmatch(httpGet(t, "http://"+metrics+"/metrics")); m != nil && m[1] != "0" {
			break
		}
	}
	if m == nil || m[1] == "0" {
		t.Errorf("edgeprobe_stdout_lines_dropped_total %v, want the lines that could not be written counted\nstderr:\n%s", m, stderr)
	}
	stopCleanly(t, "agent", cmd, exited, stderr)
	if !strings.Contains(stderr.String(), "stdout exporter: lines dropped") {
		t.Errorf("stderr does not report the dropped lines:\n%s", stderr)
	}
}
