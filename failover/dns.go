package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// tsigFudge is the clock skew a signature tolerates (RFC 8945 recommends 300 s).
const tsigFudge = 300

// Outcomes of one DNS attempt.
const (
	outcomeOK          = "ok"           // the update was applied
	outcomeAlreadyDone = "already_done" // the RRset held the target already
	outcomeConflict    = "conflict"     // the RRset held something else
	outcomeRetry       = "retry"        // failed; may be retried
	outcomeUnchanged   = "unchanged"    // a final check found the RRset still as it was
)

// dnsResult is what came of one attempt.
type dnsResult struct {
	outcome string
	rcode   string   // the server's answer, "" when none came
	err     string   // what went wrong
	found   []string // what the server held, when it was queried
	took    time.Duration
}

func (a *DNSAction) client() *dns.Client {
	return &dns.Client{
		Net:        a.Transport,
		Timeout:    a.Timeout.Duration,
		TsigSecret: map[string]string{a.key.Name: a.key.Secret},
	}
}

// rrs builds the RRs of the action's RRset from canonical record data.
func (a *DNSAction) rrs(data []string, ttl uint32) []dns.RR {
	out := make([]dns.RR, 0, len(data))
	for _, d := range data {
		hdr := dns.RR_Header{Name: a.Name, Rrtype: a.rrtype, Class: dns.ClassINET, Ttl: ttl}
		switch a.rrtype {
		case dns.TypeA:
			out = append(out, &dns.A{Hdr: hdr, A: net.ParseIP(d).To4()})
		case dns.TypeAAAA:
			out = append(out, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(d)})
		case dns.TypeCNAME:
			out = append(out, &dns.CNAME{Hdr: hdr, Target: d})
		}
	}
	return out
}

func (a *DNSAction) ttlSeconds() uint32 { return uint32(a.TTL.Duration / time.Second) }

// sign adds the TSIG record; the client signs it as it sends.
func (a *DNSAction) sign(m *dns.Msg) {
	m.SetTsig(a.key.Name, a.key.Algorithm, tsigFudge, time.Now().Unix())
}

// apply rewrites the RRset from `from` to `to` (RFC 2136): the prerequisite that the
// RRset is exactly `from` (value dependent, section 2.4.2), then the RRset deleted and
// `to` added with the action's ttl, all in one signed message, which the server applies
// whole or not at all. When the prerequisite fails the RRset is read: holding `to`
// already is another view's work (already_done), holding anything else a conflict.
// With verifyOnly only that read is done (the last look of an attempt given up).
func (a *DNSAction) apply(ctx context.Context, from, to []string, verifyOnly bool) dnsResult {
	start := time.Now()
	res := func(r dnsResult) dnsResult {
		r.took = time.Since(start)
		return r
	}
	if !verifyOnly {
		m := new(dns.Msg)
		m.SetUpdate(a.Zone)
		m.Used(a.rrs(from, 0))
		m.RemoveRRset(a.rrs(from[:1], 0))
		m.Insert(a.rrs(to, a.ttlSeconds()))
		a.sign(m)
		rcode, err := a.exchange(ctx, m)
		switch {
		case err != nil:
			return res(dnsResult{outcome: outcomeRetry, rcode: rcode, err: err.Error()})
		case rcode == "NOERROR":
			return res(dnsResult{outcome: outcomeOK, rcode: rcode})
		case !prerequisiteFailed(rcode):
			return res(dnsResult{outcome: outcomeRetry, rcode: rcode, err: "the server refused the update"})
		}
	}
	found, _, rcode, err := a.query(ctx)
	switch {
	case err != nil:
		return res(dnsResult{outcome: outcomeRetry, rcode: rcode, err: "reading the RRset: " + err.Error()})
	case sameSet(found, to):
		return res(dnsResult{outcome: outcomeAlreadyDone, rcode: rcode, found: found})
	case sameSet(found, from) && verifyOnly:
		return res(dnsResult{outcome: outcomeUnchanged, rcode: rcode, found: found})
	case sameSet(found, from):
		// The prerequisite failed and yet the RRset is as expected: it changed in between.
		return res(dnsResult{outcome: outcomeRetry, rcode: rcode, found: found, err: "the RRset changed while the update was under way"})
	}
	return res(dnsResult{outcome: outcomeConflict, rcode: rcode, found: found,
		err: fmt.Sprintf("the RRset holds %s, neither what the view expected nor the target", describeRecords(found))})
}

// prerequisiteFailed names the answers of RFC 2136, section 3.2.5.
func prerequisiteFailed(rcode string) bool {
	switch rcode {
	case "NXRRSET", "YXRRSET", "NXDOMAIN", "YXDOMAIN":
		return true
	}
	return false
}

// exchange sends a signed message and returns the server's answer: its rcode, or the
// TSIG error (BADSIG, BADKEY, BADTIME) a server gives for a signature it refuses. A
// reply that is not signed, or whose signature does not verify, is an error: the
// decision must rest on the server's word only.
func (a *DNSAction) exchange(ctx context.Context, m *dns.Msg) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.Timeout.Duration)
	defer cancel()
	r, _, err := a.client().ExchangeContext(ctx, m, a.Server)
	if r != nil {
		if t := r.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
			name := rcodeName(int(t.Error))
			return name, fmt.Errorf("the server refused the signature: %s (%s)", name, rcodeName(r.Rcode))
		}
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("no answer from %s within %s (%s)", a.Server, a.Timeout, a.Transport)
		}
		if r != nil && r.Rcode != dns.RcodeSuccess {
			return rcodeName(r.Rcode), fmt.Errorf("%s: %v", rcodeName(r.Rcode), err)
		}
		return "", err
	}
	if r.IsTsig() == nil {
		return rcodeName(r.Rcode), fmt.Errorf("the answer (%s) is not signed", rcodeName(r.Rcode))
	}
	return rcodeName(r.Rcode), nil
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// query reads the RRset from the server, signed like the update: the records in
// canonical form and their TTL.
func (a *DNSAction) query(ctx context.Context) (records []string, ttl uint32, rcode string, err error) {
	m := new(dns.Msg)
	m.SetQuestion(a.Name, a.rrtype)
	m.RecursionDesired = false
	a.sign(m)
	ctx, cancel := context.WithTimeout(ctx, a.Timeout.Duration)
	defer cancel()
	c := a.client()
	r, _, err := c.ExchangeContext(ctx, m, a.Server)
	if err != nil {
		if r != nil {
			if t := r.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
				return nil, 0, rcodeName(int(t.Error)), fmt.Errorf("the server refused the signature: %s", rcodeName(int(t.Error)))
			}
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, 0, "", fmt.Errorf("no answer from %s within %s", a.Server, a.Timeout)
		}
		return nil, 0, "", err
	}
	rcode = rcodeName(r.Rcode)
	if r.IsTsig() == nil {
		return nil, 0, rcode, fmt.Errorf("the answer (%s) is not signed", rcode)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, 0, rcode, fmt.Errorf("query answered %s", rcode)
	}
	if !r.Authoritative {
		return nil, 0, rcode, fmt.Errorf("the answer is not authoritative: %s is not the zone's server", a.Server)
	}
	for _, rr := range r.Answer {
		h := rr.Header()
		if !strings.EqualFold(h.Name, a.Name) || h.Rrtype != a.rrtype {
			continue
		}
		var v string
		switch x := rr.(type) {
		case *dns.A:
			v = x.A.String()
		case *dns.AAAA:
			v = x.AAAA.String()
		case *dns.CNAME:
			v = strings.ToLower(x.Target)
		}
		if v != "" && !slices.Contains(records, v) {
			records = append(records, v)
		}
		ttl = h.Ttl
	}
	return records, ttl, rcode, nil
}

func describeRecords(rs []string) string {
	if len(rs) == 0 {
		return "no records"
	}
	return strings.Join(rs, ", ")
}

// TestResult is the outcome of TestActions for one DNS action.
type TestResult struct {
	Action string   // its key, e.g. actions.dns[0]
	Site   string   //
	Server string   //
	Name   string   //
	Type   string   //
	Found  []string // the records the server holds
	Holds  string   // primary, failover or other: which set Found is
	Rcode  string   // the update's answer
	Err    error    // nil when the test update was accepted
}

// TestActions proves, for each DNS action, that the server accepts its signed updates
// without changing anything: it reads the RRset, then sends an update whose prerequisite
// is exactly that RRset (value dependent) and which deletes the RRset and adds the same
// records with the same TTL. BIND applies such an update as no change at all (the zone's
// serial stays; README.md, "edgeprobe check --test-actions"), yet checks everything a
// real failover needs: the key, the signature, the clock, the update policy for the name
// and type, and the zone being the server's. The prerequisite keeps it harmless if the
// RRset changes in between (the server then answers NXRRSET and nothing is written).
// It returns one result per DNS action, and an error when any failed.
func (c *Config) TestActions(ctx context.Context) ([]TestResult, error) {
	var out []TestResult
	failed := 0
	for i := range c.DNS {
		a := &c.DNS[i]
		r := TestResult{Action: fmt.Sprintf("actions.dns[%d]", i), Site: a.Site, Server: a.Server, Name: a.Name, Type: a.Type}
		r.Rcode, r.Found, r.Err = a.test(ctx)
		switch {
		case sameSet(r.Found, a.primary):
			r.Holds = StatePrimary
		case sameSet(r.Found, a.failover):
			r.Holds = ActionFailover
		default:
			r.Holds = "other"
		}
		if r.Err != nil {
			failed++
		}
		out = append(out, r)
	}
	if failed > 0 {
		return out, fmt.Errorf("%d of %d DNS actions failed the test update", failed, len(c.DNS))
	}
	return out, nil
}

func (a *DNSAction) test(ctx context.Context) (rcode string, found []string, err error) {
	found, ttl, rcode, err := a.query(ctx)
	if err != nil {
		return rcode, nil, fmt.Errorf("reading %s %s: %w", a.Name, a.Type, err)
	}
	if len(found) == 0 {
		return rcode, nil, fmt.Errorf("%s has no %s records on %s: a failover's prerequisite would fail; add the primary records", a.Name, a.Type, a.Server)
	}
	m := new(dns.Msg)
	m.SetUpdate(a.Zone)
	m.Used(a.rrs(found, 0))
	m.RemoveRRset(a.rrs(found[:1], 0))
	m.Insert(a.rrs(found, ttl))
	a.sign(m)
	rcode, err = a.exchange(ctx, m)
	if err == nil && rcode != "NOERROR" {
		err = fmt.Errorf("the server answered %s", rcode)
	}
	return rcode, found, err
}
