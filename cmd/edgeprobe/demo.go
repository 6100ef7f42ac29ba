package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/view"
)

const demoAbout = `Watch edgeprobe notice a datacenter go dark, offline and without root.

Two simulated sites live on loopback: alpha on 127.0.1.x and beta on 127.0.2.x (Linux
routes all of 127.0.0.0/8 to lo). Each has its own DNS server, web server and TLS
service, started in this process. Three agents, edge1 to edge3, probe them at the
default 1 s interval and push their states by remote_write to a view, also started in
this process: open its page to watch the board. Once both sites are up, beta is
blackholed: its servers keep accepting connections and receiving queries but never
answer, as a site without power looks from outside. edge1's state changes are printed,
then the view's verdict (lost, by a quorum of two agents) with its delay from the
blackhole; then beta is healed and its recovery shown. The view also acts: a name server
in this process is the primary of the zone demo., and the view's [[actions.dns]] rewrites
www.demo. from beta's address to alpha's by a signed dynamic update (RFC 2136, TSIG) when
beta is lost, and back once beta has been up for recover_for (3s). The demo asks the name
server every 10ms and prints when its answer changed. No ICMP: 127.0.0.0/8 always answers
it.`

// Demo phases are long enough to see the steady state between them and short enough
// that the whole scenario takes about fifteen seconds.
const (
	demoSettle    = 3 * time.Second  // steady state before each blackhole
	demoDarkHold  = 4 * time.Second  // beta stays dark this long after it is seen down
	demoWaitLimit = 10 * time.Second // a phase that takes longer than this has failed
	// demoRecoverFor is how long beta must be up before the view fails it back: short,
	// so that the demo shows the failback within seconds of the heal (the default is 10s).
	demoRecoverFor = 3 * time.Second
	// demoDNSPoll is how often the demo asks the name server for www.demo.
	demoDNSPoll = 10 * time.Millisecond
)

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "[options]", demoAbout, stderr)
	keepRunning := fs.Bool("keep-running", false, "repeat the blackhole and heal cycle until Ctrl-C")
	cycles := fs.Int("cycles", 1, "blackhole and heal cycles to run (more cycles, more samples)")
	format := fs.String("format", config.FormatText, "stdout format of agent edge1: text or json (then the demo's own lines go to stderr)")
	viewListen := fs.String("view-listen", view.DefaultListen, "`address` of the demo's view; a busy port falls back to any free one")
	if status, done := parseFlags(fs, args, stdout); done {
		return status
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if *cycles < 1 {
		return usageError(fs, "--cycles %d: must be at least 1", *cycles)
	}
	if *format != config.FormatText && *format != config.FormatJSON {
		return usageError(fs, "--format %q: want text or json", *format)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := &lockedWriter{w: stdout}
	d := &demo{out: out, narration: out, format: *format, viewListen: *viewListen, logger: newLogger(stderr)}
	if *format == config.FormatJSON {
		d.narration = stderr // keep stdout one JSON object per line
	}
	if err := d.run(ctx, *cycles, *keepRunning); err != nil {
		fmt.Fprintf(stderr, "edgeprobe demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// lockedWriter keeps the agent's lines and the demo's narration from interleaving.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type demo struct {
	out        io.Writer // the agent's stdout exporter
	narration  io.Writer // the demo's own "== " lines
	format     string
	viewListen string
	logger     *slog.Logger
	events     chan agent.Event // edge1's site changes, from the observer sink
	verdicts   chan view.Change // the view's verdict changes, read from /api/v1/events
	alpha      *demoSite
	beta       *demoSite
	dns        *demoDNS
	dir        string // the demo's temporary files: certificate, TSIG key, view config and state
	// measurements, one per cycle
	downAfterBlackhole []time.Duration
	downDetect         []time.Duration
	upAfterHeal        []time.Duration
	lostAfterBlackhole []time.Duration
	viewUpAfterHeal    []time.Duration
	dnsAfterBlackhole  []time.Duration
	dnsAfterHeal       []time.Duration
	alphaChanges       int
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.narration, "== %s  %s\n", time.Now().Format(textClock), fmt.Sprintf(format, args...))
}

// textClock matches the stdout exporter's text lines.
const textClock = "15:04:05.000"

func (d *demo) run(ctx context.Context, cycles int, keepRunning bool) error {
	dir, err := os.MkdirTemp("", "edgeprobe-demo-")
	if err != nil {
		return fmt.Errorf("creating a directory for the demo certificate: %w", err)
	}
	defer os.RemoveAll(dir)
	d.dir = dir
	caFile, serverCert, err := demoCertificate(dir, alphaPrefix+".22", betaPrefix+".22")
	if err != nil {
		return err
	}
	if d.alpha, err = startDemoSite("alpha", alphaPrefix, serverCert); err != nil {
		return err
	}
	defer d.alpha.close()
	if d.beta, err = startDemoSite("beta", betaPrefix, serverCert); err != nil {
		return err
	}
	defer d.beta.close()
	if d.dns, err = startDemoDNS(map[string][]string{demoService: {demoPrimary}}); err != nil {
		return err
	}
	defer d.dns.close()

	viewURL, stopView, err := d.startView()
	if err != nil {
		return err
	}
	defer stopView()
	d.say("view started: open %s/ to watch the board", viewURL)

	d.events = make(chan agent.Event, 256)
	var targets int
	for i := 1; i <= demoAgents; i++ {
		name := fmt.Sprintf("edge%d", i)
		cfg, err := config.Parse([]byte(demoConfig(name, d.format, caFile, viewURL, d.alpha, d.beta)), "demo")
		if err != nil {
			return fmt.Errorf("the demo's configuration of agent %s: %w", name, err)
		}
		// Only edge1 prints and feeds the script: three agents' lines would bury the story.
		stdout, sinks := io.Discard, []agent.Sink(nil)
		if i == 1 {
			stdout, sinks = d.out, []agent.Sink{observer(d.events)}
		}
		stop, err := d.startAgent(cfg, stdout, sinks)
		if err != nil {
			return fmt.Errorf("starting agent %s: %w", name, err)
		}
		defer stop()
		targets = len(cfg.Targets())
	}

	d.say("site alpha: dns %s, http %s, tls %s", d.alpha.dnsAddr, d.alpha.httpAddr, d.alpha.tlsAddr)
	d.say("site beta:  dns %s, http %s, tls %s", d.beta.dnsAddr, d.beta.httpAddr, d.beta.tlsAddr)
	d.say("name server %s, primary of %s: %s A %s (beta); the view fails it over to %s (alpha) when beta is lost",
		d.dns.addr, demoZone, demoService, demoPrimary, demoFailover)
	d.say("agents edge1..edge%d started: %d targets each, interval 1s, timeout auto; waiting for both sites to be up", demoAgents, targets)
	if _, err := d.waitSites(ctx, demoWaitLimit, map[string]string{"alpha": agent.SiteUp, "beta": agent.SiteUp}); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	if _, err := d.waitVerdicts(ctx, map[string]string{"alpha": view.VerdictUp, "beta": view.VerdictUp}); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	d.say("VIEW: sites alpha and beta up")
	for cycle := 1; keepRunning || cycle <= cycles; cycle++ {
		if err := d.cycle(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				break
			}
			return err
		}
	}
	d.summary()
	return nil
}

// cycle blackholes beta, waits for the agent to see it down, the view to say lost and the
// name server to answer alpha's address, heals it and waits for up and for beta's address.
func (d *demo) cycle(ctx context.Context) error {
	// A random moment within one probe interval: a fire does not wait for the schedule,
	// and a fixed offset would always measure the same phase of it.
	if err := sleepCtx(ctx, demoSettle+mrand.N(time.Second)); err != nil {
		return err
	}
	// The name-server watchers of this cycle end with it, also when it fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	blackhole := time.Now()
	d.beta.setDark(true)
	d.say("BLACKHOLE site beta: its servers now accept and receive but never answer")
	failedOver := d.watchDNS(ctx, demoFailover)
	ev, err := d.waitSites(ctx, demoWaitLimit, map[string]string{"beta": agent.SiteDown})
	if err != nil {
		return err
	}
	afterBlackhole := ev.Time.Sub(blackhole)
	d.downAfterBlackhole = append(d.downAfterBlackhole, afterBlackhole)
	d.downDetect = append(d.downDetect, ev.Detect)
	d.say("site beta DOWN %s after the blackhole, %s after its first failed probe",
		seconds(afterBlackhole), seconds(ev.Detect))
	lost, err := d.waitVerdict(ctx, "beta", view.VerdictLost)
	if err != nil {
		return err
	}
	d.lostAfterBlackhole = append(d.lostAfterBlackhole, lost.Time.Sub(blackhole))
	d.say("VIEW: site beta LOST %s after the blackhole", seconds(lost.Time.Sub(blackhole)))
	answered, err := d.waitDNS(ctx, failedOver, demoWaitLimit, demoFailover)
	if err != nil {
		return err
	}
	d.dnsAfterBlackhole = append(d.dnsAfterBlackhole, answered.Sub(blackhole))
	d.say("DNS: %s answers %s (alpha) %s after the blackhole: the view failed beta over by a signed update",
		demoService, demoFailover, seconds(answered.Sub(blackhole)))
	if err := sleepCtx(ctx, demoDarkHold); err != nil {
		return err
	}
	heal := time.Now()
	d.beta.setDark(false)
	d.say("HEAL site beta: its servers answer again")
	failedBack := d.watchDNS(ctx, demoPrimary)
	ev, err = d.waitSites(ctx, demoWaitLimit, map[string]string{"beta": agent.SiteUp})
	if err != nil {
		return err
	}
	d.upAfterHeal = append(d.upAfterHeal, ev.Time.Sub(heal))
	d.say("site beta UP %s after healing", seconds(ev.Time.Sub(heal)))
	up, err := d.waitVerdict(ctx, "beta", view.VerdictUp)
	if err != nil {
		return err
	}
	d.viewUpAfterHeal = append(d.viewUpAfterHeal, up.Time.Sub(heal))
	d.say("VIEW: site beta UP %s after healing", seconds(up.Time.Sub(heal)))
	answered, err = d.waitDNS(ctx, failedBack, demoRecoverFor+demoWaitLimit, demoPrimary)
	if err != nil {
		return err
	}
	d.dnsAfterHeal = append(d.dnsAfterHeal, answered.Sub(heal))
	d.say("DNS: %s answers %s (beta) again %s after healing: failed back once beta had been up for recover_for %s",
		demoService, demoPrimary, seconds(answered.Sub(heal)), demoRecoverFor)
	return nil
}

// watchDNS asks the demo's name server for demoService every demoDNSPoll, from now on,
// and delivers the moment it first answered exactly want, as a client would see it. It
// stops when ctx ends.
func (d *demo) watchDNS(ctx context.Context, want string) <-chan time.Time {
	at := make(chan time.Time, 1)
	go func() {
		tick := time.NewTicker(demoDNSPoll)
		defer tick.Stop()
		for {
			got, err := d.dns.lookupA(demoService, time.Second)
			if now := time.Now(); err == nil && len(got) == 1 && got[0] == want {
				at <- now
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return at
}

// waitDNS waits for watchDNS's moment, at most limit.
func (d *demo) waitDNS(ctx context.Context, at <-chan time.Time, limit time.Duration, want string) (time.Time, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case t := <-at:
		return t, nil
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-timer.C:
		got, err := d.dns.lookupA(demoService, time.Second)
		return time.Time{}, fmt.Errorf("waited %s for %s to answer %s: it answers %v (%v); see the view's log on stderr",
			limit, demoService, want, got, err)
	}
}

// waitSites returns the event that brought the last of want's sites to its wanted state.
func (d *demo) waitSites(ctx context.Context, limit time.Duration, want map[string]string) (agent.Event, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	pending := len(want)
	for {
		select {
		case ev := <-d.events:
			d.countAlpha(ev)
			if ev.Type == agent.EventSite && want[ev.Site] == ev.To {
				delete(want, ev.Site)
				if pending--; pending == 0 {
					return ev, nil
				}
			}
		case <-ctx.Done():
			return agent.Event{}, ctx.Err()
		case <-timer.C:
			var missing []string
			for site, state := range want {
				missing = append(missing, site+" "+state)
			}
			slices.Sort(missing)
			return agent.Event{}, fmt.Errorf("waited %s for %s: the agent did not report it", limit, strings.Join(missing, ", "))
		}
	}
}

// countAlpha counts alpha's changes after its first verdict: alpha is never touched, so
// each one is a false alarm.
func (d *demo) countAlpha(ev agent.Event) {
	if ev.Type == agent.EventSite && ev.Site == "alpha" && ev.From != agent.SiteUnknown {
		d.alphaChanges++
	}
}

func (d *demo) summary() {
	for drained := false; !drained; {
		select {
		case ev := <-d.events:
			d.countAlpha(ev)
		default:
			drained = true
		}
	}
	if len(d.downAfterBlackhole) == 0 {
		d.say("stopped before the first blackhole")
		return
	}
	d.say("summary over %d blackhole(s) of site beta:", len(d.downAfterBlackhole))
	d.say("  blackhole -> beta down:           %s", stats(d.downAfterBlackhole))
	d.say("  first failed probe -> beta down:  %s", stats(d.downDetect))
	if len(d.lostAfterBlackhole) > 0 {
		d.say("  blackhole -> view says lost:      %s", stats(d.lostAfterBlackhole))
	}
	if len(d.upAfterHeal) > 0 {
		d.say("  heal -> beta up:                  %s", stats(d.upAfterHeal))
	}
	if len(d.dnsAfterBlackhole) > 0 {
		d.say("  blackhole -> DNS answers alpha:   %s", stats(d.dnsAfterBlackhole))
	}
	if len(d.viewUpAfterHeal) > 0 {
		d.say("  heal -> view says up:             %s", stats(d.viewUpAfterHeal))
	}
	if len(d.dnsAfterHeal) > 0 {
		d.say("  heal -> DNS answers beta again:   %s (recover_for %s)", stats(d.dnsAfterHeal), demoRecoverFor)
	}
	if d.alphaChanges == 0 {
		d.say("  site alpha stayed up throughout (no false alarm)")
	} else {
		d.say("  site alpha changed state %d time(s) while it was healthy: a false alarm (a loaded machine?)", d.alphaChanges)
	}
	d.say("blackhole -> down is the wait for the next probe of any beta target (a site's targets")
	d.say("are spread over the 1s interval) plus the confirmation: the first failure makes every")
	d.say("target of the site re-probed every 100ms, and 3 failures in a row make a target down")
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// stats is the median and maximum, or the one value.
func stats(ds []time.Duration) string {
	if len(ds) == 1 {
		return seconds(ds[0])
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + median) / 2
	}
	return fmt.Sprintf("median %s, max %s (n=%d)", seconds(median), seconds(sorted[len(sorted)-1]), len(sorted))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// observer is a sink that forwards site changes to the demo's script. It never blocks
// the agent: a full channel drops the event, which the script would then report as a
// phase that timed out.
type observer chan agent.Event

func (o observer) Handle(ev agent.Event) {
	if ev.Type != agent.EventSite {
		return
	}
	select {
	case o <- ev:
	default:
	}
}

// demoConfig is the agent configuration of the demo, as a user would write it.
func demoConfig(name, format, caFile, viewURL string, sites ...*demoSite) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[agent]\nname = %q\n\n", name)
	for _, s := range sites {
		fmt.Fprintf(&b, "[[site]]\nname = %q\n", s.name)
		fmt.Fprintf(&b, "  [[site.dns]]\n  name = \"dns\"\n  server = %q\n  query = %q\n", s.dnsAddr, "www."+s.name+".demo.")
		fmt.Fprintf(&b, "  [[site.http]]\n  name = \"web\"\n  url = %q\n", "http://"+s.httpAddr+"/healthz")
		fmt.Fprintf(&b, "  [[site.tcp]]\n  name = \"tls\"\n  address = %q\n  tls = { enable = true, ca_file = %q }\n\n", s.tlsAddr, caFile)
	}
	fmt.Fprintf(&b, "[exporters.stdout]\nformat = %q\nresults = \"changes\"\nsummary = \"5s\"\n\n", format)
	fmt.Fprintf(&b, "[[exporters.remote_write]]\nurl = %q\n", viewURL+"/api/v1/write")
	return b.String()
}

// demoAgents is the number of edges: the view's default quorum is two, so three agents
// show a verdict that no single agent makes alone.
const demoAgents = 3

// startView serves the view on d.viewListen, or on any free loopback port when that one
// is taken, and follows its verdicts through /api/v1/events as the page does.
func (d *demo) startView() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", d.viewListen)
	if err != nil {
		fallback, ferr := net.Listen("tcp", "127.0.0.1:0")
		if ferr != nil {
			return "", nil, fmt.Errorf("listening for the view on %s: %w", d.viewListen, err)
		}
		d.say("view: %s is busy (%v), using %s instead", d.viewListen, err, fallback.Addr())
		ln = fallback
	}
	cfg, err := d.viewConfig()
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	cfg.Listen = ln.Addr().String()
	url = "http://" + cfg.Listen
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	srv, err := view.New(cfg, view.Options{Logger: d.logger})
	if err != nil {
		cancel()
		ln.Close()
		return "", nil, err
	}
	go func() { served <- srv.Serve(ctx, ln) }()
	stop = func() {
		cancel()
		if err := <-served; err != nil {
			d.logger.Error("demo view stopped", "error", err)
		}
	}
	d.verdicts = make(chan view.Change, 256)
	if err := followVerdicts(ctx, url+"/api/v1/events", d.verdicts); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

// demoPrimary and demoFailover are demoService's records: beta's web address in normal
// times, alpha's while beta is lost.
const (
	demoPrimary  = betaPrefix + ".80"
	demoFailover = alphaPrefix + ".80"
)

// viewConfig is the demo view's view.toml, as a user would write it, read as the view
// reads its file: the TSIG key file next to it, the state (audit log, failover state) in
// the demo's directory.
func (d *demo) viewConfig() (*view.Config, error) {
	keyFile := filepath.Join(d.dir, "tsig.key")
	if err := os.WriteFile(keyFile, []byte(d.dns.keyFile()), 0o600); err != nil {
		return nil, fmt.Errorf("the demo's TSIG key: %w", err)
	}
	path := filepath.Join(d.dir, "view.toml")
	cfg, err := view.ParseConfig([]byte(demoViewConfig(d.dns.addr, filepath.Join(d.dir, "view-state"))), path)
	if err != nil {
		return nil, fmt.Errorf("the demo's view configuration: %w", err)
	}
	return cfg, nil
}

// demoViewConfig is the demo view's configuration: the defaults and one DNS action.
func demoViewConfig(server, stateDir string) string {
	return fmt.Sprintf(`state_dir = %q

[actions]
# The demo fails beta over once per cycle, --keep-running for as long as it runs: above
# the default of 2 an hour, which is a guard rail against a flapping site.
max_failovers_per_hour = 1000

[[actions.dns]]
site = "beta"
server = %q
zone = %q
name = %q
type = "A"
primary = [%q]
failover = [%q]
ttl = "%ds"
tsig_key_file = "tsig.key"
failback = "auto"
recover_for = %q
`, stateDir, server, demoZone, demoService, demoPrimary, demoFailover, demoTTL, demoRecoverFor)
}

// followVerdicts subscribes to the view's event stream and forwards each verdict change
// until ctx ends. It returns once subscribed, so no change after that is missed.
func followVerdicts(ctx context.Context, url string, to chan<- view.Change) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("following the view's verdicts at %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("following the view's verdicts at %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("following the view's verdicts at %s: %s", url, resp.Status)
	}
	go func() {
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			data, ok := strings.CutPrefix(lines.Text(), "data: ")
			if !ok {
				continue
			}
			var c view.Change
			if json.Unmarshal([]byte(data), &c) == nil {
				select {
				case to <- c:
				default:
				}
			}
		}
	}()
	return nil
}

// startAgent runs one agent with its exporters until the returned stop is called.
func (d *demo) startAgent(cfg *config.Config, stdout io.Writer, extra []agent.Sink) (stop func(), err error) {
	out, err := newOutputs(cfg, stdout, d.logger)
	if err != nil {
		return nil, err
	}
	a, err := agent.New(cfg, agent.Options{Sinks: append(out.sinks, extra...), Logger: d.logger})
	if err != nil {
		out.close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	out.start(ctx, d.logger)
	finished := make(chan error, 1)
	go func() { finished <- a.Run(ctx) }()
	return func() {
		cancel()
		<-finished
		<-out.wait()
	}, nil
}

// waitVerdict returns the view's change of site to verdict.
func (d *demo) waitVerdict(ctx context.Context, site, verdict string) (view.Change, error) {
	return d.waitVerdicts(ctx, map[string]string{site: verdict})
}

// waitVerdicts returns the change that gave the last of want's sites its wanted verdict.
func (d *demo) waitVerdicts(ctx context.Context, want map[string]string) (view.Change, error) {
	timer := time.NewTimer(demoWaitLimit)
	defer timer.Stop()
	for {
		select {
		case c := <-d.verdicts:
			if want[c.Site] == c.To {
				delete(want, c.Site)
				if len(want) == 0 {
					return c, nil
				}
			}
		case <-ctx.Done():
			return view.Change{}, ctx.Err()
		case <-timer.C:
			var missing []string
			for site, verdict := range want {
				missing = append(missing, site+" "+verdict)
			}
			slices.Sort(missing)
			return view.Change{}, fmt.Errorf("waited %s for the view to say %s", demoWaitLimit, strings.Join(missing, ", "))
		}
	}
}
