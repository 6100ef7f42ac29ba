package view

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// hookRecorder is a webhook receiver that fails the first failures requests with code.
type hookRecorder struct {
	mu       sync.Mutex
	failures int
	code     int
	attempts int
	got      []WebhookPayload
	arrived  chan struct{}
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts++
	if h.attempts <= h.failures {
		http.Error(w, "try later", h.code)
		return
	}
	var p WebhookPayload
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	h.got = append(h.got, p)
	h.arrived <- struct{}{}
}

func pushSite(t *testing.T, base, state string, agents ...string) {
	t.Helper()
	var pushes []agentPush
	for _, a := range agents {
		pushes = append(pushes, agentPush{agent: a, interval: 1, sites: map[string]string{"pangyo": state}, since: time.Now(), detect: 0.2})
	}
	if code := postWrite(t, base, "", encodePushes(t, pushes...)); code != http.StatusNoContent {
		t.Fatalf("push %s: %d", state, code)
	}
}

func TestWebhook(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		code      int
		delivered bool
		attempts  int
	}{
		{"delivered at once", 0, 0, true, 2},
		{"retried after 500s", 2, http.StatusInternalServerError, true, 4},
		{"retried after 429", 1, http.StatusTooManyRequests, true, 3},
		{"400 is not retried", 1, http.StatusBadRequest, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &hookRecorder{failures: tt.failures, code: tt.code, arrived: make(chan struct{}, 10)}
			hook := httptest.NewServer(rec)
			defer hook.Close()
			cfg := DefaultConfig()
			cfg.Notifiers.Webhook = []WebhookConfig{{URL: hook.URL + "/hook"}}
			base, _ := startView(t, cfg)

			pushSite(t, base, "up", "a", "b")
			pushSite(t, base, "down", "a", "b")
			if !tt.delivered {
				select {
				case <-rec.arrived:
					t.Fatal("delivered although the first answer was 400")
				case <-time.After(300 * time.Millisecond):
				}
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if rec.attempts != tt.attempts {
					t.Errorf("%d attempts, want %d", rec.attempts, tt.attempts)
				}
				eventuallyMetric(t, base, `edgeprobe_view_notifications_total{notifier="webhook",result="failed"} 1`)
				return
			}
			waitArrival(t, rec.arrived)
			pushSite(t, base, "up", "a", "b")
			waitArrival(t, rec.arrived)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.got) != 2 || rec.attempts != tt.attempts {
				t.Fatalf("got %d payloads in %d attempts, want 2 in %d", len(rec.got), rec.attempts, tt.attempts)
			}
			fire, resolve := rec.got[0], rec.got[1]
			if fire.Site != "pangyo" || fire.Status != "firing" || fire.To != "lost" || fire.Down != 2 || fire.DetectSeconds == nil {
				t.Errorf("first payload %+v: want pangyo firing, lost, 2 down, detect set", fire)
			}
			if resolve.Status != "resolved" || resolve.From != "lost" || resolve.To != "up" || !resolve.Time.After(fire.Time) {
				t.Errorf("second payload %+v: want resolved lost -> up after the first", resolve)
			}
		})
	}
}

func waitArrival(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("webhook not called within 5s")
	}
}

// startAlertmanager runs Debian's prometheus-alertmanager on a loopback port with a
// throwaway config and storage, clustering off.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := testkit.LookTool(t, "Debian's prometheus-alertmanager, scripts/deps/view.txt", "prometheus-alertmanager")
	dir := t.TempDir()
	conf := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(conf, []byte("route:\n  receiver: devnull\nreceivers:\n  - name: devnull\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+conf, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	base := "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager on %s not ready within 20s: %v", addr, err)
		}
	}
}

type amListed struct {
	Labels map[string]string `json:"labels"`
	Status struct {
		State string `json:"state"`
	} `json:"status"`
	EndsAt time.Time `json:"endsAt"`
}

func listAlerts(t *testing.T, am string) []amListed {
	t.Helper()
	resp, err := http.Get(am + "/api/v2/alerts?filter=" + url.QueryEscape(fmt.Sprintf("alertname=%q", AlertName)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var alerts []amListed
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatalf("decode alerts: %v", err)
	}
	return alerts
}

func TestAlertmanager(t *testing.T) {
	am := startAlertmanager(t)
	cfg := DefaultConfig()
	cfg.Notifiers.Alertmanager = []AlertmanagerConfig{{URL: am, Resend: Duration{Duration: 400 * time.Millisecond}}}
	base, _ := startView(t, cfg)

	pushSite(t, base, "up", "a", "b")
	lost := time.Now() // the verdict, and so the alert's send, comes after this
	pushSite(t, base, "down", "a", "b")
	var alerts []amListed
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if alerts = listAlerts(t, am); len(alerts) > 0 {
			break
		}
	}
	if len(alerts) != 1 || alerts[0].Labels["site"] != "pangyo" || alerts[0].Status.State != "active" || alerts[0].Labels["severity"] != "critical" {
		t.Fatalf("alerts %+v: want one active EdgeprobeSiteLost for pangyo", alerts)
	}
	// Measured from before the push rather than from now: on a loaded machine the
	// listing may come long after the send, and endsAt is still right.
	firstEnd := alerts[0].EndsAt
	if want := lost.Add(3 * 400 * time.Millisecond).Truncate(time.Millisecond); firstEnd.Before(want) {
		t.Errorf("endsAt %v: want three resend periods (3 x 400ms) after the loss, at least %v", firstEnd, want)
	}
	// The alert is re-sent every resend period, each time with a later endsAt, so that
	// Alertmanager keeps it while the site stays lost.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if alerts = listAlerts(t, am); len(alerts) == 1 && alerts[0].EndsAt.After(firstEnd) {
			break
		}
	}
	if len(alerts) != 1 || !alerts[0].EndsAt.After(firstEnd) {
		t.Fatalf("alerts %+v: want the alert re-sent with an endsAt after %v", alerts, firstEnd)
	}

	pushSite(t, base, "up", "a", "b")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if alerts = listAlerts(t, am); len(alerts) == 0 {
			break
		}
	}
	if len(alerts) != 0 {
		t.Fatalf("alerts %+v after recovery: want the alert resolved", alerts)
	}
	text := metricsText(t, base)
	if !strings.Contains(text, `edgeprobe_view_notifications_total{notifier="alertmanager",result="sent"}`) || strings.Contains(text, `result="failed"`) {
		t.Errorf("notification metrics: want sends and no failures in\n%s", text)
	}
}
