package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// Secrets planted in an agent's config, each where a config can hold one inline or in
// a file: none may show in `check`, the agent's logs and stdout, its /metrics or what
// it pushes.
var planted = map[string]string{
	"password in an HTTP target URL":          "pw-in-target-url-5b1c",
	"api_key in an HTTP target URL":           "key-in-target-query-71ad",
	"HTTP target header value":                "hdr-in-target-9e04",
	"password in a remote_write URL":          "pw-in-rw-url-c3f2",
	"api_key in a remote_write URL":           "key-in-rw-query-08d7",
	"remote_write header value":               "hdr-in-rw-44ab",
	"bearer token (file)":                     "bearer-token-file-d2e9",
	"password of a refused remote_write":      "pw-in-dead-rw-61c0",
	"api_key of a refused remote_write (URL)": "key-in-dead-rw-b7f5",
}

// TestSecretsNotShown runs `check` and the agent on a config holding every kind of inline
// secret: an HTTP target that answers 503 and one where nothing listens (so their errors
// are reported), one remote_write to a
// receiver that refuses the first pushes with 500 and then takes them (recorded), one to
// a port where nothing listens (so its errors are logged), and the Prometheus exporter.
func TestSecretsNotShown(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
	}))
	defer target.Close()
	var mu sync.Mutex
	var pushed [][]byte
	var seen atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if seen.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			t.Errorf("push is not snappy: %v", err)
		}
		mu.Lock()
		pushed = append(pushed, raw)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(planted["bearer token (file)"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := testkit.FreePort(t, "tcp")
	withCreds := func(base, pw, key string) string {
		return strings.Replace(base, "http://", "http://edge:"+pw+"@", 1) + "/api/v1/write?api_key=" + key
	}
	config := filepath.Join(dir, "agent.toml")
	text := fmt.Sprintf(`[agent]
name = "secret-test"
state_dir = ""

[[site]]
name = "lab"
  [[site.http]]
  url = %q
  headers = { "X-Token" = %q }
  [[site.http]]
  url = %q

[exporters.stdout]
format = "json"
results = "all"

[exporters.prometheus]
listen = %q

[[exporters.remote_write]]
url = %q
headers = { "X-Api-Key" = %q }
bearer_token_file = %q
push_interval = "200ms"

[[exporters.remote_write]]
name = "dead"
url = %q
push_interval = "200ms"
`, strings.Replace(target.URL, "http://", "http://probe:"+planted["password in an HTTP target URL"]+"@", 1)+"/health?api_key="+planted["api_key in an HTTP target URL"],
		planted["HTTP target header value"],
		"http://probe:"+planted["password in an HTTP target URL"]+"@"+testkit.FreePort(t, "tcp")+"/health?api_key="+planted["api_key in an HTTP target URL"],
		metrics,
		withCreds(recv.URL, planted["password in a remote_write URL"], planted["api_key in a remote_write URL"]),
		planted["remote_write header value"], tokenFile,
		withCreds("http://"+testkit.FreePort(t, "tcp"), planted["password of a refused remote_write"], planted["api_key of a refused remote_write (URL)"]))
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var shown []string
	look := func(where, text string) {
		shown = append(shown, where)
		for what, secret := range planted {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the %s %q:\n%s", where, what, secret, text)
			}
		}
	}

	r := runBinary(t, 10*time.Second, "check", "--config", config)
	if r.status != 0 {
		t.Fatalf("check: status %d\n%s", r.status, r.stderr)
	}
	look("check's stdout", r.stdout)
	look("check's stderr", r.stderr)
	if !strings.Contains(r.stdout, "# Secrets are masked as xxxxx") || !strings.Contains(r.stdout, `X-Token = "xxxxx"`) {
		t.Errorf("check does not say that it masks secrets, or does not mask them:\n%s", r.stdout)
	}

	a := startAgent(t, config)
	a.waitLine(t, 5*time.Second, "a failed probe of the HTTP target", func(v map[string]any) bool {
		return v["type"] == "probe" && v["ok"] == false
	})
	a.waitStderr(t, 5*time.Second, "push failed")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(pushed)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push arrived after the receiver recovered\nstderr:\n%s", a.stderr)
		}
	}
	look("the agent's /metrics", httpGet(t, "http://"+metrics+"/metrics"))
	time.Sleep(500 * time.Millisecond) // a few more failed pushes to the dead receiver
	a.cmd.Process.Kill()
	<-a.exited
	look("the agent's stderr", a.stderr.String())
	var stdout strings.Builder
	for v := range a.lines {
		fmt.Fprintln(&stdout, v)
	}
	look("the agent's stdout", stdout.String())
	mu.Lock()
	look("the pushes", string(joinBytes(pushed)))
	mu.Unlock()
	if !strings.Contains(a.stderr.String(), "xxxxx") {
		t.Errorf("the agent's stderr shows no redacted URL, so the test saw no URL at all:\n%s", a.stderr)
	}
	t.Logf("looked at %s", strings.Join(shown, ", "))
}

func joinBytes(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}
