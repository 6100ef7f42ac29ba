package prometheus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/exporters"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

const rulesFile = "edgeprobe.rules.yml"

// promHint says where the tools come from when testkit.LookTool does not find them.
const promHint = "Debian's prometheus package, scripts/deps/prom.txt"

func TestPromtool(t *testing.T) {
	promtool := testkit.LookTool(t, promHint, "promtool")
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", "edgeprobe.rules.test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestRulesEndToEnd starts Debian's Prometheus as a remote_write receiver with the rules
// loaded, has three agents push through the real remote_write exporter, and watches the
// lost alert fire at quorum and resolve on recovery.
func TestRulesEndToEnd(t *testing.T) {
	prom := startPrometheus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := map[string]*exporters.RemoteWrite{}
	for _, name := range []string{"e1", "e2", "e3"} {
		rw, err := exporters.NewRemoteWrite(config.RemoteWriteConfig{
			URL:          prom + "/api/v1/write",
			PushInterval: config.Duration{Duration: 250 * time.Millisecond},
		}, "", name, map[string]string{"region": "kr"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		agents[name] = rw
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := rw.Run(ctx); err != nil {
				t.Errorf("agent %s: %v", name, err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	site := func(name, from, to string) {
		agents[name].Handle(agent.Event{Type: agent.EventSite, Time: time.Now(), Agent: name, Site: "pangyo", From: from, To: to})
	}
	for name := range agents {
		agents[name].Handle(agent.Event{Type: agent.EventAgent, Time: time.Now(), Agent: name, From: agent.AgentOK, To: agent.AgentOK})
		site(name, agent.SiteUnknown, agent.SiteUp)
	}
	lostAlert := `ALERTS{alertname="EdgeprobeSiteLost",alertstate="firing",site="pangyo"}`
	verdict := `edgeprobe:site_verdict{site="pangyo"} == 1`

	waitQuery(t, prom, verdict, "up", 30*time.Second)
	if v := query(t, prom, `edgeprobe_site_state{agent="e1",site="pangyo",state="up",region="kr"}`); len(v) != 1 || v[0].Value[1] != "1" {
		t.Fatalf("pushed series not found as sent: %+v", v)
	}

	// One witness sees the site down: degraded, not lost.
	site("e1", agent.SiteUp, agent.SiteDown)
	waitQuery(t, prom, verdict, "degraded", 30*time.Second)
	if v := query(t, prom, lostAlert); len(v) != 0 {
		t.Fatalf("lost alert with a single witness: %+v", v)
	}

	// An isolated agent that sees the site down does not make the quorum.
	isolate := func(name, from, to string) {
		agents[name].Handle(agent.Event{Type: agent.EventAgent, Time: time.Now(), Agent: name, From: from, To: to})
	}
	isolate("e3", agent.AgentOK, agent.AgentIsolated)
	site("e3", agent.SiteUp, agent.SiteDown)
	waitQuery(t, prom, `edgeprobe:site_witnesses:sum{site="pangyo"} == 2`, "", 30*time.Second)
	if v := query(t, prom, lostAlert); len(v) != 0 {
		t.Fatalf("lost alert counting an isolated agent: %+v", v)
	}
	// Site first: a push between the two events must not show e3 as a healthy witness of a down site.
	site("e3", agent.SiteDown, agent.SiteUp)
	isolate("e3", agent.AgentIsolated, agent.AgentOK)
	waitQuery(t, prom, `edgeprobe:site_witnesses:sum{site="pangyo"} == 3`, "", 30*time.Second)

	// The second witness makes the quorum.
	quorum := time.Now()
	site("e2", agent.SiteUp, agent.SiteDown)
	waitQuery(t, prom, lostAlert, "", 30*time.Second)
	t.Logf("EdgeprobeSiteLost firing %v after the second agent saw the site down (1 s evaluation)", time.Since(quorum).Round(time.Millisecond))
	if v := query(t, prom, verdict); len(v) != 1 || v[0].Metric["verdict"] != "lost" {
		t.Errorf("verdict with the alert firing: %+v, want lost", v)
	}

	checkDashboard(t, prom)

	// Recovery: the alert resolves and the verdict returns to up.
	recovered := time.Now()
	site("e1", agent.SiteDown, agent.SiteUp)
	site("e2", agent.SiteDown, agent.SiteUp)
	waitQuery(t, prom, verdict, "up", 30*time.Second)
	t.Logf("verdict back to up %v after recovery", time.Since(recovered).Round(time.Millisecond))
	if v := query(t, prom, lostAlert); len(v) != 0 {
		t.Errorf("lost alert still firing after recovery: %+v", v)
	}
	for name, rw := range agents {
		if s := rw.Stats(); s.Sent == 0 || s.Dropped[exporters.DropRejected] != 0 {
			t.Errorf("agent %s: %+v; want pushes accepted and none rejected", name, s)
		}
	}
}

// startPrometheus runs Debian's prometheus with the remote_write receiver on a free
// loopback port, storage in a temporary directory, and the rules evaluated every second.
func startPrometheus(t *testing.T) string {
	t.Helper()
	binary := testkit.LookTool(t, promHint, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(
		"global:\n  evaluation_interval: 1s\nrule_files:\n  - %s\n", rules)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(binary,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.enable-remote-write-receiver",
		"--log.level=warn",
	)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", log)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("prometheus exited: %v\n%s", err, log)
		default:
		}
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready after 30s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func query(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: decode: %v", q, err)
	}
	if body.Status != "success" {
		t.Fatalf("query %s: %s", q, body.Error)
	}
	return body.Data.Result
}

// waitQuery polls until q returns a series, with label verdict = wantVerdict when given.
func waitQuery(t *testing.T, base, q, wantVerdict string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last []promSample
	for time.Now().Before(deadline) {
		last = query(t, base, q)
		if len(last) == 1 && (wantVerdict == "" || last[0].Metric["verdict"] == wantVerdict) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %v, %s gives %+v; want one series%s", limit, q, last, map[bool]string{true: " with verdict " + wantVerdict}[wantVerdict != ""])
}

// checkDashboard runs every query of the Grafana dashboard against the live Prometheus:
// each must parse, and the verdict panels must show the sites.
func checkDashboard(t *testing.T, base string) {
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
	mustShow := map[string]bool{"Site verdict (quorum of fresh, non-isolated agents)": true, "Site state per agent": true}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			if v := query(t, base, grafana.Replace(target.Expr)); len(v) == 0 && mustShow[p.Title] {
				t.Errorf("dashboard panel %q: %s shows nothing", p.Title, target.Expr)
			}
		}
		delete(mustShow, p.Title)
	}
	for title := range mustShow {
		t.Errorf("dashboard lacks panel %q", title)
	}
	for _, a := range dash.Annotations.List {
		if v := query(t, base, a.Expr); len(v) == 0 {
			t.Errorf("dashboard annotation %s shows nothing while the site is lost", a.Expr)
		}
	}
}
