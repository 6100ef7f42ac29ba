//go:build linux

package probes

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// tlsServer completes TLS handshakes with cert on 127.0.0.1:0 until the test ends.
func tlsServer(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(time.Second))
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

func TestTCPProbe(t *testing.T) {
	ca := testkit.NewCA(t)
	cert, caFile := ca.Server(t).Certificate, ca.File
	tlsAddr := tlsServer(t, cert)
	_, port, _ := net.SplitHostPort(tlsAddr)
	tests := []struct {
		name string
		spec TCPSpec
		want Reason
	}{
		{"connect", TCPSpec{Address: silentTCP(t)}, ReasonNone},
		{"refused", TCPSpec{Address: testkit.FreePort(t, "tcp")}, ReasonRefused},
		{"tls verified", TCPSpec{Address: tlsAddr, TLS: TLSSpec{Enable: true, CAFile: caFile}}, ReasonNone},
		{"tls by host name", TCPSpec{Address: "localhost:" + port, Family: "ip4", TLS: TLSSpec{Enable: true, CAFile: caFile}}, ReasonNone},
		{"tls unknown CA", TCPSpec{Address: tlsAddr, TLS: TLSSpec{Enable: true}}, ReasonTLS},
		{"tls wrong name", TCPSpec{Address: tlsAddr, TLS: TLSSpec{Enable: true, CAFile: caFile, ServerName: "db.example.test"}}, ReasonTLS},
		{"tls to a server that never speaks", TCPSpec{Address: silentTCP(t), TLS: TLSSpec{Enable: true, Insecure: true}}, ReasonTimeout},
		{"not tls at all", TCPSpec{Address: plainTextTCP(t), TLS: TLSSpec{Enable: true, Insecure: true}}, ReasonTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(KindTCP, tt.spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := probeOnce(t, p, probeTimeout(tt.want))
			if r.Reason != tt.want || r.OK != (tt.want == ReasonNone) {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
			if r.OK && r.Phases.Connect <= 0 {
				t.Errorf("phases %+v: want connect timed", r.Phases)
			}
			if r.OK && tt.spec.TLS.Enable && r.Phases.TLS <= 0 {
				t.Errorf("phases %+v: want the handshake timed", r.Phases)
			}
		})
	}
}

// plainTextTCP answers every connection with a line that is not TLS and closes it.
func plainTextTCP(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

func TestTCPSpecErrors(t *testing.T) {
	tests := []struct {
		spec TCPSpec
		want string
	}{
		{TCPSpec{}, "address: "},
		{TCPSpec{Address: "127.0.0.1"}, "is not host:port"},
		{TCPSpec{Address: ":80"}, "address: missing"},
		{TCPSpec{Address: "127.0.0.1:http"}, `port "http" is not a number from 1 to 65535`},
		{TCPSpec{Address: "127.0.0.1:0"}, `port "0" is not a number from 1 to 65535`},
		{TCPSpec{Address: "127.0.0.1:80", Family: "v6"}, `family: "v6"`},
		{TCPSpec{Address: "127.0.0.1:443", TLS: TLSSpec{Enable: true, KeyFile: "k.pem"}}, "tls: cert_file and key_file go together"},
		{TCPSpec{Address: "127.0.0.1:443", TLS: TLSSpec{Enable: true, CAFile: "/nonexistent.pem"}}, "tls.ca_file: "},
	}
	for _, tt := range tests {
		_, err := New(KindTCP, tt.spec, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "tcp probe: ") {
			t.Errorf("spec %+v: error %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func BenchmarkTCPProbe(b *testing.B) {
	// The server closes at once, so a long run does not pile up open connections.
	addr := plainTextTCP(b)
	p, err := New(KindTCP, TCPSpec{Address: addr}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := p.Probe(ctx); !r.OK {
			b.Fatalf("%+v", r)
		}
	}
}
