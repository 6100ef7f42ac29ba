//go:build linux

package probes

// Fuzz targets for the checks that read what a remote endpoint sends: a DNS reply against
// the query and the spec (checkDNSReply) and as the resolver reads it (answerAddr), an HTTP body against body_limit and body_match
// (matchBody). Seeds: the f.Add calls below and testdata/fuzz/<target>/ (hostile replies:
// pointer loops, thousands of records, wrong question, garbage). `make fuzz` runs them.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// fuzzDNSSpecs are the expectations a reply is checked against, picked by the fuzzer.
var fuzzDNSSpecs = []struct {
	rcodes  []string
	answers []string
}{
	{[]string{"NOERROR"}, nil},
	{[]string{"NOERROR", "NXDOMAIN"}, []string{`\tA\t198\.51\.100\.12$`}},
	{[]string{"NOERROR"}, []string{`\tA\t`, `(?i)example`}},
	{[]string{"SERVFAIL", "REFUSED"}, []string{`.`}},
}

func fuzzQuery() *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	q.Id = 0x1234
	return q
}

func FuzzDNSReply(f *testing.F) {
	q := fuzzQuery()
	good := dnsAnswer(q, 1)
	good.Answer[0].(*dns.A).A = []byte{198, 51, 100, 12}
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	for i, m := range []*dns.Msg{good, nx, dnsAnswer(q, 40)} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i))
	}
	qb, _ := q.Pack()
	f.Add(pointerLoop(qb), uint8(0))
	f.Add(selfPointer(qb), uint8(1))

	f.Fuzz(func(t *testing.T, reply []byte, pick uint8) {
		spec := fuzzDNSSpecs[int(pick)%len(fuzzDNSSpecs)]
		var rcodes []int
		for _, s := range spec.rcodes {
			rcodes = append(rcodes, dns.StringToRcode[s])
		}
		var answers []*regexp.Regexp
		for _, s := range spec.answers {
			answers = append(answers, regexp.MustCompile(s))
		}
		in := new(dns.Msg)
		if err := in.Unpack(reply); err != nil {
			// The prober reports this error as the Detail: it must be a protocol failure
			// that says something.
			if reason := dnsReason(err); reason != ReasonProtocol {
				t.Fatalf("unpack error %v (%T) classified %q, want protocol", err, err, reason)
			}
			if err.Error() == "" {
				t.Fatal("unpack error without a message")
			}
			return
		}
		reason, detail := checkDNSReply(q, in, rcodes, spec.rcodes, answers)
		if r2, d2 := checkDNSReply(q, in, rcodes, spec.rcodes, answers); r2 != reason || d2 != detail {
			t.Fatalf("not deterministic: %q %q, then %q %q", reason, detail, r2, d2)
		}
		// An independent oracle for what the reply deserves.
		questionOK := len(in.Question) == 1 && strings.EqualFold(in.Question[0].Name, q.Question[0].Name) &&
			in.Question[0].Qtype == q.Question[0].Qtype && in.Question[0].Qclass == q.Question[0].Qclass ||
			len(in.Question) == 0 && in.Rcode != dns.RcodeSuccess
		var want Reason
		switch {
		case in.Id != q.Id || !in.Response || !questionOK:
			want = ReasonProtocol
		case !slices.Contains(rcodes, in.Rcode):
			want = ReasonRcode
		default:
			for _, re := range answers {
				if !slices.ContainsFunc(in.Answer, func(rr dns.RR) bool { return re.MatchString(rr.String()) }) {
					want = ReasonAnswer
					break
				}
			}
		}
		if reason != want {
			t.Fatalf("reason %q (%q), want %q for\n%v", reason, detail, want, in)
		}
		checkDetail(t, reason, detail)
		// The resolver's reading of the same answer: an address only from an A record.
		if addr, ttl := answerAddr(in.Answer, q.Question[0].Name, dns.TypeA); addr.IsValid() {
			found := slices.ContainsFunc(in.Answer, func(rr dns.RR) bool {
				a, ok := rr.(*dns.A)
				return ok && a.A.Equal(addr.AsSlice()) && ttl <= time.Duration(a.Hdr.Ttl)*time.Second
			})
			if !found || ttl < 0 || ttl > maxCacheTTL {
				t.Fatalf("resolver took %s (ttl %v) from an answer without such an A record:\n%v", addr, ttl, in)
			}
		}
		switch reason {
		case ReasonRcode:
			if !strings.HasPrefix(detail, "rcode ") || !strings.Contains(detail, spec.rcodes[0]) {
				t.Errorf("rcode detail %q does not name the rcode and what was wanted", detail)
			}
		case ReasonAnswer:
			if !strings.Contains(detail, fmt.Sprintf("(%d records)", len(in.Answer))) {
				t.Errorf("answer detail %q does not count the records", detail)
			}
		}
	})
}

// checkDetail holds a failure's Detail to what logs and metrics can carry: present, one
// line of valid UTF-8, no control characters from the peer.
func checkDetail(t *testing.T, reason Reason, detail string) {
	t.Helper()
	if reason == ReasonNone {
		if detail != "" {
			t.Fatalf("success with detail %q", detail)
		}
		return
	}
	if detail == "" {
		t.Fatalf("reason %q without a detail", reason)
	}
	if !utf8.ValidString(detail) || strings.ContainsFunc(detail, unicode.IsControl) {
		t.Fatalf("detail %q is not one clean line", detail)
	}
}

// chunkReader returns at most n bytes per Read, then err (io.EOF when nil).
type chunkReader struct {
	data []byte
	n    int
	err  error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := min(len(p), r.n, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func FuzzHTTPBody(f *testing.F) {
	f.Add("status: ok", []byte("status: ok\n"), uint16(1<<15), uint8(255))
	f.Add("^needle$", []byte("haystack"), uint16(3), uint8(0))
	f.Add(`(?s)^\{.*"healthy":\s*true`, []byte(`{"version":1, "healthy": true}`), uint16(64), uint8(7))
	f.Add("", []byte{}, uint16(0), uint8(1))

	f.Fuzz(func(t *testing.T, pattern string, body []byte, limit uint16, chunk uint8) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return // refused when the prober is built (TestHTTPSpecErrors)
		}
		lim := int64(limit) + 1 // New makes 0 the default and refuses negatives
		read := func(r *chunkReader, re *regexp.Regexp, buf *bytes.Buffer) (Reason, string) {
			reason, detail := matchBody(r, lim, re, buf)
			checkDetail(t, reason, detail)
			return reason, detail
		}
		var buf bytes.Buffer
		over := int64(len(body)) > lim

		// Without body_match: a body is read up to the limit and never fails.
		if reason, detail := read(&chunkReader{data: body, n: int(chunk) + 1}, nil, &buf); reason != ReasonNone {
			t.Fatalf("no body_match: %q %q", reason, detail)
		}

		reason, detail := read(&chunkReader{data: body, n: int(chunk) + 1}, re, &buf)
		switch {
		case over:
			if reason != ReasonBody || detail != fmt.Sprintf("body exceeds body_limit (%d bytes)", lim) {
				t.Fatalf("%d bytes over a limit of %d: %q %q", len(body), lim, reason, detail)
			}
		case re.Match(body):
			if reason != ReasonNone {
				t.Fatalf("body matches %q: %q %q", pattern, reason, detail)
			}
		default:
			if reason != ReasonBody || !strings.Contains(detail, fmt.Sprintf("does not match %q", re)) {
				t.Fatalf("body does not match %q: %q %q", pattern, reason, detail)
			}
		}
		if int64(buf.Cap()) > 2*lim+64<<10 {
			t.Errorf("buffer grew to %d bytes for a limit of %d", buf.Cap(), lim)
		}

		// The buffer is reused: what an earlier, different body left must not count.
		read(&chunkReader{data: []byte("leftover needle status: ok"), n: 5}, re, &buf)
		if r2, d2 := read(&chunkReader{data: body, n: 1}, re, &buf); r2 != reason || d2 != detail {
			t.Fatalf("after reuse, one byte a read: %q %q, first %q %q", r2, d2, reason, detail)
		}

		// A connection that breaks after the body: within the limit the error is reported
		// with how far the read got; past it the limit stops reading first.
		broken := func(re *regexp.Regexp) {
			r, d := read(&chunkReader{data: body, n: int(chunk) + 1, err: io.ErrUnexpectedEOF}, re, &buf)
			switch {
			case !over:
				if r != ReasonProtocol || d != fmt.Sprintf("read body after %d bytes: unexpected EOF", len(body)) {
					t.Fatalf("broken after %d bytes: %q %q", len(body), r, d)
				}
			case re == nil && r != ReasonNone, re != nil && r != ReasonBody:
				t.Fatalf("broken after %d bytes, over the limit %d: %q %q", len(body), lim, r, d)
			}
		}
		broken(nil)
		broken(re)
	})
}

// TestFuzzHelpers keeps the fuzz targets' assumptions true: unpack errors of miekg/dns
// are *dns.Error (classified protocol).
func TestFuzzHelpers(t *testing.T) {
	err := new(dns.Msg).Unpack([]byte{1})
	var dnsErr *dns.Error
	if !errors.As(err, &dnsErr) || dnsReason(err) != ReasonProtocol {
		t.Fatalf("unpack error %v (%T), reason %q", err, err, dnsReason(err))
	}
}
