package prometheus_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// The rule engines the tests run: Debian's Prometheus (a remote_write receiver that
// evaluates the rules itself) and VictoriaMetrics single node with vmalert evaluating the
// same file. One stack of both runs per rule file for the whole test binary (TestMain
// stops them), so the end-to-end test, the scenarios and the latency runs share them;
// each test names its own agents and sites.

// backend is one engine as the tests see it: where agents push, where the rules'
// recordings are queried, and where the rules' alerts are listed.
type backend struct {
	name     string
	write    string // remote_write URL
	query    string // base URL of the Prometheus query API
	extra    string // query parameters every query carries
	alertAPI string // base URL of the API that lists the rules' alerts
	logs     []string
}

// stack is one rule file on both engines.
type stack struct {
	rules    string
	backends []*backend
	err      error
}

var (
	stacksMu sync.Mutex
	stacks   = map[string]*stack{}
	procs    []*proc
	procDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	stacksMu.Lock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	stacksMu.Unlock()
	if procDir != "" {
		os.RemoveAll(procDir)
	}
	os.Exit(code)
}

// stackFor returns the engines evaluating rulesFile (relative to this directory),
// starting them on first use. It skips (or, with CI set, fails) when a binary is missing.
func stackFor(t *testing.T, rulesFile string) *stack {
	t.Helper()
	tools := map[string]string{}
	for _, name := range []string{"prometheus", "victoria-metrics", "vmalert"} {
		tools[name] = lookTool(t, name)
	}
	stacksMu.Lock()
	defer stacksMu.Unlock()
	if s := stacks[rulesFile]; s != nil {
		if s.err != nil {
			t.Fatal(s.err)
		}
		return s
	}
	s := &stack{rules: rulesFile}
	stacks[rulesFile] = s
	s.err = s.start(tools)
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s
}

func (s *stack) start(tools map[string]string) error {
	if procDir == "" {
		dir, err := os.MkdirTemp("", "edgeprobe-rules-")
		if err != nil {
			return err
		}
		procDir = dir
	}
	rules, err := filepath.Abs(s.rules)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(procDir, filepath.Base(s.rules)+"-")
	if err != nil {
		return err
	}
	prom, err := startPrometheus(tools["prometheus"], dir, rules)
	if err != nil {
		return err
	}
	vm, err := startVictoriaMetrics(tools["victoria-metrics"], tools["vmalert"], dir, rules)
	if err != nil {
		return err
	}
	s.backends = []*backend{prom, vm}
	return nil
}

// startPrometheus runs Prometheus as a remote_write receiver with the rules evaluated
// every second (the groups say 1s themselves; evaluation_interval is the default for
// groups that do not).
func startPrometheus(binary, dir, rules string) (*backend, error) {
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, "global:\n  evaluation_interval: 1s\nrule_files:\n  - %s\n", rules), 0o600); err != nil {
		return nil, err
	}
	addr, err := testkit.FreeLoopback()
	if err != nil {
		return nil, err
	}
	p, err := startProc("prometheus", dir, binary,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
		"--web.listen-address="+addr,
		"--web.enable-remote-write-receiver",
		"--log.level=warn",
	)
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	if err := p.waitReady(base + "/-/ready"); err != nil {
		return nil, err
	}
	return &backend{name: "prometheus", write: base + "/api/v1/write", query: base, alertAPI: base, logs: []string{p.log}}, nil
}

// vmFlags and vmalertFlags are what VictoriaMetrics 1.79 and its vmalert need to give
// the rules' verdicts within seconds (README.md, "VictoriaMetrics and vmalert"):
//
//   - nocache=1 on vmalert's datasource URL: VictoriaMetrics answers a query for a time
//     within -search.latencyOffset (30 s) of now with the data of now-30s unless the
//     query says nocache=1; vmalert 1.79 has no per-group params that Prometheus would
//     also accept, so the parameter rides on -datasource.url. (-search.latencyOffset=0s
//     on VictoriaMetrics does the same for every query, dashboards included.)
//   - -remoteWrite.url: vmalert's recordings and ALERTS series go back into
//     VictoriaMetrics (dashboards read them; no alert does), flushed every second
//     (-remoteWrite.flushInterval, default 5 s).
//   - -notifier.url: vmalert refuses to start alerting rules without a notifier.
var (
	vmFlags      = []string{"-loggerLevel=WARN"}
	vmalertFlags = []string{"-remoteWrite.flushInterval=1s", "-evaluationInterval=1s", "-loggerLevel=WARN"}
)

func startVictoriaMetrics(vmBinary, vmalertBinary, dir, rules string) (*backend, error) {
	addr, err := testkit.FreeLoopback()
	if err != nil {
		return nil, err
	}
	vm, err := startProc("victoria-metrics", dir, vmBinary, append([]string{
		"-storageDataPath=" + filepath.Join(dir, "vm-data"),
		"-httpListenAddr=" + addr,
	}, vmFlags...)...)
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	if err := vm.waitReady(base + "/health"); err != nil {
		return nil, err
	}
	// An Alertmanager stand-in: vmalert needs a notifier; the tests read alerts from
	// vmalert's own API.
	notifier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	procs = append(procs, &proc{name: "notifier", stopFn: notifier.Close})
	alertAddr, err := testkit.FreeLoopback()
	if err != nil {
		return nil, err
	}
	va, err := startProc("vmalert", dir, vmalertBinary, append([]string{
		"-rule=" + rules,
		"-datasource.url=" + base + "?nocache=1",
		"-remoteWrite.url=" + base,
		"-notifier.url=" + notifier.URL,
		"-httpListenAddr=" + alertAddr,
	}, vmalertFlags...)...)
	if err != nil {
		return nil, err
	}
	alertBase := "http://" + alertAddr
	if err := va.waitReady(alertBase + "/health"); err != nil {
		return nil, err
	}
	return &backend{name: "victoriametrics", write: base + "/api/v1/write", query: base, extra: "nocache=1",
		alertAPI: alertBase, logs: []string{vm.log, va.log}}, nil
}

// proc is a server the tests started.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan error
	stopFn func()
}

func startProc(name, dir, binary string, args ...string) (*proc, error) {
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile.Name(), exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait(); logFile.Close() }()
	procs = append(procs, p)
	return p, nil
}

func (p *proc) stop() {
	if p.stopFn != nil {
		p.stopFn()
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) waitReady(u string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-p.exited:
			log, _ := os.ReadFile(p.log)
			return fmt.Errorf("%s exited: %v\n%s", p.name, err, log)
		default:
		}
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after 30s", p.name, u)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logTail dumps the engines' logs into a failed test's output.
func (s *stack) logTail(t *testing.T) {
	t.Helper()
	if !t.Failed() {
		return
	}
	for _, b := range s.backends {
		for _, name := range b.logs {
			data, _ := os.ReadFile(name)
			if len(data) > 8000 {
				data = data[len(data)-8000:]
			}
			t.Logf("%s log %s:\n%s", b.name, filepath.Base(name), data)
		}
	}
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

// instant runs an instant query at now.
func (b *backend) instant(q string) ([]promSample, error) {
	return b.instantAt(q, time.Time{})
}

// instantAt is instant evaluated at at (now when zero).
func (b *backend) instantAt(q string, at time.Time) ([]promSample, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1e3, 'f', 3, 64))
	}
	u := b.query + "/api/v1/query?" + v.Encode()
	if b.extra != "" {
		u += "&" + b.extra
	}
	resp, err := http.Get(u)
	if err != nil {
		return nil, fmt.Errorf("%s: query %s: %w", b.name, q, err)
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
		return nil, fmt.Errorf("%s: query %s: decode: %w", b.name, q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: query %s: %s", b.name, q, body.Error)
	}
	return body.Data.Result, nil
}

// verdicts is the recorded verdict of each site whose name matches siteRE.
func (b *backend) verdicts(siteRE string) (map[string]string, error) {
	res, err := b.instant(fmt.Sprintf(`edgeprobe:site_verdict{site=~%q} == 1`, siteRE))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range res {
		if old, dup := out[s.Metric["site"]]; dup {
			return nil, fmt.Errorf("%s: site %s has two verdicts at 1: %s and %s", b.name, s.Metric["site"], old, s.Metric["verdict"])
		}
		out[s.Metric["site"]] = s.Metric["verdict"]
	}
	return out, nil
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// alerts lists the rules' alerts (pending and firing) as the engine evaluating them says.
func (b *backend) alerts() ([]alert, error) {
	resp, err := http.Get(b.alertAPI + "/api/v1/alerts")
	if err != nil {
		return nil, fmt.Errorf("%s: alerts: %w", b.name, err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: alerts: decode: %w", b.name, err)
	}
	return body.Data.Alerts, nil
}

// firing is the set "alertname/label" of firing alerts, label being the site or agent.
func (b *backend) firing() (map[string]bool, error) {
	as, err := b.alerts()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, a := range as {
		if a.State != "firing" {
			continue
		}
		key := a.Labels["site"]
		if key == "" {
			key = a.Labels["agent"]
		}
		out[a.Labels["alertname"]+"/"+key] = true
	}
	return out, nil
}

// stateSetHolds is checkStateSet over the evaluations from from to to, asked again until
// it holds or limit has passed: the recordings of the evaluations just before to reach a
// backend fed by remote_write (vmalert's) through a flush, and until then an evaluation
// can show only some of its verdicts. What it finds at the limit is the answer.
func (b *backend) stateSetHolds(siteRE string, from, to time.Time, verdicts []string, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		n, err := b.checkStateSet(siteRE, from, to, verdicts)
		if err == nil || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkStateSet reads every recorded sample of the verdict state set of the sites
// matching siteRE evaluated from from to to and requires, per site and evaluation, all
// the verdicts with values summing to exactly 1. It returns how many evaluations it
// checked.
func (b *backend) checkStateSet(siteRE string, from, to time.Time, verdicts []string) (int, error) {
	window := int(to.Sub(from).Seconds()) + 1
	res, err := b.instantAt(fmt.Sprintf(`edgeprobe:site_verdict{site=~%q}[%ds]`, siteRE, window), to)
	if err != nil {
		return 0, err
	}
	type key struct {
		site string
		ts   string
	}
	sum := map[key]float64{}
	members := map[key]map[string]bool{}
	for _, s := range res {
		for _, v := range s.Values {
			k := key{s.Metric["site"], fmt.Sprint(v[0])}
			if members[k] == nil {
				members[k] = map[string]bool{}
			}
			if members[k][s.Metric["verdict"]] {
				continue // the same sample twice (a re-sent batch)
			}
			members[k][s.Metric["verdict"]] = true
			f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: sample %v: %w", b.name, v, err)
			}
			sum[k] += f
		}
	}
	var bad []string
	for k, n := range sum {
		if n != 1 || len(members[k]) != len(verdicts) {
			var got []string
			for v := range members[k] {
				got = append(got, v)
			}
			sort.Strings(got)
			bad = append(bad, fmt.Sprintf("site %s at %s: sum %v over %v", k.site, k.ts, n, got))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		return len(sum), fmt.Errorf("%s: verdict state set not exactly 1 at %d of %d evaluations: %v", b.name, len(bad), len(sum), bad)
	}
	return len(sum), nil
}
