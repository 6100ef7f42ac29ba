package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notFiles makes, in dir, the two names that are not files a config might be pointed
// at: a FIFO nobody writes (opening it to read would wait for ever) and a link to
// /dev/zero (reading it would never end).
func notFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"a FIFO": fifo, "a link to /dev/zero": zero}
}

// writeCert writes a self-signed certificate and its key as cert.pem and key.pem in dir.
func writeCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestConfigFilesMustBeFiles points every key of agent.toml and view.toml that names a
// file, and every file a web config names, at a FIFO and at a link to /dev/zero: `check`
// (and the view, and the agent, which load the same way) returns at once with exit
// status 2 and an error naming the key, instead of hanging or reading without end.
func TestConfigFilesMustBeFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentBase := `[agent]
name = "files"
state_dir = ""
[[site]]
name = "s"
`
	// Each case: the file for the config (BAD stands for the name under test), the key
	// that the error must name, and the command.
	type tc struct {
		name, key, config string
		view              bool
	}
	webConfig := func(field string) string {
		files := map[string]string{"cert_file": cert, "key_file": key, "client_ca_file": cert}
		files[field] = "BAD"
		return fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: %s\n",
			files["cert_file"], files["key_file"], files["client_ca_file"])
	}
	var cases []tc
	for _, kind := range []string{"dns", "http", "tcp"} {
		target := map[string]string{"dns": `server = "127.0.0.1"` + "\n  query = \"example.test\"\n  transport = \"tcp\"",
			"http": `url = "https://127.0.0.1/"`, "tcp": `address = "127.0.0.1:443"`}[kind]
		for _, field := range []string{"ca_file", "cert_file", "key_file"} {
			files := map[string]string{"ca_file": cert, "cert_file": cert, "key_file": key}
			files[field] = "BAD"
			cases = append(cases, tc{name: kind + " " + field, key: "site[0]." + kind + "[0].tls." + field, config: agentBase + fmt.Sprintf(
				"  [[site.%s]]\n  %s\n  [site.%s.tls]\n  ca_file = %q\n  cert_file = %q\n  key_file = %q\n",
				kind, target, kind, files["ca_file"], files["cert_file"], files["key_file"])})
		}
	}
	tcp := "  [[site.tcp]]\n  address = \"127.0.0.1:22\"\n"
	for _, field := range []string{"ca_file", "cert_file", "key_file"} {
		files := map[string]string{"ca_file": cert, "cert_file": cert, "key_file": key}
		files[field] = "BAD"
		cases = append(cases, tc{name: "remote_write " + field, key: "exporters.remote_write[0].tls." + field, config: agentBase + tcp + fmt.Sprintf(
			"[[exporters.remote_write]]\nurl = \"https://127.0.0.1:9470/api/v1/write\"\n  [exporters.remote_write.tls]\n  ca_file = %q\n  cert_file = %q\n  key_file = %q\n",
			files["ca_file"], files["cert_file"], files["key_file"])})
	}
	cases = append(cases,
		tc{name: "bearer_token_file", key: "exporters.remote_write[0].bearer_token_file", config: agentBase + tcp +
			"[[exporters.remote_write]]\nurl = \"http://127.0.0.1:9470/api/v1/write\"\nbearer_token_file = \"BAD\"\n"},
		tc{name: "password_file", key: "exporters.remote_write[0].basic_auth.password_file", config: agentBase + tcp +
			"[[exporters.remote_write]]\nurl = \"http://127.0.0.1:9470/api/v1/write\"\n  [exporters.remote_write.basic_auth]\n  username = \"u\"\n  password_file = \"BAD\"\n"},
		tc{name: "agent web_config", key: "exporters.prometheus.web_config", config: agentBase + tcp + "[exporters.prometheus]\nlisten = \"127.0.0.1:9469\"\nweb_config = \"BAD\"\n"},
		tc{name: "view web_config", key: "web_config", config: "web_config = \"BAD\"\n", view: true},
		tc{name: "view token_file", key: "agent_tokens[0].token_file", config: "[[agent_tokens]]\nagent = \"e1\"\ntoken_file = \"BAD\"\n", view: true},
	)
	for _, field := range []string{"cert_file", "key_file", "client_ca_file"} {
		cases = append(cases,
			tc{name: "agent web config's " + field, key: "exporters.prometheus.web_config", config: agentBase + tcp +
				"[exporters.prometheus]\nlisten = \"127.0.0.1:9469\"\nweb_config = \"WEB\"\n"},
			tc{name: "view web config's " + field, key: "web_config", config: "web_config = \"WEB\"\n", view: true})
	}
	for i, c := range cases {
		sub := filepath.Join(dir, fmt.Sprint(i))
		bads := notFiles(t, mkdir(t, sub))
		for kind, bad := range bads {
			t.Run(c.name+" is "+kind, func(t *testing.T) {
				text := c.config
				if strings.Contains(text, "WEB") {
					field := strings.TrimPrefix(strings.TrimPrefix(c.name, "agent web config's "), "view web config's ")
					web := filepath.Join(sub, "web-"+strings.NewReplacer(" ", "-", "/", "").Replace(kind)+".yml")
					if err := os.WriteFile(web, []byte(strings.ReplaceAll(webConfig(field), "BAD", bad)), 0o600); err != nil {
						t.Fatal(err)
					}
					text = strings.ReplaceAll(text, "WEB", web)
				}
				text = strings.ReplaceAll(text, "BAD", bad)
				file := filepath.Join(sub, strings.NewReplacer(" ", "-", "'", "", "/", "").Replace(c.name+"-"+kind)+".toml")
				if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				args := []string{"check", "--config", file}
				if c.view {
					args = []string{"view", "--listen", "127.0.0.1:0", "--config", file}
				}
				r := runBinary(t, 10*time.Second, args...)
				if r.status != 2 || !strings.Contains(r.stderr, c.key) || !strings.Contains(r.stderr, "not a regular file") {
					t.Errorf("edgeprobe %s: status %d, want 2 with an error naming %s and saying it is not a regular file\nstderr:\n%s",
						strings.Join(args, " "), r.status, c.key, r.stderr)
				}
			})
		}
	}
	// The config file itself.
	for kind, bad := range notFiles(t, mkdir(t, filepath.Join(dir, "config"))) {
		r := runBinary(t, 10*time.Second, "check", "--config", bad)
		if r.status != 2 || !strings.Contains(r.stderr, "not a regular file") {
			t.Errorf("check --config %s: status %d\n%s", kind, r.status, r.stderr)
		}
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
