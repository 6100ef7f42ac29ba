package probes

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// tlsConfig builds a client TLS configuration from spec. Verification stays on unless
// spec.Insecure. An empty ServerName lets the caller's host name (or the HTTP request's
// host, which follows redirects) be used for SNI and verification. Files are read once,
// when the prober is built.
func tlsConfig(spec TLSSpec) (*tls.Config, error) {
	conf := &tls.Config{
		ServerName:         spec.ServerName,
		InsecureSkipVerify: spec.Insecure,
		MinVersion:         tls.VersionTLS12,
	}
	if spec.CAFile != "" {
		pem, err := os.ReadFile(spec.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", spec.CAFile)
		}
		conf.RootCAs = pool
	}
	switch {
	case spec.CertFile != "" && spec.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(spec.CertFile, spec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	case spec.CertFile != "":
		return nil, errors.New("tls.key_file: must be set with tls.cert_file")
	case spec.KeyFile != "":
		return nil, errors.New("tls.cert_file: must be set with tls.key_file")
	}
	return conf, nil
}
