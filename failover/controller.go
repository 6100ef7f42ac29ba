package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/damp"
)

// Verdict is what the view says of a site: its verdict as computed, and whether a
// silence covers it. The view calls Update with one on every verdict change and when a
// silence of the site starts or ends.
type Verdict struct {
	State         string    // up, degraded, partitioned, lost or unknown
	Since         time.Time // when the verdict last changed
	Witnesses     int       // witnesses (failure domains) behind it
	Down          int       // of which report the site down
	DetectSeconds *float64  // from the earliest failure its witnesses report to the change
	Silenced      bool      // a silence covers the site: act on nothing
	Time          time.Time // when the view computed it, on its clock: the controller's "now"
}

// Kinds of Alert.
const (
	AlertHeld     = "held"     // a failover was due and a guard rail held it
	AlertHold     = "hold"     // the controller engaged the global hold itself
	AlertRetry    = "retry"    // an update was refused or timed out and is being retried
	AlertConflict = "conflict" // an RRset held neither what the view expected nor the target
	AlertError    = "error"    // an update given up, a runbook that failed, the audit log unwritable
)

// Alert is an event an operator must hear of; the view hands it to its notifiers.
type Alert struct {
	Kind    string    `json:"kind"`
	Site    string    `json:"site,omitempty"`
	Time    time.Time `json:"time"`
	Summary string    `json:"summary"`
	Record  Record    `json:"record"` // the audit record behind it
}

// Options are the controller's connections to the view.
type Options struct {
	Logger *slog.Logger
	// Alert receives alert-worthy events. It is called without the controller's lock
	// held, from Update, Tick, the API calls and the goroutines of the attempts, so
	// possibly concurrently; it must not block for long.
	Alert func(Alert)
	// Now is the clock Run wakes by and finished attempts are stamped with; time.Now
	// when nil. Decisions use the times passed to Update and Tick.
	Now func() time.Time
}

// Errors of the operator API.
var (
	ErrUnknownSite   = errors.New("no actions are configured for this site")
	ErrNotFailedOver = errors.New("the site is not failed over")
	ErrBusy          = errors.New("an operation on the site is under way")
	ErrHeld          = errors.New("the actions are held already")
	ErrNotHeld       = errors.New("the actions are not held")
	ErrNoReason      = errors.New("a hold needs a reason")
)

// WhoController is the Who of the controller's own decisions.
const WhoController = "controller"

// Controller acts on the verdicts of the sites that have actions (docs/architecture.md,
// "Failover"). Its decisions read no clock: they happen at the times Update and Tick
// pass in, so that tests drive it with explicit times; Run adds the timers. DNS updates
// and runbooks run in goroutines of their own, so Update never waits for a server.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	alert func(Alert)
	clock func() time.Time
	ctx   context.Context
	stop  context.CancelFunc
	wake  chan struct{}
	jobs  sync.WaitGroup

	sites map[string]*site // fixed at New: read without the lock
	order []string

	mu      sync.Mutex
	last    time.Time // the latest time seen: decision times never go back
	hold    *HoldInfo
	audit   *auditLog
	saved   map[string]*savedSite // dry run: the real states, written back unchanged
	pending []Alert
	dirty   bool // the state file is behind; flush writes it
	closed  bool
	metrics counters
}

// site is one site's actions and what the controller knows of it.
type site struct {
	name       string
	dns        []*DNSAction
	exec       []*ExecAction
	failback   string
	recoverFor time.Duration

	damper   damp.Damper
	verdict  Verdict // the latest; zero Time until the first Update
	restored bool    // the saved incident still has to be fed to the damper

	state     string
	since     time.Time
	reason    string // why held
	incident  bool   // the damped verdict is lost
	handled   bool   // the incident (or the recovery) has been acted on
	failovers []time.Time
	op        *operation
}

// operation is a failover or failback under way: one attempt per DNS action, and the
// runbooks it started.
type operation struct {
	action   string
	who      string
	reason   string
	manual   bool // asked for by an operator: goes through a hold, never abandoned
	incident bool // the site's incident when it began; a change ends retrying
	why      Why
	started  time.Time
	attempts []*attempt
	runbooks int // still running
	ran      int // runbooks started
	applied  int // DNS actions done (ok or already_done)
}

type attempt struct {
	act     *DNSAction
	n       int       // attempts made
	next    time.Time // when the next may start
	running bool
	done    bool
	final   bool // the next run is the last look of an attempt given up
	giveUp  string
	alerted bool
}

// New starts a controller for a checked config (Config.Check): it reads the state the
// last run left in cfg.StateDir and opens the audit log there. Operations the last run
// left under way are resumed at the first Tick (Run ticks at once).
func New(cfg *Config, opts Options) (*Controller, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("failover: no state directory")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	c := &Controller{
		cfg:   *cfg,
		log:   opts.Logger,
		alert: opts.Alert,
		clock: opts.Now,
		wake:  make(chan struct{}, 1),
		sites: map[string]*site{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	for _, name := range cfg.Sites() {
		failback, recoverFor := cfg.policy(name)
		s := &site{name: name, failback: failback, recoverFor: recoverFor, state: StatePrimary,
			damper: damp.Damper{LostFor: cfg.LostFor.Duration, RecoverFor: recoverFor}}
		for i := range c.cfg.DNS {
			if c.cfg.DNS[i].Site == name {
				s.dns = append(s.dns, &c.cfg.DNS[i])
			}
		}
		for i := range c.cfg.Exec {
			if c.cfg.Exec[i].Site == name {
				s.exec = append(s.exec, &c.cfg.Exec[i])
			}
		}
		c.sites[name] = s
		c.order = append(c.order, name)
	}
	sort.Strings(c.order)

	st, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	c.hold = st.Hold
	c.saved = st.Sites
	for name, saved := range st.Sites {
		s := c.sites[name]
		if s == nil {
			c.log.Warn("failover state names a site that has no actions any more; forgotten", "site", name, "state", saved.State)
			continue
		}
		s.state, s.since, s.reason = saved.State, saved.Since, saved.Reason
		s.incident, s.handled, s.failovers = saved.Incident, saved.Handled, saved.Failovers
		s.restored = saved.Incident
		switch s.state {
		case StatePrimary, StateFailedOver, StateHeld:
		case StateFailingOver, StateFailingBack:
			action := ActionFailover
			if s.state == StateFailingBack {
				action = ActionFailback
			}
			if cfg.DryRun {
				// A dry run never writes: it takes the operation the last real run left
				// under way as done, in memory (the file keeps the real state).
				c.log.Warn("dry run: an operation under way before the restart is not resumed", "site", name, "action", action)
				s.state = targetState(action)
				continue
			}
			s.op = &operation{action: action, who: saved.Who, manual: saved.Manual, incident: saved.Incident,
				started: saved.Since, reason: "resumed after a restart"}
			for _, a := range s.dns {
				s.op.attempts = append(s.op.attempts, &attempt{act: a})
			}
		default:
			return nil, fmt.Errorf("failover state: site %s has an unknown state %q", name, s.state)
		}
	}
	if c.audit, err = openAudit(cfg.StateDir, cfg.AuditMaxBytes); err != nil {
		return nil, err
	}
	return c, nil
}

// Update records a verdict of site (one without actions is ignored) and acts on it.
// It waits for no server, but when it decides it writes the audit log first (one fsync).
func (c *Controller) Update(site string, v Verdict) {
	s := c.sites[site]
	if s == nil {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now := c.advance(v.Time)
	if s.restored {
		// The last run saw the site lost: resume as lost, so that a site up at the restart
		// is failed back only after recover_for, and one still lost is not failed over again.
		s.damper.Update(damp.VerdictLost, now.Add(-c.cfg.LostFor.Duration))
		s.restored = false
	}
	v.Time = now
	s.verdict = v
	s.damper.Update(v.State, now)
	c.stepSite(s, now)
	c.unlockAndAlert()
	c.poke()
}

// Tick acts on what time alone changes: a loss that has lasted lost_for, a recovery
// that has lasted recover_for, a retry that is due. Run calls it at Next.
func (c *Controller) Tick(now time.Time) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now = c.advance(now)
	for _, name := range c.order {
		c.stepSite(c.sites[name], now)
	}
	c.unlockAndAlert()
}

// Next is the earliest time at which Tick may have something to do, zero for none.
func (c *Controller) Next() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	consider := func(t time.Time) {
		// Only the future: what is due now was done by the last step, or waits for
		// something else (a silence, the hold), and must not spin Run.
		if t.After(c.last) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, name := range c.order {
		s := c.sites[name]
		if !s.verdict.Time.IsZero() {
			consider(s.damper.Next(c.last))
		}
		if s.state == StateHeld && len(s.failovers) > 0 && c.hold == nil {
			consider(s.failovers[0].Add(time.Hour)) // the rate window frees a failover
		}
		if s.op == nil || c.hold != nil && !s.op.manual {
			continue
		}
		for _, a := range s.op.attempts {
			if !a.done && !a.running {
				consider(a.next)
			}
		}
	}
	return at
}

// Run ticks the controller at Next and whenever something changed, until ctx ends;
// then it stops the attempts under way (a restart resumes them) and closes the audit
// log.
func (c *Controller) Run(ctx context.Context) error {
	defer c.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-c.wake:
		}
		c.Tick(c.clock())
		timer.Stop()
		if next := c.Next(); !next.IsZero() {
			timer.Reset(max(next.Sub(c.clock()), time.Millisecond))
		}
	}
}

// Close stops the attempts under way without recording them as failed, waits for them,
// and closes the audit log.
func (c *Controller) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.jobs.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flush()
	return c.audit.close()
}

// poke wakes Run without blocking.
func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Controller) advance(t time.Time) time.Time {
	if t.After(c.last) {
		c.last = t
	}
	return c.last
}

// stepSite makes the decisions due for s at now and starts the attempts that are due.
func (c *Controller) stepSite(s *site, now time.Time) {
	if !s.verdict.Time.IsZero() {
		c.decide(s, now)
	}
	if s.op != nil {
		c.launch(s, now)
	}
}

func (c *Controller) decide(s *site, now time.Time) {
	incident := s.damper.Firing(now) == damp.Lost
	if incident != s.incident {
		s.incident, s.handled = incident, false
		c.persist()
	}
	silenced := s.verdict.Silenced
	switch s.state {
	case StatePrimary, StateHeld:
		if !s.incident {
			if s.state == StateHeld {
				c.log.Info("failover no longer due: the site recovered", "site", s.name, "held", s.reason)
				s.state, s.since, s.reason = StatePrimary, now, ""
				c.persist()
			}
			return
		}
		if s.handled || silenced {
			return
		}
		c.tryFailover(s, now)
	case StateFailedOver:
		if s.incident || s.handled || silenced || s.failback != FailbackAuto || c.hold != nil {
			return
		}
		s.handled = true
		c.startOp(s, ActionFailback, WhoController, fmt.Sprintf("the site has been up for recover_for %s", s.recoverFor), false, now)
	}
}

// tryFailover fails s over unless a guard rail holds it.
func (c *Controller) tryFailover(s *site, now time.Time) {
	if c.hold != nil {
		c.setHeld(s, now, heldBy(c.hold))
		return
	}
	s.failovers = slices.DeleteFunc(s.failovers, func(t time.Time) bool { return !t.After(now.Add(-time.Hour)) })
	if n := len(s.failovers); n >= c.cfg.MaxFailoversPerHour {
		c.setHeld(s, now, fmt.Sprintf("max_failovers_per_hour %d reached: %d failovers since %s; due again at %s",
			c.cfg.MaxFailoversPerHour, n, s.failovers[0].UTC().Format(time.RFC3339), s.failovers[0].Add(time.Hour).UTC().Format(time.RFC3339)))
		return
	}
	var active []string
	for _, name := range c.order {
		if o := c.sites[name]; o != s && isActive(o.state) {
			active = append(active, name)
		}
	}
	if len(active) >= c.cfg.MaxConcurrentFailovers {
		reason := fmt.Sprintf("site %s lost while %d site(s) are failed over or failing over (%s): more than max_concurrent_failovers %d at once; the view's own vantage may be broken",
			s.name, len(active), strings.Join(active, ", "), c.cfg.MaxConcurrentFailovers)
		c.hold = &HoldInfo{Reason: reason, Who: WhoController, Since: now}
		r := c.record(Record{Time: now, Decision: DecisionHold, Who: WhoController, Reason: reason, Why: c.why(s)})
		c.raise(AlertHold, "failover actions held: "+reason, r)
		c.setHeld(s, now, heldBy(c.hold))
		return
	}
	s.failovers = append(s.failovers, now)
	s.handled = true
	c.startOp(s, ActionFailover, WhoController, fmt.Sprintf("lost for lost_for %s", c.cfg.LostFor), false, now)
}

func heldBy(h *HoldInfo) string {
	return fmt.Sprintf("global hold by %s: %s", h.Who, h.Reason)
}

func isActive(state string) bool {
	return state == StateFailingOver || state == StateFailedOver || state == StateFailingBack
}

// setHeld holds a due failover of s, recording and alerting once per reason.
func (c *Controller) setHeld(s *site, now time.Time, reason string) {
	if s.state == StateHeld && s.reason == reason {
		return
	}
	s.state, s.since, s.reason = StateHeld, now, reason
	c.persist()
	r := c.record(Record{Time: now, Site: s.name, Decision: DecisionHeld, Action: ActionFailover, Who: WhoController, Reason: reason, Why: c.why(s)})
	c.raise(AlertHeld, fmt.Sprintf("failover of %s held: %s", s.name, reason), r)
}

func (c *Controller) why(s *site) *Why {
	if s.verdict.Time.IsZero() {
		return nil
	}
	v := s.verdict
	return &Why{Verdict: v.State, Since: v.Since, Witnesses: v.Witnesses, Down: v.Down, DetectSeconds: v.DetectSeconds,
		Silenced: v.Silenced, LostFor: c.cfg.LostFor.String()}
}

// startOp begins a failover or failback of s: the state first (so that a crash resumes
// it), then, unless dry_run, the runbooks and the first attempt of each DNS update.
func (c *Controller) startOp(s *site, action, who, reason string, manual bool, now time.Time) {
	why := c.why(s)
	if c.cfg.DryRun {
		for _, a := range s.dns {
			from, to := a.sets(action)
			c.record(Record{Time: now, Site: s.name, Decision: DecisionDryRun, Action: action, Who: who,
				Reason: fmt.Sprintf("dry run: would rewrite %s %s from %s to %s (%s)", a.Name, a.Type, describeRecords(from), describeRecords(to), reason),
				Why:    why, DNS: a.step(from, to)})
		}
		for _, e := range s.exec {
			if e.runsOn(action) {
				c.record(Record{Time: now, Site: s.name, Decision: DecisionDryRun, Action: action, Who: who,
					Reason: fmt.Sprintf("dry run: would run %s (%s)", strings.Join(e.Command, " "), reason),
					Why:    why, Exec: &ExecStep{Command: e.Command, Exit: -1}})
			}
		}
		s.state, s.since, s.reason = targetState(action), now, ""
		c.persist()
		return
	}
	state := StateFailingOver
	if action == ActionFailback {
		state = StateFailingBack
	}
	s.state, s.since, s.reason = state, now, ""
	op := &operation{action: action, who: who, reason: reason, manual: manual, incident: s.incident, started: now}
	if why != nil {
		op.why = *why
	}
	s.op = op
	for _, a := range s.dns {
		op.attempts = append(op.attempts, &attempt{act: a, next: now})
	}
	c.persist()
	c.log.Info("failover action begins", "site", s.name, "action", action, "who", who, "reason", reason)
	in := RunbookInput{Site: s.name, Action: action, Time: now, Who: who, Reason: reason}
	if why != nil {
		in.Verdict, in.Since, in.Witnesses, in.Down, in.DetectSeconds = why.Verdict, why.Since, why.Witnesses, why.Down, why.DetectSeconds
	}
	c.flush() // the state says failing_over before anything is done
	for _, e := range s.exec {
		if !e.runsOn(action) {
			continue
		}
		op.runbooks++
		op.ran++
		c.jobs.Add(1)
		go func() {
			defer c.jobs.Done()
			step := e.run(c.ctx, in)
			c.finishRunbook(s, op, e, step)
		}()
	}
	c.launch(s, now)
	c.maybeComplete(s, now)
}

// sets is what the action expects the RRset to hold before action, and what it writes.
func (a *DNSAction) sets(action string) (from, to []string) {
	if action == ActionFailback {
		return a.failover, a.primary
	}
	return a.primary, a.failover
}

func (a *DNSAction) step(from, to []string) *DNSStep {
	return &DNSStep{Server: a.Server, Zone: a.Zone, Name: a.Name, Type: a.Type, From: from, To: to, TTL: int(a.ttlSeconds())}
}

func targetState(action string) string {
	if action == ActionFailback {
		return StatePrimary
	}
	return StateFailedOver
}

// launch starts the attempts of s's operation that are due at now. Under the global
// hold only an operator's failback goes on; a changed incident ends the retries of the
// controller's own operation (the site recovered during a failover, or was lost again
// during a failback), after one last look at the RRset.
func (c *Controller) launch(s *site, now time.Time) {
	op := s.op
	if c.hold != nil && !op.manual || c.closed {
		return
	}
	c.flush()
	for _, a := range op.attempts {
		if a.done || a.running || now.Before(a.next) {
			continue
		}
		if !a.final && a.n > 0 {
			switch {
			case a.n >= c.cfg.MaxAttempts:
				a.final, a.giveUp = true, fmt.Sprintf("gave up after %d attempts (max_attempts)", a.n)
			case !op.manual && s.incident != op.incident:
				a.final, a.giveUp = true, fmt.Sprintf("stopped after %d attempts: the site's verdict changed", a.n)
			}
		}
		a.running = true
		if !a.final {
			a.n++
		}
		from, to := a.act.sets(op.action)
		final, n := a.final, a.n
		c.jobs.Add(1)
		go func() {
			defer c.jobs.Done()
			res := a.act.apply(c.ctx, from, to, final)
			c.finishDNS(s, op, a, n, res)
		}()
	}
}

// finishDNS records what came of one DNS attempt and decides what follows.
func (c *Controller) finishDNS(s *site, op *operation, a *attempt, n int, res dnsResult) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return // stopped by Close: the saved state resumes the operation
	}
	now := c.advance(c.clock())
	a.running = false
	from, to := a.act.sets(op.action)
	step := a.act.step(from, to)
	step.Found, step.Seconds = res.found, res.took.Seconds()
	r := Record{Time: now, Site: s.name, Action: op.action, Who: op.who, Reason: op.reason, Why: &op.why, DNS: step,
		Rcode: res.rcode, Error: res.err, Attempt: n}
	if op.why.Verdict == "" {
		r.Why = nil
	}
	switch {
	case res.outcome == outcomeOK:
		r.Decision = op.action
		a.done = true
		op.applied++
	case res.outcome == outcomeAlreadyDone:
		r.Decision = DecisionAlreadyDone
		if a.final {
			r.Reason = a.giveUp + "; yet the RRset holds the target: done"
		}
		a.done = true
		op.applied++
	case res.outcome == outcomeConflict:
		r.Decision = DecisionConflict
		a.done = true
		c.raise(AlertConflict, fmt.Sprintf("%s of %s: %s %s: %s", op.action, s.name, a.act.Name, a.act.Type, res.err), c.record(r))
		c.maybeComplete(s, now)
		c.unlockAndAlert()
		c.poke()
		return
	case a.final:
		r.Decision = DecisionError
		r.Reason = a.giveUp
		if res.outcome == outcomeUnchanged {
			r.Error = "the RRset still holds " + describeRecords(res.found)
		}
		a.done = true
		c.raise(AlertError, fmt.Sprintf("%s of %s: %s %s %s: %s", op.action, s.name, a.act.Name, a.act.Type, a.giveUp, r.Error), c.record(r))
		c.maybeComplete(s, now)
		c.unlockAndAlert()
		c.poke()
		return
	default: // a retry
		r.Decision = DecisionRetry
		d := backoff(c.cfg.RetryMin.Duration, c.cfg.RetryMax.Duration, n)
		a.next = now.Add(d)
		r.Reason = fmt.Sprintf("attempt %d failed; next in %s", n, d.Round(time.Millisecond))
		rec := c.record(r)
		if !a.alerted {
			a.alerted = true
			c.raise(AlertRetry, fmt.Sprintf("%s of %s: %s %s on %s refused or unanswered (%s), retrying", op.action, s.name, a.act.Name, a.act.Type, a.act.Server, firstNonEmpty(res.rcode, res.err)), rec)
		}
		c.unlockAndAlert()
		c.poke()
		return
	}
	c.record(r)
	c.maybeComplete(s, now)
	c.unlockAndAlert()
	c.poke()
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// backoff is the delay before attempt n+1: min doubled per attempt up to max, with
// "equal jitter" (half fixed, half random), so that views retrying the same server do
// not stay in step.
func backoff(minDelay, maxDelay time.Duration, n int) time.Duration {
	d := minDelay
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

func (c *Controller) finishRunbook(s *site, op *operation, e *ExecAction, step ExecStep) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now := c.advance(c.clock())
	op.runbooks--
	r := Record{Time: now, Site: s.name, Action: op.action, Who: op.who, Reason: op.reason, Why: &op.why, Exec: &step}
	if op.why.Verdict == "" {
		r.Why = nil
	}
	if step.Exit == 0 && !step.TimedOut {
		r.Decision = op.action
		c.record(r)
	} else {
		r.Decision = DecisionError
		switch {
		case step.TimedOut:
			r.Error = fmt.Sprintf("runbook killed after timeout %s", e.Timeout)
		case step.Exit < 0:
			r.Error = "runbook did not run or did not exit: " + firstLine(step.Output)
		default:
			r.Error = fmt.Sprintf("runbook exited with status %d", step.Exit)
		}
		c.raise(AlertError, fmt.Sprintf("%s of %s: %s: %s", op.action, s.name, strings.Join(step.Command, " "), r.Error), c.record(r))
	}
	c.maybeComplete(s, now)
	c.unlockAndAlert()
	c.poke()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// maybeComplete ends s's operation once every attempt is done and every runbook has
// finished. A failover counts when any RRset was rewritten (or there are none, only
// runbooks); a failback only when every RRset is back, so that the rest can be retried.
func (c *Controller) maybeComplete(s *site, now time.Time) {
	op := s.op
	if op == nil || op.runbooks > 0 {
		return
	}
	for _, a := range op.attempts {
		if !a.done {
			return
		}
	}
	s.op = nil
	if len(op.attempts) == 0 && op.ran == 0 {
		// Nothing to do for this action (a runbook-only site failing back): still on record.
		r := Record{Time: now, Site: s.name, Decision: op.action, Action: op.action, Who: op.who,
			Reason: op.reason + "; no DNS action or runbook for a " + op.action, Why: &op.why}
		if op.why.Verdict == "" {
			r.Why = nil
		}
		c.record(r)
	}
	switch op.action {
	case ActionFailover:
		s.state = StatePrimary
		if op.applied > 0 || len(op.attempts) == 0 {
			s.state = StateFailedOver
		}
	case ActionFailback:
		s.state = StateFailedOver
		if op.applied == len(op.attempts) {
			s.state = StatePrimary
		}
	}
	s.since = now
	c.persist()
	c.log.Info("failover action ended", "site", s.name, "action", op.action, "state", s.state,
		"applied", op.applied, "of", len(op.attempts), "took", now.Sub(op.started))
	if !s.verdict.Time.IsZero() {
		c.decide(s, now) // the site may have changed while the operation ran
	}
}

// record appends r to the audit log and counts it; it returns r for an alert.
func (c *Controller) record(r Record) Record {
	c.metrics.count(r)
	if err := c.audit.append(r); err != nil {
		c.metrics.auditErrors++
		c.log.Error("failover audit log", "error", err)
		c.pending = append(c.pending, Alert{Kind: AlertError, Site: r.Site, Time: r.Time,
			Summary: "the failover audit log cannot be written: " + err.Error(), Record: r})
	}
	return r
}

func (c *Controller) raise(kind, summary string, r Record) {
	c.log.Warn("failover alert", "kind", kind, "site", r.Site, "summary", summary)
	c.pending = append(c.pending, Alert{Kind: kind, Site: r.Site, Time: r.Time, Summary: summary, Record: r})
}

// unlockAndAlert releases the lock and delivers the alerts raised under it.
func (c *Controller) unlockAndAlert() {
	c.flush()
	alerts := c.pending
	c.pending = nil
	c.mu.Unlock()
	if c.alert == nil {
		return
	}
	for _, a := range alerts {
		c.alert(a)
	}
}

// persist marks the state file as behind; flush writes it before anything is sent to a
// server or run, and before the lock is released, so several changes in one step cost
// one write.
func (c *Controller) persist() { c.dirty = true }

// flush writes the state file if it is behind. In dry run the sites' simulated states
// stay in memory and the file keeps the real ones; the hold is real in either mode.
func (c *Controller) flush() {
	if !c.dirty {
		return
	}
	c.dirty = false
	st := &savedState{Version: stateVersion, Hold: c.hold, Sites: map[string]*savedSite{}}
	if c.cfg.DryRun {
		st.Sites = c.saved
	} else {
		for _, name := range c.order {
			s := c.sites[name]
			saved := &savedSite{State: s.state, Since: s.since, Reason: s.reason, Incident: s.incident,
				Handled: s.handled, Failovers: s.failovers}
			if s.op != nil {
				saved.Action, saved.Who, saved.Manual = s.op.action, s.op.who, s.op.manual
			}
			st.Sites[name] = saved
		}
	}
	if err := saveState(c.cfg.StateDir, st); err != nil {
		c.log.Error("failover state not saved; a restart may repeat or forget an action", "error", err)
		c.metrics.auditErrors++
		c.pending = append(c.pending, Alert{Kind: AlertError, Time: c.last,
			Summary: "the failover state cannot be saved: " + err.Error()})
	}
}

// Hold stops every further action until Release: no failover, no automatic failback,
// no retry. An operator's failback still goes through.
func (c *Controller) Hold(reason, who string) error {
	if strings.TrimSpace(reason) == "" {
		return ErrNoReason
	}
	c.mu.Lock()
	if c.hold != nil {
		h := *c.hold
		c.mu.Unlock()
		return fmt.Errorf("%w (by %s since %s: %s)", ErrHeld, h.Who, h.Since.UTC().Format(time.RFC3339), h.Reason)
	}
	now := c.advance(c.clock())
	c.hold = &HoldInfo{Reason: reason, Who: who, Since: now}
	c.persist()
	c.record(Record{Time: now, Decision: DecisionHold, Who: who, Reason: reason})
	c.log.Warn("failover actions held", "who", who, "reason", reason)
	c.unlockAndAlert()
	c.poke()
	return nil
}

// Release ends the global hold; whatever is due then (a held failover of a site still
// lost, a retry) happens at once, the guard rails applying again.
func (c *Controller) Release(who string) error {
	c.mu.Lock()
	if c.hold == nil {
		c.mu.Unlock()
		return ErrNotHeld
	}
	now := c.advance(c.clock())
	h := c.hold
	c.hold = nil
	c.persist()
	c.record(Record{Time: now, Decision: DecisionRelease, Who: who, Reason: "released the hold: " + h.Reason})
	c.log.Info("failover hold released", "who", who)
	for _, name := range c.order {
		s := c.sites[name]
		if s.state == StateHeld {
			s.handled = false
		}
		c.stepSite(s, now)
	}
	c.unlockAndAlert()
	c.poke()
	return nil
}

// Failback returns a failed-over site to its primary records now, whatever its
// failback setting: an operator's decision, so it goes through a hold too.
func (c *Controller) Failback(site, who string) error {
	s := c.sites[site]
	if s == nil {
		return ErrUnknownSite
	}
	c.mu.Lock()
	switch {
	case s.op != nil:
		c.mu.Unlock()
		return fmt.Errorf("%w (%s)", ErrBusy, s.state)
	case s.state != StateFailedOver:
		state := s.state
		c.mu.Unlock()
		return fmt.Errorf("%w (it is %s)", ErrNotFailedOver, state)
	}
	now := c.advance(c.clock())
	s.handled = true // not failed over again in the same incident
	c.startOp(s, ActionFailback, who, "failback by "+who, true, now)
	c.unlockAndAlert()
	c.poke()
	return nil
}

// Audit returns up to limit of the latest audit records, newest first.
func (c *Controller) Audit(limit int) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.audit.latest(limit)
}

// Status is the controller's state for the API and the page.
type Status struct {
	DryRun                 bool         `json:"dry_run"`
	Hold                   *HoldInfo    `json:"hold"`
	MaxConcurrentFailovers int          `json:"max_concurrent_failovers"`
	MaxFailoversPerHour    int          `json:"max_failovers_per_hour"`
	LostFor                string       `json:"lost_for"`
	Active                 int          `json:"active"` // sites failed over or failing over or back
	Sites                  []SiteStatus `json:"sites"`
}

// SiteStatus is one site's part of Status.
type SiteStatus struct {
	Site              string    `json:"site"`
	State             string    `json:"state"`
	Since             time.Time `json:"since"`
	Reason            string    `json:"reason,omitempty"` // why held
	Failback          string    `json:"failback"`
	RecoverFor        string    `json:"recover_for"`
	Verdict           string    `json:"verdict,omitempty"` // the latest, "" before the first
	Silenced          bool      `json:"silenced,omitempty"`
	Lost              bool      `json:"lost"` // the damped verdict: an incident is on
	FailoversLastHour int       `json:"failovers_last_hour"`
	Actions           []string  `json:"actions"` // what it rewrites and runs
	Last              []Record  `json:"last"`    // its latest audit records, newest first
}

// lastPerSite is how many records Status shows per site.
const lastPerSite = 5

// Status reports the hold and every site's state.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{DryRun: c.cfg.DryRun, Hold: c.hold, MaxConcurrentFailovers: c.cfg.MaxConcurrentFailovers,
		MaxFailoversPerHour: c.cfg.MaxFailoversPerHour, LostFor: c.cfg.LostFor.String(), Sites: []SiteStatus{}}
	recent := c.audit.latest(auditKeep)
	for _, name := range c.order {
		s := c.sites[name]
		if isActive(s.state) {
			st.Active++
		}
		ss := SiteStatus{Site: name, State: s.state, Since: s.since, Reason: s.reason, Failback: s.failback,
			RecoverFor: s.recoverFor.String(), Verdict: s.verdict.State, Silenced: s.verdict.Silenced, Lost: s.incident,
			Actions: []string{}, Last: []Record{}}
		for _, t := range s.failovers {
			if t.After(c.last.Add(-time.Hour)) {
				ss.FailoversLastHour++
			}
		}
		for _, a := range s.dns {
			ss.Actions = append(ss.Actions, fmt.Sprintf("dns %s %s on %s", a.Name, a.Type, a.Server))
		}
		for _, e := range s.exec {
			ss.Actions = append(ss.Actions, fmt.Sprintf("exec %s on %s", strings.Join(e.Command, " "), strings.Join(e.On, ", ")))
		}
		for _, r := range recent {
			if r.Site == name {
				ss.Last = append(ss.Last, r)
				if len(ss.Last) == lastPerSite {
					break
				}
			}
		}
		st.Sites = append(st.Sites, ss)
	}
	return st
}

// Enabled says whether the config has any action, that is whether the view needs a
// controller.
func (c *Config) Enabled() bool { return len(c.DNS)+len(c.Exec) > 0 }
