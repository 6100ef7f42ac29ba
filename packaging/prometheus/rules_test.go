package prometheus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/exporters"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/packaging/prometheus"
	"github.com/edgeprobe/edgeprobe/view"
)

const rulesFile = "edgeprobe.rules.yml"

// lookTool finds a binary of Debian's prometheus or victoria-metrics package; in CI its
// absence is a failure.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	hint := "Debian's prometheus package, scripts/deps/prom.txt"
	if strings.HasPrefix(name, "v") {
		hint = "Debian's victoria-metrics package, scripts/deps/prom.txt"
	}
	return testkit.LookTool(t, hint, name)
}

// TestPromtool checks every generated rule file and runs the promtool unit tests (the
// same cases as the view's engine tables, testdata/verdicts.json, and the hand-written
// alert cases): what make prom-rules runs.
func TestPromtool(t *testing.T) {
	promtool := lookTool(t, "promtool")
	args := []string{"check", "rules"}
	for _, g := range generatedFiles(t) {
		args = append(args, g.file)
	}
	tests, err := promtoolTests()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range [][]string{args, append([]string{"test", "rules"}, tests...)} {
		out, err := exec.Command(promtool, a...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
}

// promtoolTests are the unit test files, the generated ones included.
func promtoolTests() ([]string, error) {
	more, err := filepath.Glob("testdata/*.test.yml")
	return append([]string{"edgeprobe.rules.test.yml"}, more...), err
}

// TestRulesEndToEnd has three agents push through the real remote_write exporter, by way
// of the tee, to the view's engine, to Prometheus and to VictoriaMetrics with vmalert,
// and requires the same verdict from all three through a partition (two of three agents
// see the site down), a loss, a recovery, and an agent killed (silent) before a loss
// that the two left declare alone.
func TestRulesEndToEnd(t *testing.T) {
	st := stackFor(t, rulesFile)
	defer st.logTail(t)
	const prefix = "e2e"
	site := prefix + "-pangyo"
	tt := newTee(t, view.DefaultConfig(), st.backends)
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := map[string]*exporters.RemoteWrite{}
	stopAgent := map[string]func(){}
	for _, name := range []string{"e1", "e2", "e3"} {
		name = prefix + "-" + name
		rw, err := exporters.NewRemoteWrite(config.RemoteWriteConfig{
			URL:          tt.URL(),
			PushInterval: config.Duration{Duration: time.Second},
		}, "", name, map[string]string{"region": "kr"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		agents[name] = rw
		actx, acancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := rw.Run(actx); err != nil {
				t.Errorf("agent %s: %v", name, err)
			}
		}()
		stopAgent[name] = func() { acancel(); <-done }
		t.Cleanup(stopAgent[name])
	}
	siteState := func(name, from, to string) {
		name = prefix + "-" + name
		agents[name].Handle(agent.Event{Type: agent.EventSite, Time: time.Now(), Agent: name, Site: site, From: from, To: to})
	}
	for name, rw := range agents {
		rw.Handle(agent.Event{Type: agent.EventAgent, Time: time.Now(), Agent: name, From: agent.AgentOK, To: agent.AgentOK})
		rw.Handle(agent.Event{Type: agent.EventSite, Time: time.Now(), Agent: name, Site: site, From: agent.SiteUnknown, To: agent.SiteUp})
	}
	noAgentAlerts := func() map[string]bool { return map[string]bool{} }
	expect := func(what, verdict string) {
		t.Helper()
		began := time.Now()
		if diffs := settle(tt, st, prefix, noAgentAlerts, map[string]string{site: verdict}, settleLimit); len(diffs) > 0 {
			t.Fatalf("%s: after %v, want %s:\n  %s", what, settleLimit, verdict, strings.Join(diffs, "\n  "))
		}
		t.Logf("%s: %s on the view, Prometheus and VictoriaMetrics after %v", what, verdict, time.Since(began).Round(10*time.Millisecond))
	}

	expect("all up", view.VerdictUp)
	prom := st.backends[0]
	if v, err := prom.instant(`edgeprobe_site_state{agent="e2e-e1",site="e2e-pangyo",state="up",region="kr"}`); err != nil || len(v) != 1 || v[0].Value[1] != "1" {
		t.Fatalf("pushed series not found as sent: %+v %v", v, err)
	}
	siteState("e1", agent.SiteUp, agent.SiteDown)
	expect("one of three agents sees the site down", view.VerdictDegraded)
	siteState("e2", agent.SiteUp, agent.SiteDown)
	expect("two of three see it down, the third still reaches it", view.VerdictPartitioned)
	siteState("e3", agent.SiteUp, agent.SiteDown)
	expect("all three see it down", view.VerdictLost)
	for _, b := range st.backends {
		checkDashboard(t, b)
	}
	for _, name := range []string{"e1", "e2", "e3"} {
		siteState(name, agent.SiteDown, agent.SiteUp)
	}
	expect("recovery", view.VerdictUp)
	stopAgent[prefix+"-e3"]()
	expect("e3 killed: two witnesses left, both see it up", view.VerdictUp)
	// Its last report (up) must stop counting everywhere, or the loss below would be a
	// partition (one up of three).
	deadline := time.Now().Add(settleLimit)
	for {
		var diffs []string
		if s, _ := tt.engine.Site(site, time.Now()); len(s.Agents) != 3 || !s.Agents[2].Stale {
			diffs = append(diffs, fmt.Sprintf("view: agents %+v", s.Agents))
		}
		for _, b := range st.backends {
			if v, err := b.instant(`edgeprobe:agent_fresh:bool{agent="e2e-e3"} == 0`); err != nil || len(v) != 1 {
				diffs = append(diffs, fmt.Sprintf("%s: e3 not stale: %v %v", b.name, v, err))
			}
		}
		if len(diffs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("e3 killed: after %v: %v", settleLimit, diffs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	siteState("e1", agent.SiteUp, agent.SiteDown)
	siteState("e2", agent.SiteUp, agent.SiteDown)
	expect("the two live agents see it down", view.VerdictLost)
	if errs := tt.errors(); len(errs) > 0 {
		t.Errorf("pushes refused: %v", errs)
	}
	end := time.Now()
	for _, b := range st.backends {
		if _, err := b.stateSetHolds(siteRE(prefix), began, end, view.Verdicts, settleLimit); err != nil {
			t.Error(err)
		}
	}
	for name, rw := range agents {
		if s := rw.Stats(); s.Sent == 0 || s.Dropped[exporters.DropRejected] != 0 {
			t.Errorf("agent %s: %+v; want pushes accepted and none rejected", name, s)
		}
	}
}

// checkDashboard runs every query of the Grafana dashboard against a live engine:
// each must parse, and the verdict panels must show the sites.
func checkDashboard(t *testing.T, b *backend) {
	t.Helper()
	data, err := os.ReadFile("edgeprobe.dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("edgeprobe.dashboard.json: %v", err)
	}
	grafana := strings.NewReplacer(`$site`, `.*`, `$__rate_interval`, `1m`)
	mustShow := map[string]bool{"Site verdict": true, "Site state per agent": true, "Witnesses per site": true}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			v, err := b.instant(grafana.Replace(target.Expr))
			if err != nil {
				t.Errorf("dashboard panel %q: %v", p.Title, err)
			} else if len(v) == 0 && mustShow[p.Title] {
				t.Errorf("%s: dashboard panel %q: %s shows nothing", b.name, p.Title, target.Expr)
			}
		}
		delete(mustShow, p.Title)
	}
	for title := range mustShow {
		t.Errorf("dashboard lacks panel %q", title)
	}
	for _, a := range dash.Annotations.List {
		if !strings.Contains(a.Expr, prometheus.AlertLost) {
			continue
		}
		// Only Prometheus keeps ALERTS itself; vmalert writes them back through a flush.
		if v, err := b.instant(a.Expr); err != nil || (len(v) == 0 && b.name == "prometheus") {
			t.Errorf("%s: dashboard annotation %s shows nothing while the site is lost (%v)", b.name, a.Expr, err)
		}
	}
}
