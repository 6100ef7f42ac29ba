//go:build linux

package probes

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// testZone answers a few names the way the DNS tests need.
type testZone struct {
	tcpQueries atomic.Int64
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, overTCP := w.RemoteAddr().(*net.TCPAddr)
	if overTCP {
		z.tcpQueries.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return r
	}
	switch q.Name {
	case "www.example.test.":
		m.Answer = append(m.Answer, rr("www.example.test. 60 IN A 198.51.100.12"))
	case "big.example.test.":
		// Too large for a plain 512-byte UDP answer: say so, as a real server does.
		if !overTCP {
			m.Truncated = true
			break
		}
		for range 40 {
			m.Answer = append(m.Answer, rr("big.example.test. 60 IN TXT \"padding padding padding padding\""))
		}
		m.Answer = append(m.Answer, rr("big.example.test. 60 IN A 198.51.100.13"))
	case "norec.example.test.":
		// Answers only queries that do not ask for recursion, as an authoritative server may.
		if req.RecursionDesired {
			m.Rcode = dns.RcodeRefused
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

// startDNS serves zone on 127.0.0.1:0 over network ("udp", "tcp" or "tcp-tls").
func startDNS(t testing.TB, network string, zone dns.Handler, cert *tls.Certificate) string {
	t.Helper()
	srv := &dns.Server{Handler: zone}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv.PacketConn = pc
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if network == "tcp-tls" {
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*cert}})
		}
		srv.Listener = l
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	if srv.PacketConn != nil {
		return srv.PacketConn.LocalAddr().String()
	}
	return srv.Listener.Addr().String()
}

// startDNSPair serves zone over UDP and TCP on the same port, as a real server does.
func startDNSPair(t testing.TB, zone dns.Handler) string {
	t.Helper()
	for range 20 {
		addr := startDNS(t, "udp", zone, nil)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // the port is taken for TCP; try another
		}
		srv := &dns.Server{Listener: l, Handler: zone}
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
		return addr
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return ""
}

// rawUDP answers every datagram with reply(query), for servers that misbehave.
func rawUDP(t testing.TB, reply func(query []byte) []byte) string {
	t.Helper()
	return rawUDPConn(t, func(pc net.PacketConn, from net.Addr, q []byte) { pc.WriteTo(reply(q), from) })
}

// rawTCP answers each length-prefixed DNS query on a connection with reply(query).
func rawTCP(t testing.TB, reply func(query []byte) []byte) string {
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
			c.SetDeadline(time.Now().Add(2 * time.Second))
			var n uint16
			if binary.Read(c, binary.BigEndian, &n) == nil {
				q := make([]byte, n)
				if _, err := io.ReadFull(c, q); err == nil {
					a := reply(q)
					binary.Write(c, binary.BigEndian, uint16(len(a)))
					c.Write(a)
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

func TestDNSProbe(t *testing.T) {
	zone := &testZone{}
	server := startDNSPair(t, zone)
	no := false
	tests := []struct {
		name string
		spec DNSSpec
		want Reason
	}{
		{"A over udp", DNSSpec{Query: "www.example.test", Answers: []string{`\tA\t198\.51\.100\.12$`}}, ReasonNone},
		{"A over tcp", DNSSpec{Transport: "tcp", Query: "www.example.test.", Type: "a"}, ReasonNone},
		{"answer mismatch", DNSSpec{Query: "www.example.test", Answers: []string{`\tA\t198\.51\.100\.99$`}}, ReasonAnswer},
		{"one of two answers missing", DNSSpec{Query: "www.example.test", Answers: []string{`198\.51\.100\.12`, `AAAA`}}, ReasonAnswer},
		{"nxdomain rejected", DNSSpec{Query: "nope.example.test"}, ReasonRcode},
		{"nxdomain accepted", DNSSpec{Query: "nope.example.test", Rcodes: []string{"NOERROR", "nxdomain"}}, ReasonNone},
		{"truncated udp retried over tcp", DNSSpec{Query: "big.example.test", Answers: []string{`198\.51\.100\.13`}}, ReasonNone},
		{"recursion desired refused", DNSSpec{Query: "norec.example.test"}, ReasonRcode},
		{"recursion off", DNSSpec{Query: "norec.example.test", Recursion: &no}, ReasonNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Server = server
			p, err := New(KindDNS, tt.spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			tcpBefore := zone.tcpQueries.Load()
			r := probeOnce(t, p, 2*time.Second)
			if r.Reason != tt.want || r.OK != (tt.want == ReasonNone) {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
			if tt.name == "truncated udp retried over tcp" && zone.tcpQueries.Load() != tcpBefore+1 {
				t.Errorf("TCP queries went from %d to %d, want one retry", tcpBefore, zone.tcpQueries.Load())
			}
		})
	}
}

func TestDNSHostile(t *testing.T) {
	ca := testkit.NewCA(t)
	cert, caFile := ca.Server(t).Certificate, ca.File
	dot := startDNS(t, "tcp-tls", &testZone{}, &cert)
	malformed := rawUDP(t, func(q []byte) []byte {
		// The query's ID, then a header that promises an answer the packet lacks.
		return append(append([]byte{}, q[:2]...), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 3, 'w')
	})
	wrongID := rawUDP(t, func(q []byte) []byte {
		m := new(dns.Msg)
		if err := m.Unpack(q); err != nil {
			return nil
		}
		r := new(dns.Msg)
		r.SetReply(m)
		r.Id++
		a, _ := dns.NewRR(m.Question[0].Name + " 60 IN A 198.51.100.12")
		r.Answer = append(r.Answer, a)
		b, _ := r.Pack()
		return b
	})
	wrongIDTCP := rawTCP(t, func(q []byte) []byte {
		m := new(dns.Msg)
		if err := m.Unpack(q); err != nil {
			return nil
		}
		r := new(dns.Msg)
		r.SetReply(m)
		r.Id++
		b, _ := r.Pack()
		return b
	})
	tests := []struct {
		name string
		spec DNSSpec
		want Reason
	}{
		{"wrong id over tcp", DNSSpec{Server: wrongIDTCP, Transport: "tcp"}, ReasonProtocol},
		{"tcp never answers", DNSSpec{Server: silentTCP(t), Transport: "tcp"}, ReasonTimeout},
		{"udp port closed", DNSSpec{Server: testkit.FreePort(t, "udp")}, ReasonRefused},
		{"tcp port closed", DNSSpec{Server: testkit.FreePort(t, "tcp"), Transport: "tcp"}, ReasonRefused},
		{"malformed reply", DNSSpec{Server: malformed}, ReasonProtocol},
		{"wrong id over udp is ignored", DNSSpec{Server: wrongID}, ReasonTimeout},
		{"dot verified", DNSSpec{Server: dot, Transport: "tls", TLS: TLSSpec{CAFile: caFile}}, ReasonNone},
		{"dot unknown ca", DNSSpec{Server: dot, Transport: "tls"}, ReasonTLS},
		{"dot wrong name", DNSSpec{Server: dot, Transport: "tls", TLS: TLSSpec{CAFile: caFile, ServerName: "dns.example.test"}}, ReasonTLS},
		{"dot insecure", DNSSpec{Server: dot, Transport: "tls", TLS: TLSSpec{Insecure: true}}, ReasonNone},
		{"server name does not resolve", DNSSpec{Server: "nonexistent.invalid"}, ReasonResolve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Query = "www.example.test"
			env := &Env{Resolver: NewResolver([]string{testkit.FreePort(t, "udp")})}
			p, err := New(KindDNS, tt.spec, env)
			if err != nil {
				t.Fatal(err)
			}
			r := probeOnce(t, p, probeTimeout(tt.want))
			if r.Reason != tt.want || r.OK != (tt.want == ReasonNone) {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
		})
	}
}

func TestDNSSpecErrors(t *testing.T) {
	tests := []struct {
		spec DNSSpec
		want string
	}{
		{DNSSpec{Query: "a.test"}, "server: missing"},
		{DNSSpec{Server: "127.0.0.1", Query: "a.test", Transport: "quic"}, `transport: "quic"`},
		{DNSSpec{Server: "127.0.0.1:99999", Query: "a.test"}, "server: "},
		{DNSSpec{Server: "127.0.0.1"}, "query: missing"},
		{DNSSpec{Server: "127.0.0.1", Query: "a..test"}, "query: "},
		{DNSSpec{Server: "127.0.0.1", Query: "a.test", Type: "BOGUS"}, `type: "BOGUS"`},
		{DNSSpec{Server: "127.0.0.1", Query: "a.test", Rcodes: []string{"NOERROR", "MAYBE"}}, `rcodes[1]: "MAYBE"`},
		{DNSSpec{Server: "127.0.0.1", Query: "a.test", Answers: []string{"("}}, "answers[0]: "},
		{DNSSpec{Server: "127.0.0.1", Query: "a.test", Transport: "tls", TLS: TLSSpec{CAFile: "/nonexistent/ca.pem"}}, "tls.ca_file: "},
	}
	for _, tt := range tests {
		_, err := New(KindDNS, tt.spec, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("spec %+v: error %v, want %q", tt.spec, err, tt.want)
		}
	}
}
