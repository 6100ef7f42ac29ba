package failover

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// twoSites is a config with sites dca (www) and dcb (api) on the test server.
func twoSites(srv *namedServer, global, extra string) string {
	return fastRetries + global + dnsAction(srv, "dca", testName1, primary1, failover1, srv.KeyFile, extra) +
		dnsAction(srv, "dcb", testName2, primary2, failover2, srv.KeyFile, extra)
}

// TestNeverActsWithoutLost: partitioned, unknown and degraded never fail over; lost
// does only after lost_for without a break.
func TestNeverActsWithoutLost(t *testing.T) {
	srv := startNamed(t)
	cfg := mustParse(t, twoSites(srv, `lost_for = "5s"`+"\n", ""))
	c, _ := newController(t, cfg)
	t0 := time.Now()
	for i, state := range []string{"up", "partitioned", "unknown", "degraded", "partitioned", "lost", "up", "lost"} {
		c.Update("dca", verdict(state, t0.Add(time.Duration(i)*time.Second)))
	}
	// lost since t0+7s: not yet at t0+11.9s.
	c.Tick(t0.Add(11900 * time.Millisecond))
	c.idle()
	if n := len(c.Audit(MaxAuditLimit)); n != 0 {
		t.Fatalf("acted before lost_for: %v", decisions(c))
	}
	srv.expectRecords(t, testName1, primary1)
	if next := c.Next(); !next.Equal(t0.Add(12 * time.Second)) {
		t.Errorf("Next = %v, want lost_for after the loss began (%v)", next, t0.Add(12*time.Second))
	}
	c.Tick(t0.Add(12 * time.Second))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
}

// TestSilence: a silenced site is not failed over; still lost when the silence ends,
// it is failed over then.
func TestSilence(t *testing.T) {
	srv := startNamed(t)
	c, _ := newController(t, mustParse(t, twoSites(srv, "", "")))
	t0 := time.Now()
	v := verdict("lost", t0)
	v.Silenced = true
	c.Update("dca", v)
	c.Tick(t0.Add(time.Minute))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	v.Silenced, v.Time = false, t0.Add(2*time.Minute)
	c.Update("dca", v)
	c.idle()
	srv.expectRecords(t, testName1, failover1)
}

// TestHold: under a hold a lost site is held (audited, alerted), nothing is updated;
// the release fails it over, the site being still lost.
func TestHold(t *testing.T) {
	srv := startNamed(t)
	c, alerts := newController(t, mustParse(t, twoSites(srv, "", "")))
	if err := c.Hold("", "alice"); err == nil {
		t.Fatal("a hold without a reason was accepted")
	}
	if err := c.Hold("DNS migration", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := c.Hold("again", "bob"); err == nil {
		t.Fatal("a second hold was accepted")
	}
	c.Update("dca", verdict("lost", time.Now()))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	if s := siteState(c, "dca"); s != StateHeld {
		t.Fatalf("state %s, want held", s)
	}
	if got := decisions(c); !slices.Equal(got, []string{DecisionHold, DecisionHeld}) {
		t.Fatalf("decisions %v", got)
	}
	if k := alerts.kinds(); !slices.Equal(k, []string{AlertHeld}) {
		t.Fatalf("alerts %v, want one held", k)
	}
	if m := gather(t, c); m["edgeprobe_view_failover_hold"] != 1 || m[`edgeprobe_view_failover_sites{state="held"}`] != 1 {
		t.Errorf("metrics %v", m)
	}
	if err := c.Release("alice"); err != nil {
		t.Fatal(err)
	}
	if err := c.Release("alice"); err == nil {
		t.Fatal("a release without a hold was accepted")
	}
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	if got := decisions(c); !slices.Equal(got, []string{DecisionHold, DecisionHeld, DecisionRelease, DecisionFailover}) {
		t.Fatalf("decisions %v", got)
	}
}

// TestDryRun: decisions are audited as dry_run, the server is not touched, no runbook
// runs, and the simulated state goes on to a "would fail back".
func TestDryRun(t *testing.T) {
	srv := startNamed(t)
	marker := filepath.Join(t.TempDir(), "ran")
	script := writeScript(t, "#!/bin/sh\ntouch "+marker+"\n")
	cfg := mustParse(t, twoSites(srv, "dry_run = true\n", `failback = "auto"
recover_for = "1s"`)+`
[[actions.exec]]
site = "dca"
command = ["`+script+`"]
on = ["failover", "failback"]
`)
	c, _ := newController(t, cfg)
	before := srv.serial(t)
	t0 := time.Now()
	c.Update("dca", verdict("lost", t0))
	c.idle()
	if s := siteState(c, "dca"); s != StateFailedOver {
		t.Fatalf("simulated state %s, want failed_over", s)
	}
	c.Update("dca", verdict("up", t0.Add(time.Second)))
	c.Tick(t0.Add(2 * time.Second))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	if after := srv.serial(t); after != before {
		t.Fatalf("dry run changed the zone (serial %d -> %d)", before, after)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("dry run ran the runbook")
	}
	var got []string
	for _, r := range c.Audit(MaxAuditLimit) {
		if r.Decision != DecisionDryRun || !strings.HasPrefix(r.Reason, "dry run: would ") {
			t.Errorf("record %+v", r)
		}
		got = append(got, r.Action)
	}
	if !slices.Equal(got, []string{ActionFailback, ActionFailback, ActionFailover, ActionFailover}) {
		t.Fatalf("actions %v (newest first), want DNS and exec for failover, then for failback", got)
	}
	// The state file keeps nothing simulated: a real restart starts from primary.
	data, _ := os.ReadFile(filepath.Join(cfg.StateDir, StateFile))
	if strings.Contains(string(data), StateFailedOver) {
		t.Errorf("simulated state written to the state file:\n%s", data)
	}
}

// TestMaxConcurrent: two sites lost at once with max_concurrent_failovers = 1: one is
// failed over, then the controller holds everything and alerts; until a release, even
// a third loss does nothing.
func TestMaxConcurrent(t *testing.T) {
	srv := startNamed(t)
	c, alerts := newController(t, mustParse(t, twoSites(srv, "", "")))
	t0 := time.Now()
	c.Update("dca", verdict("lost", t0))
	c.Update("dcb", verdict("lost", t0))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	srv.expectRecords(t, testName2, primary2)
	st := c.Status()
	if st.Hold == nil || st.Hold.Who != WhoController || !strings.Contains(st.Hold.Reason, "max_concurrent_failovers 1") {
		t.Fatalf("hold %+v, want the controller's, naming the limit", st.Hold)
	}
	if s := siteState(c, "dcb"); s != StateHeld {
		t.Fatalf("dcb %s, want held", s)
	}
	if k := alerts.kinds(); !slices.Equal(k, []string{AlertHold, AlertHeld}) {
		t.Fatalf("alerts %v, want hold then held", k)
	}
	// Under the hold: dca recovering is not failed back either (auto is off anyway),
	// and dcb stays as it is.
	c.Tick(t0.Add(time.Minute))
	c.idle()
	srv.expectRecords(t, testName2, primary2)
	if m := gather(t, c); m["edgeprobe_view_failover_active"] != 1 || m["edgeprobe_view_failover_hold"] != 1 {
		t.Errorf("metrics %v", m)
	}
	// An operator fails dca back (through the hold) and releases: dcb, still lost, now
	// fits under the limit.
	if err := c.Failback("dca", "alice"); err != nil {
		t.Fatal(err)
	}
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	if err := c.Release("alice"); err != nil {
		t.Fatal(err)
	}
	c.idle()
	srv.expectRecords(t, testName2, failover2)
}

// TestRateLimit: max_failovers_per_hour = 1: a second loss within the hour is held and
// alerted, and failed over once the hour has passed, the site being still lost.
func TestRateLimit(t *testing.T) {
	srv := startNamed(t)
	c, alerts := newController(t, mustParse(t, twoSites(srv, "max_failovers_per_hour = 1\n", `failback = "auto"
recover_for = "10s"`)))
	t0 := time.Now()
	c.Update("dca", verdict("lost", t0))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	c.Update("dca", verdict("up", t0.Add(time.Minute)))
	c.Tick(t0.Add(time.Minute + 10*time.Second))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	c.Update("dca", verdict("lost", t0.Add(2*time.Minute)))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	if s := siteState(c, "dca"); s != StateHeld {
		t.Fatalf("state %s, want held by the rate limit", s)
	}
	if r := c.Audit(1)[0]; r.Decision != DecisionHeld || !strings.Contains(r.Reason, "max_failovers_per_hour") {
		t.Fatalf("record %+v", r)
	}
	if alerts.count(AlertHeld) != 1 || c.Status().Hold != nil {
		t.Fatalf("alerts %v, hold %+v: want one held alert and no global hold", alerts.kinds(), c.Status().Hold)
	}
	if next := c.Next(); !next.Equal(t0.Add(time.Hour)) {
		t.Errorf("Next %v, want the hour after the first failover %v", next, t0.Add(time.Hour))
	}
	c.Tick(t0.Add(59 * time.Minute))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	c.Tick(t0.Add(time.Hour))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
}

// TestAutoFailback: with failback = "auto" the site returns to primary once it has
// been up for recover_for without a break, not before.
func TestAutoFailback(t *testing.T) {
	srv := startNamed(t)
	c, _ := newController(t, mustParse(t, twoSites(srv, "", `failback = "auto"
recover_for = "30s"`)))
	t0 := time.Now()
	c.Update("dca", verdict("lost", t0))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	c.Update("dca", verdict("up", t0.Add(10*time.Second)))
	c.Update("dca", verdict("degraded", t0.Add(20*time.Second))) // the up breaks
	c.Update("dca", verdict("up", t0.Add(25*time.Second)))
	c.Tick(t0.Add(54 * time.Second))
	c.idle()
	srv.expectRecords(t, testName1, failover1)
	if next := c.Next(); !next.Equal(t0.Add(55 * time.Second)) {
		t.Errorf("Next %v, want recover_for after the last up", next)
	}
	c.Tick(t0.Add(55 * time.Second))
	c.idle()
	srv.expectRecords(t, testName1, primary1)
	if r := c.Audit(1)[0]; r.Decision != DecisionFailback || r.Who != WhoController {
		t.Fatalf("record %+v", r)
	}
}

// TestRestart: a restarted controller reads what the last one left: a failed-over
// site is not failed over again, an operator's failback in the middle of an incident
// is not undone, and a site up at the restart waits recover_for again.
func TestRestart(t *testing.T) {
	srv := startNamed(t)
	text := twoSites(srv, "", `failback = "auto"
recover_for = "30s"`)
	cfg := mustParse(t, text)
	c1, _ := newController(t, cfg)
	t0 := time.Now()
	c1.Update("dca", verdict("lost", t0))
	c1.Update("dcb", verdict("lost", t0)) // held by max_concurrent_failovers
	c1.idle()
	c1.Close()
	n1 := len(auditFile(t, cfg.StateDir))

	c2, _ := newController(t, cfg)
	st := c2.Status()
	if st.Hold == nil || siteState(c2, "dca") != StateFailedOver || siteState(c2, "dcb") != StateHeld {
		t.Fatalf("after a restart: hold %+v, dca %s, dcb %s", st.Hold, siteState(c2, "dca"), siteState(c2, "dcb"))
	}
	if len(c2.Audit(MaxAuditLimit)) != n1 {
		t.Fatalf("the audit log was not read back: %d records, want %d", len(c2.Audit(MaxAuditLimit)), n1)
	}
	if err := c2.Release("alice"); err != nil {
		t.Fatal(err)
	}
	c2.Update("dca", verdict("up", t0.Add(time.Second)))
	c2.Tick(t0.Add(30 * time.Second))
	c2.idle()
	srv.expectRecords(t, testName1, failover1) // up since t0+1s only
	c2.Tick(t0.Add(31 * time.Second))
	c2.idle()
	srv.expectRecords(t, testName1, primary1)

	// dcb, held before the restart and still lost, fits under the limit now; an
	// operator's failback while it is still lost survives a restart.
	c2.Update("dcb", verdict("lost", t0.Add(40*time.Second)))
	c2.idle()
	srv.expectRecords(t, testName2, failover2)
	if err := c2.Failback("dcb", "alice"); err != nil {
		t.Fatal(err)
	}
	c2.idle()
	srv.expectRecords(t, testName2, primary2)
	c2.Close()
	c3, _ := newController(t, cfg)
	c3.Update("dcb", verdict("lost", t0.Add(50*time.Second)))
	c3.Tick(t0.Add(time.Minute))
	c3.idle()
	srv.expectRecords(t, testName2, primary2)
	if s := siteState(c3, "dcb"); s != StatePrimary {
		t.Fatalf("dcb %s after the restart, want primary", s)
	}
	var saved savedState
	data, _ := os.ReadFile(filepath.Join(cfg.StateDir, StateFile))
	if err := json.Unmarshal(data, &saved); err != nil || !saved.Sites["dcb"].Handled || !saved.Sites["dcb"].Incident {
		t.Fatalf("state file %s (%v)", data, err)
	}
}

// TestResumeAfterCrash: an operation under way when the view stopped is resumed: the
// prerequisite makes it safe whether or not the last attempt reached the server.
func TestResumeAfterCrash(t *testing.T) {
	srv := startNamed(t)
	cfg := mustParse(t, twoSites(srv, "", ""))
	st := &savedState{Version: stateVersion, Sites: map[string]*savedSite{
		"dca": {State: StateFailingOver, Since: time.Now(), Incident: true, Handled: true, Action: ActionFailover, Who: WhoController},
	}}
	os.MkdirAll(cfg.StateDir, 0o700)
	if err := saveState(cfg.StateDir, st); err != nil {
		t.Fatal(err)
	}
	c, _ := newController(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the failover resumed", func() bool { return siteState(c, "dca") == StateFailedOver })
	srv.expectRecords(t, testName1, failover1)
}

// TestAuditRotation: past audit_max_bytes the log moves to audit.log.1; every line of
// both parses, Audit returns the newest first, and a restart reads them back.
func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	a, err := openAudit(dir, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for i := range 600 {
		if err := a.append(Record{Time: t0.Add(time.Duration(i)), Decision: DecisionRetry, Site: "dca", Attempt: i,
			Error: strings.Repeat("x", 200)}); err != nil {
			t.Fatal(err)
		}
	}
	a.close()
	for _, name := range []string{AuditFile, auditOldFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Size() > 64<<10 {
			t.Fatalf("%s: %v, size %d; want at most 64 KiB", name, err, fi.Size())
		}
	}
	cur := auditFile(t, dir)
	if cur[len(cur)-1].Attempt != 599 {
		t.Fatalf("last record %+v", cur[len(cur)-1])
	}
	b, err := openAudit(dir, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	got := b.latest(3)
	if len(got) != 3 || got[0].Attempt != 599 || got[2].Attempt != 597 {
		t.Fatalf("latest %+v", got)
	}
	// A line cut by a crash is ended before the next record.
	f, _ := os.OpenFile(filepath.Join(dir, AuditFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-`)
	f.Close()
	b.close()
	c, _ := openAudit(dir, 64<<10)
	c.append(Record{Time: t0, Decision: DecisionHold})
	c.close()
	data, _ := os.ReadFile(filepath.Join(dir, AuditFile))
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var r Record
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.Decision != DecisionHold {
		t.Fatalf("record after a cut line: %q (%v)", lines[len(lines)-1], err)
	}
}
