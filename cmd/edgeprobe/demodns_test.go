package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/view"
)

// demoActions starts the demo's name server and reads the demo view's configuration as
// the demo does, with its state in a directory of its own.
func demoActions(t *testing.T, d *demoDNS) *failover.Config {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tsig.key"), []byte(d.keyFile()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := view.ParseConfig([]byte(demoViewConfig(d.addr, filepath.Join(dir, "state"))), filepath.Join(dir, "view.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Actions
}

func newDemoDNS(t *testing.T) *demoDNS {
	t.Helper()
	d, err := startDemoDNS(map[string][]string{demoService: {demoPrimary}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func (d *demoDNS) testSerial(t *testing.T) uint32 {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(demoZone, dns.TypeSOA)
	r, err := dns.Exchange(m, d.addr)
	if err != nil || len(r.Answer) != 1 || !r.Authoritative {
		t.Fatalf("SOA of %s: %v %v", demoZone, err, r)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

func (d *demoDNS) expectA(t *testing.T, want ...string) {
	t.Helper()
	got, err := d.lookupA(demoService, 2*time.Second)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%s A = %v (%v), want %v", demoService, got, err, want)
	}
}

// TestDemoDNSWithTheFailover drives the demo's name server with the view's own failover
// code: the test update of `check --test-actions` changes nothing, a loss rewrites the
// record, and a second view applying the same change finds it done (already_done).
func TestDemoDNSWithTheFailover(t *testing.T) {
	d := newDemoDNS(t)
	serial := d.testSerial(t)
	cfg := demoActions(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cfg.TestActions(ctx)
	if err != nil || len(res) != 1 || res[0].Holds != failover.StatePrimary {
		t.Fatalf("TestActions: %+v %v", res, err)
	}
	if got := d.testSerial(t); got != serial {
		t.Errorf("the test update moved the serial from %d to %d", serial, got)
	}

	now := time.Now()
	lost := failover.Verdict{State: "lost", Since: now, Witnesses: 3, Down: 3, Time: now}
	var recs [][]failover.Record
	for i := range 2 {
		cfg := cfg
		if i == 1 {
			cfg = demoActions(t, d) // a second view, with a state of its own
		}
		c, err := failover.New(cfg, failover.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Update("beta", lost)
		deadline := time.Now().Add(10 * time.Second)
		for len(dnsRecords(c)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("view %d: no DNS step recorded; audit %+v", i+1, c.Audit(10))
			}
			time.Sleep(10 * time.Millisecond)
		}
		recs = append(recs, dnsRecords(c))
	}
	if r := recs[0][0]; r.Decision != failover.DecisionFailover || r.Rcode != "NOERROR" {
		t.Errorf("the first view's update: %+v", r)
	}
	if r := recs[1][0]; r.Decision != failover.DecisionAlreadyDone || r.Rcode != "NOERROR" {
		t.Errorf("the second view's update: %+v", r)
	}
	d.expectA(t, demoFailover)
	if got := d.testSerial(t); got != serial+1 {
		t.Errorf("serial %d after one change, want %d", got, serial+1)
	}
}

func dnsRecords(c *failover.Controller) []failover.Record {
	var out []failover.Record
	for _, r := range c.Audit(failover.MaxAuditLimit) {
		if r.DNS != nil {
			out = append(out, r)
		}
	}
	return out
}

// TestDemoDNSRefuses: an update unsigned, signed with an unknown key, or whose
// prerequisite does not hold changes nothing; a query outside the zone is refused.
func TestDemoDNSRefuses(t *testing.T) {
	d := newDemoDNS(t)
	serial := d.testSerial(t)
	update := func(prereq string) *dns.Msg {
		m := new(dns.Msg)
		m.SetUpdate(demoZone)
		a := func(addr string, ttl uint32) []dns.RR {
			return []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: demoService, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(addr)}}
		}
		// As the view's failover writes it: the RRset holds prereq; replace it.
		m.Used(a(prereq, 0))
		m.RemoveRRset(a(prereq, 0))
		m.Insert(a("127.0.9.9", 1))
		return m
	}
	exchange := func(m *dns.Msg, secrets map[string]string) int {
		t.Helper()
		c := &dns.Client{Net: "tcp", TsigSecret: secrets, Timeout: 2 * time.Second}
		r, _, err := c.Exchange(m, d.addr)
		if r == nil {
			t.Fatalf("no answer: %v", err)
		}
		return r.Rcode
	}
	good := map[string]string{demoKeyName + ".": d.secret}
	for _, tc := range []struct {
		name    string
		m       *dns.Msg
		secrets map[string]string
		key     string
		want    int
	}{
		{"unsigned", update(demoPrimary), nil, "", dns.RcodeRefused},
		{"unknown key", update(demoPrimary), map[string]string{"other.": d.secret}, "other.", dns.RcodeNotAuth},
		{"wrong secret", update(demoPrimary), map[string]string{demoKeyName + ".": "c2VjcmV0c2VjcmV0c2VjcmV0"}, demoKeyName + ".", dns.RcodeNotAuth},
		{"prerequisite fails", update(demoFailover), good, demoKeyName + ".", dns.RcodeNXRrset},
	} {
		if tc.key != "" {
			tc.m.SetTsig(tc.key, dns.HmacSHA256, 300, time.Now().Unix())
		}
		if got := exchange(tc.m, tc.secrets); got != tc.want {
			t.Errorf("%s: answered %s, want %s", tc.name, dns.RcodeToString[got], dns.RcodeToString[tc.want])
		}
	}
	d.expectA(t, demoPrimary)
	if got := d.testSerial(t); got != serial {
		t.Errorf("refused updates moved the serial from %d to %d", serial, got)
	}
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	if r, err := dns.Exchange(m, d.addr); err != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("a query outside %s: %v %v, want REFUSED", demoZone, r, err)
	}
	m.SetQuestion("nothere."+demoZone, dns.TypeA)
	if r, err := dns.Exchange(m, d.addr); err != nil || r.Rcode != dns.RcodeNameError || !r.Authoritative {
		t.Errorf("a name the zone does not hold: %v %v, want an authoritative NXDOMAIN", r, err)
	}
}
