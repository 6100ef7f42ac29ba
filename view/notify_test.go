package view

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// newHookServer serves rec on loopback until the test ends and returns its URL.
func newHookServer(t *testing.T, rec *hookRecorder) string {
	t.Helper()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return srv.URL
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
	case <-time.After(15 * time.Second): // a hang, not a slow machine
		t.Fatal("webhook not called within 15s")
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
	resp, err := http.Get(am + "/api/v2/alerts?filter=" + url.QueryEscape(fmt.Sprintf("alertname=%q", AlertLost)))
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

// TestWebhookDamping: with lost_for, a loss shorter than it notifies nothing and one that
// lasts notifies once; with recover_for, a site flapping back and forth is one alert and
// one resolution.
func TestWebhookDamping(t *testing.T) {
	rec := &hookRecorder{arrived: make(chan struct{}, 100)}
	hook := newHookServer(t, rec)
	cfg := DefaultConfig()
	cfg.Notifiers.Webhook = []WebhookConfig{{URL: hook + "/hook",
		// Margins a loaded machine keeps: spells of 100 ms against 2 s and 3 s.
		Damping: Damping{LostFor: Duration{Duration: 2 * time.Second}, RecoverFor: Duration{Duration: 3 * time.Second}}}}
	base, _ := startView(t, cfg)
	pushSite(t, base, "up", "a", "b")
	// Dark for about 100 ms, five times: each spell is shorter than lost_for.
	for range 5 {
		pushSite(t, base, "down", "a", "b")
		time.Sleep(100 * time.Millisecond)
		pushSite(t, base, "up", "a", "b")
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-rec.arrived:
		t.Fatal("a loss shorter than lost_for was notified")
	case <-time.After(2500 * time.Millisecond):
	}
	// A loss that lasts, with short ups in it: one alert.
	pushSite(t, base, "down", "a", "b")
	select {
	case <-rec.arrived:
	case <-time.After(15 * time.Second):
		t.Fatalf("the lasting loss was not notified within 15s; sites %+v\n%s", getSites(t, base), metricsText(t, base))
	}
	for range 3 {
		pushSite(t, base, "up", "a", "b")
		time.Sleep(50 * time.Millisecond)
		pushSite(t, base, "down", "a", "b")
		time.Sleep(50 * time.Millisecond)
	}
	// Up from now on, the agents pushing every half second (they would turn stale, and
	// the site unknown, after 3 s without a push: unknown keeps a loss firing).
	resolved := false
	for deadline := time.Now().Add(15 * time.Second); !resolved && time.Now().Before(deadline); {
		pushSite(t, base, "up", "a", "b")
		select {
		case <-rec.arrived:
			resolved = true
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !resolved {
		t.Fatal("the recovery was not notified within 15s")
	}
	select {
	case <-rec.arrived:
		t.Fatal("more than one alert and one resolution")
	case <-time.After(300 * time.Millisecond):
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 2 || rec.got[0].Status != "firing" || rec.got[1].Status != "resolved" || rec.got[1].Verdict != "up" {
		t.Fatalf("payloads %+v: want firing then resolved (up)", rec.got)
	}
}

// TestWebhookSignature: a webhook with a secret signs every body; the signature is the
// HMAC-SHA256 of the timestamp, a dot and the body.
func TestWebhookSignature(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan bool, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get(TimestampHeader)
		got <- ts != "" && r.Header.Get(SignatureHeader) == Sign([]byte("s3cret"), ts, body)
	}))
	defer hook.Close()
	cfg := DefaultConfig()
	cfg.Notifiers.Webhook = []WebhookConfig{{URL: hook.URL, SecretFile: secret}}
	base, _ := startView(t, cfg)
	pushSite(t, base, "up", "a", "b")
	pushSite(t, base, "down", "a", "b")
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("the webhook's signature does not verify")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook call")
	}
}

// TestWebhookPartitioned: a partitioned site is a warning of its own, and a partition that
// turns into a loss ends it and starts the loss.
func TestWebhookPartitioned(t *testing.T) {
	rec := &hookRecorder{arrived: make(chan struct{}, 10)}
	hook := newHookServer(t, rec)
	cfg := DefaultConfig()
	cfg.Notifiers.Webhook = []WebhookConfig{{URL: hook + "/hook"}}
	base, _ := startView(t, cfg)
	pushSite(t, base, "up", "a", "b", "c")
	pushSite(t, base, "down", "a", "b") // c still sees it up: partitioned
	waitArrival(t, rec.arrived)
	pushSite(t, base, "down", "c")
	waitArrival(t, rec.arrived)
	waitArrival(t, rec.arrived)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"firing partitioned", "resolved partitioned", "firing lost"}
	if len(rec.got) != len(want) {
		t.Fatalf("payloads %+v, want %v", rec.got, want)
	}
	for i, p := range rec.got {
		if p.Status+" "+p.Alert != want[i] {
			t.Errorf("payload %d: %s %s, want %s", i, p.Status, p.Alert, want[i])
		}
	}
}

// amRecorder is an Alertmanager API v2 receiver that refuses requests until ready, and
// keeps the last alert it was sent per alertname and site.
type amRecorder struct {
	mu      sync.Mutex
	ready   bool
	last    map[string]amAlert
	lastReq time.Time // when the last request arrived, refused or not
}

func (a *amRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastReq = time.Now()
	if !a.ready {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	var alerts []amAlert
	if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, al := range alerts {
		a.last[al.Labels["alertname"]+"/"+al.Labels["site"]] = al
	}
}

// TestAlertmanagerReconciles: while Alertmanager refuses everything, many sites go lost
// and come back; once it answers, what it was last told of every site is that its alert
// ended: no recovered site is left firing, on no resend.
func TestAlertmanagerReconciles(t *testing.T) {
	am := &amRecorder{last: map[string]amAlert{}}
	srv := httptest.NewServer(am)
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.PushRate, cfg.PushBurst = 1e6, 1e6
	cfg.Notifiers.Alertmanager = []AlertmanagerConfig{{URL: srv.URL, Resend: Duration{Duration: 200 * time.Millisecond}, MaxRetries: 1}}
	base, _ := startView(t, cfg)
	const sites = 300
	push := func(state string) {
		var pushes []agentPush
		for _, a := range []string{"a", "b"} {
			p := agentPush{agent: a, interval: 1, sites: map[string]string{}}
			for i := range sites {
				p.sites[fmt.Sprintf("s%03d", i)] = state
			}
			pushes = append(pushes, p)
		}
		if code := postWrite(t, base, "", encodePushes(t, pushes...)); code != http.StatusNoContent {
			t.Fatalf("push %s: %d", state, code)
		}
	}
	push("up")
	push("down")
	time.Sleep(300 * time.Millisecond)
	push("up")
	am.mu.Lock()
	am.ready = true
	readyAt := time.Now()
	am.mu.Unlock()
	// Settled: every alert Alertmanager knows has ended, and the view has sent nothing for
	// longer than its retries wait (RetryBase 500ms with jitter), so no firing alert built
	// before the recovery is still on its way. Until then a delivery of the lost verdicts
	// may be under way, one site after another, with the resolutions behind it.
	const quiet = 2 * time.Second
	waitFor(t, 20*time.Second, "Alertmanager to hear that every alert ended, then nothing more", func() bool {
		am.mu.Lock()
		defer am.mu.Unlock()
		if time.Since(readyAt) < quiet || time.Since(am.lastReq) < quiet {
			return false
		}
		for _, al := range am.last {
			if al.EndsAt.After(time.Now()) {
				return false
			}
		}
		return true
	})
	// A few resends later, nothing fires again.
	time.Sleep(600 * time.Millisecond)
	am.mu.Lock()
	defer am.mu.Unlock()
	for key, al := range am.last {
		if al.EndsAt.After(time.Now()) {
			t.Errorf("%s re-sent as firing (endsAt %v) after its site recovered", key, al.EndsAt)
		}
	}
}
