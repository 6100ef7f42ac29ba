package testkit

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
	"sync/atomic"
	"time"
)

// CA is a throwaway certificate authority for one test: ECDSA P-256, valid from two
// days ago to two days ahead (so that it covers every leaf Issue makes, expired ones
// included).
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	File string         // the CA certificate as a PEM file in a temporary directory of the test
	Pool *x509.CertPool // holding Cert, for a client's RootCAs or a server's ClientCAs

	serial atomic.Int64
}

// Loopback is 127.0.0.1 and ::1, the addresses a test server's certificate names.
var Loopback = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}

// NewCA makes a CA whose common name is "edgeprobe test CA".
func NewCA(tb TB) *CA {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeprobe test CA"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("testkit: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testkit: CA certificate: %v", err)
	}
	ca := &CA{Cert: cert, Key: key, File: filepath.Join(tb.TempDir(), "ca.pem"), Pool: x509.NewCertPool()}
	ca.serial.Store(1)
	ca.Pool.AddCert(cert)
	writePEM(tb, ca.File, "CERTIFICATE", der, 0o644)
	return ca
}

// CertSpec says what certificate Issue makes. The zero value is a server certificate
// for no name at all, valid from an hour ago to an hour ahead.
type CertSpec struct {
	CommonName string   // default "edgeprobe test"
	DNSNames   []string // subject alternative names
	IPs        []net.IP
	// Usage is the extended key usage; nil means server authentication.
	Usage []x509.ExtKeyUsage
	// NotBefore and NotAfter bound the validity; zero means an hour ago and an hour ahead.
	NotBefore, NotAfter time.Time
	// SelfSigned signs the certificate with its own key instead of the CA's: a
	// certificate no client of the CA trusts.
	SelfSigned bool
}

// Cert is a leaf certificate with its key.
type Cert struct {
	tls.Certificate        // the leaf alone as the chain, its key, and Leaf parsed
	PEM, KeyPEM     []byte // the certificate and its PKCS #8 key as PEM
}

// Issue makes a leaf certificate signed by the CA (or by itself, see CertSpec).
func (ca *CA) Issue(tb TB, spec CertSpec) Cert {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: spec.CommonName},
		NotBefore:    spec.NotBefore, NotAfter: spec.NotAfter,
		DNSNames: spec.DNSNames, IPAddresses: spec.IPs,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: spec.Usage,
	}
	if tmpl.Subject.CommonName == "" {
		tmpl.Subject.CommonName = "edgeprobe test"
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(time.Hour)
	}
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	parent, signer := ca.Cert, ca.Key
	if spec.SelfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		tb.Fatalf("testkit: certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testkit: certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("testkit: key of %q: %v", tmpl.Subject.CommonName, err)
	}
	return Cert{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		PEM:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// Server is a server certificate for localhost, 127.0.0.1 and ::1.
func (ca *CA) Server(tb TB) Cert {
	tb.Helper()
	return ca.Issue(tb, CertSpec{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: Loopback})
}

// Client is a client certificate with the common name cn.
func (ca *CA) Client(tb TB, cn string) Cert {
	tb.Helper()
	return ca.Issue(tb, CertSpec{CommonName: cn, Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// Write stores the certificate and its key as PEM files (the key readable by its owner
// only).
func (c Cert) Write(tb TB, certFile, keyFile string) {
	tb.Helper()
	if err := os.WriteFile(certFile, c.PEM, 0o644); err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		tb.Fatalf("testkit: %v", err)
	}
}

// Files stores the certificate and its key as NAME.pem and NAME-key.pem in dir and
// returns their paths.
func (c Cert) Files(tb TB, dir, name string) (certFile, keyFile string) {
	tb.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	c.Write(tb, certFile, keyFile)
	return certFile, keyFile
}

func newKey(tb TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testkit: key: %v", err)
	}
	return key
}

func writePEM(tb TB, path, typ string, der []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		tb.Fatalf("testkit: %v", err)
	}
}
