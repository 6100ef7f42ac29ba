package testkit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want int
	}{
		{nil, 0},
		{[]int{7}, 7},
		{[]int{3, 1}, 2},
		{[]int{5, 1, 3}, 3},
		{[]int{4, 1, 3, 2}, 2}, // (2+3)/2 in integers
		{[]int{10, 1, 30, 20}, 15},
	} {
		in := slices.Clone(tc.in)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %d, want %d", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Median reordered its input: %v", in)
		}
	}
	if got := Median([]float64{1, 2, 4, 8}); got != 3 {
		t.Errorf("Median of 1, 2, 4, 8 = %g, want 3 (the mean of the middle two)", got)
	}
	if got := Median([]time.Duration{time.Second, 3 * time.Second}); got != 2*time.Second {
		t.Errorf("Median of 1 s and 3 s = %v, want 2s", got)
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	for _, tc := range []struct {
		in   []int
		p    float64
		want int
	}{
		{nil, 99, 0},
		{hundred, 99, 99}, // nearest rank: the 99th of 100, not the maximum
		{hundred, 100, 100},
		{hundred, 0, 1},
		{hundred, 50, 50},
		{hundred, 1, 1},
		{hundred, 1.5, 2},
		{[]int{1, 2, 3, 4, 5, 6, 7}, 90, 7}, // rank ceil(6.3) = 7
		{[]int{1, 2, 3, 4}, 50, 2},          // the lower median
		{[]int{1, 2, 3, 4}, 10, 1},
	} {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("Percentile(%d values, %g) = %d, want %d", len(tc.in), tc.p, got, tc.want)
		}
	}
}

// fakeTB records what the skip policy did.
type fakeTB struct {
	TB
	fatal, skip string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.fatal = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skipf(format string, a ...any)  { f.skip = fmt.Sprintf(format, a...) }

func TestSkipUnlessCI(t *testing.T) {
	t.Setenv(CIEnv, "")
	var f fakeTB
	SkipUnlessCI(&f, "needs %s", "fping")
	if f.skip != "skipping: needs fping" || f.fatal != "" {
		t.Errorf("without CI: skip %q, fatal %q; want a skip naming fping", f.skip, f.fatal)
	}
	t.Setenv(CIEnv, "1")
	f = fakeTB{}
	SkipUnlessCI(&f, "needs %s", "fping")
	if f.skip != "" || !strings.Contains(f.fatal, "needs fping") || !strings.Contains(f.fatal, "CI is set") {
		t.Errorf("with CI: skip %q, fatal %q; want a failure naming fping and CI", f.skip, f.fatal)
	}
	f = fakeTB{}
	Require(&f, nil)
	LookTool(&f, "always there", "no-such-tool-edgeprobe", "sh")
	if f.skip != "" || f.fatal != "" {
		t.Errorf("a met prerequisite stopped the test: skip %q, fatal %q", f.skip, f.fatal)
	}
	LookTool(&f, "Debian package none", "no-such-tool-edgeprobe")
	if !strings.Contains(f.fatal, "no-such-tool-edgeprobe") || !strings.Contains(f.fatal, "Debian package none") {
		t.Errorf("missing tool with CI: fatal %q, want the tool and the hint", f.fatal)
	}
}

// TestCA: a server certificate verifies against the CA's pool and file for each of its
// names; an expired one, one for another name and a self-signed one do not; a client
// certificate passes a server that requires and verifies one.
func TestCA(t *testing.T) {
	ca := NewCA(t)
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	fromFile := x509.NewCertPool()
	if !fromFile.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", ca.File)
	}
	serve := func(cert Cert, clientAuth tls.ClientAuthType) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.Certificate}, ClientAuth: clientAuth, ClientCAs: ca.Pool}
		srv.Config.ErrorLog = quiet()
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	get := func(addr, host string, pool *x509.CertPool, client *Cert) error {
		conf := &tls.Config{RootCAs: pool, ServerName: host}
		if client != nil {
			conf.Certificates = []tls.Certificate{client.Certificate}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
		resp, err := c.Get("https://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	good := serve(ca.Server(t), tls.NoClientCert)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		for name, pool := range map[string]*x509.CertPool{"Pool": ca.Pool, "File": fromFile} {
			if err := get(good, host, pool, nil); err != nil {
				t.Errorf("server certificate for %s against the CA's %s: %v", host, name, err)
			}
		}
	}
	for name, spec := range map[string]CertSpec{
		"expired":     {IPs: Loopback, NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
		"other name":  {DNSNames: []string{"other.example.test"}},
		"self-signed": {IPs: Loopback, SelfSigned: true},
	} {
		if err := get(serve(ca.Issue(t, spec), tls.NoClientCert), "127.0.0.1", ca.Pool, nil); err == nil {
			t.Errorf("%s certificate verified", name)
		}
	}
	mtls := serve(ca.Server(t), tls.RequireAndVerifyClientCert)
	client := ca.Client(t, "edge1")
	if err := get(mtls, "127.0.0.1", ca.Pool, &client); err != nil {
		t.Errorf("client certificate refused: %v", err)
	}
	if err := get(mtls, "127.0.0.1", ca.Pool, nil); err == nil {
		t.Error("no client certificate, and the handshake passed")
	}
	certFile, keyFile := client.Files(t, t.TempDir(), "edge1")
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("written key pair: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %s: %v, mode %v; want 0600", keyFile, err, fi.Mode().Perm())
	}
}

func TestReadProc(t *testing.T) {
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU so that the second reading moves.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = strconv.Itoa(x)
	}
	q, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first %+v, then %+v", p, q)
	if p.RSS <= 0 || p.HWM < p.RSS || p.FDs < 3 || q.CPU < p.CPU {
		t.Errorf("readings %+v then %+v: want RSS > 0, HWM >= RSS, at least stdin/out/err open, CPU not decreasing", p, q)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Error("ReadProc of no such pid: no error")
	}
}

func TestStartPinned(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	exited, err := StartPinned(cmd)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("exit: %v, want status 3", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10 s")
	}
	if _, err := StartPinned(exec.Command(filepath.Join(t.TempDir(), "missing"))); err == nil {
		t.Error("starting a missing program: no error")
	}
}

// sseServer speaks the event-stream format: ": connected" once subscribed, then the
// events of ids after Last-Event-ID, one with two data lines and a type, and a comment.
func sseServer(t *testing.T, events []string) (string, chan string) {
	seen := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Last-Event-ID")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": connected\nretry: 1000\n\n")
		w.(http.Flusher).Flush()
		after, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
		for i, e := range events {
			if i+1 > after {
				fmt.Fprintf(w, "id: %d\n%s\n\n", i+1, e)
			}
		}
		io.WriteString(w, ":keep-alive\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, seen
}

func TestEvents(t *testing.T) {
	url, seen := sseServer(t, []string{"data: one", "event: reset\ndata: two\ndata: lines", "data:three"})
	s := FollowEvents(t, url, EventsOptions{})
	if h := <-seen; h != "" {
		t.Errorf("first connection sent Last-Event-ID %q", h)
	}
	want := []Event{{ID: "1", Data: "one"}, {ID: "2", Type: "reset", Data: "two\nlines"}, {ID: "3", Data: "three"}}
	for _, w := range want {
		e, err := s.NextWithin(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != w.ID || e.Type != w.Type || e.Data != w.Data || e.Arrived.IsZero() {
			t.Errorf("event %+v, want %+v", e, w)
		}
	}
	if !s.WaitComment("keep-alive", 5*time.Second) {
		t.Error("no keep-alive comment")
	}
	if _, err := s.NextWithin(50 * time.Millisecond); err == nil {
		t.Error("a fourth event")
	}
	if got := len(s.All()); got != 3 {
		t.Errorf("All: %d events, want 3", got)
	}
	last := s.LastID()
	s.Close()
	if last != "3" {
		t.Fatalf("LastID %q, want 3", last)
	}

	// Reconnecting from id 1 gets 2 and 3 only.
	r := FollowEvents(t, url, EventsOptions{LastEventID: "1"})
	if h := <-seen; h != "1" {
		t.Errorf("reconnection sent Last-Event-ID %q, want 1", h)
	}
	for _, w := range want[1:] {
		e, err := r.NextWithin(5 * time.Second)
		if err != nil || e.ID != w.ID {
			t.Errorf("after reconnecting: %+v, %v; want id %s", e, err, w.ID)
		}
	}
}

func TestEventsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusForbidden)
	}))
	defer srv.Close()
	if _, err := DialEvents(context.Background(), srv.URL, EventsOptions{Retry: time.Second}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("DialEvents on a 403: %v, want an error naming it", err)
	}
}

// TestNotInTheBinary: the edgeprobe binary does not link testkit, and testkit does not
// link the testing package (see the package comment).
func TestNotInTheBinary(t *testing.T) {
	goTool := LookTool(t, "the Go toolchain", "go")
	deps := func(pkg string) []string {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const self = "github.com/edgeprobe/edgeprobe/internal/testkit"
	if slices.Contains(deps("github.com/edgeprobe/edgeprobe/cmd/edgeprobe"), self) {
		t.Errorf("cmd/edgeprobe imports %s: production code must not", self)
	}
	if slices.Contains(deps(self), "testing") {
		t.Errorf("%s imports the testing package", self)
	}
}

func quiet() *log.Logger { return log.New(io.Discard, "", 0) }

func TestGridSlots(t *testing.T) {
	t0 := time.Now()
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	const i = 100 * time.Millisecond
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		starts []time.Time
		want   Slots
	}{
		{"on the grid", at(0, 100, 200, 300), Slots{}},
		{"one late by 95 ms, the next on its slot", at(0, 100, 295, 300, 400), Slots{MaxLate: 95 * ms}},
		{"the first late by 90 ms", at(90, 100, 200), Slots{MaxLate: 90 * ms}},
		{"the first two late", at(80, 170, 200, 300), Slots{MaxLate: 80 * ms}},
		{"all a little late, the grid's phase unknown", at(3, 104, 202, 305), Slots{MaxLate: 3 * ms}},
		{"a slot skipped", at(0, 100, 300, 400), Slots{Skipped: 1}},
		{"two slots skipped", at(0, 300, 400), Slots{Skipped: 2}},
		{"late by more than an interval: the slot is skipped", at(0, 100, 310, 400), Slots{Skipped: 1, MaxLate: 10 * ms}},
		{"a slot used twice", at(0, 100, 101, 200), Slots{Doubled: 1, MaxLate: 1 * ms}},
		{"a slot used twice, late", at(0, 150, 160, 200), Slots{Doubled: 1, MaxLate: 60 * ms}},
		{"one start", at(5), Slots{}},
	} {
		if got := GridSlots(tc.starts, i); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestWatchClockSeesAPause(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("stops this process with a child's kill -STOP")
	}
	w := WatchClock(t, 5*time.Millisecond, 200*time.Millisecond)
	before := time.Now()
	// A child stops this whole process for 600 ms, as a paused machine would.
	out, err := exec.Command("sh", "-c", "kill -STOP $PPID; sleep 0.6; kill -CONT $PPID").CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v: %s", err, out)
	}
	time.Sleep(50 * time.Millisecond) // the watcher's next sample
	gaps := w.Gaps(before, time.Now())
	var paused time.Duration
	for _, g := range gaps {
		paused = max(paused, g.Ran)
		if g.Step().Abs() > 100*time.Millisecond {
			t.Errorf("%v: the wall clock did not step", g)
		}
	}
	// The stop lasts the child's sleep; the watcher may split it, but not shrink it far.
	if paused < 400*time.Millisecond {
		t.Errorf("longest gap %v over a 600 ms stop (gaps %v)", paused, gaps)
	}
	if g := w.Gaps(before.Add(-time.Hour), before.Add(-time.Minute)); len(g) != 0 {
		t.Errorf("gaps before the stop: %v", g)
	}
}

func TestClockGap(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 7, 59, 10, 0, time.UTC)
	s := time.Second
	pause := ClockGap{From: t0, To: t0.Add(8 * s), Ran: 8 * s}
	ahead := ClockGap{From: t0, To: t0.Add(8 * s), Ran: 10 * time.Millisecond}
	back := ClockGap{From: t0, To: t0.Add(-3600 * s), Ran: 10 * time.Millisecond}
	for _, tc := range []struct {
		g        ClockGap
		step     time.Duration
		from, to time.Time
		overlaps bool
	}{
		{pause, 0, t0.Add(-s), t0.Add(9 * s), true},
		{pause, 0, t0.Add(s), t0.Add(2 * s), true},
		{pause, 0, t0.Add(9 * s), t0.Add(10 * s), false},
		{pause, 0, t0.Add(-2 * s), t0.Add(-s), false},
		{ahead, 8*s - 10*time.Millisecond, t0.Add(7 * s), t0.Add(9 * s), true},
		{back, -3600*s - 10*time.Millisecond, t0.Add(-10 * s), t0.Add(-9 * s), true},
		{back, -3600*s - 10*time.Millisecond, t0.Add(s), t0.Add(2 * s), false},
	} {
		if got := tc.g.Step(); got != tc.step {
			t.Errorf("%v: step %v, want %v", tc.g, got, tc.step)
		}
		if got := tc.g.Overlaps(tc.from, tc.to); got != tc.overlaps {
			t.Errorf("%v overlaps [%s, %s]: %v, want %v", tc.g, tc.from.Format("15:04:05"), tc.to.Format("15:04:05"), got, tc.overlaps)
		}
	}
}

// TestReservePort: ports reserved in this process and in another one running beside it
// never coincide, lie below the ephemeral range, and can be listened on.
func TestReservePort(t *testing.T) {
	if os.Getenv("TESTKIT_RESERVE_CHILD") != "" {
		// The other process: reserve ports and print them, while the parent holds its own.
		// It starts where the parent started, so that without the hold it would get the
		// parent's ports.
		from, _ := strconv.Atoi(os.Getenv("TESTKIT_RESERVE_CHILD"))
		lo, _ := reservableRange()
		reserved.mu.Lock()
		reserved.next = from - lo
		reserved.mu.Unlock()
		for range 200 {
			port, err := ReservePort(IPv4Loopback)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Println("port", port)
		}
		return
	}
	_, hi := reservableRange()
	mine := map[int]bool{}
	first := 0
	for range 200 {
		port, err := ReservePort(IPv4Loopback)
		if err != nil {
			t.Fatal(err)
		}
		if mine[port] {
			t.Fatalf("port %d reserved twice in one process", port)
		}
		if port >= hi {
			t.Errorf("port %d is in the ephemeral range (from %d)", port, hi)
		}
		mine[port] = true
		if first == 0 {
			first = port
		}
	}
	addr := FreePort(t, "tcp")
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the reserved %s: %v", addr, err)
	}
	l.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestReservePort$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TESTKIT_RESERVE_CHILD="+strconv.Itoa(first))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the other process: %v\n%s", err, out)
	}
	theirs := 0
	for _, line := range strings.Split(string(out), "\n") {
		var port int
		if _, err := fmt.Sscanf(line, "port %d", &port); err != nil {
			continue
		}
		theirs++
		if mine[port] {
			t.Errorf("port %d reserved by both processes", port)
		}
	}
	if theirs != 200 {
		t.Errorf("the other process printed %d ports, want 200:\n%s", theirs, out)
	}
}
