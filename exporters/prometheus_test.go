package exporters

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"math"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/internal/testkit"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/probes"
)

// sampleEvents is one agent's story: site pangyo with an HTTP target that answers and an
// ICMP target that times out until it is down, the site degraded, then the agent isolated.
func sampleEvents(agentName string) []agent.Event {
	now := time.Now()
	ok := probes.Result{Start: now, OK: true, RTT: 1500 * time.Microsecond,
		Phases: probes.Phases{Connect: 300 * time.Microsecond, Processing: time.Millisecond}}
	failed := probes.Result{Start: now, RTT: 100 * time.Millisecond, Reason: probes.ReasonTimeout, Detail: "no reply"}
	web := agent.Event{Agent: agentName, Site: "pangyo", Target: "web", Kind: probes.KindHTTP}
	ping := agent.Event{Agent: agentName, Site: "pangyo", Target: "gw", Kind: probes.KindICMP}
	at := func(ev agent.Event, typ agent.EventType, from, to string) agent.Event {
		ev.Type, ev.Time, ev.From, ev.To = typ, now, from, to
		return ev
	}
	probe := func(ev agent.Event, r probes.Result) agent.Event {
		ev.Type, ev.Time, ev.Result = agent.EventProbe, now, r
		return ev
	}
	return []agent.Event{
		probe(web, ok),
		at(web, agent.EventTarget, agent.TargetUnknown, agent.TargetUp),
		probe(ping, failed),
		probe(ping, failed),
		probe(ping, failed),
		at(ping, agent.EventTarget, agent.TargetSuspect, agent.TargetDown),
		{Type: agent.EventSite, Time: now, Agent: agentName, Site: "pangyo",
			From: agent.SiteUp, To: agent.SiteDegraded, Detect: 230 * time.Millisecond},
		{Type: agent.EventAgent, Time: now, Agent: agentName, From: agent.AgentOK, To: agent.AgentIsolated},
		// A failure the agent was too late to judge changes neither web's last result nor
		// its failure count.
		{Type: agent.EventProbe, Time: now, Agent: agentName, Site: "pangyo", Target: "web", Kind: probes.KindHTTP,
			Result: failed, Inconclusive: true},
		{Type: agent.EventScheduler, Time: now, Agent: agentName, Scheduler: sampleLateness()},
		{Type: agent.EventImpaired, Time: now, Agent: agentName, From: agent.AgentOK, To: agent.AgentImpaired},
	}
}

// sampleLateness is a report of three wake-ups (50 µs, 3 ms, 2 s late) and one
// inconclusive probe.
func sampleLateness() *agent.SchedulerReport {
	r := &agent.SchedulerReport{Inconclusive: 1}
	h := &r.Histograms[agent.LateWakeup]
	h.Buckets[0], h.Buckets[5], h.Count, h.Sum = 1, 1, 3, 2003050*time.Microsecond
	return r
}

func startPrometheus(t *testing.T, cfg config.PrometheusConfig) *Prometheus {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	p, err := NewPrometheus(cfg, "edge1", map[string]string{"region": "kr"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

func scrape(t *testing.T, client *http.Client, url string) []byte {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body
}

// findMetric returns the value of the series of family name whose labels include want.
func findMetric(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fam := families[name]
	if fam == nil {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s series with labels %v", name, want)
	return nil
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return m.Untyped.GetValue()
}

func TestPrometheusScrape(t *testing.T) {
	p := startPrometheus(t, config.PrometheusConfig{})
	for _, ev := range sampleEvents("edge1") {
		p.Handle(ev)
	}
	body := scrape(t, http.DefaultClient, "http://"+p.Addr()+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	web := map[string]string{"agent": "edge1", "region": "kr", "site": "pangyo", "target": "web", "kind": "http"}
	gw := map[string]string{"agent": "edge1", "site": "pangyo", "target": "gw", "kind": "icmp"}
	site := map[string]string{"agent": "edge1", "site": "pangyo"}
	with := func(base map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for bk, bv := range base {
			out[bk] = bv
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"probe_success", web, 1},
		{"probe_success", gw, 0},
		{"edgeprobe_target_up", web, 1},
		{"edgeprobe_target_up", gw, 0},
		{"edgeprobe_site_state", with(site, "state", "degraded"), 1},
		{"edgeprobe_site_state", with(site, "state", "up"), 0},
		{"edgeprobe_site_state", with(site, "state", "down"), 0},
		{"edgeprobe_site_state", with(site, "state", "unknown"), 0},
		{"edgeprobe_site_detect_seconds", site, 0.23},
		{"edgeprobe_agent_isolated", map[string]string{"agent": "edge1"}, 1},
		{"edgeprobe_agent_impaired", map[string]string{"agent": "edge1"}, 1},
		{"edgeprobe_probe_inconclusive_total", map[string]string{"agent": "edge1"}, 1},
		{"edgeprobe_probe_failures_total", with(gw, "reason", "timeout"), 3},
		{"edgeprobe_probe_failures_total", with(web, "reason", "timeout"), 0},
		{"probe_http_duration_seconds", with(web, "phase", "processing"), 0.001},
		{"probe_http_duration_seconds", with(web, "phase", "tls"), 0},
		{"edgeprobe_build_info", map[string]string{"agent": "edge1", "goversion": runtime.Version()}, 1},
	} {
		if got := metricValue(findMetric(t, families, tc.name, tc.labels)); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Only timeout is created before it happens; other reasons appear on their first failure.
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.GetName() == "edgeprobe_probe_failures_total" && l.GetName() == "reason" && l.GetValue() != "timeout" {
					t.Errorf("edgeprobe_probe_failures_total{reason=%q} exists before any such failure", l.GetValue())
				}
			}
		}
	}
	hist := findMetric(t, families, "probe_duration_seconds", web).Histogram
	if hist.GetSampleCount() != 1 || hist.GetSampleSum() != 0.0015 {
		t.Errorf("probe_duration_seconds{web}: count %d sum %v, want 1 and 0.0015", hist.GetSampleCount(), hist.GetSampleSum())
	}
	if got := hist.Bucket[0].GetUpperBound(); got != 0.00005 {
		t.Errorf("first bucket %v, want 50µs", got)
	}
	late := findMetric(t, families, "edgeprobe_scheduler_lateness_seconds", map[string]string{"agent": "edge1", "event": "wakeup"}).Histogram
	if late.GetSampleCount() != 3 || late.GetSampleSum() != 2.00305 {
		t.Errorf("lateness{wakeup}: count %d sum %v, want 3 and 2.00305", late.GetSampleCount(), late.GetSampleSum())
	}
	for _, b := range late.Bucket {
		want := map[float64]uint64{0.0001: 1, 0.00025: 1, 0.0005: 1, 0.001: 1, 0.0025: 1}[b.GetUpperBound()]
		switch {
		case math.IsInf(b.GetUpperBound(), 1):
			want = 3
		case b.GetUpperBound() >= 0.005:
			want = 2
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("lateness{wakeup} le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	// Failed probes stay out of the histogram: their "RTT" is the timeout.
	if n := findMetric(t, families, "probe_duration_seconds", gw).Histogram.GetSampleCount(); n != 0 {
		t.Errorf("probe_duration_seconds{gw} count %d, want 0", n)
	}
	for name, fam := range families {
		for _, m := range fam.Metric {
			agentLabel := ""
			for _, l := range m.Label {
				if l.GetName() == "agent" {
					agentLabel = l.GetValue()
				}
			}
			if agentLabel != "edge1" {
				t.Errorf("%s series without agent=edge1 (the agent label may not override it): %v", name, m.Label)
			}
		}
	}
	promtoolCheckMetrics(t, body)
}

// promtoolCheckMetrics runs Prometheus' own linter over an exposition.
func promtoolCheckMetrics(t *testing.T, body []byte) {
	t.Helper()
	promtool := testkit.LookTool(t, "Debian's prometheus package, scripts/deps/prom.txt", "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestPrometheusWebConfig(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	basicAuth := "basic_auth_users:\n  scraper: " + string(hash) + "\n"
	tlsServer := "tls_server_config:\n  cert_file: " + pki.serverCert + "\n  key_file: " + pki.serverKey + "\n"
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	for _, tc := range []struct {
		name       string
		webConfig  string
		scheme     string
		user, pass string
		wantStatus int
	}{
		{"basic auth right password", basicAuth, "http", "scraper", "s3cret", http.StatusOK},
		{"basic auth wrong password", basicAuth, "http", "scraper", "nope", http.StatusUnauthorized},
		{"basic auth missing", basicAuth, "http", "", "", http.StatusUnauthorized},
		{"tls", tlsServer, "https", "", "", http.StatusOK},
		{"tls and basic auth", tlsServer + basicAuth, "https", "scraper", "s3cret", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yml", tc.webConfig)
			p := startPrometheus(t, config.PrometheusConfig{WebConfig: file})
			req, err := http.NewRequest(http.MethodGet, tc.scheme+"://"+p.Addr()+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := waitServing(t, tlsClient, req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
	t.Run("plain http refused by a tls endpoint", func(t *testing.T) {
		p := startPrometheus(t, config.PrometheusConfig{WebConfig: writeFile(t, dir, "tls-only.yml", tlsServer)})
		resp, err := http.Get("http://" + p.Addr() + "/metrics")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Error("plain HTTP scrape of a TLS endpoint succeeded")
			}
		}
	})
}

// waitServing retries a request briefly: Run starts serving in a goroutine, and the
// listener accepts before the TLS setup of web.Serve is done.
func waitServing(t *testing.T, client *http.Client, req *http.Request) (*http.Response, error) {
	t.Helper()
	var lastErr error
	for range 50 {
		resp, err := client.Do(req)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	return nil, lastErr
}

func TestPrometheusConstructorErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		cfg     config.PrometheusConfig
		labels  map[string]string
		wantErr string
	}{
		{"missing web config", config.PrometheusConfig{Listen: "127.0.0.1:0", WebConfig: dir + "/absent.yml"}, nil, dir + "/absent.yml"},
		{"bad web config", config.PrometheusConfig{Listen: "127.0.0.1:0", WebConfig: writeFile(t, dir, "bad.yml", "tls_server_config: [\n")}, nil, "bad.yml"},
		{"busy port", config.PrometheusConfig{Listen: busy.Addr().String()}, nil, busy.Addr().String()},
		{"bad label name", config.PrometheusConfig{Listen: "127.0.0.1:0"}, map[string]string{"bad-name": "x"}, `"bad-name"`},
		{"no agent name", config.PrometheusConfig{Listen: "127.0.0.1:0"}, nil, "agent name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agentName := "edge1"
			if tc.name == "no agent name" {
				agentName = ""
			}
			p, err := NewPrometheus(tc.cfg, agentName, tc.labels, nil)
			if err == nil {
				p.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not name %q", err, tc.wantErr)
			}
		})
	}
}

func TestPrometheusCloseWithoutRun(t *testing.T) {
	p, err := NewPrometheus(config.PrometheusConfig{Listen: "127.0.0.1:0"}, "edge1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("address %s still held after Close: %v", addr, err)
	}
	l.Close()
}

func TestPrometheusShowsRemoteWriteDelivery(t *testing.T) {
	p := startPrometheus(t, config.PrometheusConfig{})
	good := startTestReceiver(t, nil)
	bad := startTestReceiver(t, func(n int, w http.ResponseWriter) { http.Error(w, "no", http.StatusBadRequest) })
	view, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: good.URL, Name: "view", PushInterval: duration(time.Minute)}, "")
	mimir, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: bad.URL, Name: "mimir", PushInterval: duration(time.Minute)}, "")
	for _, rw := range []*RemoteWrite{view, mimir} {
		if err := p.Register(rw); err != nil {
			t.Fatalf("register %s: %v", rw.Name(), err)
		}
	}
	waitFor(t, 5*time.Second, "one push to each", func() bool {
		return view.Stats().Sent == 1 && mimir.Stats().Dropped[DropRejected] == 1
	})
	body := scrape(t, http.DefaultClient, "http://"+p.Addr()+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"edgeprobe_remote_write_sent_batches_total", map[string]string{"agent": "edge1", "receiver": "view"}, 1},
		{"edgeprobe_remote_write_sent_batches_total", map[string]string{"receiver": "mimir"}, 0},
		{"edgeprobe_remote_write_dropped_batches_total", map[string]string{"receiver": "mimir", "reason": "rejected"}, 1},
		{"edgeprobe_remote_write_dropped_batches_total", map[string]string{"receiver": "view", "reason": "rejected"}, 0},
		{"edgeprobe_remote_write_failed_requests_total", map[string]string{"receiver": "mimir"}, 1},
		{"edgeprobe_remote_write_queued_batches", map[string]string{"receiver": "view"}, 0},
	} {
		if got := metricValue(findMetric(t, families, tc.name, tc.labels)); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	promtoolCheckMetrics(t, body)
}
