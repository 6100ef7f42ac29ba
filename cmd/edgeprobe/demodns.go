package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The demo's authoritative name server: the primary of one zone (demo.), started in the
// demo's process on loopback, which the demo's view rewrites by RFC 2136 dynamic updates
// signed with TSIG, as it would a BIND primary (docs/architecture.md, "Failover"). It does what
// the view's updates need of a primary and no more: queries answered authoritatively,
// and signed updates checked and applied whole or not at all (RFC 2136, section 3), with
// the zone's serial moved only when an update changes something, as BIND does.

// demoZone is the demo's zone and demoService the name its view fails over.
const (
	demoZone    = "demo."
	demoService = "www." + demoZone
	demoKeyName = "demo-view"
	demoTTL     = 1 // seconds: the demo's answers change within a second
)

type demoDNS struct {
	addr    string // 127.0.0.1:PORT, UDP and TCP
	secret  string // the TSIG key's secret (base64)
	servers []*dns.Server

	mu     sync.Mutex
	serial uint32
	rrsets map[rrKey][]dns.RR // every RRset but the apex SOA
}

type rrKey struct {
	name  string // lower case, fully qualified
	rtype uint16
}

func keyOf(rr dns.RR) rrKey {
	h := rr.Header()
	return rrKey{strings.ToLower(dns.Fqdn(h.Name)), h.Rrtype}
}

// startDemoDNS serves demoZone on a free port of 127.0.0.1 (the same port for UDP and
// TCP), with the A records of a (name -> addresses) and one TSIG key allowed to update.
func startDemoDNS(a map[string][]string) (*demoDNS, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	d := &demoDNS{secret: base64.StdEncoding.EncodeToString(b), serial: 1, rrsets: map[rrKey][]dns.RR{}}
	d.add(&dns.NS{Hdr: dns.RR_Header{Name: demoZone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 60}, Ns: "ns." + demoZone})
	d.add(&dns.A{Hdr: dns.RR_Header{Name: "ns." + demoZone, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 0, 0, 1)})
	for name, addrs := range a {
		for _, addr := range addrs {
			d.add(&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: demoTTL}, A: net.ParseIP(addr)})
		}
	}
	var errs []error
	for range 10 { // a UDP port taken by someone else: try another
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("demo name server: %w", err)
		}
		udp, err := net.ListenPacket("udp", tcp.Addr().String())
		if err != nil {
			tcp.Close()
			errs = append(errs, err)
			continue
		}
		d.addr = tcp.Addr().String()
		secrets := map[string]string{demoKeyName + ".": d.secret}
		h := dns.HandlerFunc(d.serve)
		d.servers = []*dns.Server{
			{Listener: tcp, Handler: h, TsigSecret: secrets, MsgAcceptFunc: acceptQueryOrUpdate},
			{PacketConn: udp, Handler: h, TsigSecret: secrets, MsgAcceptFunc: acceptQueryOrUpdate},
		}
		for _, s := range d.servers {
			go s.ActivateAndServe()
		}
		return d, nil
	}
	return nil, fmt.Errorf("demo name server: no port free for both TCP and UDP: %w", errors.Join(errs...))
}

func (d *demoDNS) close() {
	for _, s := range d.servers {
		s.Shutdown()
	}
}

// keyFile is the TSIG key in BIND's key-file syntax, as the view reads it.
func (d *demoDNS) keyFile() string {
	return fmt.Sprintf("key \"%s\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", demoKeyName, d.secret)
}

func (d *demoDNS) add(rr dns.RR) {
	k := keyOf(rr)
	for _, have := range d.rrsets[k] {
		if dns.IsDuplicate(have, rr) {
			return
		}
	}
	d.rrsets[k] = append(d.rrsets[k], rr)
}

func (d *demoDNS) soa() *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: demoZone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns." + demoZone, Mbox: "hostmaster." + demoZone, Serial: d.serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: demoTTL}
}

// acceptQueryOrUpdate lets UPDATE through, which miekg/dns's default refuses: an update
// carries its prerequisites and changes in the answer and authority sections.
func acceptQueryOrUpdate(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	switch int(dh.Bits>>11) & 0xF {
	case dns.OpcodeQuery, dns.OpcodeUpdate:
	default:
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

func (d *demoDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	signed := req.IsTsig() != nil
	if signed && w.TsigStatus() != nil {
		// A signature that does not verify (unknown key, bad MAC, clock): not authorised,
		// and the answer cannot be signed with a key the server does not share.
		m.Rcode = dns.RcodeNotAuth
		w.WriteMsg(m)
		return
	}
	switch req.Opcode {
	case dns.OpcodeUpdate:
		if !signed {
			m.Rcode = dns.RcodeRefused // only the view's key may change the zone
		} else {
			m.Rcode = d.update(req)
		}
	default:
		d.answer(req.Question[0], m)
	}
	if signed {
		t := req.IsTsig()
		m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	}
	w.WriteMsg(m)
}

// answer fills m with the zone's answer to q, authoritatively.
func (d *demoDNS) answer(q dns.Question, m *dns.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(demoZone, name) {
		m.Rcode = dns.RcodeRefused // not our zone, and no recursion
		return
	}
	m.Authoritative = true
	if q.Qtype == dns.TypeSOA && name == demoZone {
		m.Answer = append(m.Answer, d.soa())
		return
	}
	m.Answer = append(m.Answer, d.rrsets[rrKey{name, q.Qtype}]...)
	if len(m.Answer) > 0 {
		return
	}
	if !d.nameExists(name) {
		m.Rcode = dns.RcodeNameError
	}
	m.Ns = append(m.Ns, d.soa())
}

func (d *demoDNS) nameExists(name string) bool {
	if name == demoZone {
		return true
	}
	for k, rrs := range d.rrsets {
		if k.name == name && len(rrs) > 0 {
			return true
		}
	}
	return false
}

// update applies an RFC 2136 update whole or not at all and returns the rcode: the zone
// section (3.1), the prerequisites (3.2), the prescan (3.4.1), then the changes (3.4.2).
func (d *demoDNS) update(req *dns.Msg) int {
	z := req.Question[0]
	if z.Qtype != dns.TypeSOA || z.Qclass != dns.ClassINET {
		return dns.RcodeFormatError
	}
	if !strings.EqualFold(dns.Fqdn(z.Name), demoZone) {
		return dns.RcodeNotAuth // not a zone this server is primary for
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Prerequisites: value-dependent RRsets are gathered first and compared as sets.
	wanted := map[rrKey][]dns.RR{}
	for _, rr := range req.Answer {
		h := rr.Header()
		name := strings.ToLower(dns.Fqdn(h.Name))
		if h.Ttl != 0 {
			return dns.RcodeFormatError
		}
		if !dns.IsSubDomain(demoZone, name) {
			return dns.RcodeNotZone
		}
		switch h.Class {
		case dns.ClassANY, dns.ClassNONE:
			if h.Rdlength != 0 {
				return dns.RcodeFormatError
			}
			exists := d.nameExists(name)
			if h.Rrtype != dns.TypeANY {
				exists = len(d.rrsets[rrKey{name, h.Rrtype}]) > 0
			}
			switch {
			case h.Class == dns.ClassANY && !exists && h.Rrtype == dns.TypeANY:
				return dns.RcodeNameError
			case h.Class == dns.ClassANY && !exists:
				return dns.RcodeNXRrset
			case h.Class == dns.ClassNONE && exists && h.Rrtype == dns.TypeANY:
				return dns.RcodeYXDomain
			case h.Class == dns.ClassNONE && exists:
				return dns.RcodeYXRrset
			}
		case dns.ClassINET:
			k := rrKey{name, h.Rrtype}
			wanted[k] = append(wanted[k], rr)
		default:
			return dns.RcodeFormatError
		}
	}
	for k, want := range wanted {
		if !sameRRset(d.rrsets[k], want) {
			return dns.RcodeNXRrset
		}
	}
	for _, rr := range req.Ns {
		h := rr.Header()
		if !dns.IsSubDomain(demoZone, strings.ToLower(dns.Fqdn(h.Name))) {
			return dns.RcodeNotZone
		}
		switch h.Class {
		case dns.ClassINET:
			if h.Rrtype == dns.TypeANY || h.Rrtype == dns.TypeSOA {
				return dns.RcodeFormatError // the demo's zone keeps its SOA to itself
			}
		case dns.ClassANY, dns.ClassNONE:
			if h.Ttl != 0 || h.Class == dns.ClassANY && h.Rdlength != 0 {
				return dns.RcodeFormatError
			}
		default:
			return dns.RcodeFormatError
		}
	}
	before := d.snapshot()
	for _, rr := range req.Ns {
		h := rr.Header()
		k := keyOf(rr)
		switch h.Class {
		case dns.ClassINET:
			d.add(dns.Copy(rr))
		case dns.ClassANY:
			for key := range d.rrsets {
				if key.name == k.name && (h.Rrtype == dns.TypeANY || key.rtype == h.Rrtype) && !(key.name == demoZone && key.rtype == dns.TypeNS) {
					delete(d.rrsets, key)
				}
			}
		case dns.ClassNONE:
			del := dns.Copy(rr)
			del.Header().Class = dns.ClassINET
			kept := d.rrsets[k][:0]
			for _, have := range d.rrsets[k] {
				if !dns.IsDuplicate(have, del) {
					kept = append(kept, have)
				}
			}
			d.rrsets[k] = kept
		}
	}
	if d.snapshot() != before {
		d.serial++
	}
	return dns.RcodeSuccess
}

// sameRRset says whether two RRsets hold the same records, TTLs aside (RFC 2136,
// section 3.2.3).
func sameRRset(have, want []dns.RR) bool {
	contains := func(set []dns.RR, rr dns.RR) bool {
		for _, x := range set {
			if dns.IsDuplicate(x, rr) {
				return true
			}
		}
		return false
	}
	for _, rr := range want {
		if !contains(have, rr) {
			return false
		}
	}
	for _, rr := range have {
		if !contains(want, rr) {
			return false
		}
	}
	return true
}

// snapshot is the zone's content in a comparable form, TTLs included.
func (d *demoDNS) snapshot() string {
	var lines []string
	for _, rrs := range d.rrsets {
		for _, rr := range rrs {
			lines = append(lines, rr.String())
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// lookupA asks the server for name's A records over UDP, as a resolver would, within
// timeout.
func (d *demoDNS) lookupA(name string, timeout time.Duration) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.RecursionDesired = false
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, d.addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out, nil
}
