package failover

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestFailoverUpdatesRecord: a lost site's RRset is rewritten on the server, the audit
// says so, and a manual failback puts the primary back; auto failback is off.
func TestFailoverUpdatesRecord(t *testing.T) {
	srv := startNamed(t)
	cfg := mustParse(t, fastRetries+dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile, `failback = "manual"`))
	c, alerts := newController(t, cfg)
	t0 := time.Now()
	c.Update("dca", verdict("up", t0))
	c.Update("dca", verdict("lost", t0.Add(time.Second)))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	if got := siteState(c, "dca"); got != StateFailedOver {
		t.Fatalf("state %s, want failed_over", got)
	}
	last := c.Audit(1)[0]
	if last.Decision != DecisionFailover || last.Rcode != "NOERROR" || last.Attempt != 1 || last.DNS == nil ||
		!slices.Equal(last.DNS.To, []string{failover1}) || last.Why == nil || last.Why.Verdict != "lost" || last.Why.Down != 3 {
		t.Fatalf("audit record %+v", last)
	}
	if ttl := srv.ttl(t, testName1); ttl != 5 {
		t.Errorf("TTL after failover %d, want 5", ttl)
	}

	// Up for long: a manual failback waits for the operator.
	c.Update("dca", verdict("up", t0.Add(2*time.Second)))
	c.Tick(t0.Add(time.Hour))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	if err := c.Failback("dca", "alice"); err != nil {
		t.Fatal(err)
	}
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	if got := siteState(c, "dca"); got != StatePrimary {
		t.Fatalf("state %s after failback, want primary", got)
	}
	if r := c.Audit(1)[0]; r.Decision != DecisionFailback || r.Who != "alice" {
		t.Fatalf("failback record %+v", r)
	}
	if err := c.Failback("dca", "alice"); err == nil {
		t.Fatal("a second failback of a primary site was accepted")
	}
	if n := len(alerts.kinds()); n != 0 {
		t.Errorf("alerts %v, want none", alerts.kinds())
	}
	for _, r := range auditFile(t, cfg.StateDir) {
		if r.Decision == "" || r.Time.IsZero() {
			t.Errorf("audit line without decision or time: %+v", r)
		}
	}
}

// TestCNAMEFailover: the record types other than A work the same.
func TestCNAMEFailover(t *testing.T) {
	srv := startNamed(t)
	cfg := mustParse(t, fastRetries+`
[[actions.dns]]
site = "dca"
server = "`+srv.Addr+`"
zone = "example.test"
name = "app.example.test"
type = "cname"
primary = ["primary.example.test"]
failover = ["standby.example.test."]
tsig_key_file = "`+srv.KeyFile+`"
`)
	if cfg.DNS[0].Name != testCNAME {
		t.Fatalf("name %q not made fully qualified in the zone", cfg.DNS[0].Name)
	}
	c, _ := newController(t, cfg)
	c.Update("dca", verdict("lost", time.Now()))
	c.idle()
	if got := srv.lookup(t, testCNAME, dns.TypeCNAME); !slices.Equal(got, []string{"standby.example.test."}) {
		t.Fatalf("CNAME = %v", got)
	}
}

// TestTwoViewsApplyOnce: two views fed the same verdicts update the server once; the
// other finds the prerequisite failing and the target in place: already_done.
func TestTwoViewsApplyOnce(t *testing.T) {
	srv := startNamed(t)
	text := fastRetries + dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile, "")
	c1, a1 := newController(t, mustParse(t, text))
	c2, a2 := newController(t, mustParse(t, text))
	before := srv.serial(t)
	now := time.Now()
	var wg sync.WaitGroup
	for _, c := range []*Controller{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Update("dca", verdict("lost", now))
			c.idle()
		}()
	}
	wg.Wait()
	srv.expectRecords(t, testName1, failover1)
	got := []string{c1.Audit(1)[0].Decision, c2.Audit(1)[0].Decision}
	slices.Sort(got)
	if !slices.Equal(got, []string{DecisionAlreadyDone, DecisionFailover}) {
		t.Fatalf("decisions %v, want one failover and one already_done", got)
	}
	if after := srv.serial(t); after != before+1 {
		t.Errorf("serial %d -> %d: the zone changed %d times, want once", before, after, after-before)
	}
	for _, c := range []*Controller{c1, c2} {
		if s := siteState(c, "dca"); s != StateFailedOver {
			t.Errorf("state %s, want failed_over in both views", s)
		}
	}
	if len(a1.kinds())+len(a2.kinds()) != 0 {
		t.Errorf("alerts %v %v: already_done is no error", a1.kinds(), a2.kinds())
	}
	// Failing back from the other view: the first again finds it done.
	if err := c2.Failback("dca", "bob"); err != nil {
		t.Fatal(err)
	}
	c2.idle()
	if err := c1.Failback("dca", "carol"); err != nil {
		t.Fatal(err)
	}
	c1.idle()
	srv.expectRecords(t, testName1, primary1)
	if d := c1.Audit(1)[0].Decision; d != DecisionAlreadyDone {
		t.Errorf("second failback: %s, want already_done", d)
	}
}

// TestConflict: an RRset that holds neither the expected records nor the target is a
// conflict: audited, alerted, left alone.
func TestConflict(t *testing.T) {
	srv := startNamed(t)
	cfg := mustParse(t, fastRetries+dnsAction(srv, "dca", testName1, "198.51.100.99", failover1, srv.KeyFile, ""))
	c, alerts := newController(t, cfg)
	c.Update("dca", verdict("lost", time.Now()))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	r := c.Audit(1)[0]
	if r.Decision != DecisionConflict || r.Rcode == "" || !slices.Equal(r.DNS.Found, []string{primary1}) {
		t.Fatalf("record %+v", r)
	}
	if alerts.count(AlertConflict) != 1 {
		t.Fatalf("alerts %v, want one conflict", alerts.kinds())
	}
	if s := siteState(c, "dca"); s != StatePrimary {
		t.Fatalf("state %s, want primary", s)
	}
	// Handled: no further attempt in the same incident.
	c.Tick(time.Now().Add(time.Minute))
	c.idle()
	if n := len(c.Audit(MaxAuditLimit)); n != 1 {
		t.Fatalf("%d records after the conflict, want 1: %v", n, decisions(c))
	}
}

// TestRefusedRetried: a wrong secret (BADSIG), an unknown key (BADKEY) and a key the
// zone grants nothing (REFUSED) are retried with backoff, alerted once, counted, and
// given up loudly after max_attempts; the server is not changed.
func TestRefusedRetried(t *testing.T) {
	srv := startNamed(t)
	wrongSecret := filepath.Join(t.TempDir(), "wrong.key")
	os.WriteFile(wrongSecret, []byte(keyFileText("edgeprobe", newSecret(t))), 0o600)
	unknownKey := filepath.Join(t.TempDir(), "unknown.key")
	os.WriteFile(unknownKey, []byte(keyFileText("stranger", newSecret(t))), 0o600)
	for _, tt := range []struct {
		name, keyFile, rcode string
	}{
		{"wrong secret", wrongSecret, "BADSIG"},
		{"unknown key", unknownKey, "BADKEY"},
		{"key granted nothing", srv.ROKeyFile, "REFUSED"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, fastRetries+"max_attempts = 3\n"+dnsAction(srv, "dca", testName1, primary1, failover1, tt.keyFile, ""))
			c, alerts := newController(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { c.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			c.Update("dca", verdict("lost", time.Now()))
			waitFor(t, "the update given up", func() bool { return siteState(c, "dca") == StatePrimary && alerts.count(AlertError) == 1 })
			got := decisions(c)
			if !slices.Equal(got, []string{DecisionRetry, DecisionRetry, DecisionRetry, DecisionError}) {
				t.Fatalf("decisions %v, want 3 retries then error", got)
			}
			for i, r := range c.Audit(MaxAuditLimit)[1:] {
				if r.Rcode != tt.rcode {
					t.Errorf("retry %d: rcode %q (%s), want %s", i, r.Rcode, r.Error, tt.rcode)
				}
			}
			if k := alerts.kinds(); !slices.Equal(k, []string{AlertRetry, AlertError}) {
				t.Errorf("alerts %v, want one retry alert and one error", k)
			}
			srv.expectRecords(t, testName1, primary1)
			m := gather(t, c)
			if m[`edgeprobe_view_actions_total{action="failover",result="retry"}`] != 3 ||
				m[`edgeprobe_view_actions_total{action="failover",result="error"}`] != 1 {
				t.Errorf("metrics %v", m)
			}
		})
	}
}

// TestTimeoutRetried: a server that does not answer is a timeout, retried; the
// verdict changing (the site back for recover_for) ends the retries.
func TestTimeoutRetried(t *testing.T) {
	srv := startNamed(t) // for the key file only
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	// A UDP socket that reads and never answers.
	silent := listenSilent(t, port)
	_ = silent
	cfg := mustParse(t, fastRetries+strings.Replace(dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile,
		`transport = "udp"
failback = "auto"
recover_for = "1s"`), `timeout = "2s"`, `timeout = "100ms"`, 1))
	cfg.DNS[0].Server = "127.0.0.1:" + itoa(port)
	c, alerts := newController(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	t0 := time.Now()
	c.Update("dca", verdict("lost", t0))
	waitFor(t, "two retries", func() bool { return slices.Contains(decisions(c), DecisionRetry) && len(decisions(c)) >= 2 })
	c.Update("dca", verdict("up", time.Now()))
	waitFor(t, "the retries to end", func() bool { return alerts.count(AlertError) == 1 })
	last := c.Audit(1)[0]
	if last.Decision != DecisionError || !strings.Contains(last.Reason, "verdict changed") {
		t.Fatalf("last record %+v", last)
	}
	r := c.Audit(MaxAuditLimit)[1]
	if r.Decision != DecisionRetry || !strings.Contains(r.Error, "no answer") {
		t.Fatalf("retry record %+v", r)
	}
	if s := siteState(c, "dca"); s != StatePrimary {
		t.Fatalf("state %s, want primary", s)
	}
}

// TestTestActions: the check's test update is accepted for a good key and changes
// nothing (the zone's serial stays); a key granted nothing is reported with the
// server's answer.
func TestTestActions(t *testing.T) {
	srv := startNamed(t)
	cfg := mustParse(t, fastRetries+dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile, "")+
		dnsAction(srv, "dcb", testName2, primary2, failover2, srv.ROKeyFile, ""))
	before := srv.serial(t)
	res, err := cfg.TestActions(context.Background())
	if err == nil || len(res) != 2 {
		t.Fatalf("TestActions: %v, %d results; want an error and 2 results", err, len(res))
	}
	if res[0].Err != nil || res[0].Rcode != "NOERROR" || res[0].Holds != StatePrimary {
		t.Errorf("good key: %+v", res[0])
	}
	if res[1].Err == nil || res[1].Rcode != "REFUSED" {
		t.Errorf("key granted nothing: %+v", res[1])
	}
	if after := srv.serial(t); after != before {
		t.Errorf("serial %d -> %d: the test update changed the zone", before, after)
	}
	srv.expectRecords(t, testName1, primary1)
	if ttl := srv.ttl(t, testName1); ttl != 5 {
		t.Errorf("TTL %d after the test, want 5 as before", ttl)
	}
	if jnl, _ := filepath.Glob(filepath.Join(srv.Dir, "*.jnl")); len(jnl) != 0 {
		t.Errorf("the test update was journaled: %v", jnl)
	}

	// Why not an update with an empty update section: BIND accepts it from a key the
	// zone grants nothing, so it would not prove the policy.
	ro := &cfg.DNS[1]
	m := new(dns.Msg)
	m.SetUpdate(ro.Zone)
	m.NameUsed(ro.rrs(ro.primary, 0))
	ro.sign(m)
	if rcode, err := ro.exchange(context.Background(), m); err != nil || rcode != "NOERROR" {
		t.Logf("an empty update from a key granted nothing: %s %v (BIND accepted it when this was written)", rcode, err)
	}
}

// BenchmarkUpdate measures one signed RFC 2136 update with its prerequisite against
// BIND on loopback, over TCP (the default) and UDP: the time from sending to the
// server's signed NOERROR, which is what a failover adds after the decision.
func BenchmarkUpdate(b *testing.B) {
	srv := startNamed(b)
	for _, transport := range []string{"tcp", "udp"} {
		b.Run(transport, func(b *testing.B) {
			cfg := mustParse(b, fastRetries+dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile, `transport = "`+transport+`"`))
			a := &cfg.DNS[0]
			from, to := a.primary, a.failover
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if r := a.apply(context.Background(), from, to, false); r.outcome != outcomeOK {
					b.Fatalf("update: %+v", r)
				}
				took = append(took, time.Since(start))
				from, to = to, from
			}
			b.StopTimer()
			reportPercentiles(b, took)
			if from[0] != primary1 { // leave the primary in place for the next run
				a.apply(context.Background(), from, to, false)
			}
		})
	}
}

// BenchmarkFailover measures a whole failover through the controller: from the lost
// verdict handed to Update to the server's NOERROR recorded (the decision, the state
// file and audit fsyncs, the signed update); automatic failbacks alternate with it.
func BenchmarkFailover(b *testing.B) {
	srv := startNamed(b)
	cfg := mustParse(b, fastRetries+"max_failovers_per_hour = 1000000\n"+dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile,
		"failback = \"auto\"\nrecover_for = \"1s\""))
	c, _ := newController(b, cfg)
	now := time.Now()
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		now = now.Add(time.Second)
		start := time.Now()
		c.Update("dca", verdict("lost", now))
		c.idle()
		took = append(took, time.Since(start))
		b.StopTimer()
		if s := siteState(c, "dca"); s != StateFailedOver {
			b.Fatalf("state %s: %v", s, c.Audit(1))
		}
		now = now.Add(time.Second)
		c.Update("dca", verdict("up", now))
		now = now.Add(time.Second)
		c.Tick(now) // up for recover_for: the automatic failback
		c.idle()
		if s := siteState(c, "dca"); s != StatePrimary {
			b.Fatalf("state %s after the failback: %v", s, c.Audit(1))
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, took)
}

// reportPercentiles adds the median and the 99th percentile in milliseconds.
func reportPercentiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / 1e6 }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

func (s *namedServer) ttl(tb testing.TB, name string) uint32 {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, s.Addr)
	if err != nil || len(r.Answer) == 0 {
		tb.Fatalf("query %s: %v", name, err)
	}
	return r.Answer[0].Header().Ttl
}
