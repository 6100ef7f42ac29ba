package probes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsProber sends one query to one server and checks the reply's rcode and answers.
type dnsProber struct {
	spec       DNSSpec
	host       string // server host
	port       string
	client     dns.Client
	query      dns.Msg // template; each probe gets a fresh ID
	rcodes     []int
	rcodeNames []string // as configured, for the Detail
	answers    []*regexp.Regexp
	resolver   *Resolver
}

var _ Prober = (*dnsProber)(nil)

func newDNSProber(spec DNSSpec, env *Env) (*dnsProber, error) {
	p := &dnsProber{spec: spec, resolver: env.resolver()}
	switch spec.Transport {
	case "udp":
		p.client.Net, p.port = "udp", "53"
	case "tcp":
		p.client.Net, p.port = "tcp", "53"
	case "tls":
		p.client.Net, p.port = "tcp-tls", "853"
	}
	if host, port, err := net.SplitHostPort(spec.Server); err == nil {
		p.host, p.port = host, port
	} else {
		p.host = strings.Trim(spec.Server, "[]")
	}
	p.query.SetQuestion(spec.Query, dns.StringToType[spec.Type])
	p.query.RecursionDesired = *spec.Recursion
	for _, s := range spec.Rcodes {
		p.rcodes = append(p.rcodes, dns.StringToRcode[s])
	}
	p.rcodeNames = spec.Rcodes
	for _, s := range spec.Answers {
		p.answers = append(p.answers, regexp.MustCompile(s))
	}
	if p.client.Net == "tcp-tls" {
		conf, err := spec.TLS.ClientConfig()
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
	r := p.check(m, in)
	if !r.OK && r.Reason != ReasonRcode && r.Reason != ReasonAnswer {
		r.Detail = fmt.Sprintf("query %s %s at %s over %s: %s", m.Question[0].Name,
			dns.TypeToString[m.Question[0].Qtype], server, p.client.Net, r.Detail)
	}
	r.Start, r.RTT, r.Phases = start, time.Since(start), phases
	return r
}

func (p *dnsProber) check(query, in *dns.Msg) Result {
	reason, detail := checkDNSReply(query, in, p.rcodes, p.rcodeNames, p.answers)
	return Result{OK: reason == ReasonNone, Reason: reason, Detail: detail}
}

// checkDNSReply decides whether reply answers query as expected: the same ID, the question
// asked (an error rcode may come without one), an rcode in rcodes (named rcodeNames for the
// Detail), and for each of answers some record of the answer section whose zone-file text
// it matches. It is pure, so that it can be fuzzed; the reply is untrusted input.
func checkDNSReply(query, reply *dns.Msg, rcodes []int, rcodeNames []string, answers []*regexp.Regexp) (Reason, string) {
	if mismatch := replyMismatch(query, reply); mismatch != "" {
		return ReasonProtocol, mismatch
	}
	if !slices.Contains(rcodes, reply.Rcode) {
		return ReasonRcode, fmt.Sprintf("rcode %s, want %s", rcodeString(reply.Rcode), strings.Join(rcodeNames, " or "))
	}
	if len(answers) == 0 {
		return ReasonNone, ""
	}
	// Each record's text once, however many regexes there are: an answer may hold
	// thousands of records (up to 64 KiB over TCP).
	texts := make([]string, len(reply.Answer))
	for i, rr := range reply.Answer {
		texts[i] = rr.String()
	}
	for _, re := range answers {
		if !slices.ContainsFunc(texts, re.MatchString) {
			return ReasonAnswer, fmt.Sprintf("no answer record matches %q (%d records)", re, len(texts))
		}
	}
	return ReasonNone, ""
}

// replyMismatch says why reply is not an answer to query ("" when it is): another ID, no
// QR bit, or another question (an error rcode may come without one).
func replyMismatch(query, reply *dns.Msg) string {
	if reply.Id != query.Id {
		return fmt.Sprintf("reply ID %d, want %d", reply.Id, query.Id)
	}
	if !reply.Response {
		return "reply has the QR bit clear: it is a query, not a response"
	}
	q := query.Question[0]
	switch {
	case len(reply.Question) == 0 && reply.Rcode == dns.RcodeSuccess:
		return fmt.Sprintf("NOERROR reply without a question section, want %s", questionString(q))
	case len(reply.Question) > 1:
		return fmt.Sprintf("reply holds %d questions, want 1 (%s)", len(reply.Question), questionString(q))
	case len(reply.Question) == 1:
		rq := reply.Question[0]
		if !strings.EqualFold(rq.Name, q.Name) || rq.Qtype != q.Qtype || rq.Qclass != q.Qclass {
			return fmt.Sprintf("reply is for %s, want %s", questionString(rq), questionString(q))
		}
	}
	return ""
}

// questionString shows a question as "name TYPE CLASS", quoting a name that holds
// control characters so that a hostile reply cannot garble the Detail.
func questionString(q dns.Question) string {
	return fmt.Sprintf("%q %s %s", q.Name, typeString(q.Qtype), classString(q.Qclass))
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}

func classString(c uint16) string {
	if s, ok := dns.ClassToString[c]; ok {
		return s
	}
	return fmt.Sprintf("CLASS%d", c)
}

func rcodeString(code int) string {
	if s, ok := dns.RcodeToString[code]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", code)
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
