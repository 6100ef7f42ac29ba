package exporters

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/probes"
)

// receivedPush is one request as a remote_write receiver saw it.
type receivedPush struct {
	at     time.Time
	header http.Header
	req    *prompb.WriteRequest
	peerCN string // common name of the client certificate, if one was presented
}

// testReceiver is a real HTTP remote_write receiver that decodes snappy and protobuf and
// answers each request with whatever respond says.
type testReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	pushes  []receivedPush
	respond func(n int, w http.ResponseWriter) // n counts requests from 0; nil answers 204
}

func newTestReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *testReceiver {
	t.Helper()
	r := &testReceiver{respond: respond}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(r.serve(t)))
	return r
}

func startTestReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *testReceiver {
	r := newTestReceiver(t, respond)
	r.Start()
	t.Cleanup(r.Close)
	return r
}

func (rc *testReceiver) serve(t *testing.T) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		compressed, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: read body: %v", err)
			return
		}
		raw, err := snappy.Decode(nil, compressed)
		if err != nil {
			t.Errorf("receiver: snappy: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req prompb.WriteRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Errorf("receiver: protobuf: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		push := receivedPush{at: time.Now(), header: r.Header.Clone(), req: &req}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			push.peerCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		rc.mu.Lock()
		n := len(rc.pushes)
		rc.pushes = append(rc.pushes, push)
		respond := rc.respond
		rc.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(n, w)
	}
}

func (rc *testReceiver) received() []receivedPush {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedPush(nil), rc.pushes...)
}

// waitFor polls cond for up to limit; the limits are generous liveness bounds, not speed targets.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sampleOf returns the value of series name whose labels include want, and whether found.
func sampleOf(req *prompb.WriteRequest, name string, want map[string]string) (float64, bool) {
next:
	for _, ts := range req.Timeseries {
		have := map[string]string{}
		for _, l := range ts.Labels {
			have[l.Name] = l.Value
		}
		if have["__name__"] != name {
			continue
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return ts.Samples[0].Value, true
	}
	return 0, false
}

func runRemoteWrite(t *testing.T, cfg config.RemoteWriteConfig, stateDir string) (*RemoteWrite, context.CancelFunc) {
	t.Helper()
	rw, err := NewRemoteWrite(cfg, stateDir, "edge1", map[string]string{"region": "kr"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rw.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return rw, stop
}

func duration(d time.Duration) config.Duration { return config.Duration{Duration: d} }

func TestRemoteWriteStateChangePushedAtOnce(t *testing.T) {
	recv := startTestReceiver(t, nil)
	// A heartbeat a minute apart: any push within the wait below was caused by the change.
	rw, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL + "/api/v1/write", PushInterval: duration(time.Minute)}, "")
	waitFor(t, 5*time.Second, "the initial snapshot", func() bool { return len(recv.received()) == 1 })
	events := sampleEvents("edge1")
	handled := time.Now()
	for _, ev := range events {
		rw.Handle(ev)
	}
	var last receivedPush
	waitFor(t, 5*time.Second, "a push carrying the isolation", func() bool {
		pushes := recv.received()
		last = pushes[len(pushes)-1]
		v, ok := sampleOf(last.req, "edgeprobe_agent_isolated", nil)
		return ok && v == 1
	})
	t.Logf("state change reached the receiver %v after Handle", last.at.Sub(handled))

	for header, want := range map[string]string{
		"Content-Type":                      "application/x-protobuf",
		"Content-Encoding":                  "snappy",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
	} {
		if got := last.header.Get(header); got != want {
			t.Errorf("header %s = %q, want %q", header, got, want)
		}
	}
	site := map[string]string{"agent": "edge1", "region": "kr", "site": "pangyo"}
	with := func(k, v string) map[string]string {
		out := map[string]string{k: v}
		for bk, bv := range site {
			out[bk] = bv
		}
		return out
	}
	web := map[string]string{"agent": "edge1", "site": "pangyo", "target": "web", "kind": "http"}
	gw := map[string]string{"agent": "edge1", "site": "pangyo", "target": "gw", "kind": "icmp"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"edgeprobe_site_state", with("state", "degraded"), 1},
		{"edgeprobe_site_state", with("state", "up"), 0},
		{"edgeprobe_site_state", with("state", "down"), 0},
		{"edgeprobe_site_state", with("state", "unknown"), 0},
		{"edgeprobe_site_detect_seconds", site, 0.23},
		{"edgeprobe_push_interval_seconds", map[string]string{"agent": "edge1"}, 60},
		{"edgeprobe_agent_isolated", map[string]string{"agent": "edge1"}, 1},
		{"edgeprobe_target_up", web, 1},
		{"edgeprobe_target_up", gw, 0},
		{"probe_success", web, 1},
		{"probe_success", gw, 0},
		{"probe_duration_seconds", web, 0.0015},
	} {
		got, ok := sampleOf(last.req, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if ts, ok := sampleOf(last.req, "edgeprobe_site_state_change_timestamp_seconds", site); !ok || ts < float64(handled.Add(-time.Minute).Unix()) {
		t.Errorf("edgeprobe_site_state_change_timestamp_seconds = %v (found %v), want the event's time", ts, ok)
	}
	for _, ts := range last.req.Timeseries {
		names := make([]string, len(ts.Labels))
		agentLabel := ""
		for i, l := range ts.Labels {
			names[i] = l.Name
			if l.Name == "agent" {
				agentLabel = l.Value
			}
			if l.Value == "" {
				t.Errorf("series %v has an empty label %s", ts.Labels, l.Name)
			}
		}
		if !sort.StringsAreSorted(names) {
			t.Errorf("labels not sorted by name: %v", names)
		}
		for i := 1; i < len(names); i++ {
			if names[i] == names[i-1] {
				t.Errorf("label %s twice in %v", names[i], ts.Labels)
			}
		}
		if agentLabel != "edge1" {
			t.Errorf("series %v without agent=edge1", ts.Labels)
		}
		if age := time.Since(time.UnixMilli(ts.Samples[0].Timestamp)); age < 0 || age > time.Minute {
			t.Errorf("sample timestamp %d is not the push time", ts.Samples[0].Timestamp)
		}
	}
}

func TestRemoteWriteControlTargetHasNoSite(t *testing.T) {
	recv := startTestReceiver(t, nil)
	rw, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL, PushInterval: duration(time.Minute)}, "")
	rw.Handle(agent.Event{Type: agent.EventProbe, Time: time.Now(), Agent: "edge1", Target: "uplink", Kind: probes.KindICMP,
		Result: probes.Result{OK: true, RTT: time.Millisecond}})
	rw.Handle(agent.Event{Type: agent.EventTarget, Time: time.Now(), Agent: "edge1", Target: "uplink", Kind: probes.KindICMP,
		From: agent.TargetUnknown, To: agent.TargetUp})
	var push receivedPush
	waitFor(t, 5*time.Second, "the control target's state", func() bool {
		pushes := recv.received()
		if len(pushes) == 0 {
			return false
		}
		push = pushes[len(pushes)-1]
		_, ok := sampleOf(push.req, "edgeprobe_target_up", map[string]string{"target": "uplink"})
		return ok
	})
	for _, ts := range push.req.Timeseries {
		for _, l := range ts.Labels {
			if l.Name == "site" {
				t.Errorf("series %v of a control target carries site", ts.Labels)
			}
		}
	}
	if _, ok := sampleOf(push.req, "edgeprobe_site_state", nil); ok {
		t.Error("a control target made up a site")
	}
}

func TestRemoteWriteHeartbeat(t *testing.T) {
	recv := startTestReceiver(t, nil)
	rw, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL, PushInterval: duration(20 * time.Millisecond)}, "")
	rw.Handle(sampleEvents("edge1")[0])
	waitFor(t, 10*time.Second, "five heartbeats", func() bool { return len(recv.received()) >= 5 })
	pushes := recv.received()
	for i := 1; i < len(pushes); i++ {
		prev, cur := pushes[i-1].req.Timeseries[0].Samples[0].Timestamp, pushes[i].req.Timeseries[0].Samples[0].Timestamp
		if cur <= prev {
			t.Errorf("push %d timestamp %d not after %d", i, cur, prev)
		}
		// Every heartbeat carries the whole state, not only what changed.
		if _, ok := sampleOf(pushes[i].req, "probe_success", map[string]string{"target": "web"}); !ok {
			t.Errorf("heartbeat %d lacks probe_success{target=web}", i)
		}
	}
}

func TestRemoteWriteResponses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		respond     func(n int, w http.ResponseWriter)
		wantSent    bool
		wantDropped uint64 // at least this many rejected
		minGap      time.Duration
	}{
		{
			name: "500 then success is retried and delivered",
			respond: func(n int, w http.ResponseWriter) {
				if n == 0 {
					http.Error(w, "hiccup", http.StatusInternalServerError)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			},
			wantSent: true,
		},
		{
			name: "429 with Retry-After waits that long",
			respond: func(n int, w http.ResponseWriter) {
				if n == 0 {
					w.Header().Set("Retry-After", "1")
					http.Error(w, "slow down", http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			},
			wantSent: true,
			minGap:   900 * time.Millisecond,
		},
		{
			name:        "400 is dropped and counted, not retried",
			respond:     func(n int, w http.ResponseWriter) { http.Error(w, "out of order sample", http.StatusBadRequest) },
			wantDropped: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv := startTestReceiver(t, tc.respond)
			rw, stop := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL, PushInterval: duration(time.Minute)}, "")
			if tc.wantSent {
				waitFor(t, 10*time.Second, "delivery", func() bool { return rw.Stats().Sent == 1 })
			} else {
				rw.Handle(sampleEvents("edge1")[1]) // a second batch
				waitFor(t, 10*time.Second, "drops", func() bool { return rw.Stats().Dropped[DropRejected] >= tc.wantDropped })
			}
			stop()
			pushes, stats := recv.received(), rw.Stats()
			if tc.wantSent {
				if len(pushes) != 2 || stats.Failed != 1 || stats.Retried != 1 {
					t.Errorf("requests %d, stats %+v; want 2 requests, 1 failed, 1 retried", len(pushes), stats)
				}
				if !proto.Equal(pushes[0].req, pushes[1].req) {
					t.Error("the retry did not resend the same batch")
				}
				if gap := pushes[1].at.Sub(pushes[0].at); gap < tc.minGap {
					t.Errorf("retry after %v, want at least %v", gap, tc.minGap)
				} else {
					t.Logf("retried after %v", gap)
				}
				return
			}
			if stats.Sent != 0 || stats.Retried != 0 || uint64(len(pushes)) != stats.Dropped[DropRejected] {
				t.Errorf("requests %d, stats %+v; want one request per dropped batch and no retry", len(pushes), stats)
			}
		})
	}
}

func TestRemoteWriteDeadReceiverDoesNotDelayAnother(t *testing.T) {
	release := make(chan struct{})
	dead := startTestReceiver(t, func(n int, w http.ResponseWriter) { <-release })
	defer close(release) // before dead.Close (cleanup) so its handlers can return
	alive := startTestReceiver(t, nil)
	rwDead, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: dead.URL, Name: "dead", PushInterval: duration(time.Minute), Timeout: duration(time.Minute)}, "")
	rwAlive, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: alive.URL, Name: "alive", PushInterval: duration(time.Minute)}, "")
	waitFor(t, 5*time.Second, "the dead receiver holding a request", func() bool { return len(dead.received()) == 1 })
	sinks := []agent.Sink{rwDead, rwAlive}
	for _, ev := range sampleEvents("edge1") {
		for _, s := range sinks {
			s.Handle(ev)
		}
	}
	waitFor(t, 5*time.Second, "the live receiver getting the change", func() bool {
		pushes := alive.received()
		if len(pushes) == 0 {
			return false
		}
		v, ok := sampleOf(pushes[len(pushes)-1].req, "edgeprobe_agent_isolated", nil)
		return ok && v == 1
	})
	if got := rwDead.Stats(); got.Sent != 0 || got.Queued < 2 {
		t.Errorf("dead receiver stats %+v: want nothing sent and the change queued behind the hanging request", got)
	}
}

func TestRemoteWriteAuth(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t)
	tokenFile := writeFile(t, dir, "token", "t0ken\n")
	passwordFile := writeFile(t, dir, "password", "pa55\n")
	for _, tc := range []struct {
		name     string
		cfg      config.RemoteWriteConfig
		tls      bool
		wantAuth string
		wantCN   string
	}{
		{name: "bearer token from a file", cfg: config.RemoteWriteConfig{BearerTokenFile: tokenFile}, wantAuth: "Bearer t0ken"},
		{name: "basic auth with a password file",
			cfg:      config.RemoteWriteConfig{BasicAuth: &config.BasicAuthConfig{Username: "edge", PasswordFile: passwordFile}},
			wantAuth: "Basic ZWRnZTpwYTU1"},
		{name: "tls with a client certificate", tls: true,
			cfg: config.RemoteWriteConfig{BearerTokenFile: tokenFile, TLS: probes.TLSSpec{
				CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}},
			wantAuth: "Bearer t0ken", wantCN: "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv := newTestReceiver(t, nil)
			if tc.tls {
				cert, err := tls.LoadX509KeyPair(pki.serverCert, pki.serverKey)
				if err != nil {
					t.Fatal(err)
				}
				recv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
				recv.StartTLS()
			} else {
				recv.Start()
			}
			t.Cleanup(recv.Close)
			tc.cfg.URL = recv.URL
			tc.cfg.Headers = map[string]string{"X-Scope-OrgID": "edge", "Content-Type": "text/plain"}
			rw, stop := runRemoteWrite(t, tc.cfg, "")
			waitFor(t, 5*time.Second, "a push", func() bool { return rw.Stats().Sent >= 1 })
			stop()
			push := recv.received()[0]
			if got := push.header.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization %q, want %q", got, tc.wantAuth)
			}
			if got := push.header.Get("X-Scope-OrgID"); got != "edge" {
				t.Errorf("configured header X-Scope-OrgID = %q", got)
			}
			if got := push.header.Get("Content-Type"); got != "application/x-protobuf" {
				t.Errorf("a configured header overrode Content-Type: %q", got)
			}
			if push.peerCN != tc.wantCN {
				t.Errorf("client certificate CN %q, want %q", push.peerCN, tc.wantCN)
			}
		})
	}
}

func TestRemoteWriteClientCertificateRenewal(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	certFile := writeFile(t, dir, "edge.pem", readFile(t, pki.clientCert))
	keyFile := writeFile(t, dir, "edge-key.pem", readFile(t, pki.clientKey))
	recv := newTestReceiver(t, nil)
	cert, err := tls.LoadX509KeyPair(pki.serverCert, pki.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	recv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
	recv.StartTLS()
	t.Cleanup(recv.Close)
	rw, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL, PushInterval: duration(time.Minute),
		TLS: probes.TLSSpec{CAFile: pki.caFile, CertFile: certFile, KeyFile: keyFile}}, "")
	waitFor(t, 5*time.Second, "the first push", func() bool { return rw.Stats().Sent == 1 })
	// The certificate is renewed on disk; the next connection presents the new one.
	writeFile(t, dir, "edge.pem", readFile(t, pki.renewedCert))
	writeFile(t, dir, "edge-key.pem", readFile(t, pki.renewedKey))
	rw.client.CloseIdleConnections()
	rw.Handle(sampleEvents("edge1")[1])
	waitFor(t, 5*time.Second, "the second push", func() bool { return rw.Stats().Sent == 2 })
	pushes := recv.received()
	if pushes[0].peerCN != "client" || pushes[1].peerCN != "renewed" {
		t.Errorf("client certificates presented: %q then %q, want client then renewed", pushes[0].peerCN, pushes[1].peerCN)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestRemoteWriteSpoolSurvivesRestart(t *testing.T) {
	var mu sync.Mutex
	up := false
	recv := startTestReceiver(t, func(n int, w http.ResponseWriter) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	stateDir := t.TempDir()
	cfg := config.RemoteWriteConfig{URL: recv.URL, Name: "view:9470", PushInterval: duration(20 * time.Millisecond),
		Spool: &config.SpoolConfig{}}
	first, stop := runRemoteWrite(t, cfg, stateDir)
	for _, ev := range sampleEvents("edge1") {
		first.Handle(ev)
	}
	waitFor(t, 10*time.Second, "batches to pile up in the spool", func() bool { return first.Stats().Queued >= 5 })
	stop()

	spoolDir := filepath.Join(stateDir, "spool", "view_9470")
	spooled := spoolTimestamps(t, spoolDir)
	if len(spooled) < 5 {
		t.Fatalf("%d segments in %s after the outage, want at least 5", len(spooled), spoolDir)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	failedAttempts := len(recv.received())
	cfg.PushInterval = duration(time.Minute)
	second, stop := runRemoteWrite(t, cfg, stateDir)
	// The spooled batches plus the second run's own first snapshot.
	waitFor(t, 10*time.Second, "the spool to drain", func() bool {
		s := second.Stats()
		return s.Sent > uint64(len(spooled)) && s.Queued == 0
	})
	stop()

	var delivered []int64
	for _, p := range recv.received()[failedAttempts:] {
		delivered = append(delivered, p.req.Timeseries[0].Samples[0].Timestamp)
	}
	seen := map[int64]bool{}
	for _, ts := range delivered {
		seen[ts] = true
	}
	for _, ts := range spooled {
		if !seen[ts] {
			t.Errorf("spooled batch of %d never delivered after the restart", ts)
		}
	}
	if delivered[0] != spooled[0] || !sort.SliceIsSorted(delivered, func(i, j int) bool { return delivered[i] < delivered[j] }) {
		t.Errorf("batches delivered out of order, oldest spooled %d: %v", spooled[0], delivered)
	}
	if left := spoolTimestamps(t, spoolDir); len(left) != 0 {
		t.Errorf("%d segments left after delivery", len(left))
	}
}

// spoolTimestamps decodes every segment of a spool directory and returns each batch's
// sample timestamp, oldest segment first.
func spoolTimestamps(t *testing.T, dir string) []int64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var out []int64
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := snappy.Decode(nil, data[spoolHeaderLen:])
		if err != nil {
			t.Fatalf("segment %s: %v", name, err)
		}
		var req prompb.WriteRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Fatalf("segment %s: %v", name, err)
		}
		out = append(out, req.Timeseries[0].Samples[0].Timestamp)
	}
	return out
}

func TestSpoolBounds(t *testing.T) {
	payload := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	for _, tc := range []struct {
		name        string
		maxBytes    int64
		maxAge      time.Duration
		pushes      []batch
		corrupt     bool // damage the oldest segment before reading
		wantQueued  int
		wantDropped map[string]uint64
	}{
		{name: "max_bytes drops the oldest", maxBytes: 3 * (spoolHeaderLen + 100), maxAge: time.Hour,
			pushes:      []batch{{created: time.Now(), payload: payload(100)}, {created: time.Now(), payload: payload(100)}, {created: time.Now(), payload: payload(100)}, {created: time.Now(), payload: payload(100)}},
			wantQueued:  3,
			wantDropped: map[string]uint64{DropSpoolFull: 1}},
		{name: "a batch larger than max_bytes is dropped", maxBytes: 50, maxAge: time.Hour,
			pushes:      []batch{{created: time.Now(), payload: payload(100)}},
			wantDropped: map[string]uint64{DropSpoolFull: 1}},
		{name: "max_age drops old batches", maxBytes: 1 << 20, maxAge: time.Minute,
			pushes:      []batch{{created: time.Now().Add(-2 * time.Minute), payload: payload(10)}, {created: time.Now(), payload: payload(10)}},
			wantQueued:  1,
			wantDropped: map[string]uint64{DropSpoolAge: 1}},
		{name: "a corrupt segment is dropped", maxBytes: 1 << 20, maxAge: time.Hour, corrupt: true,
			pushes:      []batch{{created: time.Now(), payload: payload(10)}, {created: time.Now(), payload: payload(10)}},
			wantQueued:  1,
			wantDropped: map[string]uint64{DropSpoolCorrupt: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			stats := newPushStats()
			q, err := openSpool(dir, tc.maxBytes, tc.maxAge, 10, stats, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer q.close()
			for _, b := range tc.pushes {
				q.push(b)
			}
			if tc.corrupt {
				names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
				sort.Strings(names)
				if err := os.WriteFile(names[0], []byte("garbage!"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := q.head(); ok != (tc.wantQueued > 0) {
				t.Errorf("head ok = %v with %d wanted queued", ok, tc.wantQueued)
			}
			n, bytes := q.size()
			if n != tc.wantQueued || bytes > tc.maxBytes {
				t.Errorf("queued %d (%d bytes), want %d within %d bytes", n, bytes, tc.wantQueued, tc.maxBytes)
			}
			for _, reason := range dropReasons {
				if got := stats.dropped[reason].Load(); got != tc.wantDropped[reason] {
					t.Errorf("dropped[%s] = %d, want %d", reason, got, tc.wantDropped[reason])
				}
			}
			if files, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(files) != tc.wantQueued {
				t.Errorf("%d segment files on disk, want %d", len(files), tc.wantQueued)
			}
		})
	}
}

func TestRemoteWriteConstructorErrors(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t)
	locked, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/", Name: "busy", Spool: &config.SpoolConfig{}}, dir, "edge1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locked.Close()
	for _, tc := range []struct {
		name     string
		cfg      config.RemoteWriteConfig
		stateDir string
		wantErr  string
	}{
		{"no scheme", config.RemoteWriteConfig{URL: "view:9470/api/v1/write"}, "", `"view:9470/api/v1/write"`},
		{"missing token file", config.RemoteWriteConfig{URL: "http://127.0.0.1:9/", BearerTokenFile: dir + "/absent"}, "", dir + "/absent"},
		{"empty password file", config.RemoteWriteConfig{URL: "http://127.0.0.1:9/",
			BasicAuth: &config.BasicAuthConfig{Username: "u", PasswordFile: writeFile(t, dir, "empty", "\n")}}, "", "empty"},
		{"token and basic auth", config.RemoteWriteConfig{URL: "http://127.0.0.1:9/", BearerTokenFile: dir + "/x",
			BasicAuth: &config.BasicAuthConfig{}}, "", "exclusive"},
		{"cert without key", config.RemoteWriteConfig{URL: "https://127.0.0.1:9/", TLS: probes.TLSSpec{CertFile: pki.clientCert}}, "", "cert_file and key_file"},
		{"key not matching the certificate", config.RemoteWriteConfig{URL: "https://127.0.0.1:9/", TLS: probes.TLSSpec{CertFile: pki.clientCert, KeyFile: pki.serverKey}}, "", pki.clientCert},
		{"ca file without certificates", config.RemoteWriteConfig{URL: "https://127.0.0.1:9/", TLS: probes.TLSSpec{CAFile: pki.clientKey}}, "", pki.clientKey},
		{"spool without state dir", config.RemoteWriteConfig{URL: "http://127.0.0.1:9/", Spool: &config.SpoolConfig{}}, "", "state_dir"},
		{"spool in use", config.RemoteWriteConfig{URL: "http://127.0.0.1:9/", Name: "busy", Spool: &config.SpoolConfig{}}, dir, "in use"},
		{"no agent name", config.RemoteWriteConfig{URL: "http://127.0.0.1:9/"}, "", "agent name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agentName := "edge1"
			if tc.name == "no agent name" {
				agentName = ""
			}
			rw, err := NewRemoteWrite(tc.cfg, tc.stateDir, agentName, nil, nil)
			if err == nil {
				rw.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not name %q", err, tc.wantErr)
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt      int
		pushInterval time.Duration
		low, high    time.Duration
	}{
		{0, time.Second, minBackoff / 2, minBackoff},
		{1, time.Second, minBackoff, 2 * minBackoff},
		{10, time.Second, 500 * time.Millisecond, time.Second}, // capped by the push interval
		{100, time.Minute, maxBackoff / 2, maxBackoff},         // capped by maxBackoff
		{3, time.Millisecond, minBackoff / 2, minBackoff},      // never below minBackoff
	} {
		for range 20 {
			if got := backoff(tc.attempt, tc.pushInterval); got < tc.low || got > tc.high {
				t.Errorf("backoff(%d, %v) = %v, want within [%v, %v]", tc.attempt, tc.pushInterval, got, tc.low, tc.high)
			}
		}
	}
}

// BenchmarkEncodeSnapshot measures one push of an agent watching 10 sites of 5 targets,
// and reports its compressed size (what the spool stores per push interval).
func BenchmarkEncodeSnapshot(b *testing.B) {
	rw, err := NewRemoteWrite(config.RemoteWriteConfig{URL: "http://127.0.0.1:9/"}, "", "edge-seoul-01", map[string]string{"region": "kr"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for site := range 10 {
		siteName := "site-" + strconv.Itoa(site)
		rw.Handle(agent.Event{Type: agent.EventSite, Time: now, Site: siteName, From: agent.SiteUnknown, To: agent.SiteUp})
		for target := range 5 {
			ev := agent.Event{Time: now, Site: siteName, Target: "target-" + strconv.Itoa(target), Kind: probes.KindHTTP}
			ev.Type, ev.Result = agent.EventProbe, probes.Result{OK: true, RTT: 12 * time.Millisecond}
			rw.Handle(ev)
			ev.Type, ev.From, ev.To = agent.EventTarget, agent.TargetUnknown, agent.TargetUp
			rw.Handle(ev)
		}
	}
	var payload []byte
	for b.Loop() {
		if payload, err = rw.encode(time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(payload)), "bytes/push")
}

// TestQueuesKeepTheBatchInFlight: when a full queue makes room while the sender has the
// oldest batch in flight, the next oldest goes instead, and acknowledging the batch in
// flight removes exactly it: nothing counted as dropped is delivered, nothing unsent is
// removed.
func TestQueuesKeepTheBatchInFlight(t *testing.T) {
	payload := func(b byte) []byte { return bytes.Repeat([]byte{b}, 100) }
	spoolStats := newPushStats()
	spool, err := openSpool(t.TempDir(), 3*(spoolHeaderLen+100), time.Hour, 10, spoolStats, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer spool.close()
	memStats := newPushStats()
	queues := map[string]struct {
		q     batchQueue
		stats *pushStats
	}{
		"memory": {&memQueue{max: 3, stats: memStats, full: newEpisode(discardLogger(), slog.LevelWarn)}, memStats},
		"spool":  {spool, spoolStats},
	}
	for name, tc := range queues {
		for _, b := range []byte{'a', 'b', 'c'} {
			tc.q.push(batch{created: time.Now(), payload: payload(b)})
		}
		inFlight, ok := tc.q.head()
		if !ok || inFlight.payload[0] != 'a' {
			t.Fatalf("%s: head = %q, %v; want batch a", name, inFlight.payload[:1], ok)
		}
		tc.q.push(batch{created: time.Now(), payload: payload('d')}) // full: b goes, not a
		tc.q.pop(inFlight.id)                                        // a acknowledged
		var left []byte
		for {
			b, ok := tc.q.head()
			if !ok {
				break
			}
			left = append(left, b.payload[0])
			tc.q.pop(b.id)
		}
		if string(left) != "cd" {
			t.Errorf("%s: after sending a while d made room, the queue held %q, want \"cd\"", name, left)
		}
		var dropped uint64
		for _, n := range tc.stats.dropped {
			dropped += n.Load()
		}
		if dropped != 1 {
			t.Errorf("%s: %d batches counted as dropped, want 1 (b)", name, dropped)
		}
	}
}

// TestRemoteWriteChangeStormCoalesced: 200 state changes over about 200 ms (targets of a
// site failing one after another) make a push per minChangeGap at most, not one each,
// and the last push carries the last change.
func TestRemoteWriteChangeStormCoalesced(t *testing.T) {
	recv := startTestReceiver(t, nil)
	rw, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL + "/api/v1/write", PushInterval: duration(time.Minute)}, "")
	waitFor(t, 5*time.Second, "the initial snapshot", func() bool { return len(recv.received()) == 1 })
	time.Sleep(2 * minChangeGap)
	start := time.Now()
	const changes = 200
	for i := range changes {
		to := agent.TargetDown
		if i%2 == 1 {
			to = agent.TargetUp
		}
		rw.Handle(agent.Event{Type: agent.EventTarget, Time: time.Now(), Site: "s", Target: "t" + strconv.Itoa(i%50), Kind: probes.KindTCP, From: agent.TargetUp, To: to})
		time.Sleep(time.Millisecond)
	}
	rw.Handle(agent.Event{Type: agent.EventAgent, Time: time.Now(), From: agent.AgentOK, To: agent.AgentIsolated})
	elapsed := time.Since(start)
	waitFor(t, 5*time.Second, "a push carrying the last change", func() bool {
		pushes := recv.received()
		v, ok := sampleOf(pushes[len(pushes)-1].req, "edgeprobe_agent_isolated", nil)
		return ok && v == 1
	})
	pushes := len(recv.received()) - 1
	limit := int(elapsed/minChangeGap) + 2
	t.Logf("%d changes over %v: %d pushes (limit %d)", changes+1, elapsed.Round(time.Millisecond), pushes, limit)
	if pushes > limit {
		t.Errorf("%d pushes for %d changes over %v, want at most %d (one per %v)", pushes, changes+1, elapsed, limit, minChangeGap)
	}
	if pushes < 2 {
		t.Errorf("%d pushes for changes over %v: changes must still go out while they happen", pushes, elapsed)
	}
}

// TestRemoteWriteImpairedPushedAtOnce: turning impaired is a state change, pushed at once
// and carried by every push after it (docs/architecture.md, "The push contract"); the lateness
// report is not pushed.
func TestRemoteWriteImpairedPushedAtOnce(t *testing.T) {
	recv := startTestReceiver(t, nil)
	rw, _ := runRemoteWrite(t, config.RemoteWriteConfig{URL: recv.URL + "/api/v1/write", PushInterval: duration(time.Minute)}, "")
	waitFor(t, 5*time.Second, "the initial snapshot", func() bool { return len(recv.received()) == 1 })
	if v, ok := sampleOf(recv.received()[0].req, "edgeprobe_agent_impaired", nil); !ok || v != 0 {
		t.Errorf("initial snapshot: edgeprobe_agent_impaired %v (present %v), want 0", v, ok)
	}
	rw.Handle(agent.Event{Type: agent.EventScheduler, Time: time.Now(), Agent: "edge1", Scheduler: &agent.SchedulerReport{Inconclusive: 1}})
	rw.Handle(agent.Event{Type: agent.EventImpaired, Time: time.Now(), Agent: "edge1", From: agent.AgentOK, To: agent.AgentImpaired})
	waitFor(t, 5*time.Second, "a push saying impaired", func() bool {
		pushes := recv.received()
		v, ok := sampleOf(pushes[len(pushes)-1].req, "edgeprobe_agent_impaired", nil)
		return ok && v == 1
	})
	for _, p := range recv.received() {
		for _, ts := range p.req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "__name__" && (strings.HasPrefix(l.Value, "edgeprobe_scheduler_lateness") || l.Value == "edgeprobe_probe_inconclusive_total") {
					t.Errorf("pushed %s: the lateness report is for /metrics only", l.Value)
				}
			}
		}
	}
}
