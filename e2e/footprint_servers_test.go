//go:build linux && bench

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/miekg/dns"
)

// fpDNSName is the name every DNS target is asked for: blackbox_exporter's dns module
// takes one query name, so DNS targets differ by server address, for both tools.
const fpDNSName = "www.footprint.test."

// fpServers are the mixed case's DNS, HTTP and TCP targets: one real server per target,
// each on its own loopback address with a port the kernel chose, in this process (which
// is not measured).
type fpServers struct {
	dns  []string // host:port of UDP DNS servers
	http []string // http://host:port/ URLs
	tcp  []string // host:port of listeners that accept and close
}

// fpServe starts n/4 servers of each kind and stops them when the test ends.
func fpServe(t *testing.T, n int) *fpServers {
	t.Helper()
	q := n / 4
	s := &fpServers{}
	answer := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, question := range req.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})
	for i := 0; i < q; i++ {
		pc, err := net.ListenPacket("udp4", fpAddr(fpDNSBlock, i)+":0")
		if err != nil {
			t.Fatalf("DNS server %d: %v", i, err)
		}
		srv := &dns.Server{PacketConn: pc, Handler: answer}
		go srv.ActivateAndServe()
		t.Cleanup(func() {
			ctx, cancel := fpWait()
			defer cancel()
			srv.ShutdownContext(ctx)
		})
		s.dns = append(s.dns, pc.LocalAddr().String())
	}

	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	t.Cleanup(func() {
		ctx, cancel := fpWait()
		defer cancel()
		web.Shutdown(ctx)
	})
	for i := 0; i < q; i++ {
		l, err := net.Listen("tcp4", fpAddr(fpHTTPBlock, i)+":0")
		if err != nil {
			t.Fatalf("HTTP server %d: %v", i, err)
		}
		go web.Serve(l)
		s.http = append(s.http, fmt.Sprintf("http://%s/", l.Addr()))
	}

	for i := 0; i < q; i++ {
		l, err := net.Listen("tcp4", fpAddr(fpTCPBlock, i)+":0")
		if err != nil {
			t.Fatalf("TCP listener %d: %v", i, err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		s.tcp = append(s.tcp, l.Addr().String())
	}
	return s
}

func fpDecodeJSON(r io.Reader, v any) error {
	return json.NewDecoder(r).Decode(v)
}
