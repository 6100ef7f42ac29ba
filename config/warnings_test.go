package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigWarnings: every secret file the config names, and the config itself when it
// holds secrets inline (header values, URL passwords), gives a warning when every user can read it, naming the file and
// the fix; private files and a config without inline secrets give none.
func TestConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode os.FileMode, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		return p
	}
	openToken := file("open.token", 0o644, "secret\n")
	closedToken := file("closed.token", 0o600, "secret\n")
	openPassword := file("open.password", 0o604, "secret\n")
	cert := file("client.pem", 0o644, "not checked here\n")
	openKey := file("open-key.pem", 0o644, "not checked here\n")
	closedKey := file("closed-key.pem", 0o640, "not checked here\n")
	webKey := file("web-key.pem", 0o644, "not checked here\n")
	openWeb := file("open-web.yml", 0o644, "tls_server_config:\n  cert_file: client.pem\n  key_file: web-key.pem\n")
	closedWeb := file("closed-web.yml", 0o600, "tls_server_config:\n  cert_file: client.pem\n  key_file: \""+closedKey+"\"\n")

	const site = "[[site]]\nname = \"a\"\n  [[site.icmp]]\n  address = \"198.51.100.11\"\n"
	tests := []struct {
		name string
		mode os.FileMode // of the config file
		toml string
		want []string // each warning must contain every part of its entry, in order
	}{
		{"nothing secret", 0o644, site, nil},
		{"private secrets", 0o600, site + `
  [[site.http]]
  url = "https://198.51.100.11/"
  headers = { Authorization = "Bearer x" }
  tls = { cert_file = "` + cert + `", key_file = "` + closedKey + `" }
[exporters.prometheus]
web_config = "` + closedWeb + `"
[[exporters.remote_write]]
url = "http://203.0.113.201:9470/api/v1/write"
bearer_token_file = "` + closedToken + `"
`, nil},
		{"world-readable bearer token", 0o644, site + `
[[exporters.remote_write]]
url = "http://203.0.113.201:9470/api/v1/write"
bearer_token_file = "open.token"
`, []string{openToken + " (exporters.remote_write[0].bearer_token_file) is readable by every user; chmod o-r " + openToken}},
		{"world-readable password and target key", 0o600, site + `
  [[site.tcp]]
  address = "198.51.100.11:443"
  tls = { enable = true, cert_file = "` + cert + `", key_file = "` + openKey + `" }
[[exporters.remote_write]]
url = "https://203.0.113.201:9470/api/v1/write"
basic_auth = { username = "edge", password_file = "` + openPassword + `" }
`, []string{
			openKey + " (site[0].tcp[0].tls.key_file) is readable by every user; chmod o-r " + openKey,
			openPassword + " (exporters.remote_write[0].basic_auth.password_file) is readable by every user; chmod o-r " + openPassword,
		}},
		{"world-readable web config and its key", 0o600, site + `
[exporters.prometheus]
web_config = "` + openWeb + `"
`, []string{
			openWeb + " (exporters.prometheus.web_config) is readable by every user; chmod o-r " + openWeb,
			webKey + " (key_file of " + openWeb + ") is readable by every user; chmod o-r " + webKey,
		}},
		{"world-readable config with inline headers", 0o644, site + `
[[exporters.remote_write]]
url = "http://203.0.113.201:9470/api/v1/write"
headers = { X-Scope-OrgID = "tenant", X-Api-Key = "secret" }
`, []string{"agent.toml holds secrets inline (exporters.remote_write[0].headers) and is readable by every user; chmod o-r "}},
		{"private config with inline headers", 0o640, site + `
  [[site.http]]
  url = "http://198.51.100.11/"
  headers = { Authorization = "Bearer x" }
`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := file("agent.toml", tt.mode, tt.toml)
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("warnings:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q, want it to contain %q", got[i], w)
				}
			}
		})
	}
}

// TestConfigWarningsOnce: a file named twice gives one warning, and a config that names
// no file at all (parsed from memory) gives none for itself.
func TestConfigWarningsOnce(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(token, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(`[[site]]
name = "a"
  [[site.icmp]]
  address = "198.51.100.11"
[[exporters.remote_write]]
url = "http://203.0.113.201:9470/api/v1/write"
bearer_token_file = "`+token+`"
headers = { X-Api-Key = "secret" }
[[exporters.remote_write]]
url = "http://203.0.113.202:9470/api/v1/write"
bearer_token_file = "`+token+`"
`), "")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Warnings()
	if len(got) != 1 || !strings.Contains(got[0], token) {
		t.Errorf("warnings %q, want exactly one, for %s", got, token)
	}
}
