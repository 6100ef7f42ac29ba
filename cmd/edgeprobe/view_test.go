package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/viewattack"
)

// TestViewRefusesOpenListen: a view asked to listen beyond loopback without tokens exits
// with status 2 and names the address and both ways out, before it binds anything.
func TestViewRefusesOpenListen(t *testing.T) {
	r := runBinary(t, 10*time.Second, "view", "--listen", "0.0.0.0:0")
	if r.status != 2 {
		t.Fatalf("status %d, want 2; stderr:\n%s", r.status, r.stderr)
	}
	for _, want := range []string{"0.0.0.0:0", "tokens or agent_tokens", "--allow-unauthenticated"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, r.stderr)
		}
	}
}

// TestViewSurvivesClosedStdout: the event log's reader goes away (a pipe closed at its
// far end); the view is not killed by SIGPIPE but goes on deciding, counts the lines it
// could not write and still stops cleanly on SIGTERM.
func TestViewSurvivesClosedStdout(t *testing.T) {
	addr := testkit.FreePort(t, "tcp")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "view", "--listen", addr)
	cmd.Stdout = w
	var stderr testkit.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r.Close() // the reader is gone before the first verdict
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	base := "http://" + addr
	waitHTTP(t, base+"/api/v1/sites")
	push := func(agent, state string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(viewattack.EncodePush(agent, 1, map[string]string{"pangyo": state})))
		viewattack.PushHeaders(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("push %s %s: %v\nstderr:\n%s", agent, state, err, &stderr)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push %s %s: %d", agent, state, resp.StatusCode)
		}
	}
	for _, st := range []string{"up", "down"} {
		push("edge1", st)
		push("edge2", st)
		time.Sleep(100 * time.Millisecond) // the event log tries to write each change
	}
	body := httpGet(t, base+"/api/v1/sites")
	if !strings.Contains(body, `"name":"pangyo","state":"lost"`) {
		t.Errorf("sites %s, want pangyo lost", body)
	}
	if m := regexp.MustCompile(`(?m)^edgeprobe_view_log_dropped_total ([0-9]+)`).FindStringSubmatch(httpGet(t, base+"/metrics")); m == nil || m[1] == "0" {
		t.Errorf("edgeprobe_view_log_dropped_total %v, want the lines that could not be written counted", m)
	}
	stopCleanly(t, "view", cmd, exited, &stderr)
	if !strings.Contains(stderr.String(), "event log: lines dropped") {
		t.Errorf("stderr does not report the dropped lines:\n%s", &stderr)
	}
}

// stopCleanly sends cmd SIGTERM and wants it to exit with status 0 within 10 s; exited
// delivers cmd.Wait's result.
func stopCleanly(t *testing.T, what string, cmd *exec.Cmd, exited <-chan error, stderr fmt.Stringer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("%s exited with %v, want status 0 after SIGTERM\nstderr:\n%s", what, err, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10 s after SIGTERM", what)
	}
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s did not answer within 10 s", url)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
