package view

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// notifier announces lost sites and their recoveries somewhere. enqueue never blocks:
// verdicts must not wait for a slow receiver; a full queue drops and counts.
type notifier interface {
	enqueue(Change)
	run(ctx context.Context)
}

var (
	_ notifier = (*webhook)(nil)
	_ notifier = (*alertmanager)(nil)
)

const notifyQueue = 256

// maxRetryDelay caps the exponential backoff between attempts.
const maxRetryDelay = 10 * time.Second

// poster sends JSON with retries: network errors, 5xx and 429 are retried with doubling
// delays (a Retry-After in seconds is honoured), other answers end the attempt.
type poster struct {
	name       string
	client     *http.Client
	maxRetries int
	retryBase  time.Duration
	metrics    *viewMetrics
	log        *slog.Logger
}

func (p *poster) post(ctx context.Context, url string, payload any) {
	body, err := json.Marshal(payload)
	if err != nil {
		p.log.Error("encode notification", "notifier", p.name, "error", err)
		p.metrics.notifications.WithLabelValues(p.name, "failed").Inc()
		return
	}
	delay := p.retryBase
	for attempt := 0; ; attempt++ {
		retry, wait, err := p.attempt(ctx, url, body)
		if err == nil {
			p.metrics.notifications.WithLabelValues(p.name, "sent").Inc()
			return
		}
		if !retry || attempt >= p.maxRetries {
			p.log.Error("notification failed", "notifier", p.name, "url", url, "attempts", attempt+1, "error", err)
			p.metrics.notifications.WithLabelValues(p.name, "failed").Inc()
			return
		}
		p.log.Warn("notification failed, retrying", "notifier", p.name, "url", url, "attempt", attempt+1, "error", err)
		if wait < delay {
			wait = delay
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

func (p *poster) attempt(ctx context.Context, url string, body []byte) (retry bool, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("build request to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "edgeprobe-view")
	resp, err := p.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, 0, fmt.Errorf("post to %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return false, 0, nil
	}
	err = fmt.Errorf("post to %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		if s, convErr := strconv.Atoi(resp.Header.Get("Retry-After")); convErr == nil && s > 0 {
			wait = min(time.Duration(s)*time.Second, maxRetryDelay)
		}
		return true, wait, err
	}
	return false, 0, err
}

// WebhookPayload is the JSON body a webhook receives.
type WebhookPayload struct {
	Site          string    `json:"site"`
	Status        string    `json:"status"` // firing when the site turned lost, resolved when it left lost
	From          string    `json:"from"`
	To            string    `json:"to"`
	Time          time.Time `json:"time"`
	DetectSeconds *float64  `json:"detect_seconds,omitempty"`
	Witnesses     int       `json:"witnesses"`
	Down          int       `json:"down"`
}

func status(c Change) string {
	if c.To == VerdictLost {
		return "firing"
	}
	return "resolved"
}

type webhook struct {
	url   string
	queue chan Change
	poster
}

func newWebhook(cfg WebhookConfig, retryBase time.Duration, m *viewMetrics, log *slog.Logger) *webhook {
	return &webhook{
		url:   cfg.URL,
		queue: make(chan Change, notifyQueue),
		poster: poster{name: "webhook", client: &http.Client{Timeout: cfg.Timeout.Duration},
			maxRetries: cfg.MaxRetries, retryBase: retryBase, metrics: m, log: log},
	}
}

func (w *webhook) enqueue(c Change) {
	select {
	case w.queue <- c:
	default:
		w.metrics.notifications.WithLabelValues(w.name, "dropped").Inc()
	}
}

func (w *webhook) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-w.queue:
			w.post(ctx, w.url, WebhookPayload{Site: c.Site, Status: status(c), From: c.From, To: c.To, Time: c.Time,
				DetectSeconds: c.DetectSeconds, Witnesses: c.Witnesses, Down: c.Down})
		}
	}
}

// alertmanager speaks Alertmanager's API v2. Alertmanager forgets an alert whose endsAt
// has passed, so firing alerts carry an endsAt a few resend periods ahead and are sent
// again every resend period; a recovery sends endsAt = the time of the recovery.
type alertmanager struct {
	url          string
	resend       time.Duration
	generatorURL string
	queue        chan Change
	firing       map[string]amAlert // by site; touched only by run
	poster
}

// AlertName is the alertname of the alerts the view sends to Alertmanager.
const AlertName = "EdgeprobeSiteLost"

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
		queue:        make(chan Change, notifyQueue),
		firing:       map[string]amAlert{},
		poster: poster{name: "alertmanager", client: &http.Client{Timeout: cfg.Timeout.Duration},
			maxRetries: cfg.MaxRetries, retryBase: retryBase, metrics: m, log: log},
	}
}

func (a *alertmanager) enqueue(c Change) {
	select {
	case a.queue <- c:
	default:
		a.metrics.notifications.WithLabelValues(a.name, "dropped").Inc()
	}
}

func (a *alertmanager) run(ctx context.Context) {
	resend := time.NewTicker(a.resend)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-a.queue:
			a.post(ctx, a.url, []amAlert{a.alertFor(c)})
		case <-resend.C:
			if len(a.firing) == 0 {
				continue
			}
			alerts := make([]amAlert, 0, len(a.firing))
			for site, al := range a.firing {
				al.EndsAt = time.Now().Add(3 * a.resend)
				a.firing[site] = al
				alerts = append(alerts, al)
			}
			a.post(ctx, a.url, alerts)
		}
	}
}

func (a *alertmanager) alertFor(c Change) amAlert {
	if c.To != VerdictLost {
		al, ok := a.firing[c.Site]
		if !ok {
			al = a.newAlert(c)
		}
		delete(a.firing, c.Site)
		al.EndsAt = c.Time
		al.Annotations["recovered_to"] = c.To
		return al
	}
	al := a.newAlert(c)
	al.EndsAt = c.Time.Add(3 * a.resend)
	a.firing[c.Site] = al
	return al
}

func (a *alertmanager) newAlert(c Change) amAlert {
	ann := map[string]string{
		"summary":     fmt.Sprintf("site %s is lost", c.Site),
		"description": fmt.Sprintf("%d of %d fresh, non-isolated agents report site %s down", c.Down, c.Witnesses, c.Site),
	}
	if c.DetectSeconds != nil {
		ann["detect_seconds"] = strconv.FormatFloat(*c.DetectSeconds, 'f', 3, 64)
	}
	return amAlert{
		Labels:       map[string]string{"alertname": AlertName, "site": c.Site, "severity": "critical"},
		Annotations:  ann,
		StartsAt:     c.Time,
		GeneratorURL: a.generatorURL,
	}
}
