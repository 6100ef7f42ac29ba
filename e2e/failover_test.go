//go:build linux

package e2e

// The view acting on a verdict (docs/architecture.md, "Failover"), end to end with the real
// binaries: three edges push to `edgeprobe view` on host "view", whose [[actions.dns]]
// rewrites www.svc.test on Debian's named on host "dns" by signed RFC 2136 updates. Every
// scenario reads the outcome where a client would see it, in named's answer, and checks
// the view's audit log and failover status beside it. The tests assert what must happen
// and what must not, never how fast (bench_failover_test.go measures that).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/failover"
)

// expectOnly fails the test unless recs are exactly want (decision/action each).
func expectOnly(t *testing.T, what string, recs []failover.Record, want ...string) {
	t.Helper()
	if got := decisions(recs); !slices.Equal(got, want) {
		t.Errorf("%s: audit records %v, want %v:\n%s", what, got, want, describeAudit(recs))
	}
}

// TestFailoverActs: a blackhole fails site a over (named answers site b's address), a
// restarted view does not fail it over again, the heal fails it back automatically once
// the site has been up for recover_for; an operator fails back through the CLI while the
// site is still dark; and under a hold set through the CLI a blackhole changes nothing.
func TestFailoverActs(t *testing.T) {
	t.Parallel()
	const recoverFor = 3 * time.Second
	f := newFailoverNet(t)
	v := f.startView(t, viewPort, actionSpec{Failback: failover.FailbackAuto, RecoverFor: recoverFor.String()})
	f.startAgents(t, v)
	v.client.poll("both sites up with three witnesses", startTimeout, allUpWith(3), nil)
	serial := f.dns.mustSerial()
	f.dns.expectZone("before any fault", serial, svcName, f.primary)
	// What an operator runs before trusting the action: a signed no-op update through the
	// zone's policy, which BIND applies as no change at all.
	if out, err := f.n.Exec("view", binary, "check", "--view-config", v.config, "--test-actions"); err != nil ||
		!strings.Contains(string(out), "ok, the server accepts the key's updates; it holds the primary records") {
		t.Errorf("edgeprobe check --test-actions: %v\n%s", err, out)
	}
	f.dns.expectZone("after check --test-actions", serial, svcName, f.primary)

	t.Run("blackhole fails over, a restart does not repeat it, heal fails back after recover_for", func(t *testing.T) {
		before := len(v.audit())
		if err := f.n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		dark := time.Now()
		at := f.dns.waitA("named to answer the failover address", svcName, failoverTimeout, f.failover)
		t.Logf("blackhole -> named answers %s after %v", f.failover, at.Sub(dark).Round(time.Millisecond))
		v.waitState("a", failover.StateFailedOver, failoverTimeout)
		recs := v.audit()[before:]
		expectOnly(t, "the failover", recs, "failover/failover")
		if len(recs) == 1 {
			r := recs[0]
			switch {
			case r.Rcode != "NOERROR", r.Who != failover.WhoController, r.Why == nil || r.Why.Verdict != "lost",
				r.DNS == nil || !slices.Equal(r.DNS.To, []string{f.failover}) || !slices.Equal(r.DNS.From, []string{f.primary}):
				t.Errorf("the failover's record: %s", describeAudit(recs))
			}
		}
		f.dns.expectZone("after the failover", serial+1, svcName, f.failover)

		// A restarted view reads its state: site a is failed over and in an incident, so
		// neither a second failover nor a failback while it is still dark.
		v.restart()
		v.client.poll("site a lost again after the view's restart", startTimeout,
			func(got map[string]siteVerdict) bool { return got["a"].State == "lost" && got["b"].State == "up" }, nil)
		time.Sleep(watchFor)
		f.dns.expectZone("after the view's restart, site a still dark", serial+1, svcName, f.failover)
		expectOnly(t, "after the view's restart", v.audit()[before:], "failover/failover")
		v.waitState("a", failover.StateFailedOver, failoverTimeout)

		if err := f.n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		at = f.dns.waitA("named to answer the primary address again", svcName, recoverFor+failoverTimeout, f.primary)
		if back := at.Sub(healed); back < recoverFor {
			t.Errorf("failed back %v after the heal, before the site had been up for recover_for %v", back, recoverFor)
		} else {
			t.Logf("heal -> named answers %s again after %v (recover_for %v)", f.primary, back.Round(time.Millisecond), recoverFor)
		}
		v.waitState("a", failover.StatePrimary, failoverTimeout)
		recs = v.audit()[before:]
		expectOnly(t, "failover and automatic failback", recs, "failover/failover", "failback/failback")
		if len(recs) == 2 && (recs[1].Who != failover.WhoController || !strings.Contains(recs[1].Reason, "recover_for "+recoverFor.String())) {
			t.Errorf("the automatic failback's record: %s", describeAudit(recs[1:]))
		}
		f.dns.expectZone("after the failback", serial+2, svcName, f.primary)
		serial += 2
	})

	t.Run("manual failback through the CLI while the site is still dark", func(t *testing.T) {
		before := len(v.audit())
		if err := f.n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		f.dns.waitA("named to answer the failover address", svcName, failoverTimeout, f.failover)
		v.waitState("a", failover.StateFailedOver, failoverTimeout)
		if out := v.mustCLI("status"); !regexpMatch(`(?m)^a\s+failed_over\s+\S+\s+lost\s+auto 3s\s+\S+ failover NOERROR`, out) {
			t.Errorf("edgeprobe failover status while a is failed over:\n%s", out)
		}
		if out := v.mustCLI("failback", "a"); !regexpMatch(`^a: (failing_back|primary)\n$`, out) {
			t.Errorf("edgeprobe failover failback a: %q", out)
		}
		f.dns.waitA("named to answer the primary address after the manual failback", svcName, failoverTimeout, f.primary)
		v.waitState("a", failover.StatePrimary, failoverTimeout)
		// Still dark: the operator's failback counts as acting on the incident.
		time.Sleep(watchFor)
		f.dns.expectZone("after the manual failback, site a still dark", serial+2, svcName, f.primary)
		recs := v.audit()[before:]
		expectOnly(t, "failover and manual failback", recs, "failover/failover", "failback/failback")
		if len(recs) == 2 && !strings.HasPrefix(recs[1].Who, "cli ") {
			t.Errorf("the manual failback's record names %q, want the CLI's operator", recs[1].Who)
		}

		if err := f.n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		v.client.poll("both sites up", changeTimeout, allUpWith(3), nil)
		time.Sleep(recoverFor + time.Second)
		f.dns.expectZone("after the heal that followed a manual failback", serial+2, svcName, f.primary)
		expectOnly(t, "after the heal", v.audit()[before:], "failover/failover", "failback/failback")
		serial += 2
	})

	t.Run("hold through the CLI: a blackhole changes nothing; release", func(t *testing.T) {
		before := len(v.audit())
		if out := v.mustCLI("hold", "--reason", "e2e maintenance"); out != "held: e2e maintenance\n" {
			t.Errorf("edgeprobe failover hold: %q", out)
		}
		if out, err := v.cli("hold", "--reason", "again"); err == nil || !strings.Contains(out, "held already") {
			t.Errorf("a second hold: %v\n%s", err, out)
		}
		if out := v.mustCLI("status"); !regexpMatch(`(?m)^hold\s+held by cli \S+ since \S+: e2e maintenance$`, out) {
			t.Errorf("edgeprobe failover status under the hold:\n%s", out)
		}
		if err := f.n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		v.client.poll("site a lost", changeTimeout, states(map[string]string{"a": "lost"}), nil)
		v.waitState("a", failover.StateHeld, failoverTimeout)
		time.Sleep(watchFor)
		f.dns.expectZone("a blackhole under the hold", serial, svcName, f.primary)
		if err := f.n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		v.client.poll("both sites up", changeTimeout, allUpWith(3), nil)
		v.waitState("a", failover.StatePrimary, recoverFor+failoverTimeout)
		if out := v.mustCLI("release"); out != "released\n" {
			t.Errorf("edgeprobe failover release: %q", out)
		}
		time.Sleep(time.Second)
		f.dns.expectZone("after the release", serial, svcName, f.primary)
		recs := v.audit()[before:]
		expectOnly(t, "hold, held, release", recs, "hold/", "held/failover", "release/")
		if len(dnsSteps(recs)) > 0 {
			t.Errorf("DNS attempts under the hold:\n%s", describeAudit(recs))
		}
		if out := v.mustCLI("status"); !regexpMatch(`(?m)^hold\s+none$`, out) {
			t.Errorf("edgeprobe failover status after the release:\n%s", out)
		}
	})

	t.Run("a silenced site's loss changes nothing until the silence ends", func(t *testing.T) {
		before := len(v.audit())
		var sl struct{ ID string }
		v.admin(http.MethodPost, "/api/v1/silences", `{"site":"a","duration":"10m","comment":"e2e maintenance"}`, http.StatusCreated, &sl)
		if err := f.n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		v.client.poll("site a lost", changeTimeout, states(map[string]string{"a": "lost"}), nil)
		time.Sleep(watchFor)
		f.dns.expectZone("a silenced site lost", serial, svcName, f.primary)
		if st, err := v.siteStatus("a"); err != nil || st.State != failover.StatePrimary || !st.Silenced || !st.Lost {
			t.Errorf("site a silenced and lost: failover status %+v (error %v), want primary, silenced, in an incident", st, err)
		}
		// Still dark when the silence ends: the loss is acted on then.
		v.admin(http.MethodDelete, "/api/v1/silences/"+sl.ID, "", http.StatusOK, nil)
		f.dns.waitA("named to answer the failover address once the silence ended", svcName, failoverTimeout, f.failover)
		if err := f.n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		f.dns.waitA("named to answer the primary address again", svcName, recoverFor+failoverTimeout, f.primary)
		v.waitState("a", failover.StatePrimary, failoverTimeout)
		recs := v.audit()[before:]
		expectOnly(t, "a silence, then its end while lost", recs, "failover/failover", "failback/failback")
		if len(recs) > 0 && (recs[0].Why == nil || recs[0].Why.Silenced) {
			t.Errorf("the failover's record: %s", describeAudit(recs[:1]))
		}
		f.dns.expectZone("after the silence's failover and failback", serial+2, svcName, f.primary)
		serial += 2
	})
}

// admin sends an admin request to the view and decodes its JSON answer into out (if
// not nil); it fails the test unless the view answers want.
func (v *failoverView) admin(method, path, body string, want int, out any) {
	v.t.Helper()
	req, err := http.NewRequest(method, "http://"+v.listen+path, strings.NewReader(body))
	if err != nil {
		v.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := v.client.http.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		v.t.Fatalf("%s %s: %s, want %d", method, path, resp.Status, want)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			v.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// TestFailoverRefusedKey: the view signs with a key named knows but grants nothing. The
// update is refused (REFUSED), retried with backoff, and alerted once: the webhook
// receiver in the view's namespace gets failover_retry and /metrics counts the retries.
// The zone never changes; when the site recovers during the retries they stop, the
// RRset is read once more, and the attempt given up is recorded and alerted (error).
func TestFailoverRefusedKey(t *testing.T) {
	t.Parallel()
	f := newFailoverNet(t)
	hook := startHookSink(t, f.n, "view", 9000)
	v := f.startView(t, viewPort, actionSpec{KeyFile: f.dns.RefusedKeyFile, RetryMin: "200ms", RetryMax: "1s", Hook: hook.url()})
	f.startAgents(t, v)
	v.client.poll("both sites up with three witnesses", startTimeout, allUpWith(3), nil)
	serial := f.dns.mustSerial()
	if out, err := f.n.Exec("view", binary, "check", "--view-config", v.config, "--test-actions"); err == nil ||
		!strings.Contains(string(out), "FAILED") || !strings.Contains(string(out), "REFUSED") {
		t.Errorf("edgeprobe check --test-actions with the refused key: %v, want a failure naming REFUSED\n%s", err, out)
	}

	if err := f.n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	const retries = 3
	recs := v.waitAudit(fmt.Sprintf("%d refused attempts", retries), failoverTimeout, func(recs []failover.Record) bool {
		return count(recs, failover.DecisionRetry) >= retries
	})
	attempt := 0
	for _, r := range recs {
		if r.Decision != failover.DecisionRetry {
			t.Errorf("while refused: %s", describeAudit([]failover.Record{r}))
			continue
		}
		if r.Rcode != "REFUSED" || r.Attempt != attempt+1 || r.Action != failover.ActionFailover {
			t.Errorf("retry record, want REFUSED attempt %d: %s", attempt+1, describeAudit([]failover.Record{r}))
		}
		attempt = r.Attempt
	}
	if n, err := v.metric(actionsSeries(failover.ActionFailover, failover.DecisionRetry)); err != nil || n < retries {
		t.Errorf("/metrics %s = %v (error %v), want at least %d", actionsSeries(failover.ActionFailover, failover.DecisionRetry), n, err, retries)
	}
	if st, err := v.siteStatus("a"); err != nil || st.State != failover.StateFailingOver {
		t.Errorf("site a while its update is refused: %+v (error %v), want %s", st, err, failover.StateFailingOver)
	}
	waitHook(t, hook, "a firing failover_retry")
	f.dns.expectZone("updates signed with a refused key", serial, svcName, f.primary)

	if err := f.n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	recs = v.waitAudit("the attempt given up once the site recovered", failoverTimeout, func(recs []failover.Record) bool {
		return count(recs, failover.DecisionError) > 0
	})
	last := recs[len(recs)-1]
	if last.Decision != failover.DecisionError || !strings.Contains(last.Reason, "the site's verdict changed") {
		t.Errorf("the last record, want the attempt given up for the recovery: %s", describeAudit(recs))
	}
	v.waitState("a", failover.StatePrimary, failoverTimeout)
	waitHook(t, hook, "a firing failover_error")
	if n := countHook(hook, "a firing failover_retry"); n != 1 {
		t.Errorf("failover_retry alerted %d times in one incident, want once: %v", n, hook.all())
	}
	f.dns.expectZone("after the retries ended", serial, svcName, f.primary)
}

// TestFailoverTwoViews: two views fed by the same agents, with the same action. On a loss
// and on the recovery exactly one of them applies the update; the other finds the
// prerequisite failing, reads the RRset and records already_done. The zone's serial
// moves once each time.
func TestFailoverTwoViews(t *testing.T) {
	t.Parallel()
	f := newFailoverNet(t)
	spec := actionSpec{Failback: failover.FailbackAuto, RecoverFor: "3s"}
	views := []*failoverView{f.startView(t, viewPort, spec), f.startView(t, viewPort+1, spec)}
	f.startAgents(t, views...)
	for _, v := range views {
		v.client.poll("both sites up with three witnesses", startTimeout, allUpWith(3), nil)
	}
	serial := f.dns.mustSerial()
	steps := func(action string) []string {
		var out []string
		for _, v := range views {
			for _, r := range dnsSteps(v.audit()) {
				if r.Action == action {
					out = append(out, r.Decision)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	expectOnce := func(action, state string, serial uint32, records string) {
		t.Helper()
		for _, v := range views {
			v.waitState("a", state, failoverTimeout)
		}
		if got, want := steps(action), []string{failover.DecisionAlreadyDone, action}; !slices.Equal(got, want) {
			t.Errorf("%s: DNS steps of both views %v, want %v", action, got, want)
			for _, v := range views {
				t.Logf("view %s:\n%s", v.listen, describeAudit(v.audit()))
			}
		}
		f.dns.expectZone("after the "+action, serial, svcName, records)
	}

	if err := f.n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	f.dns.waitA("named to answer the failover address", svcName, failoverTimeout, f.failover)
	expectOnce(failover.ActionFailover, failover.StateFailedOver, serial+1, f.failover)

	if err := f.n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	f.dns.waitA("named to answer the primary address again", svcName, failoverTimeout, f.primary)
	expectOnce(failover.ActionFailback, failover.StatePrimary, serial+2, f.primary)
}

// TestFailoverNoUpdate: nothing that is not a site's loss sends an update. Through an
// agent's uplink cut, a partial partition (two of three agents cut from a live site:
// partitioned), a web-only failure (tcp/80 dropped: degraded), a restart of the view and
// one of an agent, and a site flapping 3 s dark / 3 s up against lost_for = "5s", named's
// SOA serial and the RRset stay as they were and the view's audit log stays empty. A real
// loss at the end shows that the same setup does act.
func TestFailoverNoUpdate(t *testing.T) {
	t.Parallel()
	const recoverFor = 3 * time.Second
	f := newFailoverNet(t)
	spec := actionSpec{Failback: failover.FailbackAuto, RecoverFor: recoverFor.String()}
	v := f.startView(t, viewPort, spec)
	f.startAgents(t, v)
	v.client.poll("both sites up with three witnesses", startTimeout, allUpWith(3), nil)
	serial := f.dns.mustSerial()
	nothing := func(what string) {
		t.Helper()
		f.dns.expectZone(what, serial, svcName, f.primary)
		if recs := v.audit(); len(recs) > 0 {
			t.Errorf("%s: the audit log holds:\n%s", what, describeAudit(recs))
		}
		if st, err := v.siteStatus("a"); err != nil || st.State != failover.StatePrimary || st.Lost {
			t.Errorf("%s: site a's failover status %+v (error %v), want primary and no incident", what, st, err)
		}
	}
	quiet := func() {
		t.Helper()
		deadline := time.Now().Add(watchFor)
		v.client.poll("a quiet spell", watchFor+time.Second, func(map[string]siteVerdict) bool { return time.Now().After(deadline) }, neverLost)
	}

	t.Run("an agent's uplink cut", func(t *testing.T) {
		if err := f.n.CutUplink("e0"); err != nil {
			t.Fatal(err)
		}
		v.client.poll("e0 no longer a witness", changeTimeout, allUpWith(2), neverLost)
		quiet()
		if err := f.n.HealUplink("e0"); err != nil {
			t.Fatal(err)
		}
		v.client.poll("three witnesses again", changeTimeout, allUpWith(3), neverLost)
		nothing("an agent's uplink cut")
	})

	t.Run("a partial partition", func(t *testing.T) {
		for _, e := range []string{"e0", "e1"} {
			if err := f.n.CutPath("a", e); err != nil {
				t.Fatal(err)
			}
		}
		v.client.poll("site a partitioned", changeTimeout, states(map[string]string{"a": "partitioned"}), neverLost)
		quiet()
		for _, e := range []string{"e0", "e1"} {
			if err := f.n.HealPath("a", e); err != nil {
				t.Fatal(err)
			}
		}
		v.client.poll("both sites up", changeTimeout, allUpWith(3), neverLost)
		nothing("a partial partition")
	})

	t.Run("a web-only failure", func(t *testing.T) {
		if err := f.n.DropTCPPort("a", 80); err != nil {
			t.Fatal(err)
		}
		v.client.poll("site a degraded", changeTimeout, states(map[string]string{"a": "degraded"}), neverLost)
		quiet()
		if err := f.n.AllowTCPPort("a", 80); err != nil {
			t.Fatal(err)
		}
		v.client.poll("both sites up", changeTimeout, allUpWith(3), neverLost)
		nothing("a web-only failure")
	})

	t.Run("the view restarted", func(t *testing.T) {
		v.restart()
		v.client.poll("both sites up with three witnesses after the restart", startTimeout, allUpWith(3), neverLost)
		quiet()
		nothing("the view restarted")
	})

	t.Run("an agent restarted", func(t *testing.T) {
		f.restartAgent(t, "e1")
		quiet()
		v.client.poll("both sites up with three witnesses", changeTimeout, allUpWith(3), neverLost)
		nothing("an agent restarted")
	})

	const lostFor = 5 * time.Second
	t.Run("a site flapping faster than lost_for", func(t *testing.T) {
		flap := spec
		flap.LostFor = lostFor.String()
		v.reconfigure(f, flap)
		v.client.poll("both sites up with three witnesses after the restart", startTimeout, allUpWith(3), neverLost)
		events := followEvents(t, v.viewRun)
		for range 6 {
			if err := f.n.BlackholeSite("a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			if err := f.n.HealSite("a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
		}
		v.client.poll("both sites up after flapping", changeTimeout, allUpWith(3), nil)
		time.Sleep(recoverFor)
		lost := 0
		for _, e := range events.all() {
			if e.Site == "a" && e.To == "lost" {
				lost++
			}
		}
		if lost == 0 {
			t.Errorf("site a never lost while flapping: the scenario proved nothing; events %v", events.all())
		}
		t.Logf("site a lost %d times in 6 dark spells of 3 s", lost)
		nothing("a site flapping 3 s / 3 s with lost_for 5s")
	})

	t.Run("a real loss longer than lost_for still fails over", func(t *testing.T) {
		if err := f.n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		dark := time.Now()
		at := f.dns.waitA("named to answer the failover address", svcName, lostFor+failoverTimeout, f.failover)
		if d := at.Sub(dark); d < lostFor {
			t.Errorf("failed over %v after the blackhole, before lost_for %v", d, lostFor)
		}
		if err := f.n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		f.dns.waitA("named to answer the primary address again", svcName, recoverFor+failoverTimeout, f.primary)
		// named answers as soon as it applied the update; the view records the failback
		// when the answer reaches it, and only then is the site primary again.
		v.waitState("a", failover.StatePrimary, failoverTimeout)
		expectOnly(t, "a real loss", v.audit(), "failover/failover", "failback/failback")
		f.dns.expectZone("after a real loss and its recovery", serial+2, svcName, f.primary)
	})
}

func regexpMatch(pattern, text string) bool { return regexp.MustCompile(pattern).MatchString(text) }

// countHook counts a webhook's notifications "site status alert".
func countHook(h *hookSink, want string) int {
	n := 0
	for _, got := range h.all() {
		if got == want {
			n++
		}
	}
	return n
}

// waitHook waits until the webhook receiver got the notification want.
func waitHook(t *testing.T, h *hookSink, want string) {
	t.Helper()
	for deadline := time.Now().Add(failoverTimeout); countHook(h, want) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook receiver did not get %q within %v; it got %v", want, failoverTimeout, h.all())
		}
	}
}
