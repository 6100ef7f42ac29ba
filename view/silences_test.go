package view

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adminRequest sends a request with the admin token and returns the status and body.
func adminRequest(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token) // the scheme in any case
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestSilencesAPI: silences need the admin token, mark the site's verdict and keep its
// notifiers quiet; when the silence is lifted while the site is still lost, that is
// notified then; silences set through the API survive a restart.
func TestSilencesAPI(t *testing.T) {
	rec := &hookRecorder{arrived: make(chan struct{}, 10)}
	hook := newHookServer(t, rec)
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = dir
	cfg.AdminTokens = []string{"admin-secret"}
	cfg.Notifiers.Webhook = []WebhookConfig{{URL: hook + "/hook"}}
	base, _ := startView(t, cfg)

	if code, _ := adminRequest(t, http.MethodPost, base+"/api/v1/silences", "", `{"site":"pangyo","duration":"1h"}`); code != http.StatusUnauthorized {
		t.Fatalf("silence without a token: %d, want 401", code)
	}
	if code, _ := adminRequest(t, http.MethodPost, base+"/api/v1/silences", "wrong", `{"site":"pangyo","duration":"1h"}`); code != http.StatusUnauthorized {
		t.Fatalf("silence with a wrong token: %d, want 401", code)
	}
	for _, bad := range []string{`{"site":""}`, `{"site":"p","duration":"-1h"}`, `{"site":"p"}`, `{"site":"p","duration":"1h","bogus":1}`,
		`{"site":"p","end":"2001-01-01T00:00:00Z"}`, `{"site":"p","duration":"9000h"}`, `not json`} {
		if code, body := adminRequest(t, http.MethodPost, base+"/api/v1/silences", "admin-secret", bad); code != http.StatusBadRequest {
			t.Errorf("silence %s: %d %s, want 400", bad, code, body)
		}
	}
	code, body := adminRequest(t, http.MethodPost, base+"/api/v1/silences", "admin-secret", `{"site":"pangyo","duration":"1h","comment":"power work"}`)
	if code != http.StatusCreated {
		t.Fatalf("silence: %d %s", code, body)
	}
	var sl Silence
	if err := json.Unmarshal([]byte(body), &sl); err != nil || sl.ID == "" || sl.Site != "pangyo" || sl.Source != "api" {
		t.Fatalf("silence answer %q: %+v, %v", body, sl, err)
	}

	pushSite(t, base, "up", "a", "b")
	pushSite(t, base, "down", "a", "b")
	site := getSites(t, base).Sites[0]
	if site.State != VerdictLost || !site.Silenced {
		t.Fatalf("site %+v: want lost and silenced", site)
	}
	select {
	case <-rec.arrived:
		t.Fatal("a silenced site's loss was notified")
	case <-time.After(300 * time.Millisecond):
	}

	// A restart keeps the silence.
	cfg2 := DefaultConfig()
	cfg2.StateDir = dir
	restarted, _ := startView(t, cfg2)
	var list struct{ Silences []Silence }
	resp, err := http.Get(restarted + "/api/v1/silences")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Silences) != 1 || list.Silences[0].ID != sl.ID || list.Silences[0].Comment != "power work" {
		t.Fatalf("silences after a restart: %+v, want the one set", list.Silences)
	}

	// Lifted while pangyo is still lost: the loss is notified now.
	if code, _ := adminRequest(t, http.MethodDelete, base+"/api/v1/silences/"+sl.ID, "admin-secret", ""); code != http.StatusOK {
		t.Fatalf("delete silence: %d", code)
	}
	waitArrival(t, rec.arrived)
	rec.mu.Lock()
	got := rec.got
	rec.mu.Unlock()
	if len(got) != 1 || got[0].Status != "firing" || got[0].Alert != "lost" {
		t.Fatalf("after the silence: %+v, want one firing lost", got)
	}
	if code, _ := adminRequest(t, http.MethodDelete, base+"/api/v1/silences/"+sl.ID, "admin-secret", ""); code != http.StatusNotFound {
		t.Errorf("delete it again: %d, want 404", code)
	}
	if data, err := os.ReadFile(filepath.Join(dir, silencesFile)); err != nil || strings.Contains(string(data), sl.ID) {
		t.Errorf("silences file after the delete: %q, %v", data, err)
	}
}

// TestSilencesNeedAdminTokens: without admin_tokens the admin API is off.
func TestSilencesNeedAdminTokens(t *testing.T) {
	base, _ := startView(t, DefaultConfig())
	if code, body := adminRequest(t, http.MethodPost, base+"/api/v1/silences", "anything", `{"site":"p","duration":"1h"}`); code != http.StatusForbidden || !strings.Contains(body, "admin_tokens") {
		t.Fatalf("silence on a view without admin tokens: %d %q, want 403 naming admin_tokens", code, body)
	}
}

// TestSilenceFromConfig: a [[silence]] of view.toml starts and ends by itself; a loss
// during it is notified when it ends.
func TestSilenceFromConfig(t *testing.T) {
	rec := &hookRecorder{arrived: make(chan struct{}, 10)}
	hook := newHookServer(t, rec)
	cfg := DefaultConfig()
	cfg.Silences = []SilenceConfig{{Site: "pangyo", End: time.Now().Add(700 * time.Millisecond), Comment: "window"}}
	cfg.Notifiers.Webhook = []WebhookConfig{{URL: hook + "/hook"}}
	base, _ := startView(t, cfg)
	pushSite(t, base, "up", "a", "b")
	pushSite(t, base, "down", "a", "b")
	if s := getSites(t, base).Sites[0]; !s.Silenced {
		t.Fatalf("site %+v: want silenced by the config", s)
	}
	start := time.Now()
	waitArrival(t, rec.arrived)
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("notified %v after the loss, before the silence ended", waited)
	}
	if s := getSites(t, base).Sites[0]; s.Silenced {
		t.Errorf("site %+v: still silenced after the end", s)
	}
}

// TestParseSilence: what the API accepts, and the error for what it does not.
func TestParseSilence(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sl, err := parseSilence([]byte(`{"site":"s","start":"2026-12-01T13:00:00Z","duration":"30m","comment":"c"}`), now)
	if err != nil || !sl.Start.Equal(now.Add(time.Hour)) || !sl.End.Equal(now.Add(90*time.Minute)) || sl.Source != "api" {
		t.Fatalf("parseSilence = %+v, %v", sl, err)
	}
	for body, want := range map[string]string{
		`{"site":"s","end":"2026-12-01T13:00:00Z","duration":"1h"}`:   "give one of the two",
		`{"site":"s","duration":"5"}`:                                 "bare number",
		`{"site":"s","duration":"1h"} {}`:                             "more than one",
		`{"site":"` + strings.Repeat("x", 300) + `","duration":"1h"}`: "longer than 256",
	} {
		if _, err := parseSilence([]byte(body), now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseSilence(%.40s) = %v, want an error with %q", body, err, want)
		}
	}
}

// FuzzSilence: no body makes the parser panic, and what it accepts is a silence that
// ends after it starts, within the longest allowed.
func FuzzSilence(f *testing.F) {
	for _, seed := range []string{`{"site":"s","duration":"1h"}`, `{"site":"s","end":"2030-01-01T00:00:00Z","comment":"x"}`,
		`{"site":"s","start":"2026-12-01T13:00:00Z","duration":"30m"}`, `{}`, `[]`, `{"site":1}`, `{"duration":"1e9h"}`} {
		f.Add([]byte(seed))
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		sl, err := parseSilence(body, now)
		if err != nil {
			return
		}
		if sl.Site == "" || !sl.End.After(sl.Start) || !sl.End.After(now) || sl.End.Sub(sl.Start) > maxSilenceLength {
			t.Fatalf("accepted %+v", sl)
		}
	})
}
