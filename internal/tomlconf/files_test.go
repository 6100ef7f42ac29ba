package tomlconf

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWebConfigFiles(t *testing.T) {
	got, err := webConfigFiles([]byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: /etc/k.pem\n  client_ca_file: \"ca.pem\"\n"+
		"basic_auth_users:\n  u: x\n"), "/etc/edgeprobe")
	if err != nil {
		t.Fatal(err)
	}
	want := []WebConfigFileRef{
		{"tls_server_config.cert_file", "/etc/edgeprobe/cert.pem", MaxFileBytes},
		{"tls_server_config.key_file", "/etc/k.pem", MaxSecretBytes},
		{"tls_server_config.client_ca_file", "/etc/edgeprobe/ca.pem", MaxFileBytes},
	}
	if !slices.Equal(got, want) {
		t.Errorf("files %+v, want %+v", got, want)
	}
	if got, err := webConfigFiles([]byte("http_server_config:\n  http2: false\n"), "/"); err != nil || len(got) != 0 {
		t.Errorf("a web config without TLS: %+v, %v; want no files", got, err)
	}
}

// FuzzWebConfigFiles: no web config makes the lister panic, and it names only the three
// keys, each with an absolute path under the web config's directory or as written.
func FuzzWebConfigFiles(f *testing.F) {
	f.Add([]byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"))
	f.Add([]byte("tls_server_config:\n  client_ca_file: [a, b]\n"))
	f.Add([]byte("tls_server_config: 3\n"))
	f.Add([]byte("{tls_server_config: {cert_file: ../../x, key_file: /k}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := webConfigFiles(data, "/etc/edgeprobe")
		if err != nil {
			return
		}
		for _, file := range files {
			if !strings.HasPrefix(file.Key, "tls_server_config.") || !filepath.IsAbs(file.Path) || file.Limit <= 0 {
				t.Errorf("file %+v", file)
			}
		}
	})
}
