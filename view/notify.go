package view

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/internal/damp"
	"github.com/edgeprobe/edgeprobe/internal/httpretry"
	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// A notifier tells people that a site is lost or partitioned, and that it is back. It
// sends what its alerts assert (damped: docs/architecture.md, "Acting on a verdict") and keeps
// per site what it last delivered, not a queue of changes: a notification that failed,
// or a silence that ended, is caught up by comparing the two, so the receiver always
// ends in the current state, however many changes came and went while it was slow.
type notifier interface {
	observe(site string, st siteStatus) // never blocks: called with the verdicts
	actionAlert(failover.Alert)         // never blocks: what the failover found alert-worthy
	run(ctx context.Context)
}

var (
	_ notifier = (*webhook)(nil)
	_ notifier = (*alertmanager)(nil)
)

// siteStatus is what a notifier hears of a site: its verdict, the change that gave it,
// and whether the site is silenced.
type siteStatus struct {
	Verdict             string // a verdict, or VerdictForgotten
	From                string
	Time                time.Time // of the last change (or silence change)
	Since               time.Time // when the verdict began
	Silenced            bool
	Witnesses, Down, Up int
	Detect              *float64
}

// Alert names of the view's alerts.
const (
	AlertLost        = "EdgeprobeSiteLost"
	AlertPartitioned = "EdgeprobeSitePartitioned"
)

// alertName and severity of what a damp.Firing asserts.
func alertName(f damp.Firing) string {
	if f == damp.Partitioned {
		return AlertPartitioned
	}
	return AlertLost
}

func severity(f damp.Firing) string {
	if f == damp.Partitioned {
		return "warning"
	}
	return "critical"
}

// siteAlert is one site as a notifier sees it.
type siteAlert struct {
	damper      damp.Damper
	status      siteStatus
	delivered   damp.Firing // what the receiver was last told, successfully
	firingSince time.Time   // when delivered began to fire
	gone        bool        // forgotten: resolve what fires, then drop
}

// desired is what should fire at now: a silenced site is left as it was delivered
// (silenced means "notify nothing"), a forgotten one resolves.
func (a *siteAlert) desired(now time.Time) damp.Firing {
	switch {
	case a.gone:
		return damp.None
	case a.status.Silenced:
		return a.delivered
	}
	return a.damper.Firing(now)
}

// alerts is the per-site state of one notifier.
type alerts struct {
	name       string
	lostFor    time.Duration
	recoverFor time.Duration
	metrics    *viewMetrics
	log        *slog.Logger

	mu    sync.Mutex
	sites map[string]*siteAlert
	wake  chan struct{} // capacity 1
	// actions are the failover's alerts, sent once each as they come; a full queue drops
	// (and counts) them: they are also in the audit log and on /metrics.
	actions chan failover.Alert
}

// actionQueue is how many failover alerts a notifier holds while its receiver is slow.
const actionQueue = 64

func (a *alerts) actionAlert(al failover.Alert) {
	select {
	case a.actions <- al:
	default:
		a.metrics.notifications.WithLabelValues(a.name, "dropped").Inc()
	}
}

func newAlerts(name string, d Damping, m *viewMetrics, log *slog.Logger) *alerts {
	return &alerts{name: name, lostFor: d.LostFor.Duration, recoverFor: d.RecoverFor.Duration, metrics: m, log: log,
		sites: map[string]*siteAlert{}, wake: make(chan struct{}, 1), actions: make(chan failover.Alert, actionQueue)}
}

func (a *alerts) observe(site string, st siteStatus) {
	a.mu.Lock()
	sa := a.sites[site]
	if sa == nil {
		sa = &siteAlert{damper: damp.Damper{LostFor: a.lostFor, RecoverFor: a.recoverFor}}
		a.sites[site] = sa
	}
	sa.status = st
	if st.Verdict == VerdictForgotten {
		sa.gone = true
	} else {
		sa.gone = false
		sa.damper.Update(st.Verdict, st.Time)
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// transition is one site whose receiver must be told something.
type transition struct {
	site     string
	from, to damp.Firing
	since    time.Time // when from began to fire
	status   siteStatus
}

// pending lists the sites whose delivered state differs from what should fire at now, by
// name, and the next time something may change without a new verdict (zero: nothing
// will). Forgotten sites that have nothing left to resolve are dropped.
func (a *alerts) pending(now time.Time) ([]transition, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []transition
	var next time.Time
	for site, sa := range a.sites {
		want := sa.desired(now)
		if want != sa.delivered {
			out = append(out, transition{site: site, from: sa.delivered, to: want, since: sa.firingSince, status: sa.status})
		} else if sa.gone {
			delete(a.sites, site)
			continue
		}
		if t := sa.damper.Next(now); !t.IsZero() && !sa.status.Silenced && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	slices.SortFunc(out, func(x, y transition) int { return strings.Compare(x.site, y.site) })
	return out, next
}

// delivered records that the receiver now knows that site is at f, since since.
func (a *alerts) delivered(site string, f damp.Firing, since time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sa := a.sites[site]; sa != nil {
		sa.delivered, sa.firingSince = f, since
	}
}

// firing lists the sites whose receiver was told they fire, with what and since when.
func (a *alerts) firing() []transition {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []transition
	for site, sa := range a.sites {
		if sa.delivered != damp.None {
			out = append(out, transition{site: site, from: sa.delivered, to: sa.delivered, since: sa.firingSince, status: sa.status})
		}
	}
	slices.SortFunc(out, func(x, y transition) int { return strings.Compare(x.site, y.site) })
	return out
}

// loop runs a notifier: deliver is called for each pending transition when anything may
// have changed (a verdict, a deadline of the damping, the retry of what failed) and
// reports whether it was delivered; action for each failover alert; tick, if set, runs
// every resend.
func (a *alerts) loop(ctx context.Context, retry time.Duration, deliver func(context.Context, transition) bool,
	action func(context.Context, failover.Alert), resend time.Duration, tick func(context.Context)) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var resendC <-chan time.Time
	if tick != nil && resend > 0 {
		t := time.NewTicker(resend)
		defer t.Stop()
		resendC = t.C
	}
	for {
		now := time.Now()
		todo, next := a.pending(now)
		failed := false
		for _, tr := range todo {
			if ctx.Err() != nil {
				return
			}
			if deliver(ctx, tr) {
				since := tr.since
				if tr.to != damp.None && tr.from != tr.to {
					since = now
				}
				a.delivered(tr.site, tr.to, since)
			} else {
				failed = true
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(0, time.Until(next))
		}
		if failed {
			wait = min(wait, retry)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-timer.C:
		case al := <-a.actions:
			action(ctx, al)
		case <-resendC:
			tick(ctx)
		}
		timer.Stop()
	}
}

// maxRetryDelay caps the backoff between attempts, and the longest Retry-After honoured.
const maxRetryDelay = 10 * time.Second

func newPoster(client *http.Client, maxRetries int, retryBase time.Duration) *httpretry.Poster {
	return &httpretry.Poster{Client: client, MaxRetries: maxRetries, Base: retryBase, Max: maxRetryDelay}
}

// post sends one JSON body and counts the outcome.
func (a *alerts) post(ctx context.Context, p *httpretry.Poster, url string, payload any, sign func(http.Header, []byte)) bool {
	body, err := json.Marshal(payload)
	if err != nil {
		a.log.Error("encode notification", "notifier", a.name, "error", err)
		a.metrics.notifications.WithLabelValues(a.name, "failed").Inc()
		return false
	}
	header := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"edgeprobe-view"}}
	if err := p.Post(ctx, url, body, header, sign); err != nil {
		if ctx.Err() == nil {
			a.log.Error("notification failed; will try again", "notifier", a.name, "url", netcheck.Redact(url), "error", err)
			a.metrics.notifications.WithLabelValues(a.name, "failed").Inc()
		}
		return false
	}
	a.metrics.notifications.WithLabelValues(a.name, "sent").Inc()
	return true
}

// WebhookPayload is the JSON body a webhook receives: one per alert that starts
// (status firing) or ends (status resolved).
type WebhookPayload struct {
	Site          string    `json:"site"`
	Status        string    `json:"status"` // firing or resolved
	Alert         string    `json:"alert"`  // lost or partitioned
	Verdict       string    `json:"verdict"`
	From          string    `json:"from"` // the site's last verdict change
	To            string    `json:"to"`
	Time          time.Time `json:"time"`
	DetectSeconds *float64  `json:"detect_seconds,omitempty"`
	Witnesses     int       `json:"witnesses"`
	Down          int       `json:"down"`
	Up            int       `json:"up"`
}

// Webhook signature headers: X-Edgeprobe-Signature is "sha256=" and the hex HMAC-SHA256,
// with the webhook's secret, of X-Edgeprobe-Timestamp (Unix seconds), a dot and the body.
// A receiver recomputes it and refuses a timestamp far from its clock (a replay).
const (
	SignatureHeader = "X-Edgeprobe-Signature"
	TimestampHeader = "X-Edgeprobe-Timestamp"
)

// Sign is the X-Edgeprobe-Signature value of body sent at timestamp with secret.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

type webhook struct {
	url    string
	secret []byte // nil: unsigned
	poster *httpretry.Poster
	*alerts
}

func newWebhook(cfg WebhookConfig, retryBase time.Duration, m *viewMetrics, log *slog.Logger) (*webhook, error) {
	w := &webhook{
		url:    cfg.URL,
		poster: newPoster(&http.Client{Timeout: cfg.Timeout.Duration}, cfg.MaxRetries, retryBase),
		alerts: newAlerts("webhook", cfg.Damping, m, log),
	}
	if cfg.SecretFile != "" {
		data, err := tomlconf.ReadFileLimit(cfg.SecretFile, tomlconf.MaxSecretBytes)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: secret_file: %w", netcheck.Redact(cfg.URL), err)
		}
		if w.secret = []byte(strings.TrimSpace(string(data))); len(w.secret) == 0 {
			return nil, fmt.Errorf("webhook %s: secret_file %s is empty", netcheck.Redact(cfg.URL), cfg.SecretFile)
		}
	}
	return w, nil
}

func (w *webhook) sign(h http.Header, body []byte) {
	if w.secret == nil {
		return
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h.Set(TimestampHeader, ts)
	h.Set(SignatureHeader, Sign(w.secret, ts, body))
}

func (w *webhook) run(ctx context.Context) {
	w.loop(ctx, maxRetryDelay*3, w.deliver, w.deliverAction, 0, nil)
}

// ActionPayload is the JSON body a webhook receives for a failover alert: an action a
// guard rail held, the hold engaged, an update refused and retried, a conflict.
type ActionPayload struct {
	Site    string          `json:"site,omitempty"`
	Status  string          `json:"status"` // always firing: an event, not a state
	Alert   string          `json:"alert"`  // "failover_" and the kind
	Summary string          `json:"summary"`
	Time    time.Time       `json:"time"`
	Record  failover.Record `json:"record"`
}

func (w *webhook) deliverAction(ctx context.Context, al failover.Alert) {
	w.post(ctx, w.poster, w.url, ActionPayload{Site: al.Site, Status: "firing", Alert: "failover_" + al.Kind,
		Summary: al.Summary, Time: al.Time, Record: al.Record}, w.sign)
}

// deliver tells the webhook of one transition: the alert that ends, then the one that
// starts (partitioned to lost is both).
func (w *webhook) deliver(ctx context.Context, tr transition) bool {
	payload := func(status string, f damp.Firing) WebhookPayload {
		st := tr.status
		return WebhookPayload{Site: tr.site, Status: status, Alert: f.String(), Verdict: st.Verdict, From: st.From, To: st.Verdict,
			Time: st.Time, DetectSeconds: st.Detect, Witnesses: st.Witnesses, Down: st.Down, Up: st.Up}
	}
	if tr.from != damp.None && !w.post(ctx, w.poster, w.url, payload("resolved", tr.from), w.sign) {
		return false
	}
	if tr.to != damp.None && !w.post(ctx, w.poster, w.url, payload("firing", tr.to), w.sign) {
		w.delivered(tr.site, damp.None, time.Time{}) // the old alert did end
		return false
	}
	return true
}

// alertmanager speaks Alertmanager's API v2. Alertmanager forgets an alert whose endsAt
// has passed, so firing alerts carry an endsAt a few resend periods ahead and are sent
// again every resend period; an alert that ends is sent with endsAt = now.
type alertmanager struct {
	url          string
	resend       time.Duration
	generatorURL string
	poster       *httpretry.Poster
	*alerts
}

type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

func newAlertmanager(cfg AlertmanagerConfig, retryBase time.Duration, generatorURL string, m *viewMetrics, log *slog.Logger) *alertmanager {
	return &alertmanager{
		url:          strings.TrimSuffix(cfg.URL, "/") + "/api/v2/alerts",
		resend:       cfg.Resend.Duration,
		generatorURL: generatorURL,
		poster:       newPoster(&http.Client{Timeout: cfg.Timeout.Duration}, cfg.MaxRetries, retryBase),
		alerts:       newAlerts("alertmanager", cfg.Damping, m, log),
	}
}

func (a *alertmanager) run(ctx context.Context) {
	a.loop(ctx, a.resend, a.deliver, a.deliverAction, a.resend, a.refresh)
}

// AlertFailover is the alertname of the failover's alerts; its kind label says which.
const AlertFailover = "EdgeprobeFailoverAction"

// deliverAction sends a failover alert; it is not re-sent, so Alertmanager keeps it for
// three resend periods.
func (a *alertmanager) deliverAction(ctx context.Context, al failover.Alert) {
	labels := map[string]string{"alertname": AlertFailover, "kind": al.Kind, "severity": "critical"}
	if al.Site != "" {
		labels["site"] = al.Site
	}
	a.post(ctx, a.poster, a.url, []amAlert{{
		Labels:       labels,
		Annotations:  map[string]string{"summary": al.Summary},
		StartsAt:     al.Time,
		EndsAt:       time.Now().Add(3 * a.resend),
		GeneratorURL: a.generatorURL,
	}}, nil)
}

// deliver sends the end of the alert that fired (if any) and the start of the new one.
func (a *alertmanager) deliver(ctx context.Context, tr transition) bool {
	now := time.Now()
	var batch []amAlert
	if tr.from != damp.None {
		al := a.alert(tr.site, tr.from, tr.since, tr.status)
		al.EndsAt = now
		al.Annotations["recovered_to"] = tr.status.Verdict
		batch = append(batch, al)
	}
	if tr.to != damp.None {
		al := a.alert(tr.site, tr.to, now, tr.status)
		al.EndsAt = now.Add(3 * a.resend)
		batch = append(batch, al)
	}
	return a.post(ctx, a.poster, a.url, batch, nil)
}

// refresh re-sends every firing alert with a later endsAt, so that Alertmanager keeps it.
func (a *alertmanager) refresh(ctx context.Context) {
	firing := a.firing()
	if len(firing) == 0 {
		return
	}
	batch := make([]amAlert, 0, len(firing))
	for _, tr := range firing {
		al := a.alert(tr.site, tr.to, tr.since, tr.status)
		al.EndsAt = time.Now().Add(3 * a.resend)
		batch = append(batch, al)
	}
	a.post(ctx, a.poster, a.url, batch, nil)
}

func (a *alertmanager) alert(site string, f damp.Firing, startsAt time.Time, st siteStatus) amAlert {
	what := "lost"
	if f == damp.Partitioned {
		what = "partitioned: reachable from some agents and not others"
	}
	ann := map[string]string{
		"summary":     fmt.Sprintf("site %s is %s", site, what),
		"description": fmt.Sprintf("%d of %d witnesses report site %s down, %d up", st.Down, st.Witnesses, site, st.Up),
	}
	if st.Detect != nil {
		ann["detect_seconds"] = strconv.FormatFloat(*st.Detect, 'f', 3, 64)
	}
	return amAlert{
		Labels:       map[string]string{"alertname": alertName(f), "site": site, "severity": severity(f)},
		Annotations:  ann,
		StartsAt:     startsAt,
		GeneratorURL: a.generatorURL,
	}
}
