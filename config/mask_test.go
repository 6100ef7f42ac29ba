package config

import (
	"bytes"
	"strings"
	"testing"
)

// TestMasked: the effective config hides inline secrets and says so, while the config
// the agent runs with keeps them; a config without any is written as before.
func TestMasked(t *testing.T) {
	text := `[agent]
name = "a"
state_dir = ""
[[site]]
name = "s"
  [[site.http]]
  url = "https://probe:hunter2@198.51.100.7/health?api_key=k3y&x=1"
  headers = { Authorization = "Bearer t0ken" }
  method = "POST"
  body = "user=probe&password=pa55"
[[exporters.remote_write]]
url = "https://edge:s3cret@203.0.113.9/api/v1/write"
headers = { "X-Scope-OrgID" = "tenant-1" }
`
	cfg, err := Parse([]byte(text), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cfg.WriteEffective(&out); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "k3y", "t0ken", "s3cret", "tenant-1", "pa55"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("effective config shows %q:\n%s", secret, out.String())
		}
	}
	for _, want := range []string{"# Secrets are masked as xxxxx", "https://probe:xxxxx@198.51.100.7/health?api_key=xxxxx&x=xxxxx",
		"https://edge:xxxxx@203.0.113.9/api/v1/write", `Authorization = "xxxxx"`, `body = "xxxxx"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out.String())
		}
	}
	if h := cfg.Sites[0].HTTP[0]; h.URL != "https://probe:hunter2@198.51.100.7/health?api_key=k3y&x=1" || h.Headers["Authorization"] != "Bearer t0ken" || h.Body != "user=probe&password=pa55" {
		t.Errorf("masking changed the config the agent runs with: %+v", h)
	}
	if rw := cfg.Exporters.RemoteWrite[0]; rw.URL != "https://edge:s3cret@203.0.113.9/api/v1/write" || rw.Headers["X-Scope-OrgID"] != "tenant-1" {
		t.Errorf("masking changed the remote_write the agent runs with: %+v", rw)
	}
	plain, err := Parse([]byte("[agent]\nname = \"a\"\n[[site]]\nname = \"s\"\n  [[site.tcp]]\n  address = \"198.51.100.7:22\"\n"), "plain.toml")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := plain.WriteEffective(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "masked") {
		t.Errorf("a config without secrets says it masks some:\n%s", out.String())
	}
}
