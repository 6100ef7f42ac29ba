package probes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsProber sends one query to one server and checks the reply's rcode and answers.
type dnsProber struct {
	spec     DNSSpec
	host     string // server host
	port     string
	client   dns.Client
	query    dns.Msg // template; each probe gets a fresh ID
	rcodes   []int
	answers  []*regexp.Regexp
	resolver *Resolver
}

var _ Prober = (*dnsProber)(nil)

func newDNSProber(spec DNSSpec, env *Env) (*dnsProber, error) {
	p := &dnsProber{spec: spec, resolver: env.resolver()}
	switch spec.Transport {
	case "", "udp":
		p.client.Net, p.port = "udp", "53"
	case "tcp":
		p.client.Net, p.port = "tcp", "53"
	case "tls":
		p.client.Net, p.port = "tcp-tls", "853"
	default:
		return nil, fmt.Errorf(`transport: %q, must be "udp", "tcp" or "tls"`, spec.Transport)
	}
	if spec.Server == "" {
		return nil, fmt.Errorf("server: must be set (host or host:port)")
	}
	if host, port, err := net.SplitHostPort(spec.Server); err == nil {
		if _, err := splitHostPort(spec.Server); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		p.host, p.port = host, port
	} else {
		p.host = strings.Trim(spec.Server, "[]")
	}

	if spec.Query == "" {
		return nil, fmt.Errorf("query: must be set (the name to ask for)")
	}
	name := dns.Fqdn(spec.Query)
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("query: %q is not a domain name", spec.Query)
	}
	qtype := dns.TypeA
	if spec.Type != "" {
		t, ok := dns.StringToType[strings.ToUpper(spec.Type)]
		if !ok {
			return nil, fmt.Errorf("type: %q is not a DNS record type", spec.Type)
		}
		qtype = t
	}
	p.query.SetQuestion(name, qtype)
	p.query.RecursionDesired = spec.Recursion == nil || *spec.Recursion

	rcodes := spec.Rcodes
	if len(rcodes) == 0 {
		rcodes = []string{"NOERROR"}
	}
	for i, s := range rcodes {
		code, ok := dns.StringToRcode[strings.ToUpper(s)]
		if !ok {
			return nil, fmt.Errorf("rcodes[%d]: %q is not an rcode (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)", i, s)
		}
		p.rcodes = append(p.rcodes, code)
	}
	for i, s := range spec.Answers {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("answers[%d]: %w", i, err)
		}
		p.answers = append(p.answers, re)
	}
	if p.client.Net == "tcp-tls" {
		conf, err := tlsConfig(spec.TLS)
		if err != nil {
			return nil, err
		}
		if conf.ServerName == "" {
			conf.ServerName = p.host
		}
		p.client.TLSConfig = conf
	}
	return p, nil
}

// Probe asks the query once (twice when a UDP answer comes back truncated).
func (p *dnsProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ip, err := p.resolver.LookupAddr(ctx, p.host, "ip")
	if err != nil {
		return failure(start, ReasonResolve, err.Error())
	}
	phases := Phases{Resolve: time.Since(start)}
	server := net.JoinHostPort(ip.String(), p.port)

	m := p.query.Copy()
	m.Id = dns.Id()
	var in *dns.Msg
	if p.client.Net == "udp" {
		in, err = exchange(ctx, &p.client, m, server)
	} else {
		in, _, err = p.client.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		r := failure(start, dnsReason(err), fmt.Sprintf("query %s %s at %s over %s: %v",
			m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], server, p.client.Net, err))
		r.Phases = phases
		return r
	}
	r := p.check(in)
	r.Start, r.RTT, r.Phases = start, time.Since(start), phases
	return r
}

func (p *dnsProber) check(in *dns.Msg) Result {
	accepted := false
	for _, code := range p.rcodes {
		accepted = accepted || in.Rcode == code
	}
	if !accepted {
		want := p.spec.Rcodes
		if len(want) == 0 {
			want = []string{"NOERROR"}
		}
		return Result{Reason: ReasonRcode, Detail: fmt.Sprintf("rcode %s, want %s",
			dns.RcodeToString[in.Rcode], strings.Join(want, " or "))}
	}
	for _, re := range p.answers {
		if !anyRRMatches(in.Answer, re) {
			return Result{Reason: ReasonAnswer, Detail: fmt.Sprintf("no answer record matches %q (%d records)", re, len(in.Answer))}
		}
	}
	return Result{OK: true}
}

func anyRRMatches(rrs []dns.RR, re *regexp.Regexp) bool {
	for _, rr := range rrs {
		if re.MatchString(rr.String()) {
			return true
		}
	}
	return false
}

// dnsReason adds miekg/dns's own errors (unpacking a malformed message, a reply with the
// wrong ID over TCP) to the common mapping.
func dnsReason(err error) Reason {
	var dnsErr *dns.Error
	reason := reasonOf(err)
	if reason == ReasonError && errors.As(err, &dnsErr) {
		return ReasonProtocol
	}
	return reason
}
