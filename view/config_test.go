package view

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig("testdata/view.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Quorum.Majority || cfg.StaleAfter.Duration != 2*time.Second || cfg.MaxBodyBytes != 1<<20 ||
		cfg.MaxSampleAge.Duration != 30*time.Second || len(cfg.Tokens) != 1 {
		t.Errorf("config %+v does not match testdata/view.toml", cfg)
	}
	if w := cfg.Notifiers.Webhook; len(w) != 1 || w[0].MaxRetries != 3 || w[0].Timeout.Duration != 2*time.Second {
		t.Errorf("webhooks %+v", w)
	}
	if a := cfg.Notifiers.Alertmanager; len(a) != 1 || a[0].Resend.Duration != 30*time.Second || a[0].MaxRetries != 5 {
		t.Errorf("alertmanagers %+v: want resend 30s and the default 5 retries", a)
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Listen != "127.0.0.1:9470" || cfg.Quorum.N != 2 || cfg.StaleAfter.Duration != 0 || cfg.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("defaults %+v", cfg)
	}
	empty, err := ParseConfig(nil, "empty.toml")
	if err != nil || empty.Quorum.N != 2 || empty.MaxSampleAge.Duration != DefaultMaxSampleAge {
		t.Errorf("empty file: %+v, %v; want the defaults", empty, err)
	}
}

// TestInvalidConfigs: each testdata/invalid-*.toml must fail with the exact message.
func TestInvalidConfigs(t *testing.T) {
	want := map[string]string{
		"invalid-unknown-key.toml": "testdata/invalid-unknown-key.toml:2: quorom: unknown key; allowed here: " + strings.Join(topLevelKeys(), ", "),
		"invalid-nested-key.toml":  "testdata/invalid-nested-key.toml:3: notifiers.webhook[0].retries: unknown key; allowed here: url, secret_file, lost_for, recover_for, timeout, max_retries",
		"invalid-web-config.toml":  "testdata/invalid-web-config.toml:1: web_config: open /nonexistent/web.yml: no such file or directory; allowed: an existing, readable regular file",
		"invalid-quorum.toml":      `testdata/invalid-quorum.toml:1: quorum: quorum 0 out of range: want a number >= 1 or "majority"`,
		"invalid-quorum-word.toml": `testdata/invalid-quorum-word.toml:1: quorum: quorum "most": want a number >= 1 or "majority"`,
		"invalid-duration.toml":    `testdata/invalid-duration.toml:2: stale_after: bare number 3 is not a duration; use a string with a unit, e.g. "500ms"`,
		"invalid-webhook-url.toml": `testdata/invalid-webhook-url.toml:2: notifiers.webhook[0].url: "ftp://example.test/x" has scheme "ftp"; allowed: http or https`,
		"invalid-token-file.toml":  "testdata/invalid-token-file.toml:3: agent_tokens[0].token_file: open /nonexistent/edge1.token: no such file or directory; allowed: an existing, readable regular file",
	}
	files, _ := filepath.Glob("testdata/invalid-*.toml")
	if len(files) != len(want) {
		t.Errorf("%d invalid-*.toml files, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadConfig(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if got := err.Error(); got != want[filepath.Base(f)] {
				t.Errorf("error\n got %s\nwant %s", got, want[filepath.Base(f)])
			}
		})
	}
}

// topLevelKeys are view.toml's top-level keys in field order, as an unknown key's error
// lists them.
func topLevelKeys() []string {
	var keys []string
	for _, k := range tomlconf.SchemaKeys(Config{}) {
		if !strings.Contains(k, ".") {
			keys = append(keys, k)
		}
	}
	return keys
}

func TestConfigErrorsJoined(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseConfig([]byte("max_body_bytes = 10\nbogus = 1\n[[agent_tokens]]\nagent = \"e\"\ntoken_file = \""+empty+"\"\n"), "v.toml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, part := range []string{"v.toml:2: bogus: unknown key", "v.toml:1: max_body_bytes: 10 is too small", "agent_tokens[0].token_file: " + empty + " is empty"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
}

func TestConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.token")
	if err := os.WriteFile(open, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"defaults on loopback", ``, nil},
		{"open address without tokens", `listen = "0.0.0.0:9470"`, nil}, // refused by CheckExposure instead
		{"open address allowed without tokens", "listen = \"0.0.0.0:9470\"\nallow_unauthenticated = true", []string{"listening on 0.0.0.0:9470 without authentication"}},
		{"open address with tokens", "listen = \"203.0.113.5:9470\"\ntokens = [\"t\"]", nil},
		{"world-readable config with tokens", "tokens = [\"t\"]", []string{"view.toml holds tokens and is readable by every user"}},
		{"world-readable token file", "[[agent_tokens]]\nagent = \"e1\"\ntoken_file = \"" + open + "\"", []string{"token file " + open + " (agent e1) is readable by every user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "view.toml")
			if err := os.WriteFile(path, []byte(tt.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			mode := os.FileMode(0o600)
			if strings.HasPrefix(tt.name, "world-readable config") {
				mode = 0o644
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(strings.TrimPrefix(got[i], dir+"/"), w) {
					t.Errorf("warning %q, want it to start with %q", got[i], w)
				}
			}
		})
	}
}

// TestCheckExposure: beyond loopback a view needs tokens, verified client certificates or
// basic auth, or an explicit allow_unauthenticated; on loopback it needs nothing.
func TestCheckExposure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := writeServerCert(t, dir)
	tlsOnly := write("tls.yml", "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
	mtls := write("mtls.yml", "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: "+ca.File+"\n")
	tests := []struct {
		name, toml, listen string
		refused            bool
	}{
		{"loopback v4 without auth", ``, "127.0.0.1:9470", false},
		{"loopback v6 without auth", ``, "[::1]:9470", false},
		{"localhost without auth", ``, "localhost:9470", false},
		{"all addresses without auth", ``, ":9470", true},
		{"0.0.0.0 without auth", ``, "0.0.0.0:9470", true},
		{"public address without auth", ``, "203.0.113.5:9470", true},
		{"TLS without client auth", `web_config = "` + tlsOnly + `"`, "203.0.113.5:9470", true},
		{"shared token", `tokens = ["t"]`, "203.0.113.5:9470", false},
		{"verified client certificates", `web_config = "` + mtls + `"`, "0.0.0.0:9470", false},
		{"explicitly allowed", `allow_unauthenticated = true`, "0.0.0.0:9470", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.toml), "view.toml")
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.CheckExposure(tt.listen)
			if !tt.refused {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed, want refused")
			}
			for _, part := range []string{tt.listen, "tokens or agent_tokens", "allow_unauthenticated = true", "--allow-unauthenticated"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not name %q", err, part)
				}
			}
		})
	}
}

// TestViewExample: view.toml.example is valid and shows every option (commented-out
// lines, whose files must exist on a real host, count as shown).
func TestViewExample(t *testing.T) {
	if _, err := LoadConfig("../view.toml.example"); err != nil {
		t.Fatalf("view.toml.example does not pass:\n%v", err)
	}
	data, err := os.ReadFile("../view.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	commented := regexp.MustCompile(`(?m)^(\s*)# ?(\[.*\]|[a-z_]+ = .*)$`)
	shown := map[string]bool{}
	for _, k := range tomlconf.WrittenKeys(commented.ReplaceAllString(string(data), "$1$2")) {
		shown[k] = true
	}
	for _, k := range tomlconf.SchemaKeys(Config{}) {
		if !shown[k] {
			t.Errorf("view.toml.example does not show %s", k)
		}
	}
}

// The soft memory limit follows the limits that let the view hold more: raising
// max_connections for 10,000 agents must not leave the collector running without pause
// under the default's 192 MiB.
func TestSoftMemoryLimit(t *testing.T) {
	def := DefaultConfig()
	if got := def.SoftMemoryLimit(); got != defaultSoftMemoryLimit {
		t.Errorf("default config: soft memory limit %d, want %d", got, defaultSoftMemoryLimit)
	}
	if got := (&Config{}).SoftMemoryLimit(); got != defaultSoftMemoryLimit {
		t.Errorf("unset limits: soft memory limit %d, want %d", got, defaultSoftMemoryLimit)
	}
	big := DefaultConfig()
	big.MaxConnections = 10016
	big.MaxPushMemory = 2 * DefaultMaxPushMemory
	want := int64(defaultSoftMemoryLimit + (10016-DefaultMaxConnections)*connMemory + DefaultMaxPushMemory)
	if got := big.SoftMemoryLimit(); got != want {
		t.Errorf("max_connections 10016, max_push_memory 128 MiB: soft memory limit %d, want %d", got, want)
	}
	small := DefaultConfig()
	small.MaxConnections = 10
	if got := small.SoftMemoryLimit(); got != defaultSoftMemoryLimit {
		t.Errorf("max_connections 10: soft memory limit %d, want the default's %d", got, defaultSoftMemoryLimit)
	}
}
