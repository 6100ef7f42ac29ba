package view

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// startView runs a view on httptest with its staleness loop; everything stops with t.
func startView(t *testing.T, cfg *Config) (base string, events *testkit.Buffer) {
	t.Helper()
	return startViewWith(t, cfg, Options{})
}

// startViewWith is startView with options; the event log and short keep-alives and
// retries are always the test's.
func startViewWith(t *testing.T, cfg *Config, opts Options) (base string, events *testkit.Buffer) {
	t.Helper()
	cfg.Defaults()
	events = &testkit.Buffer{}
	opts.Events, opts.KeepAlive, opts.RetryBase = events, 50*time.Millisecond, 20*time.Millisecond
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		cancel()
		<-done
		ts.Close()
	})
	return ts.URL, events
}

type sitesDoc struct {
	Sites []SiteView `json:"sites"`
}

func getSites(t *testing.T, base string) sitesDoc {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/sites")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc sitesDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode /api/v1/sites: %v", err)
	}
	return doc
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func wantMetric(t *testing.T, text, line string) {
	t.Helper()
	if !hasLine(text, line) {
		t.Errorf("/metrics lacks %q", line)
	}
}

// eventuallyMetric waits for a counter that a background goroutine (a notifier) updates.
func eventuallyMetric(t *testing.T, base, line string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if hasLine(metricsText(t, base), line) {
			return
		}
	}
	t.Errorf("/metrics lacks %q after 5s", line)
}

// TestSitesAPIShape checks the API contract (view/README.md) key by key, since tests outside the
// project parse it.
func TestSitesAPIShape(t *testing.T) {
	base, events := startView(t, DefaultConfig())
	since := time.Now().Add(-time.Second)
	body := encodePushes(t,
		agentPush{agent: "edge1", interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up"}, since: since, detect: 0.3},
		agentPush{agent: "edge2", interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up"}, since: since, detect: 0.3},
		agentPush{agent: "edge3", interval: 1, isolated: true, sites: map[string]string{"pangyo": "down", "seoul": "down"}},
	)
	if code := postWrite(t, base, "", body); code != http.StatusNoContent {
		t.Fatalf("push: status %d, want 204", code)
	}
	resp, err := http.Get(base + "/api/v1/sites")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var doc map[string][]map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode: %v", err)
	}
	sites := doc["sites"]
	if len(doc) != 1 || len(sites) != 2 {
		t.Fatalf("document %v: want exactly {\"sites\": [2 sites]}", doc)
	}
	allowedSite := map[string]bool{"name": true, "state": true, "since": true, "witnesses": true, "down": true, "up": true,
		"agents": true, "silenced": true, "detect_seconds": false}
	for _, s := range sites {
		for k := range s {
			if _, ok := allowedSite[k]; !ok {
				t.Errorf("site has unexpected key %q", k)
			}
		}
		for k, required := range allowedSite {
			if _, ok := s[k]; required && !ok {
				t.Errorf("site %v lacks %q", s["name"], k)
			}
		}
		if _, err := time.Parse(time.RFC3339, s["since"].(string)); err != nil {
			t.Errorf("since %q is not RFC 3339: %v", s["since"], err)
		}
		for _, a := range s["agents"].([]any) {
			am := a.(map[string]any)
			if len(am) != 3 || am["name"] == nil || am["state"] == nil || am["isolated"] == nil {
				t.Errorf("agent entry %v: want exactly name, state, isolated", am)
			}
		}
	}
	p, s := sites[0], sites[1]
	if p["name"] != "pangyo" || p["state"] != "lost" || p["witnesses"] != 2.0 || p["down"] != 2.0 {
		t.Errorf("first site %v: want pangyo lost with 2 witnesses, 2 down", p)
	}
	if s["name"] != "seoul" || s["state"] != "up" || s["witnesses"] != 2.0 || s["down"] != 0.0 {
		t.Errorf("second site %v: want seoul up with 2 witnesses (edge3 is isolated)", s)
	}
	agents := p["agents"].([]any)
	if e3 := agents[2].(map[string]any); e3["name"] != "edge3" || e3["isolated"] != true || e3["state"] != "down" {
		t.Errorf("third agent of pangyo %v: want edge3, down, isolated", e3)
	}
	if d, ok := p["detect_seconds"].(float64); !ok || d < 1 || d > 30 {
		t.Errorf("pangyo detect_seconds %v: want about 1.3 s (failure began 1.3 s before the push)", p["detect_seconds"])
	}
	// The event log is written by its own goroutine (eventlog.go): wait for the line.
	var line map[string]any
	for deadline := time.Now().Add(2 * time.Second); line == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, l := range strings.Split(strings.TrimSpace(events.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["site"] == "pangyo" {
				line = m
			}
		}
	}
	if line == nil || line["to"] != "lost" || line["from"] != "unknown" || line["msg"] != "verdict" {
		t.Errorf("event log %q: want a JSON line for pangyo unknown -> lost", events.String())
	}
}

func TestWriteRejected(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 2048
	base, _ := startView(t, cfg)
	good := encodePushes(t,
		agentPush{agent: "a", sites: map[string]string{"pangyo": "up"}},
		agentPush{agent: "b", sites: map[string]string{"pangyo": "up"}})
	if code := postWrite(t, base, "", good); code != http.StatusNoContent {
		t.Fatalf("good push: %d", code)
	}
	half := encodeWrite(t, append(agentPush{agent: "a", sites: map[string]string{"pangyo": "down"}}.series(),
		agentPush{agent: "b", sites: map[string]string{"pangyo": "down"}}.series()...)...)
	noAgent := encodeWrite(t, append(agentPush{agent: "a", sites: map[string]string{"pangyo": "down"}}.series(),
		series(contract.MetricSiteState, 1, time.Now(), "site", "pangyo", "state", "down"))...)
	tests := []struct {
		name        string
		contentType string
		body        []byte
		want        int
		reason      string
		msg         string
	}{
		{"garbage", "application/x-protobuf", []byte("\xffhello"), 400, "bad_snappy", "decode snappy block"},
		{"half good, one series without agent", "application/x-protobuf", noAgent, 400, "no_agent", "has no agent label"},
		{"too large", "application/x-protobuf", bytes.Repeat([]byte{0}, 4096), 413, "too_large", "exceeds max_body_bytes 2048"},
		{"remote_write 2.0", "application/x-protobuf;proto=io.prometheus.write.v2.Request", half, 415, "unsupported", "2.0 is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(tt.body))
			setPushHeaders(req.Header)
			req.Header.Set("Content-Type", tt.contentType)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || !strings.Contains(string(msg), tt.msg) {
				t.Errorf("status %d %q, want %d containing %q", resp.StatusCode, msg, tt.want, tt.msg)
			}
		})
	}
	doc := getSites(t, base)
	if len(doc.Sites) != 1 || doc.Sites[0].State != VerdictUp {
		t.Fatalf("after rejected pushes: %+v, want pangyo still up", doc.Sites)
	}
	for _, a := range doc.Sites[0].Agents {
		if a.State != "up" {
			t.Errorf("agent %s is %s after a rejected push, want up", a.Name, a.State)
		}
	}
	text := metricsText(t, base)
	wantMetric(t, text, "edgeprobe_view_pushes_received_total 5")
	for _, tt := range tests {
		wantMetric(t, text, `edgeprobe_view_pushes_rejected_total{reason="`+tt.reason+`"} 1`)
	}
	resp, err := http.Get(base + "/api/v1/write")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/write: %d, want 405", resp.StatusCode)
	}
}

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "edge1.token")
	if err := os.WriteFile(tokenFile, []byte("edge1-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`tokens = ["shared-secret"]
[[agent_tokens]]
agent = "edge1"
token_file = "`+tokenFile+`"
`), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	base, _ := startView(t, cfg)
	edge1 := encodePushes(t, agentPush{agent: "edge1", sites: map[string]string{"pangyo": "down"}})
	edge2 := encodePushes(t, agentPush{agent: "edge2", sites: map[string]string{"pangyo": "down"}})
	tests := []struct {
		name  string
		token string
		body  []byte
		want  int
	}{
		{"no token", "", edge1, 401},
		{"wrong token", "guess", edge1, 401},
		{"shared token", "shared-secret", edge2, 204},
		{"agent token for itself", "edge1-secret", edge1, 204},
		{"agent token for another agent", "edge1-secret", edge2, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := postWrite(t, base, tt.token, tt.body); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	text := metricsText(t, base)
	wantMetric(t, text, `edgeprobe_view_pushes_rejected_total{reason="unauthorized"} 2`)
	wantMetric(t, text, `edgeprobe_view_pushes_rejected_total{reason="forbidden"} 1`)
	if s := getSites(t, base).Sites; len(s) != 1 || s[0].State != VerdictLost {
		t.Errorf("sites %+v: want pangyo lost from the two authorised pushes", s)
	}
}

// followEvents subscribes to the view's /api/v1/events (internal/testkit's client),
// sending Last-Event-ID when lastID is set.
func followEvents(t *testing.T, base, lastID string) *testkit.Events {
	t.Helper()
	return testkit.FollowEvents(t, base+"/api/v1/events", testkit.EventsOptions{LastEventID: lastID})
}

// nextChange decodes the stream's next event as a verdict change.
func nextChange(t *testing.T, events *testkit.Events, within time.Duration) Change {
	t.Helper()
	e, err := events.NextWithin(within)
	if err != nil {
		t.Fatal(err)
	}
	var c Change
	if err := json.Unmarshal([]byte(e.Data), &c); err != nil {
		t.Fatalf("event %q: %v", e.Data, err)
	}
	return c
}

// TestEventsAndStaleness follows the SSE stream through a loss, then lets the agents go
// silent: the staleness timer, not a push, turns the site unknown.
func TestEventsAndStaleness(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StaleAfter = Duration{Duration: time.Second}
	base, _ := startView(t, cfg)
	data := followEvents(t, base, "")

	since := time.Now()
	push := func(agent, state string) {
		if code := postWrite(t, base, "", encodePushes(t, agentPush{agent: agent, sites: map[string]string{"pangyo": state}, since: since, detect: 0.2})); code != 204 {
			t.Fatalf("push %s %s: %d", agent, state, code)
		}
	}
	push("edge1", "up")
	push("edge2", "up")
	if c := nextChange(t, data, 2*time.Second); c.Site != "pangyo" || c.From != "unknown" || c.To != "up" {
		t.Fatalf("first event %+v, want pangyo unknown -> up", c)
	}
	lastPushes := time.Now()
	push("edge1", "down")
	if c := nextChange(t, data, 2*time.Second); c.To != "degraded" {
		t.Fatalf("event %+v, want up -> degraded", c)
	}
	push("edge2", "down")
	c := nextChange(t, data, 2*time.Second)
	if c.From != "degraded" || c.To != "lost" || c.DetectSeconds == nil || c.Time.IsZero() {
		t.Fatalf("event %+v, want degraded -> lost with time and detect_seconds", c)
	}
	c = nextChange(t, data, 5*time.Second)
	if c.From != "lost" || c.To != "unknown" {
		t.Fatalf("event %+v, want lost -> unknown once the agents are stale", c)
	}
	if waited := c.Time.Sub(lastPushes); waited < time.Second {
		t.Errorf("turned unknown %v after the last pushes began, before stale_after 1s", waited)
	}
	if !data.WaitComment("keep-alive", 2*time.Second) {
		t.Error("no keep-alive comment on an idle stream")
	}
}

// TestEventBurst: a burst of changes far larger than any per-client queue (a thousand
// sites turning up at once) reaches a client whole: clients read from the event ring.
func TestEventBurst(t *testing.T) {
	base, _ := startView(t, DefaultConfig())
	events := followEvents(t, base, "")
	sites := map[string]string{}
	for i := range 1000 {
		sites[fmt.Sprintf("s%04d", i)] = "up"
	}
	body := encodePushes(t, agentPush{agent: "a", sites: sites}, agentPush{agent: "b", sites: sites})
	if code := postWrite(t, base, "", body); code != http.StatusNoContent {
		t.Fatalf("push: %d", code)
	}
	for want := 1; want <= 1000; want++ {
		if ev := nextEvent(t, events); ev.ID != strconv.Itoa(want) {
			t.Fatalf("event %d has id %q", want, ev.ID)
		}
	}
}

// TestSlowEventClient: a client that stops reading holds no verdict up.
func TestSlowEventClient(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PushRate = 1e6 // 401 pushes as fast as they go
	base, _ := startView(t, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/v1/events HTTP/1.1\r\nHost: view\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The client above never reads. Flip a site many times; every push must still be
	// answered (the loop has a generous bound only so that a hang fails instead of stalling).
	deadline := time.Now().Add(30 * time.Second)
	for i := range 401 {
		state := []string{"up", "down"}[i%2]
		body := encodePushes(t, agentPush{agent: "a", sites: map[string]string{"s": state}}, agentPush{agent: "b", sites: map[string]string{"s": state}})
		if code := postWrite(t, base, "", body); code != 204 {
			t.Fatalf("push %d: %d", i, code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushes blocked behind a slow event client (%d done)", i)
		}
	}
	if s := getSites(t, base).Sites; s[0].State != VerdictUp {
		t.Errorf("final verdict %s, want up", s[0].State)
	}
}

// TestRestartRebuilds: a new view (a restart, or a second view fed by the same agents)
// has every verdict back after one push per agent, because every push is complete.
func TestRestartRebuilds(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	pushes := []agentPush{
		{agent: "edge1", interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "up"}, since: since, detect: 0.3},
		{agent: "edge2", interval: 1, sites: map[string]string{"pangyo": "down", "seoul": "degraded"}, since: since, detect: 0.3},
		{agent: "edge3", interval: 1, isolated: true, sites: map[string]string{"pangyo": "down", "seoul": "down"}},
	}
	var views [2][]SiteView
	for i := range views {
		base, _ := startView(t, DefaultConfig())
		for _, p := range pushes {
			if code := postWrite(t, base, "", encodePushes(t, p)); code != 204 {
				t.Fatalf("view %d: push %s: %d", i, p.agent, code)
			}
		}
		views[i] = getSites(t, base).Sites
	}
	for i, sites := range views {
		if len(sites) != 2 || sites[0].State != VerdictLost || sites[1].State != VerdictDegraded {
			t.Errorf("view %d: %+v, want pangyo lost and seoul degraded", i, sites)
		}
	}
	for i := range views[0] {
		a, b := views[0][i], views[1][i]
		if a.Name != b.Name || a.State != b.State || a.Witnesses != b.Witnesses || a.Down != b.Down {
			t.Errorf("the two views disagree: %+v and %+v", a, b)
		}
	}
}

// TestSitesAnswerInChunks: /api/v1/sites, written a chunk of sites at a time, is the
// whole list, in order, with every agent and the silences marked, and byte for byte
// what encoding/json writes for it in one piece.
func TestSitesAnswerInChunks(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{"admin-secret"}
	base, _ := startView(t, cfg)
	n := 2*siteChunk + 17
	sites := map[string]string{}
	for i := range n {
		sites[fmt.Sprintf("site%05d", i)] = []string{"up", "down", "degraded"}[i%3]
	}
	for _, a := range []string{"edge1", "edge2", "edge3"} {
		if code := postWrite(t, base, "", encodePushes(t, agentPush{agent: a, interval: 60, sites: sites, since: time.Now(), detect: 0.25})); code != http.StatusNoContent {
			t.Fatalf("push of %s: %d", a, code)
		}
	}
	silenced := fmt.Sprintf("site%05d", siteChunk)
	if code, body := adminRequest(t, http.MethodPost, base+"/api/v1/silences", "admin-secret", `{"site":"`+silenced+`","duration":"1h"}`); code != http.StatusCreated {
		t.Fatalf("silence: %d %s", code, body)
	}
	resp, err := http.Get(base + "/api/v1/sites")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var doc sitesDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decode /api/v1/sites: %v", err)
	}
	if len(doc.Sites) != n {
		t.Fatalf("%d sites, want %d", len(doc.Sites), n)
	}
	for i, s := range doc.Sites {
		if want := fmt.Sprintf("site%05d", i); s.Name != want || len(s.Agents) != 3 || s.Silenced != (s.Name == silenced) {
			t.Fatalf("site %d: %+v, want %s with 3 agents, silenced %v", i, s, want, s.Name == silenced)
		}
	}
	var whole bytes.Buffer
	if err := json.NewEncoder(&whole).Encode(doc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, whole.Bytes()) {
		t.Fatalf("the answer (%d bytes) differs from encoding/json's of it (%d bytes)", len(raw), whole.Len())
	}
}
