package probes

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// ClientConfig builds the client TLS configuration of a spec: for the probes, and for
// the agent's remote_write exporter, which keeps its TLS settings in the same spec.
// Verification stays on unless Insecure. An empty ServerName lets the caller's host
// name (or the HTTP request's host, which follows redirects) be used for SNI and
// verification. The CA bundle is read once; a client certificate is read now, so that
// a bad file fails at start, and again whenever its files change on disk, so that a
// short-lived certificate renewed in place needs no restart.
func (spec TLSSpec) ClientConfig() (*tls.Config, error) {
	conf := &tls.Config{
		ServerName:         spec.ServerName,
		InsecureSkipVerify: spec.Insecure, // only when the operator wrote insecure = true
		MinVersion:         tls.VersionTLS12,
	}
	if spec.CAFile != "" {
		pem, err := tomlconf.ReadFile(spec.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", spec.CAFile)
		}
		conf.RootCAs = pool
	}
	if errs := spec.Validate(); len(errs) > 0 {
		return nil, errs
	}
	if spec.CertFile == "" {
		return conf, nil
	}
	kp := &keyPair{cert: spec.CertFile, key: spec.KeyFile}
	if _, err := kp.get(nil); err != nil {
		return nil, err
	}
	conf.GetClientCertificate = kp.get
	return conf, nil
}

// earliestExpiry is the earliest NotAfter of certs (those a server presented: its own
// and the intermediates it sent, not the local roots they chain to), or zero for none.
func earliestExpiry(certs []*x509.Certificate) time.Time {
	var first time.Time
	for _, c := range certs {
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first
}

// keyPair is a client certificate and key on disk, loaded again when either file's
// modification time changes.
type keyPair struct {
	cert, key string

	mu       sync.Mutex
	loaded   *tls.Certificate
	modified [2]time.Time
}

func (kp *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	var mod [2]time.Time
	for i, name := range []string{kp.cert, kp.key} {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
		}
		mod[i] = fi.ModTime()
	}
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.loaded != nil && mod == kp.modified {
		return kp.loaded, nil
	}
	cert, err := loadKeyPair(kp.cert, kp.key)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s, tls.key_file %s: %w", kp.cert, kp.key, err)
	}
	kp.loaded, kp.modified = &cert, mod
	return kp.loaded, nil
}

// loadKeyPair is tls.LoadX509KeyPair reading only regular files, without blocking and with
// a size cap (docs/architecture.md, "Configuration"): a FIFO or a link to /dev/zero in place of a
// certificate must fail, not hang the prober or fill its memory.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := tomlconf.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := tomlconf.ReadFileLimit(keyFile, tomlconf.MaxSecretBytes)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
