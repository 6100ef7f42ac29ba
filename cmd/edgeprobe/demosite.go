package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The simulated sites of the demo: a DNS server, a web server and a TLS service per
// site on loopback addresses of its own, which a blackhole silences without refusing.

// The sites' address prefixes: each server listens on prefix.N, N telling the service
// (53 DNS, 80 HTTP, 22 TLS) so that a person reading the output knows which is which.
const (
	alphaPrefix = "127.0.1"
	betaPrefix  = "127.0.2"
)

// demoSite is one simulated datacenter: a DNS server, a web server and a TLS service on
// addresses of its own. Dark means a blackhole: the kernel still completes TCP
// handshakes and takes UDP datagrams, but no byte of an answer ever comes back.
type demoSite struct {
	name     string
	dark     atomic.Bool
	dnsAddr  string
	httpAddr string
	tlsAddr  string
	closers  []io.Closer
	held     sync.WaitGroup
}

func startDemoSite(name, prefix string, cert tls.Certificate) (*demoSite, error) {
	s := &demoSite{name: name}
	fail := func(err error) (*demoSite, error) {
		s.close()
		return nil, fmt.Errorf("site %s: %w (the demo needs Linux, where all of 127.0.0.0/8 is local)", name, err)
	}

	udp, err := net.ListenPacket("udp", prefix+".53:0")
	if err != nil {
		return fail(err)
	}
	s.dnsAddr = udp.LocalAddr().String()
	dnsServer := &dns.Server{PacketConn: udp, Handler: dns.HandlerFunc(s.serveDNS)}
	s.closers = append(s.closers, closerFunc(dnsServer.Shutdown))
	go dnsServer.ActivateAndServe()

	web, err := s.listen(prefix + ".80:0")
	if err != nil {
		return fail(err)
	}
	s.httpAddr = web.Addr().String()
	httpServer := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "ok\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	s.closers = append(s.closers, httpServer)
	go httpServer.Serve(web)

	tlsListener, err := s.listen(prefix + ".22:0")
	if err != nil {
		return fail(err)
	}
	s.tlsAddr = tlsListener.Addr().String()
	go serveTLSHandshakes(tlsListener, &tls.Config{Certificates: []tls.Certificate{cert}})
	return s, nil
}

func (s *demoSite) setDark(dark bool) { s.dark.Store(dark) }

// serveDNS answers every A question with the site's web address; a dark site drops it.
func (s *demoSite) serveDNS(w dns.ResponseWriter, q *dns.Msg) {
	if s.dark.Load() {
		return
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	host, _, _ := net.SplitHostPort(s.httpAddr)
	for _, question := range q.Question {
		if question.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(host),
			})
		}
	}
	w.WriteMsg(m)
}

// listen returns a TCP listener that hands connections to its server while the site
// is lit, and holds them silently while it is dark.
func (s *demoSite) listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	dl := &darkListener{Listener: l, site: s}
	s.closers = append(s.closers, dl)
	return dl, nil
}

func (s *demoSite) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i].Close()
	}
	s.held.Wait()
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// darkListener swallows connections while its site is dark: it reads and discards
// whatever the client sends and never writes, until the client gives up.
type darkListener struct {
	net.Listener
	site *demoSite
	mu   sync.Mutex
	held map[net.Conn]bool
	shut bool
}

func (l *darkListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.site.dark.Load() {
			return c, err
		}
		l.hold(c)
	}
}

func (l *darkListener) hold(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shut {
		c.Close()
		return
	}
	if l.held == nil {
		l.held = make(map[net.Conn]bool)
	}
	l.held[c] = true
	l.site.held.Add(1)
	go func() {
		defer l.site.held.Done()
		io.Copy(io.Discard, c)
		c.Close()
		l.mu.Lock()
		delete(l.held, c)
		l.mu.Unlock()
	}()
}

// Close stops accepting and drops the connections held in the dark.
func (l *darkListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shut = true
	for c := range l.held {
		c.Close()
	}
	return err
}

// serveTLSHandshakes completes a TLS handshake on each connection and closes it: the
// service a `tcp` target with `tls.enable` checks.
func serveTLSHandshakes(l net.Listener, conf *tls.Config) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			tls.Server(c, conf).Handshake()
		}()
	}
}

// demoCertificate makes a self-signed certificate for the demo's TLS services and
// writes it to dir as the CA file the agent verifies them with: the demo shows TLS
// verification on, as the agent's default is.
func demoCertificate(dir string, ips ...string) (caFile string, cert tls.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", cert, fmt.Errorf("demo certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgeprobe demo"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", cert, fmt.Errorf("demo certificate: %w", err)
	}
	caFile = filepath.Join(dir, "demo-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", cert, fmt.Errorf("demo certificate: %w", err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
