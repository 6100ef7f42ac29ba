//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	encbin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// Helpers of the remote_write fault tests (faults_remotewrite_test.go): a real
// remote_write 1.0 receiver that can go down, hang, fail or be slow and records every
// sample it ingests; the agent binary run on loopback with JSON probe lines on stdout, its
// /metrics and its log; and the arithmetic of samples produced, delivered, lost and
// duplicated.

// Receiver behaviours.
const (
	rwOK   = iota // ingest, then 204
	rwHang        // read the request, never answer (until the connection closes)
	rw500         // read the request, answer 500
	rwSlow        // ingest, wait rwReceiver.slow, then 204 (a flush that takes time)
)

// rwReceiver is a remote_write receiver on a fixed loopback port, so that it can be
// down (connection refused) and come back at the same address.
type rwReceiver struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	srv      *http.Server
	mode     int
	slow     time.Duration
	attempts int            // requests of any outcome
	samples  map[string]int // series@timestamp -> times ingested
	batches  map[int64]int  // a push's timestamp -> times ingested
	series   map[int64]int  // a push's timestamp -> its number of series
	order    []int64        // pushes' timestamps in the order ingested
}

func newRWReceiver(t testing.TB) *rwReceiver {
	t.Helper()
	r := &rwReceiver{t: t, addr: testkit.FreePort(t, "tcp"), samples: map[string]int{}, batches: map[int64]int{}, series: map[int64]int{}}
	t.Cleanup(r.down)
	return r
}

func (r *rwReceiver) url() string { return "http://" + r.addr + "/api/v1/write" }

// up starts serving in mode.
func (r *rwReceiver) up(mode int) {
	r.t.Helper()
	r.setMode(mode)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		return
	}
	var ln net.Listener
	var err error
	for range 50 { // the port was ours a moment ago; nobody else should take it
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("receiver: listen on %s again: %v", r.addr, err)
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
}

// down closes the listener and every connection: the agent sees connection refused.
func (r *rwReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *rwReceiver) setMode(mode int) {
	r.mu.Lock()
	r.mode = mode
	r.mu.Unlock()
}

func (r *rwReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	r.attempts++
	mode, slow := r.mode, r.slow
	r.mu.Unlock()
	if err != nil {
		return
	}
	switch mode {
	case rwHang:
		<-req.Context().Done()
		return
	case rw500:
		http.Error(w, "receiver broken on purpose", http.StatusInternalServerError)
		return
	}
	raw, err := snappy.Decode(nil, body)
	var wr prompb.WriteRequest
	if err == nil {
		err = proto.Unmarshal(raw, &wr)
	}
	if err != nil {
		r.t.Errorf("receiver: undecodable push (%d bytes): %v", len(body), err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.ingest(&wr)
	r.mu.Unlock()
	if mode == rwSlow {
		select {
		case <-time.After(slow):
		case <-req.Context().Done():
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// ingest records every sample of wr; r.mu is held.
func (r *rwReceiver) ingest(wr *prompb.WriteRequest) {
	for _, key := range sampleKeys(wr) {
		r.samples[key]++
	}
	if ts, ok := pushTimestamp(wr); ok {
		r.batches[ts]++
		r.series[ts] = len(wr.Timeseries)
		r.order = append(r.order, ts)
	}
}

// sampleKeys names every sample of wr by its sorted label set and timestamp.
func sampleKeys(wr *prompb.WriteRequest) []string {
	var keys []string
	for _, ts := range wr.Timeseries {
		var b strings.Builder
		for _, l := range ts.Labels {
			b.WriteString(l.Name + "=" + l.Value + ",")
		}
		for _, s := range ts.Samples {
			keys = append(keys, b.String()+"@"+strconv.FormatInt(s.Timestamp, 10))
		}
	}
	return keys
}

// pushTimestamp is the timestamp every sample of one edgeprobe push carries.
func pushTimestamp(wr *prompb.WriteRequest) (int64, bool) {
	if len(wr.Timeseries) == 0 || len(wr.Timeseries[0].Samples) == 0 {
		return 0, false
	}
	return wr.Timeseries[0].Samples[0].Timestamp, true
}

// delivery is what the receiver ingested: distinct samples and batches, and repeats.
type delivery struct {
	samples, sampleDups  int // distinct samples; ingestions beyond the first
	batches, batchDups   int
	dupBatches           []int64 // timestamps ingested more than once
	keys                 map[string]bool
	timestamps           []int64 // distinct batch timestamps, sorted
	attempts             int
	seriesMin, seriesMax int // series per push
	outOfOrder           int // pushes ingested after a newer one (a repeat excepted)
}

// fullState is the number of series in a push once every site and target has a state:
// the agent's 3 (isolated, impaired, push interval), per site 4 state-set series + change
// time + detection time, per target target_up, probe_success, probe_duration_seconds and
// target_failure_reason (exporters/README.md, "push contract").
func fullState(cfg faultConfig) int {
	return 3 + 6*len(cfg.Sites) + 4*len(cfg.Sites)*len(cfg.Targets)
}

// waitFullState waits until a push with the complete state has been ingested, so that
// every push from then on carries the same series and dropped batches convert to samples.
func (r *rwReceiver) waitFullState(limit time.Duration, cfg faultConfig) {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if d := r.delivered(); d.batches > 0 && d.seriesMax >= fullState(cfg) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no push with the complete state (%d series) within %v", fullState(cfg), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rwReceiver) delivered() delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := delivery{keys: map[string]bool{}, attempts: r.attempts, seriesMin: math.MaxInt}
	for k, n := range r.samples {
		d.samples++
		d.sampleDups += n - 1
		d.keys[k] = true
	}
	for ts, n := range r.batches {
		d.batches++
		d.batchDups += n - 1
		if n > 1 {
			d.dupBatches = append(d.dupBatches, ts)
		}
		d.timestamps = append(d.timestamps, ts)
		d.seriesMin, d.seriesMax = min(d.seriesMin, r.series[ts]), max(d.seriesMax, r.series[ts])
	}
	var newest int64
	for _, ts := range r.order {
		if ts < newest {
			d.outOfOrder++
		}
		newest = max(newest, ts)
	}
	sort.Slice(d.timestamps, func(i, j int) bool { return d.timestamps[i] < d.timestamps[j] })
	sort.Slice(d.dupBatches, func(i, j int) bool { return d.dupBatches[i] < d.dupBatches[j] })
	return d
}

// spoolContents decodes every segment of a spool directory (the format of
// exporters/remotewrite_queue.go: CRC-32C big-endian, then the snappy payload) and returns
// its samples and batch timestamps. A segment failing its checksum is an error: the spool
// promises whole segments or none.
func spoolContents(t testing.TB, dir string) (keys map[string]bool, timestamps []int64, tmpFiles int) {
	t.Helper()
	keys = map[string]bool{}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read spool %s: %v", dir, err)
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e.Name(), ".tmp"):
			tmpFiles++
			continue
		case !strings.HasSuffix(e.Name(), ".seg"):
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read segment: %v", err)
		}
		if len(data) < 4 || encbin.BigEndian.Uint32(data) != crc32.Checksum(data[4:], table) {
			t.Errorf("segment %s is torn or corrupt (%d bytes)", path, len(data))
			continue
		}
		raw, err := snappy.Decode(nil, data[4:])
		var wr prompb.WriteRequest
		if err == nil {
			err = proto.Unmarshal(raw, &wr)
		}
		if err != nil {
			t.Errorf("segment %s: %v", path, err)
			continue
		}
		for _, k := range sampleKeys(&wr) {
			keys[k] = true
		}
		if ts, ok := pushTimestamp(&wr); ok {
			timestamps = append(timestamps, ts)
		}
	}
	sort.Slice(timestamps, func(i, j int) bool { return timestamps[i] < timestamps[j] })
	return keys, timestamps, tmpFiles
}

// tcpTargets starts n loopback TCP servers that accept and close: targets that always
// answer, so every probe interval is a regular one (no confirm re-probes).
func tcpTargets(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// faultConfig is the agent configuration of a fault test.
type faultConfig struct {
	StateDir     string // "" : no spool possible
	Interval     time.Duration
	Targets      []string // every site probes all of them
	Sites        []string
	MetricsAddr  string
	URL          string
	PushInterval time.Duration
	Timeout      time.Duration
	QueueSize    int
	Spool        bool
	SpoolMax     int64 // 0: default
}

var faultTemplate = template.Must(template.New("faults.toml").Parse(`[agent]
name = "edge-faults"
interval = "{{.Interval}}"
# Fixed, not auto: on a loaded machine a loopback RTT of 0.1 ms makes the adaptive
# timeout its 20 ms floor, and a probe goroutine scheduled late would fail, be confirmed
# and add probes off the grid that say nothing about the exporters.
timeout = "400ms"
state_dir = "{{.StateDir}}"
{{range $site := .Sites}}
[[site]]
name = "{{$site}}"
{{- range $.Targets}}
  [[site.tcp]]
  address = "{{.}}"
{{- end}}
{{end}}
[exporters.stdout]
format = "json"
results = "all"

[exporters.prometheus]
listen = "{{.MetricsAddr}}"

[[exporters.remote_write]]
url = "{{.URL}}"
name = "recv"
push_interval = "{{.PushInterval}}"
timeout = "{{.Timeout}}"
queue_size = {{.QueueSize}}
{{- if .Spool}}
  [exporters.remote_write.spool]
  {{- if .SpoolMax}}
  max_bytes = {{.SpoolMax}}
  {{- end}}
{{- end}}
`))

// probeLine is one probe as the agent's stdout reports it.
type probeLine struct {
	start time.Time // when it was sent (the line's start, else its time minus its RTT)
	done  time.Time // the line's time: when the agent handled the result
	ok    bool
}

// faultAgent is one `edgeprobe agent` process on loopback.
type faultAgent struct {
	t       testing.TB
	cfg     faultConfig
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	clock *testkit.ClockWatch // pauses of the machine and steps of its clock, as this process saw them

	mu      sync.Mutex
	probes  map[string][]probeLine // by site/target, in the order of the lines
	logs    []string               // stderr lines
	badLine string
}

// startFaultAgent writes cfg and starts the agent. A missing MetricsAddr is chosen.
func startFaultAgent(t testing.TB, cfg faultConfig) *faultAgent {
	t.Helper()
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = testkit.FreePort(t, "tcp")
	}
	var file bytes.Buffer
	if err := faultTemplate.Execute(&file, cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &faultAgent{t: t, cfg: cfg, done: make(chan struct{}), probes: map[string][]probeLine{},
		clock: testkit.WatchClock(t, 10*time.Millisecond, clockGapLeast)}
	a.cmd = exec.Command(binary, "agent", "--config", path)
	// Pipes of this test's own rather than StdoutPipe: StartPinned (the agent dies with
	// the test process) waits for the agent as soon as it exits, and Wait closes
	// StdoutPipe's read ends, maybe before the readers took the last lines (the
	// "remote_write stopped" line among them).
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = stdoutW, stderrW
	exited, err := testkit.StartPinned(a.cmd)
	stdoutW.Close() // the agent holds them now: the readers see EOF when it exits
	stderrW.Close()
	if err != nil {
		stdout.Close()
		stderr.Close()
		t.Fatalf("start %s: %v", binary, err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); a.readStdout(stdout) }()
	go func() { defer readers.Done(); a.readStderr(stderr) }()
	go func() {
		err := <-exited
		readers.Wait()
		stdout.Close()
		stderr.Close()
		a.waitErr = err
		close(a.done)
	}()
	t.Cleanup(func() {
		if a.running() {
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	a.waitMetrics(15 * time.Second)
	return a
}

func (a *faultAgent) readStdout(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Time   time.Time `json:"time"`
			Start  time.Time `json:"start"`
			Type   string    `json:"type"`
			Site   string    `json:"site"`
			Target string    `json:"target"`
			OK     *bool     `json:"ok"`
			RTT    float64   `json:"rtt_seconds"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			a.mu.Lock()
			a.badLine = sc.Text()
			a.mu.Unlock()
			continue
		}
		if line.Type != "probe" {
			continue
		}
		start := line.Start // when the probe was sent
		if start.IsZero() {
			start = line.Time.Add(-time.Duration(line.RTT * float64(time.Second)))
		}
		a.mu.Lock()
		key := line.Site + "/" + line.Target
		a.probes[key] = append(a.probes[key], probeLine{start: start, done: line.Time, ok: line.OK != nil && *line.OK})
		a.mu.Unlock()
	}
}

func (a *faultAgent) readStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		a.mu.Lock()
		a.logs = append(a.logs, sc.Text())
		a.mu.Unlock()
	}
}

func (a *faultAgent) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// alive fails the test if the agent has exited.
func (a *faultAgent) alive(when string) {
	a.t.Helper()
	if !a.running() {
		a.t.Fatalf("agent exited %s (%v); log:\n%s", when, a.waitErr, a.log())
	}
}

// stop sends sig and waits for the exit.
func (a *faultAgent) stop(sig syscall.Signal) {
	a.t.Helper()
	if !a.running() {
		a.t.Fatalf("agent had already exited (%v); log:\n%s", a.waitErr, a.log())
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
		a.t.Fatalf("agent did not stop within 15 s of %v", sig)
	}
	if sig == syscall.SIGTERM && a.waitErr != nil {
		a.t.Errorf("agent exited with %v after SIGTERM; log:\n%s", a.waitErr, a.log())
	}
}

func (a *faultAgent) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.logs, "\n")
}

// logLines returns the log lines that contain every one of the substrings.
func (a *faultAgent) logLines(substrings ...string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
next:
	for _, l := range a.logs {
		for _, s := range substrings {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// stopLine parses the remote_write exporter's last "remote_write stopped" line.
func (a *faultAgent) stopLine() map[string]int64 {
	a.t.Helper()
	lines := a.logLines("remote_write stopped")
	if len(lines) == 0 {
		a.t.Fatalf("no \"remote_write stopped\" line in the agent's log:\n%s", a.log())
	}
	out := map[string]int64{}
	for _, field := range strings.Fields(lines[len(lines)-1]) {
		k, v, ok := strings.Cut(field, "=")
		if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil {
			out[k] = n
		}
	}
	return out
}

// waitLog waits for a log line holding every substring.
func (a *faultAgent) waitLog(limit time.Duration, substrings ...string) {
	a.t.Helper()
	deadline := time.Now().Add(limit)
	for len(a.logLines(substrings...)) == 0 {
		if time.Now().After(deadline) {
			a.t.Errorf("no log line with %q within %v; log:\n%s", substrings, limit, a.log())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics scrapes the agent's /metrics: series (name{labels} as written) -> value.
func (a *faultAgent) metrics() (map[string]float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + a.cfg.MetricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// metric sums the series of name whose labels contain every one of the label pairs
// (written as they appear, e.g. `reason="disk_full"`).
func metric(m map[string]float64, name string, labels ...string) float64 {
	var sum float64
next:
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue next
			}
		}
		sum += v
	}
	return sum
}

func (a *faultAgent) mustMetrics() map[string]float64 {
	a.t.Helper()
	m, err := a.metrics()
	if err != nil {
		a.t.Fatalf("scrape the agent's /metrics: %v; log:\n%s", err, a.log())
	}
	return m
}

func (a *faultAgent) waitMetrics(limit time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, err := a.metrics(); err == nil {
			return
		}
		if !a.running() || time.Now().After(deadline) {
			a.t.Fatalf("agent's /metrics not up within %v (exited: %v); log:\n%s", limit, !a.running(), a.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMetric polls /metrics until cond holds on it.
func (a *faultAgent) waitMetric(limit time.Duration, what string, cond func(m map[string]float64) bool) map[string]float64 {
	a.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		m, err := a.metrics()
		if err == nil && cond(m) {
			return m
		}
		if !a.running() {
			a.t.Fatalf("agent exited while waiting for %s (%v); log:\n%s", what, a.waitErr, a.log())
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("waiting %v for %s: last scrape err %v, remote_write metrics:\n%s\nlog:\n%s", limit, what, err, rwMetrics(m), a.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rwMetrics(m map[string]float64) string {
	var lines []string
	for k, v := range m {
		if strings.HasPrefix(k, "edgeprobe_remote_write_") {
			lines = append(lines, fmt.Sprintf("  %s %g", k, v))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// rssBytes is the agent's resident set size now.
func (a *faultAgent) rssBytes() int64 {
	a.t.Helper()
	p, err := testkit.ReadProc(a.cmd.Process.Pid)
	if err != nil {
		a.t.Fatalf("the agent's /proc: %v", err)
	}
	return p.RSS
}

// probeTiming is how one agent's probing went over a window: what the fault tests
// assert (probeTiming.problems) and what they and `make bench-faults` report.
type probeTiming struct {
	interval        time.Duration
	targets, probes int
	failed          int           // probes that failed (a loopback server: only a late probe can)
	fewest, most    int           // probes of one target
	expected        int           // probes of one target at one per interval
	spacings        int           // consecutive starts of one target measured
	p50, p99, max   time.Duration // of |spacing - interval|
	worst           string        // where |spacing - interval| was largest
	shortest        time.Duration // spacing
	longest         time.Duration
	maxLate         time.Duration // of a start behind its slot (testkit.GridSlots)
	gridChecked     bool          // slots are checked: no probe failed in the window
	gaps            []testkit.ClockGap
	// Examples of what must not happen.
	undercount, overlaps, doubled, skipped, long []string
	// What a gap of the clock explains (clockGapLeast), with the gap: logged.
	excused []string
}

// clockGapLeast: a pause of the machine, or a step of its clock, of this much or more
// is one the agent could not have made up for (testkit.WatchClock). Spacings across such a
// gap are judged without it and the grid is checked on each side of it. This test
// process saw one: the agent, a separate process, may have been stalled by it too; a
// stall of the agent alone, which these tests are for, is not excused.
const clockGapLeast = 200 * time.Millisecond

// readPast says whether every target's probe lines reach a start at or after t.
func (a *faultAgent) readPast(t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ps := range a.probes {
		if len(ps) == 0 || ps[len(ps)-1].start.Before(t) {
			return false
		}
	}
	return len(a.probes) > 0
}

// timing measures the probes that started in [from, to).
func (a *faultAgent) timing(from, to time.Time) probeTiming {
	a.mu.Lock()
	defer a.mu.Unlock()
	interval := a.cfg.Interval
	pt := probeTiming{interval: interval, expected: int(to.Sub(from) / interval), shortest: time.Hour, fewest: math.MaxInt}
	example := func(list *[]string, format string, args ...any) {
		if len(*list) < 6 {
			*list = append(*list, fmt.Sprintf(format, args...))
		}
	}
	pt.gaps = a.clock.Gaps(from.Add(-interval), to.Add(interval))
	// across is the wall-clock time of the gaps between lo and hi, and whether there are any.
	across := func(lo, hi time.Time) (time.Duration, bool) {
		var d time.Duration
		found := false
		for _, g := range pt.gaps {
			if g.Overlaps(lo, hi) {
				d, found = d+max(0, g.Span()), true
			}
		}
		return d, found
	}
	// The slots a gap took away from every target.
	lostSlots := 0
	for _, g := range pt.gaps {
		lostSlots += int(max(0, g.Span())/interval) + 1
	}
	var devs []time.Duration
	starts := map[string][]time.Time{}
	for target, ps := range a.probes {
		pt.targets++
		var prev *probeLine
		for i := range ps {
			p := &ps[i]
			if p.start.Before(from) || !p.start.Before(to) {
				continue
			}
			starts[target] = append(starts[target], p.start)
			if !p.ok {
				pt.failed++
			}
			if prev != nil {
				at := p.start.Format("15:04:05.000")
				if p.start.Before(prev.done) {
					list := &pt.overlaps
					if _, crossed := across(p.start, prev.done); crossed {
						list = &pt.excused
					}
					example(list, "%s at %s: started %v before the previous probe's result (at %s)",
						target, at, prev.done.Sub(p.start), prev.done.Format("15:04:05.000"))
				}
				spacing := p.start.Sub(prev.start)
				pt.shortest, pt.longest = min(pt.shortest, spacing), max(pt.longest, spacing)
				if lost, crossed := across(prev.start, p.start); crossed {
					list := &pt.excused
					if spacing-lost > spacingCeil*interval {
						list = &pt.long
					}
					example(list, "%s at %s: %v after the previous probe, %v of it a clock gap", target, at, spacing, lost)
				} else {
					dev := (spacing - interval).Abs()
					devs = append(devs, dev)
					if dev > pt.max {
						pt.max, pt.worst = dev, target+" at "+at
					}
					if spacing > spacingCeil*interval {
						example(&pt.long, "%s at %s: %v after the previous probe", target, at, spacing)
					}
				}
			}
			prev = p
		}
		n := len(starts[target])
		pt.probes += n
		pt.fewest, pt.most = min(pt.fewest, n), max(pt.most, n)
		if n < pt.expected-1-lostSlots {
			example(&pt.undercount, "%s: %d probes", target, n)
		}
	}
	// A failed probe sets off probes off the grid (its target's confirm re-probes, the
	// rest of its site at once, a witness of every other site): the grid is checked only
	// over windows without a failure, which on loopback are nearly all. A clock gap
	// breaks the grid in two (a pause moves the agent's slots by its length, a step moves
	// the lines' times): each side is checked alone.
	pt.gridChecked = pt.failed == 0
	if pt.gridChecked {
		for target, st := range starts {
			var doubled, skipped int
			var late time.Duration
			for lo, k := 0, 1; k <= len(st); k++ {
				if k < len(st) {
					if _, crossed := across(st[k-1], st[k]); !crossed {
						continue
					}
				}
				g := testkit.GridSlots(st[lo:k], interval)
				doubled, skipped, late = doubled+g.Doubled, skipped+g.Skipped, max(late, g.MaxLate)
				lo = k
			}
			pt.maxLate = max(pt.maxLate, late)
			if doubled > 0 {
				example(&pt.doubled, "%s: %d slots", target, doubled)
			}
			if skipped > 0 {
				example(&pt.skipped, "%s: %d slots (a start up to %v late)", target, skipped, late)
			}
		}
	}
	pt.spacings = len(devs)
	pt.p50, pt.p99 = testkit.Percentile(devs, 50), testkit.Percentile(devs, 99)
	if pt.shortest == time.Hour {
		pt.shortest = 0
	}
	if pt.targets == 0 {
		pt.fewest = 0
	}
	return pt
}

// spacingCeil: no spacing of a target's starts may exceed this many intervals, failures
// or not (a longer one is a slot skipped: the agent was late by more than an interval).
const spacingCeil = 2

func (pt probeTiming) String() string {
	grid := "not checked: a probe failed, and failures add probes off the grid"
	if pt.gridChecked {
		grid = pt.maxLate.Round(time.Microsecond).String()
	}
	gaps := "none"
	if len(pt.gaps) > 0 {
		var list []string
		for _, g := range pt.gaps {
			list = append(list, g.String())
		}
		gaps = strings.Join(list, ", ")
	}
	return fmt.Sprintf("%d targets, %d probes (%d to %d per target, %d expected; %d failed); |spacing - %v| over %d spacings: p50 %v, p99 %v, max %v (%s); spacings %v to %v; latest start behind its slot %s; clock gaps (pauses of %v or more, steps) %s",
		pt.targets, pt.probes, pt.fewest, pt.most, pt.expected, pt.failed, pt.interval, pt.spacings,
		pt.p50.Round(time.Microsecond), pt.p99.Round(time.Microsecond), pt.max.Round(time.Microsecond), pt.worst,
		pt.shortest.Round(time.Microsecond), pt.longest.Round(time.Microsecond), grid, clockGapLeast, gaps)
}

// problems lists what must not happen, on any machine, however loaded.
func (pt probeTiming) problems() []string {
	var out []string
	add := func(what string, examples []string) {
		if len(examples) > 0 {
			out = append(out, what+":\n    "+strings.Join(examples, "\n    "))
		}
	}
	add(fmt.Sprintf("targets probed fewer than %d times, one less than the %d intervals (a probe missed)", pt.expected-1, pt.expected), pt.undercount)
	add("probes started before the previous one of their target had finished", pt.overlaps)
	add("slots used twice", pt.doubled)
	add("slots skipped (a probe missed: the agent late by a whole interval)", pt.skipped)
	add(fmt.Sprintf("spacings longer than %d intervals (a slot skipped)", spacingCeil), pt.long)
	return out
}

// checkTiming asserts that probing went on at its interval during [from, to) whatever
// the fault: every target probed once per interval (one less at the window's edges), no
// probe of a target started before the previous one's result, no slot used twice or
// skipped (testkit.GridSlots), no spacing over two intervals. A late start shortens the
// next spacing by as much, because the slots stay on their grid, so these hold while the
// agent is never late by a whole interval; on a shared 2-core machine beside two busy
// loops it was late by up to 310 ms, and a test must survive that. A pause of the whole
// machine or a step of its clock, which this process sees too, is not the agent's: the
// spacings across it are judged without it (clockGapLeast) and logged. The jitter
// (|spacing - interval|) is logged, not asserted; `make bench-faults` prints it for each
// fault beside a control run.
func (a *faultAgent) checkTiming(what string, from, to time.Time) probeTiming {
	a.t.Helper()
	// The lines of probes that started before to may still be on their way (a loaded
	// test process reads them late): wait until every target has one that started at or
	// after to, so that what is missing was not probed rather than not yet read.
	for deadline := time.Now().Add(10 * time.Second); !a.readPast(to) && a.running() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	pt := a.timing(from, to)
	load, _ := os.ReadFile("/proc/loadavg")
	// The probe lines carry wall-clock times: a step of the system clock moves them, and
	// the spacings with them; pt lists the steps and pauses the clock watch saw.
	a.t.Logf("probe timing %s: %s; load average %s", what, pt, strings.TrimSpace(string(load)))
	if len(pt.excused) > 0 {
		a.t.Logf("probing %s: judged without the clock gaps they span:\n    %s", what, strings.Join(pt.excused, "\n    "))
	}
	for _, p := range pt.problems() {
		a.t.Errorf("probing %s: %s", what, p)
	}
	return pt
}

// mountTmpfs mounts a tmpfs of size (mount's syntax, "256k") on a new directory and
// unmounts it when the test ends.
func mountTmpfs(t testing.TB, size string) string {
	t.Helper()
	testkit.RequireRoot(t, "mounts a tmpfs")
	dir, err := os.MkdirTemp("", "edgeprobe-faults-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Fatalf("mount -t tmpfs -o size=%s on %s: %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		// The agent is stopped by now (cleanups run last-registered first).
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			return
		}
		os.Remove(dir)
	})
	return dir
}

// remount changes a mount's options ("ro", "rw"), retrying while a write in progress
// keeps it busy.
func remount(t testing.TB, dir, opt string) {
	t.Helper()
	var out []byte
	var err error
	for range 50 {
		if out, err = exec.Command("mount", "-o", "remount,"+opt, dir).CombinedOutput(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("mount -o remount,%s %s: %v: %s", opt, dir, err, out)
}
