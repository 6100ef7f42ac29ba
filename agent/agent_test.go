package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
)

// events collects events from the running agent for assertions.
type events struct {
	mu    sync.Mutex
	lines []string
	probe map[string]int // probes done per site/target
	seen  chan string
}

func newEvents() *events { return &events{probe: map[string]int{}, seen: make(chan string, 1024)} }

func (e *events) Handle(ev Event) {
	var line string
	switch ev.Type {
	case EventProbe:
		e.mu.Lock()
		e.probe[ev.Site+"/"+ev.Target]++
		e.mu.Unlock()
		return
	case EventTarget:
		line = fmt.Sprintf("target %s/%s %s>%s", ev.Site, ev.Target, ev.From, ev.To)
	case EventSite:
		line = fmt.Sprintf("site %s %s>%s", ev.Site, ev.From, ev.To)
	case EventAgent:
		line = fmt.Sprintf("agent %s>%s", ev.From, ev.To)
	case EventRemoved:
		line = fmt.Sprintf("removed %s/%s %s %s>%s", ev.Site, ev.Target, ev.Kind, ev.From, ev.To)
	}
	e.mu.Lock()
	e.lines = append(e.lines, line)
	e.mu.Unlock()
	e.seen <- line
}

// wait blocks until an event line equal to want arrives, or fails after limit.
func (e *events) wait(t *testing.T, want string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case l := <-e.seen:
			if l == want {
				return
			}
		case <-deadline:
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("no %q within %v; events:\n  %s", want, limit, strings.Join(e.lines, "\n  "))
		}
	}
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.lines...)
}

// listen opens a TCP listener on a loopback address and accepts (and closes) connections
// until it is closed.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// twoSiteConfig returns a config of two sites with two TCP targets each on loopback.
func twoSiteConfig(t *testing.T, a1, a2, b1, b2 string, extra string) *config.Config {
	t.Helper()
	text := fmt.Sprintf(`
[agent]
name = "edge-test"
interval = "200ms"
confirm_interval = "20ms"
timeout = "auto"

[[site]]
name = "a"
  [[site.tcp]]
  address = %q
  [[site.tcp]]
  address = %q

[[site]]
name = "b"
  [[site.tcp]]
  address = %q
  [[site.tcp]]
  address = %q
%s`, a1, a2, b1, b2, extra)
	cfg, err := config.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// start runs an agent until the test ends; the returned channel closes when Run returns.
func start(t *testing.T, cfg *config.Config, sinks ...Sink) (*Agent, context.CancelFunc, chan struct{}) {
	t.Helper()
	a, err := New(cfg, Options{Sinks: sinks})
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		if err := a.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return a, cancel, stopped
}

// TestRunDetectsSiteLossAndRecovery drives the whole loop with real TCP listeners: a site
// whose listeners close (connection refused) goes down while the other stays up, then
// comes back when they reopen on the same ports.
func TestRunDetectsSiteLossAndRecovery(t *testing.T) {
	a1 := listen(t, "127.0.1.1:0")
	a2 := listen(t, "127.0.1.2:0")
	b1 := listen(t, "127.0.2.1:0")
	b2 := listen(t, "127.0.2.2:0")
	cfg := twoSiteConfig(t, a1.Addr().String(), a2.Addr().String(), b1.Addr().String(), b2.Addr().String(), "")
	ev := newEvents()
	start(t, cfg, ev)
	ev.wait(t, "site b unknown>up", 2*time.Second)

	b1.Close()
	b2.Close()
	ev.wait(t, "site b up>down", 2*time.Second)
	listen(t, b1.Addr().String())
	listen(t, b2.Addr().String())
	ev.wait(t, "site b degraded>up", 2*time.Second) // targets come back one by one

	for _, l := range ev.all() {
		if strings.HasPrefix(l, "site a") && l != "site a unknown>up" {
			t.Errorf("site a changed although it never failed: %s", l)
		}
		if strings.HasPrefix(l, "agent") {
			t.Errorf("agent isolation changed although site a answered: %s", l)
		}
	}
}

// TestRunStopsPromptly: cancelling Run ends probes in flight instead of waiting for
// their timeout.
func TestRunStopsPromptly(t *testing.T) {
	stall := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(hl)
	t.Cleanup(func() { close(stall); srv.Close() })

	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[agent]
interval = "10s"
timeout = "9s"
[[site]]
name = "slow"
  [[site.http]]
  url = "http://%s/"
`, hl.Addr())), "slow.toml")
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvents()
	_, cancel, done := start(t, cfg, ev)
	time.Sleep(200 * time.Millisecond) // the first probe is now waiting on the server
	began := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run still running 3s after cancel")
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Run took %v to stop, want under 1s", took)
	}
}

// TestReloadKeepsState: targets that survive a reload keep their state (no new
// unknown>up), new ones are probed, removed ones stop.
func TestReloadKeepsState(t *testing.T) {
	a1 := listen(t, "127.0.1.1:0")
	a2 := listen(t, "127.0.1.2:0")
	b1 := listen(t, "127.0.2.1:0")
	b2 := listen(t, "127.0.2.2:0")
	c1 := listen(t, "127.0.3.1:0")
	addrs := []string{a1.Addr().String(), a2.Addr().String(), b1.Addr().String(), b2.Addr().String()}
	cfg := twoSiteConfig(t, addrs[0], addrs[1], addrs[2], addrs[3], "")
	ev := newEvents()
	ag, _, _ := start(t, cfg, ev)
	ev.wait(t, "site b unknown>up", 2*time.Second)

	next := twoSiteConfig(t, addrs[0], addrs[1], addrs[2], addrs[3], fmt.Sprintf(`
[[site]]
name = "c"
  [[site.tcp]]
  address = %q
`, c1.Addr()))
	if err := ag.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	ev.wait(t, "site c unknown>up", 2*time.Second)
	ups := 0
	for _, l := range ev.all() {
		if l == "site a unknown>up" {
			ups++
		}
	}
	if ups != 1 {
		t.Errorf("site a went unknown>up %d times, want once: the reload forgot its state", ups)
	}

	// Shrink back to a and b: c's target must stop being probed.
	if err := ag.Reload(cfg); err != nil {
		t.Fatalf("reload back: %v", err)
	}
	key := "c/tcp:" + c1.Addr().String()
	ev.mu.Lock()
	before := ev.probe[key]
	ev.mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	ev.mu.Lock()
	after := ev.probe[key]
	ev.mu.Unlock()
	if before == 0 || after != before {
		t.Errorf("probes of removed target %s: %d before, %d after the reload; want >0 and unchanged", key, before, after)
	}
	// The sinks were told, the target first, then its site, each with its last state.
	var removed []string
	for _, l := range ev.all() {
		if strings.HasPrefix(l, "removed ") {
			removed = append(removed, l)
		}
	}
	want := []string{"removed c/" + key[len("c/"):] + " tcp up>removed", "removed c/ " + " up>removed"}
	if !slices.Equal(removed, want) {
		t.Errorf("removal events %q, want %q", removed, want)
	}
}

// TestWorkersLastInFirstOut: after a burst, a steady trickle of probes keeps reusing the
// worker that became idle last, so the rest of the burst's workers idle out instead of
// taking turns and living on; stop ends the idle ones.
func TestWorkersLastInFirstOut(t *testing.T) {
	ws := newWorkers()
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 20 { // a burst: 20 probes in flight at once
		wg.Add(1)
		ws.run(func(func()) { <-release; wg.Done() })
	}
	close(release)
	wg.Wait()
	waitIdle := func(n int) {
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			ws.mu.Lock()
			got := len(ws.idle)
			ws.mu.Unlock()
			if got == n {
				return
			}
		}
		t.Fatalf("workers did not all become idle (want %d)", n)
	}
	waitIdle(20)
	ws.mu.Lock()
	before := slices.Clone(ws.idle)
	ws.mu.Unlock()
	for range 200 { // then one at a time
		done := make(chan struct{})
		ws.run(func(func()) { close(done) })
		<-done
	}
	waitIdle(20)
	// The trickle went to the top worker alone: the other 19 are where the burst left
	// them, at the bottom of the stack, the first to idle out.
	ws.mu.Lock()
	if !slices.Equal(ws.idle[:19], before[:19]) {
		t.Errorf("the trickle of probes went to workers below the top of the stack")
	}
	ws.mu.Unlock()
	ws.stop()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.idle) != 0 || !ws.closed {
		t.Fatalf("after stop: %d idle, closed %v", len(ws.idle), ws.closed)
	}
}

// TestWorkersIdleBeforeTheResult: a probe whose result makes the scheduler start the same
// target's next probe at once finds its worker idle, because a job parks its worker
// before it hands its result over: a chain of probes, each started on the last one's
// result, runs on one worker, so the pool never holds more workers than probes in
// flight.
func TestWorkersIdleBeforeTheResult(t *testing.T) {
	ws := newWorkers()
	defer ws.stop()
	results := make(chan struct{})
	for range 2000 {
		ws.run(func(idle func()) {
			idle()
			results <- struct{}{}
		})
		<-results
	}
	if n := ws.size(); n != 1 {
		t.Errorf("%d workers for a chain of probes one at a time, want 1", n)
	}
}
