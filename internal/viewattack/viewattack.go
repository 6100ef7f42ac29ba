// Package viewattack runs hostile clients against an edgeprobe view while honest agents
// push to it, and measures what each attack costs (make bench-view-attacks): the view's
// memory (VmRSS from /proc, sampled every 50 ms), the latency of the honest pushes, and
// whether a verdict was forged or got stuck. It starts the view binary itself, as its own
// process on a free loopback port, so that one harness measures any build: the same
// attacks against the code before and after a change give the two sides of the table in
// view/README.md ("Hostile input").
//
// Everything stays on loopback: the view listens on 127.0.0.1 and every request goes
// there. Each attack runs for a bounded window (at most MaxDuration).
package viewattack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxDuration bounds one attack's window: the harness is a test tool, never a flood.
const MaxDuration = 2 * time.Minute

// Config says which attacks to run against which binary.
type Config struct {
	View     string        // the edgeprobe binary whose view is attacked
	Attacks  []string      // names from Names(); none: all of them
	Duration time.Duration // each attack's window (default 10s)
	Honest   int           // honest agents (default 6)
	Every    time.Duration // each honest agent's push interval (default 200ms)
	Log      io.Writer     // progress lines; nil for none
	// Attacker, if set, is a program that runs one attack when called with
	// Attacker args: --attacker NAME --addr HOST:PORT --duration D --honest N (the
	// viewattack command itself, see RunAttacker). It runs at a lower CPU priority
	// (nice 10), as an attacker elsewhere would not share the view's CPU; without it the
	// attack runs in this process, beside the honest agents.
	Attacker string
}

// Result is what one attack did to the view.
type Result struct {
	Attack                   string
	Died                     string // how the view ended, when it did not outlive the attack
	RSSStart, RSSMax, RSSEnd int64  // bytes: before the window, its peak, 1 s after it
	Pushes, Failed           int    // honest pushes in the window: answered 2xx, not (or timed out)
	P50, P99, Max            time.Duration
	Checks, Forged           int // reads of /api/v1/sites; those that found s1 or s2 lost
	Flips, FlipsSeen         int // honest flips of site "flip"; those whose verdict was read in time
	StderrLines              int // lines the view wrote to stderr in the window
	Answers                  map[int]int
}

// attack is one hostile client. config writes the view's config (nil: the defaults);
// stdout is what becomes of the view's event log: "drain" (read), "stall" (a pipe nobody
// reads) or "close" (a pipe whose reader went away).
type attack struct {
	name, about string
	stdout      string
	config      func(dir string) (toml string, tokens map[string]string, err error)
	run         func(ctx context.Context, e *env)
}

// env is what an attack works with.
type env struct {
	addr, base string
	honest     []string // the honest agents' names
	mu         sync.Mutex
	answers    map[int]int
}

func (e *env) answered(code int) {
	e.mu.Lock()
	e.answers[code]++
	e.mu.Unlock()
}

// Names lists the attacks in the order they run.
func Names() []string {
	var out []string
	for _, a := range attacks {
		out = append(out, a.name)
	}
	return out
}

// About says what an attack does.
func About(name string) string {
	for _, a := range attacks {
		if a.name == name {
			return a.about
		}
	}
	return ""
}

// Run runs each attack in turn against a fresh view and returns their results.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Honest == 0 {
		cfg.Honest = 6
	}
	if cfg.Every == 0 {
		cfg.Every = 200 * time.Millisecond
	}
	if cfg.Duration > MaxDuration || cfg.Duration < time.Second {
		return nil, fmt.Errorf("duration %v: allowed 1s to %v", cfg.Duration, MaxDuration)
	}
	if cfg.Honest < 2 || cfg.Honest > 50 {
		return nil, fmt.Errorf("%d honest agents: allowed 2 to 50", cfg.Honest)
	}
	if len(cfg.Attacks) == 0 {
		cfg.Attacks = Names()
	}
	var out []Result
	for _, name := range cfg.Attacks {
		i := slices.IndexFunc(attacks, func(a attack) bool { return a.name == name })
		if i < 0 {
			return out, fmt.Errorf("no attack %q; known: %s", name, strings.Join(Names(), ", "))
		}
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "%s: %s against %s\n", name, attacks[i].about, cfg.View)
		}
		res, err := runOne(ctx, cfg, attacks[i])
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// view is the view's process.
type view struct {
	cmd      *exec.Cmd
	pid      int
	done     chan struct{}
	exit     string
	readEnd  *os.File // of the stdout pipe ("stall", "close")
	stderrN  atomic.Int64
	counting atomic.Bool
}

func startView(bin, dir, stdout, toml string) (*view, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"view", "--listen", addr}
	if toml != "" {
		path := filepath.Join(dir, "view.toml")
		if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
			return nil, "", err
		}
		args = append(args, "--config", path)
	}
	v := &view{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	var writeEnd *os.File
	switch stdout {
	case "stall", "close":
		if v.readEnd, writeEnd, err = os.Pipe(); err != nil {
			return nil, "", err
		}
		v.cmd.Stdout = writeEnd
	default:
		v.cmd.Stdout = io.Discard
	}
	stderr, err := v.cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := v.cmd.Start(); err != nil {
		return nil, "", err
	}
	if writeEnd != nil {
		writeEnd.Close()
	}
	v.pid = v.cmd.Process.Pid
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := stderr.Read(buf)
			if v.counting.Load() {
				v.stderrN.Add(int64(strings.Count(string(buf[:n]), "\n")))
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := v.cmd.Wait()
		if err != nil {
			v.exit = err.Error()
		} else {
			v.exit = "exit status 0"
		}
		close(v.done)
	}()
	return v, addr, nil
}

func (v *view) stop() {
	select {
	case <-v.done:
	default:
		_ = v.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-v.done:
		case <-time.After(10 * time.Second):
			_ = v.cmd.Process.Kill()
			<-v.done
		}
	}
	if v.readEnd != nil {
		v.readEnd.Close()
	}
}

func (v *view) alive() bool {
	select {
	case <-v.done:
		return false
	default:
		return true
	}
}

// rss is the process's VmRSS in bytes, 0 once it is gone.
func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func waitUp(ctx context.Context, base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := http.Get(base + "/api/v1/sites")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the view did not answer " + base + "/api/v1/sites within 10 s")
}

// honestSites is what every honest agent reports: s1 and s2 always up, and "flip",
// which the run turns down and up on all of them together.
func honestSites(flipDown bool) map[string]string {
	f := "up"
	if flipDown {
		f = "down"
	}
	return map[string]string{"s1": "up", "s2": "up", "flip": f}
}

func runOne(ctx context.Context, cfg Config, a attack) (Result, error) {
	res := Result{Attack: a.name, Answers: map[int]int{}}
	dir, err := os.MkdirTemp("", "viewattack-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	honest := make([]string, cfg.Honest)
	for i := range honest {
		honest[i] = fmt.Sprintf("edge-%02d", i+1)
	}
	var toml string
	var tokens map[string]string // honest agent -> token
	if a.config != nil {
		if toml, tokens, err = a.config(dir); err != nil {
			return res, err
		}
	}
	v, addr, err := startView(cfg.View, dir, a.stdout, toml)
	if err != nil {
		return res, err
	}
	defer v.stop()
	e := &env{addr: addr, base: "http://" + addr, honest: honest, answers: res.Answers}
	if err := waitUp(ctx, e.base); err != nil {
		return res, err
	}
	if a.stdout == "close" {
		v.readEnd.Close()
		v.readEnd = nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var measuring atomic.Bool
	var flipDown atomic.Bool
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for i, name := range honest {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		token := tokens[name]
		wg.Go(func() {
			defer client.CloseIdleConnections()
			tick := time.NewTicker(cfg.Every)
			defer tick.Stop()
			time.Sleep(cfg.Every * time.Duration(i) / time.Duration(len(honest)))
			for ctx.Err() == nil {
				body := encode(report{agent: name, interval: cfg.Every.Seconds(), sites: honestSites(flipDown.Load())})
				start := time.Now()
				_, _, err := post(ctx, client, e.base+"/api/v1/write", body, func(h http.Header) {
					pushHeaders(h)
					if token != "" {
						h.Set("Authorization", "Bearer "+token)
					}
				})
				took := time.Since(start)
				if measuring.Load() && ctx.Err() == nil {
					mu.Lock()
					lat = append(lat, took)
					if err != nil {
						res.Failed++
					} else {
						res.Pushes++
					}
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		})
	}
	// Warm-up: every honest agent pushed a few times, the sites are up.
	time.Sleep(time.Second)
	res.RSSStart = rss(v.pid)
	measuring.Store(true)
	v.counting.Store(true)
	attackCtx, stopAttack := context.WithTimeout(ctx, cfg.Duration)
	defer stopAttack()
	var attackWG sync.WaitGroup
	attackWG.Go(func() {
		if cfg.Attacker == "" {
			a.run(attackCtx, e)
			return
		}
		if err := runAttacker(attackCtx, cfg, a.name, e); err != nil && cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "%s: attacker: %v\n", a.name, err)
		}
	})

	// The flipper turns "flip" down and up on every honest agent; the checker reads the
	// verdicts: s1 and s2 must stay up, and each flip must show within flipWithin.
	const flipEvery, flipWithin = 1500 * time.Millisecond, 3 * time.Second
	var flipMu sync.Mutex
	var flipAt time.Time
	var flipSeen = true
	attackWG.Go(func() {
		tick := time.NewTicker(flipEvery)
		defer tick.Stop()
		for {
			select {
			case <-attackCtx.Done():
				return
			case now := <-tick.C:
				flipMu.Lock()
				flipDown.Store(!flipDown.Load())
				flipAt, flipSeen = now, false
				res.Flips++
				flipMu.Unlock()
			}
		}
	})
	attackWG.Go(func() {
		client := &http.Client{Timeout: time.Second}
		defer client.CloseIdleConnections()
		for attackCtx.Err() == nil {
			sites, err := readSites(attackCtx, client, e.base)
			if err == nil {
				flipMu.Lock()
				res.Checks++
				if sites["s1"] == "lost" || sites["s2"] == "lost" {
					res.Forged++
				}
				want := "up"
				if flipDown.Load() {
					want = "lost"
				}
				if !flipSeen && sites["flip"] == want && time.Since(flipAt) < flipWithin {
					flipSeen = true
					res.FlipsSeen++
				}
				flipMu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	attackWG.Go(func() {
		for attackCtx.Err() == nil {
			if r := rss(v.pid); r > res.RSSMax {
				res.RSSMax = r
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	attackWG.Wait()
	measuring.Store(false)
	v.counting.Store(false)
	time.Sleep(time.Second)
	res.RSSEnd = rss(v.pid)
	cancel()
	wg.Wait()
	res.StderrLines = int(v.stderrN.Load())
	if !v.alive() {
		res.Died = v.exit
	}
	res.P50, res.P99, res.Max = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	return res, nil
}

// runAttacker runs attack name in cfg.Attacker's process, niced, until ctx ends, and
// adds the answers it got to e's.
func runAttacker(ctx context.Context, cfg Config, name string, e *env) error {
	deadline, _ := ctx.Deadline()
	cmd := exec.Command(cfg.Attacker, "--attacker", name, "--addr", e.addr,
		"--duration", time.Until(deadline).Round(time.Millisecond).String(), "--honest", strconv.Itoa(len(e.honest)))
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = cfg.Log
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 10)
	if err := cmd.Wait(); err != nil {
		return err
	}
	var answers map[int]int
	if err := json.Unmarshal([]byte(out.String()), &answers); err != nil {
		return fmt.Errorf("answers %q: %w", out.String(), err)
	}
	e.mu.Lock()
	for code, n := range answers {
		e.answers[code] += n
	}
	e.mu.Unlock()
	return nil
}

// RunAttacker runs attack name against the view at addr for d and writes the answers
// it got (status -> count) as JSON to w: the attacker side of Config.Attacker.
func RunAttacker(name, addr string, d time.Duration, honest int, w io.Writer) error {
	i := slices.IndexFunc(attacks, func(a attack) bool { return a.name == name })
	if i < 0 {
		return fmt.Errorf("no attack %q", name)
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("%q is not a loopback host:port: the attacks stay on loopback", addr)
	}
	if d <= 0 || d > MaxDuration {
		return fmt.Errorf("duration %v: allowed up to %v", d, MaxDuration)
	}
	e := &env{addr: addr, base: "http://" + addr, answers: map[int]int{}}
	for i := range honest {
		e.honest = append(e.honest, fmt.Sprintf("edge-%02d", i+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	attacks[i].run(ctx, e)
	return json.NewEncoder(w).Encode(e.answers)
}

func readSites(ctx context.Context, client *http.Client, base string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/sites", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	var doc struct {
		Sites []struct{ Name, State string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range doc.Sites {
		out[s.Name] = s.State
	}
	return out, nil
}

// percentile is the p-th percentile (0..100) of ds by nearest rank, 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(len(s)-1, i))]
}
