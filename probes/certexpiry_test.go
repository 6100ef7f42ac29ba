//go:build linux

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
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// certChain is a root CA (not sent by the server), an intermediate and a leaf for
// 127.0.0.1 and localhost, each with its own NotAfter (whole seconds, as X.509 keeps them).
type certChain struct {
	server                   tls.Certificate // leaf and intermediate, as a server presents them
	caFile                   string          // the root, PEM
	root, intermediate, leaf time.Time       // NotAfter of each
}

func newCertChain(t testing.TB, root, intermediate, leaf time.Time) certChain {
	t.Helper()
	now := time.Now()
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	ca := func(serial int64, name string, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
	}
	rootCert, rootKey := issue(ca(1, "edgeprobe test root", root), nil, nil)
	interCert, interKey := issue(ca(2, "edgeprobe test intermediate", intermediate), rootCert, rootKey)
	leafCert, leafKey := issue(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: leaf, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, interCert, interKey)
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootCert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return certChain{
		server: tls.Certificate{Certificate: [][]byte{leafCert.Raw, interCert.Raw}, PrivateKey: leafKey},
		caFile: caFile, root: rootCert.NotAfter, intermediate: interCert.NotAfter, leaf: leafCert.NotAfter,
	}
}

// TestCertExpiry: a completed handshake reports the earliest NotAfter of the certificates
// the server presented (here the intermediate's; the root it chains to is the client's
// own and expires earlier still, and does not count), over HTTPS, kept-alive HTTPS and
// TLS over TCP, also when the HTTP answer fails the probe; no handshake, no expiry.
func TestCertExpiry(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	chain := newCertChain(t, now.Add(20*24*time.Hour), now.Add(30*24*time.Hour), now.Add(90*24*time.Hour))
	https := httptest.NewUnstartedServer(testMux())
	https.TLS = &tls.Config{Certificates: []tls.Certificate{chain.server}}
	https.Config.ErrorLog = quietLog
	https.StartTLS()
	defer https.Close()
	plain := httptest.NewServer(testMux())
	defer plain.Close()
	verified := TLSSpec{CAFile: chain.caFile}

	tests := []struct {
		name   string
		kind   Kind
		spec   any
		want   Reason
		expiry time.Time
	}{
		{"https", KindHTTP, HTTPSpec{URL: https.URL + "/healthz", TLS: verified}, ReasonNone, chain.intermediate},
		{"https with a failing status", KindHTTP, HTTPSpec{URL: https.URL + "/broken", TLS: verified}, ReasonStatus, chain.intermediate},
		{"https with a body that does not match", KindHTTP, HTTPSpec{URL: https.URL + "/healthz", BodyMatch: "nope", TLS: verified}, ReasonBody, chain.intermediate},
		{"https insecure", KindHTTP, HTTPSpec{URL: https.URL + "/healthz", TLS: TLSSpec{Insecure: true}}, ReasonNone, chain.intermediate},
		{"https with an unknown CA", KindHTTP, HTTPSpec{URL: https.URL + "/healthz"}, ReasonTLS, time.Time{}},
		{"plain http", KindHTTP, HTTPSpec{URL: plain.URL + "/healthz"}, ReasonNone, time.Time{}},
		{"tcp with tls", KindTCP, TCPSpec{Address: https.Listener.Addr().String(), TLS: TLSSpec{Enable: true, CAFile: chain.caFile}}, ReasonNone, chain.intermediate},
		{"tcp with tls and a wrong name", KindTCP, TCPSpec{Address: https.Listener.Addr().String(), TLS: TLSSpec{Enable: true, CAFile: chain.caFile, ServerName: "db.example.test"}}, ReasonTLS, time.Time{}},
		{"tcp without tls", KindTCP, TCPSpec{Address: https.Listener.Addr().String()}, ReasonNone, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.kind, tt.spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := probeOnce(t, p, 3*time.Second)
			if r.Reason != tt.want {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
			if !r.CertExpiry.Equal(tt.expiry) {
				t.Errorf("CertExpiry %v, want %v (root %v, intermediate %v, leaf %v)", r.CertExpiry, tt.expiry, chain.root, chain.intermediate, chain.leaf)
			}
		})
	}

	// A kept-alive connection answers the second probe without a handshake; the expiry
	// comes from the connection the answer arrived on.
	p, err := New(KindHTTP, HTTPSpec{URL: https.URL + "/healthz", KeepAlive: true, TLS: verified}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.(*httpProber).Close()
	for i := range 2 {
		if r := probeOnce(t, p, 3*time.Second); !r.OK || !r.CertExpiry.Equal(chain.intermediate) {
			t.Errorf("kept-alive probe %d: %+v, want OK with CertExpiry %v", i+1, r, chain.intermediate)
		}
	}
}

// TestCertExpiryAfterRedirect: after redirects, the expiry is the one of the server that
// gave the answer.
func TestCertExpiryAfterRedirect(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	final := newCertChain(t, now.Add(400*24*time.Hour), now.Add(300*24*time.Hour), now.Add(5*24*time.Hour))
	target := httptest.NewUnstartedServer(testMux())
	target.TLS = &tls.Config{Certificates: []tls.Certificate{final.server}}
	target.Config.ErrorLog = quietLog
	target.StartTLS()
	defer target.Close()
	first := newCertChain(t, now.Add(400*24*time.Hour), now.Add(300*24*time.Hour), now.Add(200*24*time.Hour))
	redirect := httptest.NewUnstartedServer(http.RedirectHandler(target.URL+"/healthz", http.StatusFound))
	redirect.TLS = &tls.Config{Certificates: []tls.Certificate{first.server}}
	redirect.Config.ErrorLog = quietLog
	redirect.StartTLS()
	defer redirect.Close()
	p, err := New(KindHTTP, HTTPSpec{URL: redirect.URL + "/", Redirects: 1, TLS: TLSSpec{Insecure: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := probeOnce(t, p, 3*time.Second); !r.OK || !r.CertExpiry.Equal(final.leaf) {
		t.Errorf("got %+v, want OK with the final server's leaf expiry %v", r, final.leaf)
	}
	// Redirected to plain HTTP: the answer came without TLS, so no expiry.
	plain := httptest.NewServer(testMux())
	defer plain.Close()
	toPlain := httptest.NewUnstartedServer(http.RedirectHandler(plain.URL+"/healthz", http.StatusFound))
	toPlain.TLS = &tls.Config{Certificates: []tls.Certificate{first.server}}
	toPlain.Config.ErrorLog = quietLog
	toPlain.StartTLS()
	defer toPlain.Close()
	p, err = New(KindHTTP, HTTPSpec{URL: toPlain.URL + "/", Redirects: 1, TLS: TLSSpec{Insecure: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := probeOnce(t, p, 3*time.Second); !r.OK || !r.CertExpiry.IsZero() {
		t.Errorf("redirected to plain HTTP: %+v, want OK without an expiry", r)
	}
}
