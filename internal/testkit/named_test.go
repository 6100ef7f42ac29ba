package testkit

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestNamed: named serves the zone's records; an update signed with the update key is
// applied (the record and the serial change), one signed with the refused key is
// REFUSED and changes nothing; the key files hold the keys named knows.
func TestNamed(t *testing.T) {
	const (
		www     = "www.example.test."
		before  = "198.51.100.13"
		after   = "198.51.100.23"
		cname   = "app.example.test."
		cnameTo = "primary.example.test."
	)
	s := StartNamed(t, NamedOptions{Zone: "example.test", Records: "www 5 IN A " + before + "\napp IN CNAME " + cnameTo + "\n"})
	if s.Zone != "example.test." || !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Fatalf("zone %q at %q, want example.test. on 127.0.0.1", s.Zone, s.Addr)
	}
	expect := func(what, name string, qtype uint16, serial uint32, want ...string) {
		t.Helper()
		got, err := s.Lookup(name, qtype)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %s %s = %v (%v), want %v", what, name, dns.TypeToString[qtype], got, err, want)
		}
		if got, err := s.Serial(); err != nil || got != serial {
			t.Errorf("%s: serial %d (%v), want %d", what, got, err, serial)
		}
	}
	expect("as started", www, dns.TypeA, 1, before)
	expect("as started", cname, dns.TypeCNAME, 1, cnameTo)
	rrs, err := s.Query(www, dns.TypeA)
	if err != nil || len(rrs) != 1 || rrs[0].Header().Ttl != 5 {
		t.Errorf("www's A records %v (%v), want one with TTL 5", rrs, err)
	}

	// update replaces www's A record, signed with the key of file.
	update := func(file, to string) (*dns.Msg, error) {
		name, secret := readKey(t, file)
		m := new(dns.Msg)
		m.SetUpdate(s.Zone)
		rr, err := dns.NewRR(www + " 5 IN A " + to)
		if err != nil {
			t.Fatal(err)
		}
		m.RemoveRRset([]dns.RR{rr})
		m.Insert([]dns.RR{rr})
		m.SetTsig(name, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{name: secret}}
		r, _, err := c.Exchange(m, s.Addr)
		return r, err
	}
	r, err := update(s.RefusedKeyFile, after)
	if err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("update signed with %s: %v (%v), want REFUSED", s.RefusedKey, r, err)
	}
	expect("after the refused update", www, dns.TypeA, 1, before)
	r, err = update(s.KeyFile, after)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update signed with %s: %v (%v), want NOERROR", s.UpdateKey, r, err)
	}
	expect("after the update", www, dns.TypeA, 2, after)
	if !strings.Contains(s.Log(), "running") {
		t.Errorf("named's log does not say it runs:\n%s", s.Log())
	}
}

var keyRE = regexp.MustCompile(`^key "([^"]+)" \{\n\talgorithm hmac-sha256;\n\tsecret "([^"]+)";\n\};\n$`)

// readKey reads the key's name (fully qualified, as TSIG names it) and secret from a
// key file.
func readKey(t *testing.T, file string) (name, secret string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := keyRE.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("%s is no key file:\n%s", file, b)
	}
	return dns.Fqdn(m[1]), m[2]
}
