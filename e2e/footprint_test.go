//go:build linux && bench

package e2e

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// TestBenchFootprint is `make bench-footprint`: the CPU and memory that
// edgeprobe spends on N targets at a 1 s interval, side by side with the peers over the
// same targets for the same measured window:
//
//	go test -tags bench -run '^TestBenchFootprint$' -v ./e2e/ -args -duration 60s -targets 1000 -reps 3
//
// Cases (-cases):
//   - icmp-raw: N loopback ICMP targets; edgeprobe with icmp_mode "raw", Debian's
//     prometheus-smokeping-prober --privileged (raw sockets too), and Debian's
//     prometheus-blackbox-exporter driven by Debian's prometheus at a 1 s scrape.
//   - icmp-datagram: the same targets; edgeprobe with icmp_mode "datagram" and
//     smokeping_prober without --privileged (ping sockets), with
//     net.ipv4.ping_group_range set to "0 2147483647" for these windows only and restored
//     after each, and at the end of the test whatever happens.
//   - mixed: N targets, a quarter each ICMP, DNS, HTTP and TCP, served by real servers in
//     this process on loopback (miekg/dns, net/http, TCP listeners): edgeprobe against
//     blackbox_exporter + Prometheus (modules icmp, dns, http_2xx, tcp_connect).
//
// Every target is distinct: ICMP to 127.0.x.y, each server on its own 127.0.x.y address.
//
// Sequential, not concurrent. smokeping_prober alone needs about two cores for 1000 hosts
// (e2e/README.md), which is the whole machine: run beside edgeprobe it would starve it and the
// scheduler, and edgeprobe's figure would measure the peer. So each tool set runs alone in
// its own window, and noise (other work on the machine) is spread fairly by repetition:
// -reps rounds, the order inside each case reversed every other round, and the table
// shows medians. Each window starts after a -warmup, when the tool serves its metrics.
//
// Same treatment for all: the harness GETs the /metrics page of every measured exporter
// once a second (edgeprobe, smokeping_prober, blackbox_exporter's own page; blackbox's
// probes are scraped by Prometheus, which is measured separately). The CPU figures thus
// include serving a 1 s scrape. Every case also runs edgeprobe a second time with its
// page read only at the window's edges ("edgeprobe, page unscraped"): what probing costs
// alone, and by difference what a 1 s scrape of its 2.8 MB page adds (a Prometheus
// scraping every 15 s or more adds a fifteenth of that). A page that takes longer than a second
// delays that page's next scrape (smokeping_prober's page takes seconds at 1000 hosts),
// so probes are counted from the pages read in the window and scaled to it (fpMeasure).
// -scrape 0 reads each page only at the window's edges, to show what the 1 s scrape costs.
//
// Per process: CPU seconds (utime+stime of /proc/PID/stat over the window), % of one core,
// peak RSS (VmHWM, which includes the warm-up) and RSS at the end (VmRSS). Per tool:
// probes done in the window, from each tool's own counters (edgeprobe: the probe histogram
// counts plus the failure counters; smokeping_prober: smokeping_requests_total and
// smokeping_response_duration_seconds_count; blackbox: the scrapes Prometheus made of
// /probe, count_over_time(up) and sum_over_time(probe_success) over the window).
//
// The numbers are reported, not asserted, except that edgeprobe must have done at least
// 90% of the probes its schedule asks for and all but 1% of them must have succeeded:
// a harness that measures an idle or broken agent proves nothing. The footprint budget is
// printed beside the figures.
func TestBenchFootprint(t *testing.T) {
	cfg, err := fpParseFlags()
	if err != nil {
		t.Fatal(err)
	}
	fpRequire(t)
	fpRestorePingGroupAtEnd(t)
	fpLogTree(t)

	dir := t.TempDir()
	env := &fpEnv{t: t, dir: dir, n: cfg.targets}
	for i := 0; i < cfg.targets; i++ {
		env.icmp = append(env.icmp, fpAddr(fpICMPBlock, i))
	}
	if cfg.cases["mixed"] {
		env.mixed = fpServe(t, cfg.targets)
	}

	var cases []fpCase
	raw := fpCase{name: "icmp-raw", what: fmt.Sprintf("%d ICMP targets, raw sockets", cfg.targets), setups: []fpSetup{
		{name: "edgeprobe", start: func(e *fpEnv) (*fpRun, error) { return fpEdgeprobe(e, "raw", false) }},
		{name: fpUnscraped, edgesOnly: true, start: func(e *fpEnv) (*fpRun, error) { return fpEdgeprobe(e, "raw", false) }},
		{name: "smokeping_prober", start: func(e *fpEnv) (*fpRun, error) { return fpSmokeping(e, true) }},
		{name: "blackbox+prometheus", start: func(e *fpEnv) (*fpRun, error) { return fpBlackbox(e, false) }},
	}}
	dgram := fpCase{name: "icmp-datagram", what: fmt.Sprintf("%d ICMP targets, datagram (ping) sockets", cfg.targets), datagram: true, setups: []fpSetup{
		{name: "edgeprobe", start: func(e *fpEnv) (*fpRun, error) { return fpEdgeprobe(e, "datagram", false) }},
		{name: fpUnscraped, edgesOnly: true, start: func(e *fpEnv) (*fpRun, error) { return fpEdgeprobe(e, "datagram", false) }},
		{name: "smokeping_prober", start: func(e *fpEnv) (*fpRun, error) { return fpSmokeping(e, false) }},
	}}
	mixed := fpCase{name: "mixed", what: fmt.Sprintf("%d targets, 1/4 each ICMP (raw), DNS, HTTP, TCP", cfg.targets), setups: []fpSetup{
		{name: "edgeprobe", start: func(e *fpEnv) (*fpRun, error) { return fpEdgeprobe(e, "raw", true) }},
		{name: fpUnscraped, edgesOnly: true, start: func(e *fpEnv) (*fpRun, error) { return fpEdgeprobe(e, "raw", true) }},
		{name: "blackbox+prometheus", start: func(e *fpEnv) (*fpRun, error) { return fpBlackbox(e, true) }},
	}}
	for _, c := range []fpCase{raw, dgram, mixed} {
		c.setups = slices.DeleteFunc(slices.Clone(c.setups), func(s fpSetup) bool {
			// Without periodic reads every setup reads only the edges: no second edgeprobe.
			return (!*fpPeersFlag && !strings.HasPrefix(s.name, "edgeprobe")) || (s.edgesOnly && cfg.scrape == 0)
		})
		if cfg.cases[c.name] {
			cases = append(cases, c)
		}
	}

	results := map[string][]fpResult{} // case/setup -> one result per rep
	for rep := 0; rep < cfg.reps; rep++ {
		for _, c := range cases {
			order := slices.Clone(c.setups)
			if rep%2 == 1 {
				slices.Reverse(order)
			}
			for _, s := range order {
				t.Logf("rep %d/%d, %s: %s: starting (warm-up %v, window %v)", rep+1, cfg.reps, c.name, s.name, cfg.warmup, cfg.duration)
				r, err := fpMeasure(env, c, s, cfg)
				if err != nil {
					// The other tools' windows still count: fail at the end, with the table.
					t.Errorf("rep %d, %s, %s: %v", rep+1, c.name, s.name, err)
					continue
				}
				t.Logf("rep %d/%d, %s: %s: %s", rep+1, cfg.reps, c.name, s.name, r)
				results[c.name+"/"+s.name] = append(results[c.name+"/"+s.name], r)
				if strings.HasPrefix(s.name, "edgeprobe") {
					fpCheckEdgeprobe(t, c, r, cfg)
				}
			}
		}
	}
	fpReport(os.Stdout, cfg, cases, results)
}

// Address blocks: 127.0.<block+i/250>.<1+i%250>. ICMP targets and each kind of server
// get their own blocks, so no two targets of a run share an address and none is
// 127.0.0.1, where the exporters listen.
const (
	fpICMPBlock = 10
	fpDNSBlock  = 40
	fpHTTPBlock = 70
	fpTCPBlock  = 100
	fpPerBlock  = 250
	fpMaxN      = 30 * fpPerBlock // blocks are 30 apart
	fpSiteSize  = 20              // edgeprobe targets per [[site]]: 50 sites for 1000 targets
	// fpStartWait bounds a tool's start: smokeping_prober starts its 1000 pingers one after
	// another and serves only then, which took over a minute on a busy machine.
	fpStartWait = 4 * time.Minute
	fpStopGrace = 5 * time.Second
)

func fpAddr(block, i int) string {
	return fmt.Sprintf("127.0.%d.%d", block+i/fpPerBlock, 1+i%fpPerBlock)
}

var (
	fpDurationFlag = flag.Duration("duration", 60*time.Second, "footprint: measured window per tool (whole seconds)")
	fpWarmupFlag   = flag.Duration("warmup", 10*time.Second, "footprint: time from a tool's start (metrics served) to its window")
	fpTargetsFlag  = flag.Int("targets", 1000, "footprint: targets per case (a multiple of 4)")
	fpRepsFlag     = flag.Int("reps", 3, "footprint: rounds; the table shows medians")
	fpScrapeFlag   = flag.Duration("scrape", time.Second, "footprint: how often each measured /metrics page is read; 0: only at the window's edges (what the 1 s scrape costs)")
	fpPeersFlag    = flag.Bool("peers", true, "footprint: also measure the peers (false: edgeprobe alone, e.g. with -scrape 0)")
	fpCasesFlag    = flag.String("cases", "icmp-raw,icmp-datagram,mixed", "footprint: comma-separated cases to run")
)

type fpConfig struct {
	duration, warmup time.Duration
	scrape           time.Duration
	targets, reps    int
	cases            map[string]bool
}

func fpParseFlags() (fpConfig, error) {
	c := fpConfig{duration: *fpDurationFlag, warmup: *fpWarmupFlag, scrape: *fpScrapeFlag, targets: *fpTargetsFlag, reps: *fpRepsFlag, cases: map[string]bool{}}
	switch {
	case c.scrape < 0 || (c.scrape > 0 && c.scrape < 100*time.Millisecond):
		return c, fmt.Errorf("-scrape %v: want 0 (edges only) or at least 100ms", c.scrape)
	case c.duration < 5*time.Second || c.duration%time.Second != 0:
		return c, fmt.Errorf("-duration %v: want whole seconds, at least 5s", c.duration)
	case c.warmup < 2*time.Second || c.warmup%time.Second != 0:
		return c, fmt.Errorf("-warmup %v: want whole seconds, at least 2s", c.warmup)
	case c.targets < 4 || c.targets%4 != 0 || c.targets > fpMaxN:
		return c, fmt.Errorf("-targets %d: want a multiple of 4 from 4 to %d", c.targets, fpMaxN)
	case c.reps < 1 || c.reps > 20:
		return c, fmt.Errorf("-reps %d: want 1 to 20", c.reps)
	}
	for _, name := range strings.Split(*fpCasesFlag, ",") {
		switch name = strings.TrimSpace(name); name {
		case "icmp-raw", "icmp-datagram", "mixed":
			c.cases[name] = true
		default:
			return c, fmt.Errorf("-cases: unknown case %q (want icmp-raw, icmp-datagram, mixed)", name)
		}
	}
	return c, nil
}

// fpRequire stops the benchmark without root or the Debian packages (testkit.SkipUnlessCI).
func fpRequire(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, fmt.Sprintf("root (raw ICMP sockets and net.ipv4.ping_group_range; running as uid %d)", os.Geteuid()))
	}
	for _, prog := range []string{"prometheus-smokeping-prober", "prometheus-blackbox-exporter", "prometheus"} {
		if _, err := exec.LookPath(prog); err != nil {
			missing = append(missing, prog+" (scripts/deps/footprint.txt, make deps)")
		}
	}
	if len(missing) > 0 {
		testkit.SkipUnlessCI(t, "footprint benchmark needs %s", strings.Join(missing, ", "))
	}
}

// fpEnv is what every setup starts from: the targets and the servers behind them.
type fpEnv struct {
	t     *testing.T
	dir   string
	n     int
	icmp  []string // N ICMP targets
	mixed *fpServers
}

type fpCase struct {
	name, what string
	datagram   bool
	setups     []fpSetup
}

type fpSetup struct {
	name  string
	start func(*fpEnv) (*fpRun, error)
	// edgesOnly reads the tool's page only at the window's edges whatever -scrape says:
	// fpUnscraped measures the agent's probing alone beside the scraped run.
	edgesOnly bool
}

// fpUnscraped is edgeprobe measured again with its page read only at the window's edges,
// so that the table shows the probing's cost and, by difference, the 1 s scrape's.
const fpUnscraped = "edgeprobe, page unscraped"

// fpRun is one started tool set: the processes measured, the pages scraped every second,
// and how its probes are counted.
type fpRun struct {
	procs  []*fpProc
	scrape []string // /metrics URLs, GET once a second
	ready  []string // URLs that answer 200 once the tool works (default: scrape)
	// probes counts the probes done and succeeded in the window; first and last are the
	// first and last pages of scrape[0] read in the window (see fpMeasure).
	probes func(first, last *fpPage, start, end time.Time) (done, ok float64, err error)
}

func (r *fpRun) stop() {
	for _, p := range r.procs {
		p.stop()
	}
}

// fpProc is a measured process. It is killed when the test process dies (Pdeathsig) and
// when the test ends, even on failure.
type fpProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	once    sync.Once
}

func fpStart(e *fpEnv, name string, args ...string) (*fpProc, error) {
	logPath := filepath.Join(e.dir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(name, " ", "_"), time.Now().UnixNano()))
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exited, err := testkit.StartPinned(cmd)
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &fpProc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		<-exited
		log.Close()
		close(p.done)
	}()
	e.t.Cleanup(p.stop)
	return p, nil
}

func (p *fpProc) pid() int { return p.cmd.Process.Pid }

func (p *fpProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace period.
func (p *fpProc) stop() {
	p.once.Do(func() {
		pgid := p.pid()
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(fpStopGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// logTail is the end of the process's output, for error messages.
func (p *fpProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func fpWrite(e *fpEnv, name, text string) (string, error) {
	path := filepath.Join(e.dir, name)
	return path, os.WriteFile(path, []byte(text), 0o644)
}

// fpEdgeprobe starts the agent: ICMP targets only, or the mixed set, 1 s interval,
// JSON state changes on stdout (a file) and the Prometheus exporter on loopback.
func fpEdgeprobe(e *fpEnv, mode string, mixed bool) (*fpRun, error) {
	port, err := testkit.ReservePort(testkit.IPv4Loopback)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[agent]\nname = \"footprint\"\ninterval = \"1s\"\nicmp_mode = %q\nstate_dir = \"\"\n", mode)
	var targets []string // one TOML table each
	if mixed {
		q := e.n / 4
		for i := 0; i < q; i++ {
			targets = append(targets, fmt.Sprintf("  [[site.icmp]]\n  address = %q\n", e.icmp[i]))
		}
		for i := 0; i < q; i++ {
			targets = append(targets, fmt.Sprintf("  [[site.dns]]\n  server = %q\n  query = %q\n", e.mixed.dns[i], fpDNSName))
		}
		for i := 0; i < q; i++ {
			targets = append(targets, fmt.Sprintf("  [[site.http]]\n  url = %q\n", e.mixed.http[i]))
		}
		for i := 0; i < q; i++ {
			targets = append(targets, fmt.Sprintf("  [[site.tcp]]\n  address = %q\n", e.mixed.tcp[i]))
		}
		// Interleave kinds so that every site holds some of each: target k of kind j goes
		// to position k*4+j.
		inter := make([]string, 0, len(targets))
		for k := 0; k < q; k++ {
			for j := 0; j < 4; j++ {
				inter = append(inter, targets[j*q+k])
			}
		}
		targets = inter
	} else {
		for _, a := range e.icmp {
			targets = append(targets, fmt.Sprintf("  [[site.icmp]]\n  address = %q\n", a))
		}
	}
	for i, tg := range targets {
		if i%fpSiteSize == 0 {
			fmt.Fprintf(&b, "\n[[site]]\nname = \"s%03d\"\n", i/fpSiteSize)
		}
		b.WriteString(tg)
	}
	fmt.Fprintf(&b, "\n[exporters.stdout]\nformat = \"json\"\nresults = \"changes\"\n\n[exporters.prometheus]\nlisten = \"127.0.0.1:%d\"\n", port)
	conf, err := fpWrite(e, fmt.Sprintf("agent-%s-%v.toml", mode, mixed), b.String())
	if err != nil {
		return nil, err
	}
	p, err := fpStart(e, "edgeprobe", binary, "agent", "--config", conf)
	if err != nil {
		return nil, err
	}
	return &fpRun{
		procs:  []*fpProc{p},
		scrape: []string{fmt.Sprintf("http://127.0.0.1:%d/metrics", port)},
		probes: func(first, last *fpPage, start, end time.Time) (float64, float64, error) {
			count := func(page string) (done, ok float64) {
				ok = fpSum(page, "probe_duration_seconds_count")
				return ok + fpSum(page, "edgeprobe_probe_failures_total"), ok
			}
			d0, ok0 := count(first.body)
			d1, ok1 := count(last.body)
			return fpScale(first, last, d0, d1, start, end), fpScale(first, last, ok0, ok1, start, end), nil
		},
	}, nil
}

// fpSmokeping starts Debian's smokeping_prober on the ICMP targets at a 1 s interval.
// --privileged selects raw sockets; without it pro-bing uses ping sockets.
func fpSmokeping(e *fpEnv, privileged bool) (*fpRun, error) {
	port, err := testkit.ReservePort(testkit.IPv4Loopback)
	if err != nil {
		return nil, err
	}
	// An empty config file: the default one under /etc may hold other targets.
	conf, err := fpWrite(e, "smokeping.yml", "targets: []\n")
	if err != nil {
		return nil, err
	}
	args := []string{"prometheus-smokeping-prober", "--config.file=" + conf,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--ping.interval=1s", "--log.level=warn"}
	if privileged {
		args = append(args, "--privileged")
	}
	p, err := fpStart(e, "smokeping_prober", append(args, e.icmp...)...)
	if err != nil {
		return nil, err
	}
	return &fpRun{
		procs:  []*fpProc{p},
		scrape: []string{fmt.Sprintf("http://127.0.0.1:%d/metrics", port)},
		probes: func(first, last *fpPage, start, end time.Time) (float64, float64, error) {
			const sent, answered = "smokeping_requests_total", "smokeping_response_duration_seconds_count"
			done := fpScale(first, last, fpSum(first.body, sent), fpSum(last.body, sent), start, end)
			ok := fpScale(first, last, fpSum(first.body, answered), fpSum(last.body, answered), start, end)
			return done, ok, nil
		},
	}, nil
}

// fpBlackboxModules are the blackbox_exporter modules, one per kind. timeout is the
// ceiling; the exporter also keeps within Prometheus' scrape timeout minus its offset.
const fpBlackboxModules = `modules:
  icmp:
    prober: icmp
    timeout: 1s
    icmp:
      preferred_ip_protocol: ip4
  dns:
    prober: dns
    timeout: 1s
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: udp
      query_name: ` + fpDNSName + `
      query_type: A
  http_2xx:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 1s
    tcp:
      preferred_ip_protocol: ip4
`

// fpBlackbox starts blackbox_exporter and a Prometheus that scrapes it at 1 s for every
// target, through the usual relabelling to /probe?target=...&module=.... The instance
// label must be the target: left as the exporter's address, every target's series would
// be the same series and Prometheus would drop nearly all samples as duplicates.
func fpBlackbox(e *fpEnv, mixed bool) (*fpRun, error) {
	bbPort, err := testkit.ReservePort(testkit.IPv4Loopback)
	if err != nil {
		return nil, err
	}
	promPort, err := testkit.ReservePort(testkit.IPv4Loopback)
	if err != nil {
		return nil, err
	}
	bbConf, err := fpWrite(e, "blackbox.yml", fpBlackboxModules)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: blackbox
  metrics_path: /probe
  relabel_configs:
  - {source_labels: [__address__], target_label: __param_target}
  - {source_labels: [module], target_label: __param_module}
  - {source_labels: [__param_target], target_label: instance}
  - {target_label: __address__, replacement: "127.0.0.1:%d"}
  static_configs:
`, bbPort)
	group := func(module string, targets []string) {
		fmt.Fprintf(&b, "  - labels: {module: %s}\n    targets:\n", module)
		for _, tg := range targets {
			fmt.Fprintf(&b, "    - %q\n", tg)
		}
	}
	if mixed {
		q := e.n / 4
		group("icmp", e.icmp[:q])
		group("dns", e.mixed.dns)
		group("http_2xx", e.mixed.http)
		group("tcp_connect", e.mixed.tcp)
	} else {
		group("icmp", e.icmp)
	}
	promConf, err := fpWrite(e, "prometheus.yml", b.String())
	if err != nil {
		return nil, err
	}
	tsdb, err := os.MkdirTemp(e.dir, "tsdb-")
	if err != nil {
		return nil, err
	}
	bb, err := fpStart(e, "blackbox_exporter", "prometheus-blackbox-exporter", "--config.file="+bbConf,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", bbPort), "--log.level=warn")
	if err != nil {
		return nil, err
	}
	promBase := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	prom, err := fpStart(e, "prometheus", "prometheus", "--config.file="+promConf, "--storage.tsdb.path="+tsdb,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	if err != nil {
		bb.stop()
		return nil, err
	}
	return &fpRun{
		procs:  []*fpProc{bb, prom},
		scrape: []string{fmt.Sprintf("http://127.0.0.1:%d/metrics", bbPort)},
		ready:  []string{fmt.Sprintf("http://127.0.0.1:%d/metrics", bbPort), promBase + "/-/ready"},
		probes: func(_, _ *fpPage, start, end time.Time) (float64, float64, error) {
			// Samples carry the time their scrape started; let the last ones land.
			time.Sleep(3 * time.Second)
			rng := fmt.Sprintf("[%dms]", end.Sub(start).Milliseconds())
			done, err := fpPromQuery(promBase, `sum(count_over_time(up{job="blackbox"}`+rng+`))`, end)
			if err != nil {
				return 0, 0, err
			}
			ok, err := fpPromQuery(promBase, `sum(sum_over_time(probe_success{job="blackbox"}`+rng+`))`, end)
			return done, ok, err
		},
	}, nil
}

// fpPromQuery runs an instant query that returns one number.
func fpPromQuery(base, query string, at time.Time) (float64, error) {
	q := url.Values{"query": {query}, "time": {strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64)}}
	resp, err := fpHTTP.Get(base + "/api/v1/query?" + q.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := fpDecodeJSON(resp.Body, &body); err != nil {
		return 0, fmt.Errorf("prometheus query %s: %w", query, err)
	}
	if body.Status != "success" || len(body.Data.Result) != 1 {
		return 0, fmt.Errorf("prometheus query %s: status %q, %d results", query, body.Status, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("prometheus query %s: value %q: %w", query, s, err)
	}
	return v, nil
}

// fpHTTP's timeout is generous: a starved peer may take seconds to serve its page, and
// such a scrape is slow, not failed.
var fpHTTP = &http.Client{Timeout: time.Minute}

// fpGet reads a whole page; a status other than 200 is an error.
func fpGet(u string) (string, error) {
	return fpGetContext(context.Background(), u)
}

func fpGetContext(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := fpHTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}

// fpSum adds the values of every sample of one metric in a text exposition page.
func fpSum(page, metric string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer name with this prefix
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// fpProcResult is one process over one window.
type fpProcResult struct {
	name     string
	cpu      time.Duration
	wall     time.Duration
	hwm, rss int64
}

func (p fpProcResult) core() float64 { return 100 * p.cpu.Seconds() / p.wall.Seconds() }

// fpResult is one tool set over one window.
type fpResult struct {
	procs     []fpProcResult
	done, ok  float64
	window    time.Duration
	load      string        // /proc/loadavg's 1-minute figure at the window's end
	scrapes   int           // scrapes of the tool's pages done in the window
	scrapeErr int           // failed scrapes of the tool's pages during the window
	maxScrape time.Duration // the slowest scrape in the window
	pageBytes int           // size of the first scraped page at the window's end
}

func (r fpResult) cpu() time.Duration {
	var sum time.Duration
	for _, p := range r.procs {
		sum += p.cpu
	}
	return sum
}

func (r fpResult) String() string {
	var b strings.Builder
	for _, p := range r.procs {
		fmt.Fprintf(&b, "%s %.2f CPU s (%.2f%% of a core), peak RSS %.1f MiB, end RSS %.1f MiB; ",
			p.name, p.cpu.Seconds(), p.core(), fpMiB(p.hwm), fpMiB(p.rss))
	}
	fmt.Fprintf(&b, "load %s; probes %.0f in %v (%.0f ok); scrapes %d done, %d failed, slowest %v, page %d bytes",
		r.load, r.done, r.window.Round(time.Millisecond), r.ok, r.scrapes, r.scrapeErr, r.maxScrape.Round(time.Millisecond), r.pageBytes)
	return b.String()
}

func fpMiB(b int64) float64 { return float64(b) / (1 << 20) }

// fpMeasure starts a setup, waits until it serves, lets it warm up, and measures one window
// while scraping its pages once a second. Everything it starts is stopped when it returns.
//
// Each page has its own scraper that GETs it once a second and waits for the answer
// before the next (ticks that pass meanwhile are skipped, as Prometheus would not start a
// second scrape of a target either): smokeping_prober with 1000 hosts took from 3 to 44 s
// to serve one page on a busy machine. So the counters are read from the first page
// stamped nearest the window's start (a page is stamped halfway through its request) and
// the last one read, and the probes are scaled to the window from that span's rate.
func fpMeasure(e *fpEnv, c fpCase, s fpSetup, cfg fpConfig) (fpResult, error) {
	if c.datagram {
		restore, err := fpSetPingGroup("0\t2147483647")
		if err != nil {
			return fpResult{}, err
		}
		defer restore()
	}
	run, err := s.start(e)
	if err != nil {
		return fpResult{}, err
	}
	defer run.stop()
	alive := func() error {
		for _, p := range run.procs {
			if p.exited() {
				return fmt.Errorf("%s exited (%v); its output ends:\n%s", p.name, p.cmd.ProcessState, p.logTail())
			}
		}
		return nil
	}
	ready := run.ready
	if ready == nil {
		ready = run.scrape
	}
	deadline := time.Now().Add(fpStartWait)
	var readyPage *fpPage // the page read when the tool came up: counters' fallback start
	for _, u := range ready {
		for {
			if err := alive(); err != nil {
				return fpResult{}, err
			}
			began := time.Now()
			body, err := fpGet(u)
			if err == nil {
				if u == run.scrape[0] {
					readyPage = &fpPage{at: began.Add(time.Since(began) / 2), body: body}
				}
				break
			}
			if time.Now().After(deadline) {
				return fpResult{}, fmt.Errorf("not serving %s within %v: %v", u, fpStartWait, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The scrapers run from now until the window ends.
	var (
		mu        sync.Mutex
		winStart  time.Time   // zero until the window opens
		before    = readyPage // the latest page of scrape[0] stamped before the window
		first     *fpPage     // the first page of scrape[0] stamped in the window
		last      = readyPage // the latest page of scrape[0]
		scrapes   int         // completed in the window, all pages
		scrapeErr int
		maxScrape time.Duration
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	periodic := cfg.scrape > 0 && !s.edgesOnly
	for j, u := range run.scrape {
		if !periodic {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(cfg.scrape)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				began := time.Now()
				body, err := fpGetContext(ctx, u)
				took := time.Since(began)
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				inWindow := !winStart.IsZero() && !began.Before(winStart)
				if inWindow {
					if err != nil {
						scrapeErr++
					} else {
						scrapes++
					}
					maxScrape = max(maxScrape, took)
				}
				if err == nil && j == 0 {
					pg := &fpPage{at: began.Add(took / 2), body: body}
					switch {
					case winStart.IsZero() || pg.at.Before(winStart):
						before = pg
					case first == nil:
						first = pg
					}
					last = pg
				}
				mu.Unlock()
				if err != nil {
					e.t.Logf("%s: scrape %s: %v", s.name, u, err)
				}
			}
		}()
	}
	stopScrapers := func() {
		cancel()
		wg.Wait()
	}
	defer stopScrapers()

	cpuNow := func() ([]time.Duration, error) {
		var out []time.Duration
		for _, p := range run.procs {
			pr, err := testkit.ReadProc(p.pid())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			out = append(out, pr.CPU)
		}
		return out, nil
	}
	sleep := func(d time.Duration) error {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if err := alive(); err != nil {
				return err
			}
			time.Sleep(min(time.Until(end), 500*time.Millisecond))
		}
		return alive()
	}
	if err := sleep(cfg.warmup); err != nil {
		return fpResult{}, err
	}
	cpu0, err := cpuNow()
	if err != nil {
		return fpResult{}, err
	}
	t0 := time.Now()
	mu.Lock()
	winStart = t0
	mu.Unlock()
	// Without periodic scrapes, the counters are read once at each edge of the window.
	edgePage := func() (*fpPage, error) {
		began := time.Now()
		body, err := fpGet(run.scrape[0])
		if err != nil {
			return nil, err
		}
		return &fpPage{at: began.Add(time.Since(began) / 2), body: body}, nil
	}
	if !periodic {
		if first, err = edgePage(); err != nil {
			return fpResult{}, err
		}
	}
	if err := sleep(cfg.duration); err != nil {
		return fpResult{}, err
	}
	cpu1, err := cpuNow()
	if err != nil {
		return fpResult{}, err
	}
	t1 := time.Now()
	if !periodic {
		if last, err = edgePage(); err != nil {
			return fpResult{}, err
		}
	}
	r := fpResult{window: t1.Sub(t0), load: fpLoad()}
	for k, p := range run.procs {
		pr, err := testkit.ReadProc(p.pid())
		if err != nil {
			return fpResult{}, fmt.Errorf("%s: %w", p.name, err)
		}
		r.procs = append(r.procs, fpProcResult{name: p.name, cpu: cpu1[k] - cpu0[k], wall: r.window, hwm: pr.HWM, rss: pr.RSS})
	}
	stopScrapers()
	r.scrapes, r.scrapeErr, r.maxScrape = scrapes, scrapeErr, maxScrape
	// The counters' first reading is the page stamped nearest the window's start, on
	// either side of it.
	if first == nil || (before != nil && t0.Sub(before.at) < first.at.Sub(t0)) {
		first = before
	}
	if first == nil || last == nil || last.at.Sub(first.at) < r.window/2 {
		return fpResult{}, fmt.Errorf("too few pages of %s in the window to count probes (%d scrapes done, %d failed, slowest %v)",
			run.scrape[0], scrapes, scrapeErr, maxScrape)
	}
	r.pageBytes = len(last.body)
	r.done, r.ok, err = run.probes(first, last, t0, t1)
	if err != nil {
		return fpResult{}, fmt.Errorf("counting probes: %w", err)
	}
	return r, nil
}

// fpLoad is the machine's 1-minute load average: other work competes for the same cores.
func fpLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// fpPage is one page read, stamped halfway through its request: a page served slowly
// holds counters of some moment during the request.
type fpPage struct {
	at   time.Time
	body string
}

// fpScale turns the counters' growth from page a to page b into the count over the
// window, at the rate seen between the pages.
func fpScale(a, b *fpPage, countA, countB float64, start, end time.Time) float64 {
	return (countB - countA) * end.Sub(start).Seconds() / b.at.Sub(a.at).Seconds()
}

// fpLogTree says what was measured: the binary is built from the working tree, which
// may hold changes not yet committed.
func fpLogTree(t *testing.T) {
	git := func(args ...string) ([]byte, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = ".." // the test runs in e2e/
		return cmd.Output()
	}
	head, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		t.Logf("tree: not a git checkout (%v)", err)
		return
	}
	status, _ := git("status", "--porcelain", "--untracked-files=all", "--", "*.go", ":!*_test.go")
	changed := strings.Fields(strings.TrimSpace(string(status)))
	if len(changed) == 0 {
		t.Logf("tree: commit %s, no uncommitted Go source", strings.TrimSpace(string(head)))
		return
	}
	t.Logf("tree: commit %s plus uncommitted Go source:\n%s", strings.TrimSpace(string(head)), status)
}

// fpCheckEdgeprobe fails the test when the agent measured was not doing its job.
func fpCheckEdgeprobe(t *testing.T, c fpCase, r fpResult, cfg fpConfig) {
	t.Helper()
	want := float64(cfg.targets) * r.window.Seconds()
	if r.done < 0.9*want {
		t.Errorf("%s: edgeprobe did %.0f probes in %v, want about %.0f (%d targets at 1 s)", c.name, r.done, r.window, want, cfg.targets)
	}
	// Loopback always answers, so a failure is a false timeout. Many mean a broken
	// agent; a few happen when other work starves the agent (the adaptive timeout's floor
	// is 20 ms), and each brings the site's confirm re-probes: reported, not failed.
	switch {
	case r.ok < 0.5*r.done:
		t.Errorf("%s: edgeprobe: only %.0f of %.0f probes succeeded on loopback", c.name, r.ok, r.done)
	case r.ok < r.done:
		t.Logf("%s: edgeprobe: NOTE %.0f of %.0f probes failed on loopback (false timeouts; each adds the site's confirm re-probes)", c.name, r.done-r.ok, r.done)
	}
}

// ping_group_range: ping sockets for root's group during the datagram windows.
const fpPingGroupPath = "/proc/sys/net/ipv4/ping_group_range"

var fpPingGroupOrig string

func fpRestorePingGroupAtEnd(t *testing.T) {
	b, err := os.ReadFile(fpPingGroupPath)
	if err != nil {
		t.Fatalf("reading %s: %v", fpPingGroupPath, err)
	}
	fpPingGroupOrig = strings.TrimSpace(string(b))
	t.Cleanup(func() {
		if err := os.WriteFile(fpPingGroupPath, []byte(fpPingGroupOrig), 0o644); err != nil {
			t.Errorf("restoring %s to %q: %v", fpPingGroupPath, fpPingGroupOrig, err)
		}
	})
}

// fpSetPingGroup sets the range and returns the function that puts the old one back.
func fpSetPingGroup(v string) (func(), error) {
	old, err := os.ReadFile(fpPingGroupPath)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(fpPingGroupPath, []byte(v), 0o644); err != nil {
		return nil, fmt.Errorf("setting %s to %q: %w", fpPingGroupPath, v, err)
	}
	return func() { os.WriteFile(fpPingGroupPath, old, 0o644) }, nil
}

// fpReport prints the medians over the rounds as a markdown table, then the figures
// the footprint section of e2e/README.md sets against its budget.
func fpReport(w io.Writer, cfg fpConfig, cases []fpCase, results map[string][]fpResult) {
	scrape := fmt.Sprintf("every /metrics read each %v", cfg.scrape)
	if cfg.scrape == 0 {
		scrape = "/metrics read only at the window's edges"
	}
	fmt.Fprintf(w, "\n## Footprint: %d targets at 1 s, window %v after %v warm-up, %s, medians of up to %d rounds (n per row)\n\n",
		cfg.targets, cfg.duration, cfg.warmup, scrape, cfg.reps)
	fmt.Fprintln(w, "| case | tool (n) | process | CPU s | % of one core | peak RSS MiB | end RSS MiB | probes (of schedule) | ok | slowest scrape | load | CPU / edgeprobe |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	type key struct{ c, s string }
	core := map[key]float64{}
	rss := map[key]float64{}
	for _, c := range cases {
		epCPU := testkit.Median(fpMap(results[c.name+"/edgeprobe"], func(r fpResult) float64 { return r.cpu().Seconds() }))
		for _, s := range c.setups {
			rs := results[c.name+"/"+s.name]
			if len(rs) == 0 {
				fmt.Fprintf(w, "| %s | %s | no window measured (see the errors above) | | | | | | | | | |\n", c.name, s.name)
				continue
			}
			done := testkit.Median(fpMap(rs, func(r fpResult) float64 { return r.done }))
			sched := testkit.Median(fpMap(rs, func(r fpResult) float64 { return 100 * r.done / (float64(cfg.targets) * r.window.Seconds()) }))
			ok := testkit.Median(fpMap(rs, func(r fpResult) float64 { return 100 * r.ok / max(r.done, 1) }))
			for k := range rs[0].procs {
				cpu := testkit.Median(fpMap(rs, func(r fpResult) float64 { return r.procs[k].cpu.Seconds() }))
				pct := testkit.Median(fpMap(rs, func(r fpResult) float64 { return r.procs[k].core() }))
				hwm := testkit.Median(fpMap(rs, func(r fpResult) float64 { return fpMiB(r.procs[k].hwm) }))
				end := testkit.Median(fpMap(rs, func(r fpResult) float64 { return fpMiB(r.procs[k].rss) }))
				ratio := "1x"
				if s.name != "edgeprobe" {
					ratio = fpRatio(cpu, epCPU)
				}
				probes, okCol := fmt.Sprintf("%.0f (%.1f%%)", done, sched), fmt.Sprintf("%.1f%%", ok)
				slow := fmt.Sprintf("%.2f s", testkit.Median(fpMap(rs, func(r fpResult) float64 { return r.maxScrape.Seconds() })))
				load := fmt.Sprintf("%.1f", testkit.Median(fpMap(rs, func(r fpResult) float64 { v, _ := strconv.ParseFloat(r.load, 64); return v })))
				if k > 0 {
					probes, okCol, slow, load = "", "", "", ""
				}
				fmt.Fprintf(w, "| %s | %s (%d) | %s | %.2f | %.2f%% | %.1f | %.1f | %s | %s | %s | %s | %s |\n",
					c.name, s.name, len(rs), rs[0].procs[k].name, cpu, pct, hwm, end, probes, okCol, slow, load, ratio)
				if len(rs[0].procs) == 1 {
					core[key{c.name, s.name}] = pct
					rss[key{c.name, s.name}] = hwm
				}
			}
			if len(rs[0].procs) > 1 {
				cpu := testkit.Median(fpMap(rs, func(r fpResult) float64 { return r.cpu().Seconds() }))
				pct := testkit.Median(fpMap(rs, func(r fpResult) float64 { return 100 * r.cpu().Seconds() / r.window.Seconds() }))
				hwm := testkit.Median(fpMap(rs, func(r fpResult) float64 {
					var sum int64
					for _, p := range r.procs {
						sum += p.hwm
					}
					return fpMiB(sum)
				}))
				fmt.Fprintf(w, "| %s | %s | together | %.2f | %.2f%% | %.1f | | | | | | %s |\n", c.name, s.name, cpu, pct, hwm, fpRatio(cpu, epCPU))
			}
		}
	}
	fmt.Fprintf(w, "\nCPU s: utime+stime over the window; peak RSS: VmHWM (includes warm-up and start); "+
		"end RSS: VmRSS at the window's end; probes: counted by each tool (blackbox: Prometheus' scrapes of /probe), "+
		"and their share of targets x window seconds; slowest scrape: the longest GET of the tool's own /metrics (blackbox: its small page); "+
		"load: the machine's 1-minute load average at the window's end (2 cores; other work runs beside); "+
		"blackbox's probes are Prometheus' 1 s scrapes whatever -scrape says.\n")
	check := func(ok bool) string {
		if ok {
			return "meets"
		}
		return "MISSES"
	}
	fmt.Fprintf(w, "\nFootprint budget (medians):\n")
	for _, c := range []struct{ name, mode string }{{"icmp-raw", "raw"}, {"icmp-datagram", "datagram"}} {
		pct, ok := core[key{c.name, "edgeprobe"}]
		if !ok {
			continue
		}
		peak := rss[key{c.name, "edgeprobe"}]
		how := "page read every " + cfg.scrape.String()
		if cfg.scrape == 0 {
			how = "page read at the window's edges"
		}
		fmt.Fprintf(w, "- %d ICMP @1s, %s, %s: edgeprobe %.2f%% of one core (<= 2%%: %s), peak RSS %.1f MiB (<= 20 MiB: %s)",
			cfg.targets, c.mode, how, pct, check(pct <= 2), peak, check(peak <= 20))
		if sp, ok := core[key{c.name, "smokeping_prober"}]; ok && pct > 0 {
			fmt.Fprintf(w, "; smokeping_prober %.1f%%, %.0fx edgeprobe (>= 50x: %s)", sp, sp/pct, check(sp/pct >= 50))
		}
		fmt.Fprintln(w)
		if u, ok := core[key{c.name, fpUnscraped}]; ok {
			up := rss[key{c.name, fpUnscraped}]
			fmt.Fprintf(w, "- %d ICMP @1s, %s, page read at the window's edges: edgeprobe %.2f%% of one core (<= 2%%: %s), peak RSS %.1f MiB (<= 20 MiB: %s)",
				cfg.targets, c.mode, u, check(u <= 2), up, check(up <= 20))
			if sp, ok := core[key{c.name, "smokeping_prober"}]; ok && u > 0 {
				fmt.Fprintf(w, "; smokeping_prober %.0fx", sp/u)
			}
			fmt.Fprintln(w)
		}
	}
	for _, s := range []string{"edgeprobe", fpUnscraped} {
		if pct, ok := core[key{"mixed", s}]; ok {
			how := "page read every " + cfg.scrape.String()
			if s == fpUnscraped || cfg.scrape == 0 {
				how = "page read at the window's edges"
			}
			fmt.Fprintf(w, "- %d mixed @1s, %s: edgeprobe %.2f%% of one core (<= 10%%: %s), peak RSS %.1f MiB\n",
				cfg.targets, how, pct, check(pct <= 10), rss[key{"mixed", s}])
		}
	}
}

func fpRatio(peer, ep float64) string {
	if ep <= 0 {
		return "n/a (edgeprobe 0 s)"
	}
	return fmt.Sprintf("%.1fx", peer/ep)
}

func fpMap[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// fpWait is a bounded context for servers' shutdown.
func fpWait() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}
