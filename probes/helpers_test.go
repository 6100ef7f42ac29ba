package probes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// requireRoot skips a test that needs root, except in CI, where nothing may skip.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run as root: %s", why)
	}
	t.Skipf("needs root: %s", why)
}

const pingGroupRange = "/proc/sys/net/ipv4/ping_group_range"

// setPingGroupRange sets net.ipv4.ping_group_range for the test and restores the old
// value when it ends.
func setPingGroupRange(t testing.TB, value string) {
	t.Helper()
	requireRoot(t, "sets net.ipv4.ping_group_range")
	old, err := os.ReadFile(pingGroupRange)
	if err != nil {
		t.Fatalf("read %s: %v", pingGroupRange, err)
	}
	if err := os.WriteFile(pingGroupRange, []byte(value), 0o644); err != nil {
		t.Fatalf("write %q to %s: %v", value, pingGroupRange, err)
	}
	t.Cleanup(func() {
		restore := strings.Join(strings.Fields(string(old)), " ")
		if err := os.WriteFile(pingGroupRange, []byte(restore), 0o644); err != nil {
			t.Errorf("restore %s to %q: %v", pingGroupRange, restore, err)
		}
	})
}

// hasIPv6Loopback reports whether ::1 is configured, as it is on CI's Debian.
func requireIPv6Loopback(t testing.TB) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/if_inet6")
	if err == nil && strings.Contains(string(data), "00000000000000000000000000000001") {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI needs ::1 on lo")
	}
	t.Skip("no IPv6 loopback (::1) on this host")
}

// testCert makes a throwaway CA and a server certificate for 127.0.0.1, ::1 and
// localhost signed by it. It returns the server's certificate and the CA's PEM file.
func testCert(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeprobe test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// freePort returns a loopback address nobody listens on, so connections are refused.
func freePort(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// silentTCP accepts connections and never writes a byte, until the test ends.
func silentTCP(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// writeKeyPair stores cert and its ECDSA key as PEM files.
func writeKeyPair(t testing.TB, cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// probeTimeout keeps the cases that must time out short and gives the others room on a
// loaded machine (the race detector, other tests' CPU).
func probeTimeout(want Reason) time.Duration {
	if want == ReasonTimeout {
		return 300 * time.Millisecond
	}
	return 3 * time.Second
}
