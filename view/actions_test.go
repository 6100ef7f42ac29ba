package view

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// The view's wiring of the failover (docs/architecture.md, "Failover"; view/actions.go): its
// verdicts reach the controller, the API sits behind read and admin tokens, its metrics
// are on /metrics, its alerts reach the notifiers. The actions are runbooks here, so no
// name server is needed; the DNS actions are tested against BIND in failover/ and end to
// end in e2e/failover_test.go.

const (
	actionsRead  = "read-token"
	actionsAdmin = "admin-token"
)

// actionsView starts a view whose [actions] run script (a shell script body) for site
// pangyo's failover, with a webhook to hook; it returns the view's URL, the file the
// runbook appends its environment to, and the view's log.
func actionsView(t *testing.T, exit int, hook string) (base, ran string, log *testkit.Buffer) {
	t.Helper()
	dir := t.TempDir()
	ran = filepath.Join(dir, "ran")
	script := filepath.Join(dir, "runbook")
	body := fmt.Sprintf("#!/bin/sh\necho \"$EDGEPROBE_SITE $EDGEPROBE_ACTION $EDGEPROBE_VERDICT $EDGEPROBE_WHO\" >> %q\nexit %d\n", ran, exit)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`state_dir = "state"
read_tokens = [%q]
admin_tokens = [%q]

[[notifiers.webhook]]
url = %q

[[actions.exec]]
site = "pangyo"
command = ["runbook"]
timeout = "10s"
`, actionsRead, actionsAdmin, hook)
	cfg, err := ParseConfig([]byte(text), filepath.Join(dir, "view.toml"))
	if err != nil {
		t.Fatal(err)
	}
	log = &testkit.Buffer{}
	base, _ = startViewWith(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
	return base, ran, log
}

// alertHook records the alert field of every webhook body.
type alertHook struct {
	mu     sync.Mutex
	alerts []string
}

func (h *alertHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p struct{ Site, Status, Alert string }
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.alerts = append(h.alerts, p.Site+" "+p.Status+" "+p.Alert)
	h.mu.Unlock()
}

func (h *alertHook) count(want string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.alerts {
		if a == want {
			n++
		}
	}
	return n
}

func request(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestActionsWiring: a lost verdict reaches the controller, which runs the site's
// runbook once with the verdict in its environment; the status reads with a read token,
// the hold needs an admin token; /metrics counts the step.
func TestActionsWiring(t *testing.T) {
	hook := &alertHook{}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	base, ran, _ := actionsView(t, 0, srv.URL)

	if code, _ := request(t, http.MethodGet, base+failover.PathStatus, "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET %s without a token: %d, want 401", failover.PathStatus, code)
	}
	pushSite(t, base, "up", "a1", "a2")
	pushSite(t, base, "down", "a1", "a2")
	waitFor(t, 10*time.Second, "the runbook to run", func() bool {
		b, _ := os.ReadFile(ran)
		return len(b) > 0
	})
	status := func() failover.Status {
		t.Helper()
		code, body := request(t, http.MethodGet, base+failover.PathStatus, actionsRead, "")
		var st failover.Status
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || len(st.Sites) != 1 {
			t.Fatalf("GET %s with the read token: %d %s", failover.PathStatus, code, body)
		}
		return st
	}
	waitFor(t, 10*time.Second, "pangyo failed over", func() bool { return status().Sites[0].State == failover.StateFailedOver })
	if b, _ := os.ReadFile(ran); string(b) != "pangyo failover lost controller\n" {
		t.Errorf("the runbook ran with %q, want once for pangyo's failover on lost", b)
	}
	if st := status().Sites[0]; st.Verdict != VerdictLost || !st.Lost || len(st.Last) != 1 || st.Last[0].Decision != failover.DecisionFailover {
		t.Errorf("pangyo's failover status: %+v", st)
	}
	if code, _ := request(t, http.MethodGet, base+failover.PathAudit+"?limit=10", actionsRead, ""); code != http.StatusOK {
		t.Errorf("GET %s with the read token: %d", failover.PathAudit, code)
	}
	if code, _ := request(t, http.MethodPost, base+failover.PathHold, actionsRead, `{"reason":"test"}`); code != http.StatusUnauthorized {
		t.Errorf("POST %s with a read token: %d, want 401", failover.PathHold, code)
	}
	if code, body := request(t, http.MethodPost, base+failover.PathHold, actionsAdmin, `{"reason":"test"}`); code != http.StatusOK || status().Hold == nil {
		t.Errorf("POST %s with the admin token: %d %s", failover.PathHold, code, body)
	}
	// /metrics is a read too: it needs the read token.
	_, metrics := request(t, http.MethodGet, base+"/metrics", actionsRead, "")
	wantMetric(t, metrics, `edgeprobe_view_actions_total{action="failover",result="ok"} 1`)
	wantMetric(t, metrics, `edgeprobe_view_actions_total{action="hold",result="ok"} 1`)
	wantMetric(t, metrics, `edgeprobe_view_failover_hold 1`)
	wantMetric(t, metrics, `edgeprobe_view_failover_sites{state="failed_over"} 1`)
	if n := hook.count("pangyo firing failover_error"); n != 0 {
		t.Errorf("a runbook that succeeded was alerted: %v", hook.alerts)
	}
}

// TestActionsAlertOnce: a failed runbook is an alert: the webhook gets it once, and the
// view's log has it once (the controller logs what it raises; the view must not again).
func TestActionsAlertOnce(t *testing.T) {
	hook := &alertHook{}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	base, ran, log := actionsView(t, 3, srv.URL)
	pushSite(t, base, "up", "a1", "a2")
	pushSite(t, base, "down", "a1", "a2")
	waitFor(t, 10*time.Second, "the failover_error alert at the webhook", func() bool { return hook.count("pangyo firing failover_error") > 0 })
	time.Sleep(200 * time.Millisecond) // a second delivery, were there one
	if n := hook.count("pangyo firing failover_error"); n != 1 {
		t.Errorf("failover_error delivered %d times, want once: %v", n, hook.alerts)
	}
	if b, _ := os.ReadFile(ran); strings.Count(string(b), "\n") != 1 {
		t.Errorf("the runbook ran %q, want once (runbooks are not retried)", b)
	}
	if n := strings.Count(log.String(), `msg="failover alert"`); n != 1 {
		t.Errorf("the view logged the alert %d times, want once:\n%s", n, log)
	}
}
