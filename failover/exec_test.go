package failover

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func writeScript(tb testing.TB, body string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "runbook.sh")
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

func execConfig(tb testing.TB, script, extra string) *Config {
	return mustParse(tb, `
[actions]
[[actions.exec]]
site = "dca"
command = ["`+script+`", "failover", "--now"]
`+extra)
}

// TestRunbook: a runbook gets the verdict in its environment and as JSON on stdin; its
// status and output go to the audit log.
func TestRunbook(t *testing.T) {
	out := t.TempDir()
	script := writeScript(t, `#!/bin/sh
env | grep '^EDGEPROBE_' | sort > `+out+`/env
cat > `+out+`/stdin
echo "args: $*"
echo "to stderr" >&2
`)
	c, alerts := newController(t, execConfig(t, script, `on = ["failover", "failback"]`))
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v := verdict("lost", t0)
	detect := 0.42
	v.DetectSeconds = &detect
	v.Since = t0.Add(-time.Second)
	c.Update("dca", v)
	c.idle()
	env, _ := os.ReadFile(filepath.Join(out, "env"))
	for _, want := range []string{"EDGEPROBE_SITE=dca", "EDGEPROBE_ACTION=failover", "EDGEPROBE_VERDICT=lost",
		"EDGEPROBE_SINCE=2026-12-01T11:59:59Z", "EDGEPROBE_WITNESSES=3", "EDGEPROBE_DOWN=3", "EDGEPROBE_DETECT_SECONDS=0.42",
		"EDGEPROBE_WHO=controller"} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	var in RunbookInput
	data, _ := os.ReadFile(filepath.Join(out, "stdin"))
	if err := json.Unmarshal(data, &in); err != nil || in.Site != "dca" || in.Action != ActionFailover || in.Verdict != "lost" ||
		in.Witnesses != 3 || in.Down != 3 || in.DetectSeconds == nil || *in.DetectSeconds != 0.42 || !in.Since.Equal(v.Since) {
		t.Fatalf("stdin %s (%v)", data, err)
	}
	r := c.Audit(1)[0]
	if r.Decision != DecisionFailover || r.Exec == nil || r.Exec.Exit != 0 ||
		!strings.Contains(r.Exec.Output, "args: failover --now") || !strings.Contains(r.Exec.Output, "to stderr") {
		t.Fatalf("record %+v %+v", r, r.Exec)
	}
	if s := siteState(c, "dca"); s != StateFailedOver {
		t.Fatalf("state %s", s)
	}
	if err := c.Failback("dca", "alice"); err != nil {
		t.Fatal(err)
	}
	c.idle()
	if env, _ := os.ReadFile(filepath.Join(out, "env")); !strings.Contains(string(env), "EDGEPROBE_ACTION=failback\n") ||
		!strings.Contains(string(env), "EDGEPROBE_WHO=alice\n") {
		t.Fatalf("failback environment:\n%s", env)
	}
	if len(alerts.kinds()) != 0 {
		t.Errorf("alerts %v", alerts.kinds())
	}
}

// TestRunbookTimeout: a runbook over its timeout is killed with its whole process
// group; the audit says so, and an alert goes out.
func TestRunbookTimeout(t *testing.T) {
	out := t.TempDir()
	script := writeScript(t, `#!/bin/sh
sleep 60 &
echo $! > `+out+`/child
echo started
sleep 60
`)
	c, alerts := newController(t, execConfig(t, script, `timeout = "300ms"`))
	start := time.Now()
	c.Update("dca", verdict("lost", time.Now()))
	c.idle()
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the runbook ran %s despite its timeout", took)
	}
	r := c.Audit(1)[0]
	if r.Decision != DecisionError || r.Exec == nil || !r.Exec.TimedOut || r.Exec.Exit != -1 ||
		!strings.Contains(r.Error, "timeout") || !strings.Contains(r.Exec.Output, "started") {
		t.Fatalf("record %+v %+v", r, r.Exec)
	}
	if !slices.Equal(alerts.kinds(), []string{AlertError}) {
		t.Fatalf("alerts %v", alerts.kinds())
	}
	data, _ := os.ReadFile(filepath.Join(out, "child"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("child pid %q", data)
	}
	waitFor(t, "the runbook's child to be killed", func() bool { return !processAlive(pid) })
}

// processAlive says whether pid runs (a zombie, killed and not yet reaped, does not).
func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestRunbookFails: a non-zero exit is an error, alerted; the output is bounded.
func TestRunbookFails(t *testing.T) {
	script := writeScript(t, `#!/bin/sh
head -c 10000 /dev/zero | tr '\0' 'y'
exit 3
`)
	c, alerts := newController(t, execConfig(t, script, ""))
	c.Update("dca", verdict("lost", time.Now()))
	c.idle()
	r := c.Audit(1)[0]
	if r.Decision != DecisionError || r.Exec.Exit != 3 || !strings.Contains(r.Error, "status 3") {
		t.Fatalf("record %+v %+v", r, r.Exec)
	}
	kept, _, _ := strings.Cut(r.Exec.Output, "\n")
	if n := strings.Count(kept, "y"); n != MaxOutputBytes || !strings.Contains(r.Exec.Output, "5904 more bytes") {
		t.Fatalf("output of %d bytes (%d y), want the first %d and a note", len(r.Exec.Output), n, MaxOutputBytes)
	}
	if !slices.Equal(alerts.kinds(), []string{AlertError}) {
		t.Fatalf("alerts %v", alerts.kinds())
	}
	// Runbooks are not retried: the failover is done, with its error on record.
	if s := siteState(c, "dca"); s != StateFailedOver {
		t.Fatalf("state %s", s)
	}
}
