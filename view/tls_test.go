package view

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// writeServerCert writes a server certificate for loopback as cert.pem and key.pem into
// dir and returns its CA (internal/testkit).
func writeServerCert(t *testing.T, dir string) *testkit.CA {
	t.Helper()
	ca := testkit.NewCA(t)
	ca.Server(t).Write(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	return ca
}

// TestServeTLS: with web_config the view speaks only TLS, pushes included.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := writeServerCert(t, dir)
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`web_config = "`+webConfig+`"`), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(serveView(t, cfg, Options{}), "http://")

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	base := "https://" + addr
	body := encodePushes(t, agentPush{agent: "a", sites: map[string]string{"pangyo": "up"}})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("push over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("push over TLS: %d, want 204", resp.StatusCode)
	}
	resp, err = client.Get(base + "/api/v1/sites")
	if err != nil {
		t.Fatalf("sites over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("sites over TLS: %d (TLS %v), want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	plain, err := http.Get("http://" + addr + "/api/v1/sites")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200 on a TLS-only view")
		}
	}
}

// TestServeMutualTLS: a web_config that requires verified client certificates is
// authentication enough to listen beyond loopback (CheckExposure), and the view holds to
// it: a client without a certificate is turned away in the handshake, one with a
// certificate from client_ca_file pushes.
func TestServeMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := writeServerCert(t, dir)
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"+
		"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: "+ca.File+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`web_config = "`+webConfig+`"`), "view.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckExposure("0.0.0.0:9470"); err != nil {
		t.Errorf("mutual TLS not taken for authentication: %v", err)
	}
	addr := strings.TrimPrefix(serveView(t, cfg, Options{}), "http://")
	pool := ca.Pool
	pair := ca.Client(t, "edge1").Certificate
	body := encodePushes(t, agentPush{agent: "a", sites: map[string]string{"pangyo": "up"}})
	push := func(certs []tls.Certificate) (int, error) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Encoding", "snappy")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := push(nil); err == nil {
		t.Errorf("push without a client certificate answered %d, want the handshake refused", code)
	}
	if code, err := push([]tls.Certificate{pair}); err != nil || code != http.StatusNoContent {
		t.Errorf("push with a client certificate: %d, %v; want 204", code, err)
	}
}
