//go:build linux

package testnet

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Ports of the services Serve starts on a site host.
const (
	DNSPort  = 53
	HTTPPort = 80
	TCPPort  = 5432 // a database port: the kind of service a bare TCP target checks
)

// Services are the endpoints Serve started on one site host.
type Services struct {
	Addr netip.Addr
	DNS  netip.AddrPort // UDP and TCP; answers every A query with Addr
	HTTP netip.AddrPort // 200 "ok" on every path
	TCP  netip.AddrPort // accepts and closes
}

// HealthPath is a path to put in HTTP targets; the server answers every path alike.
const HealthPath = "/healthz"

// URL is the HTTP service's health URL.
func (s Services) URL() string { return "http://" + s.HTTP.String() + HealthPath }

// Serve starts a DNS, an HTTP and a TCP server on host i of a site, bound to that
// host's address inside the site's namespace. They stop when the network is closed.
func (n *Net) Serve(site string, i int) (Services, error) {
	addr, err := n.SiteAddr(site, i)
	if err != nil {
		return Services{}, err
	}
	s := Services{
		Addr: addr,
		DNS:  netip.AddrPortFrom(addr, DNSPort),
		HTTP: netip.AddrPortFrom(addr, HTTPPort),
		TCP:  netip.AddrPortFrom(addr, TCPPort),
	}
	var (
		dnsPacket          net.PacketConn
		dnsStream, web, tc net.Listener
	)
	err = n.Do(site, func() error {
		var errs [4]error
		dnsPacket, errs[0] = net.ListenPacket("udp", s.DNS.String())
		dnsStream, errs[1] = net.Listen("tcp", s.DNS.String())
		web, errs[2] = net.Listen("tcp", s.HTTP.String())
		tc, errs[3] = net.Listen("tcp", s.TCP.String())
		return errors.Join(errs[:]...)
	})
	if err != nil {
		for _, c := range []interface{ Close() error }{dnsPacket, dnsStream, web, tc} {
			if c != nil {
				c.Close()
			}
		}
		return Services{}, fmt.Errorf("listen on site %q host %s: %w", site, addr, err)
	}

	answer := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		for _, q := range req.Question {
			if q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   addr.AsSlice(),
				})
			}
		}
		w.WriteMsg(m)
	})
	udpServer := &dns.Server{PacketConn: dnsPacket, Handler: answer}
	tcpServer := &dns.Server{Listener: dnsStream, Handler: answer}
	webServer := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("ok\n"))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go udpServer.ActivateAndServe()
	go tcpServer.ActivateAndServe()
	go webServer.Serve(web)
	go acceptAndClose(tc)

	closers := []func() error{dnsPacket.Close, dnsStream.Close, webServer.Close, tc.Close}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		for _, c := range closers {
			c()
		}
		return Services{}, fmt.Errorf("testnet %s: serve on site %q: network closed", n.prefix, site)
	}
	n.closers = append(n.closers, closers...)
	return s, nil
}

func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
