package exporters

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// testPKI is a throwaway CA (internal/testkit) with a server certificate for loopback and
// two client certificates, written as PEM files for the configurations under test.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	renewedCert, renewedKey                              string // a second client certificate, CN "renewed"
	pool                                                 *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	p := testPKI{caFile: ca.File, pool: ca.Pool}
	p.serverCert, p.serverKey = ca.Server(t).Files(t, dir, "server")
	p.clientCert, p.clientKey = ca.Client(t, "client").Files(t, dir, "client")
	p.renewedCert, p.renewedKey = ca.Client(t, "renewed").Files(t, dir, "renewed")
	return p
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
