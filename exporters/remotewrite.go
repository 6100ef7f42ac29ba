package exporters

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/internal/httpretry"
	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

var (
	_ agent.Sink           = (*RemoteWrite)(nil)
	_ prometheus.Collector = (*RemoteWrite)(nil)
)

const (
	remoteWriteVersion = "0.1.0"
	minBackoff         = 50 * time.Millisecond
	maxBackoff         = 5 * time.Second
	maxRetryAfter      = 5 * time.Minute
	minChangeGap       = 20 * time.Millisecond // between change pushes; see Run
)

// Reasons a batch is given up, the reason label of edgeprobe_remote_write_dropped_batches_total.
const (
	DropRejected     = "rejected"      // the receiver answered 4xx other than 429
	DropQueueFull    = "queue_full"    // the memory queue was full: the oldest batch made room
	DropSpoolFull    = "spool_full"    // the spool reached max_bytes: the oldest batch made room
	DropSpoolAge     = "spool_age"     // the batch waited longer than the spool's max_age
	DropSpoolCorrupt = "spool_corrupt" // a spooled batch failed its checksum
	DropSpoolError   = "spool_error"   // the spool's disk refused writes and the batches held in memory meanwhile overflowed
	DropDiskFull     = "disk_full"     // the spool's disk was full: the oldest batch made room
)

var dropReasons = []string{DropRejected, DropQueueFull, DropSpoolFull, DropSpoolAge, DropSpoolCorrupt, DropSpoolError, DropDiskFull}

// RemoteWrite pushes the agent's complete current state to one Prometheus remote_write
// 1.0 receiver: at once when a target, site or the agent changes state, and as a
// heartbeat snapshot every push interval.
//
// Handle only updates the state and signals; Run's goroutines encode snapshots into a
// bounded queue (memory, or the on-disk spool) and one sender delivers them in order with
// retries. One RemoteWrite serves one URL, so a dead or slow receiver holds up nothing but
// its own queue.
type RemoteWrite struct {
	cfg       config.RemoteWriteConfig
	url       string
	shown     string // url as logs and errors show it: netcheck.Redact, no password or query values
	name      string
	agentName string
	extra     []labelPair
	logger    *slog.Logger
	state     *promState
	client    *http.Client
	queue     batchQueue
	stats     *pushStats
	descs     pushDescs
	changed   chan struct{} // a state change wants a push now
	queued    chan struct{} // the queue has something for the sender
	lastMs    int64         // timestamp of the last snapshot, owned by Run's goroutine
	enc       *snapEncoder  // owned by Run's goroutine
	closeOnce sync.Once
}

// batch is one encoded snapshot: a snappy-compressed WriteRequest, sent as is.
type batch struct {
	created time.Time
	payload []byte
	id      uint64 // set by the queue; pop names the batch it acknowledges
}

// batchQueue holds batches oldest first until the sender acknowledges them with pop. A
// batch the queue dropped to make room while it was being sent is not in the queue any
// more, and pop of its id removes nothing.
type batchQueue interface {
	push(b batch) // b.payload is only borrowed: the queue copies or writes it
	head() (batch, bool)
	pop(id uint64)
	size() (batches int, bytes int64)
	close() error
}

// pushStats are the delivery counters, shared by the sender and the queues.
type pushStats struct {
	created, createdSamples atomic.Uint64 // snapshots queued and the samples in them
	sent, failed, retried   atomic.Uint64
	dropped                 map[string]*atomic.Uint64 // fixed keys: dropReasons
}

func newPushStats() *pushStats {
	s := &pushStats{dropped: map[string]*atomic.Uint64{}}
	for _, reason := range dropReasons {
		s.dropped[reason] = new(atomic.Uint64)
	}
	return s
}

func (s *pushStats) drop(reason string) { s.dropped[reason].Add(1) }

// RemoteWriteStats is a snapshot of a RemoteWrite's delivery counters.
type RemoteWriteStats struct {
	Created        uint64            // batches (snapshots) handed to the queue or spool
	CreatedSamples uint64            // samples in them
	Sent           uint64            // batches the receiver acknowledged with 2xx
	Failed         uint64            // requests that failed (network error, 5xx, 429 or 4xx)
	Retried        uint64            // requests repeated after a retryable failure
	Dropped        map[string]uint64 // batches given up, by reason (Drop*)
	Queued         int               // batches waiting
}

// NewRemoteWrite checks the configuration, reads the credentials once to report a bad
// file at start-up, and opens the spool when one is configured; batches a previous run
// left in the spool are delivered first. Pushing starts with Run.
func NewRemoteWrite(cfg config.RemoteWriteConfig, stateDir, agentName string, labels map[string]string, logger *slog.Logger) (*RemoteWrite, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("remote_write %q: url must be http:// or https:// with a host", netcheck.Redact(cfg.URL))
	}
	cfg.SetDefaults()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("remote_write %s: %s", cfg.Name, fmt.Sprintf(format, args...))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if agentName == "" {
		return nil, fail("the agent name is empty; receivers reject series without one")
	}
	extra, err := extraLabels(labels)
	if err != nil {
		return nil, fail("%v", err)
	}
	if cfg.BearerTokenFile != "" && cfg.BasicAuth != nil {
		return nil, fail("bearer_token_file and basic_auth are exclusive: a request carries one Authorization header")
	}
	r := &RemoteWrite{
		cfg:       cfg,
		url:       cfg.URL,
		shown:     netcheck.Redact(cfg.URL),
		name:      cfg.Name,
		agentName: agentName,
		extra:     extra,
		logger:    logger.With("receiver", cfg.Name),
		state:     newPromState(),
		enc:       newSnapEncoder(agentName, extra),
		stats:     newPushStats(),
		descs:     newPushDescs(cfg.Name),
		changed:   make(chan struct{}, 1),
		queued:    make(chan struct{}, 1),
	}
	// Reading the credentials now turns a typo into a start-up error; they are read again
	// for every request so that a rotated token needs no restart.
	if _, err := r.authorization(); err != nil {
		return nil, fail("%v", err)
	}
	tlsConfig, err := cfg.TLS.ClientConfig()
	if err != nil {
		return nil, fail("tls: %v", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	r.client = &http.Client{
		Transport: transport,
		// A redirect would replay the body to another host with our credentials.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if cfg.Spool == nil {
		r.queue = &memQueue{max: cfg.QueueSize, stats: r.stats, full: newEpisode(r.logger, slog.LevelWarn)}
		return r, nil
	}
	maxBytes, maxAge := cfg.Spool.MaxBytes, cfg.Spool.MaxAge.Duration
	if stateDir == "" {
		return nil, fail("spool needs agent.state_dir")
	}
	dir := filepath.Join(stateDir, "spool", safeFileName(cfg.Name))
	spool, err := openSpool(dir, maxBytes, maxAge, cfg.QueueSize, r.stats, r.logger)
	if err != nil {
		return nil, fail("%v", err)
	}
	r.queue = spool
	if n, bytes := spool.size(); n > 0 {
		r.logger.Info("spool holds batches from an earlier run; sending them first", "dir", dir, "batches", n, "bytes", bytes)
	}
	return r, nil
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// safeFileName turns a receiver name (a host:port by default) into one path element.
func safeFileName(name string) string {
	name = unsafeFileChars.ReplaceAllString(name, "_")
	if name == "" || name == "." || name == ".." {
		return "_"
	}
	return name
}

// Name is the receiver's name used in logs, metrics and the spool directory.
func (r *RemoteWrite) Name() string { return r.name }

// Handle records an event and, for a state change, asks Run for a push now. It never blocks.
func (r *RemoteWrite) Handle(ev agent.Event) {
	if changed, _ := r.state.apply(ev); changed {
		select {
		case r.changed <- struct{}{}:
		default: // a push is already pending and will carry this change too
		}
	}
}

// Run pushes until ctx is done: a snapshot at once, one on every state change and one
// every push interval. Batches still queued in memory at the end are lost (and logged);
// spooled ones stay on disk for the next run. Run releases the spool when it returns.
func (r *RemoteWrite) Run(ctx context.Context) error {
	defer r.Close()
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		r.sendLoop(ctx)
	}()
	ticker := time.NewTicker(r.cfg.PushInterval.Duration)
	defer ticker.Stop()
	// A change is pushed at once, unless the last change push was less than minChangeGap
	// ago: then once that gap is over, carrying every change made meanwhile. A site of 50
	// targets failing over a few hundred milliseconds is then a handful of pushes, not 50
	// (each a complete snapshot: 39 KB and an fsync at 1000 targets). Heartbeats do not
	// count: a change right after one still goes at once.
	var gap *time.Timer
	var gapC <-chan time.Time
	var last time.Time // of the last change push
	snapshot := func(change bool) {
		r.enqueueSnapshot()
		if change {
			last = time.Now()
		}
		if gap != nil {
			gap.Stop()
			gap, gapC = nil, nil
		}
	}
	snapshot(false)
	for {
		select {
		case <-ctx.Done():
			<-senderDone
			st := r.Stats()
			var dropped uint64
			for _, n := range st.Dropped {
				dropped += n
			}
			args := []any{"created_batches", st.Created, "created_samples", st.CreatedSamples,
				"sent_batches", st.Sent, "dropped_batches", dropped, "queued_batches", st.Queued}
			if st.Queued > 0 {
				where := "lost: no spool configured"
				if r.cfg.Spool != nil {
					where = "kept in the spool for the next run"
				}
				args = append(args, "fate", where)
			}
			r.logger.Info("remote_write stopped", args...)
			return nil
		case <-r.changed:
			if gapC != nil {
				continue // a push is already due and will carry this change
			}
			if wait := minChangeGap - time.Since(last); wait > 0 {
				gap = time.NewTimer(wait)
				gapC = gap.C
				continue
			}
			snapshot(true)
			// The change push is also this period's heartbeat.
			ticker.Reset(r.cfg.PushInterval.Duration)
		case <-gapC:
			snapshot(true)
			ticker.Reset(r.cfg.PushInterval.Duration)
		case <-ticker.C:
			snapshot(false)
		}
	}
}

// Close releases the spool of an exporter whose Run was never called; Run calls it too.
func (r *RemoteWrite) Close() error {
	var err error
	r.closeOnce.Do(func() { err = r.queue.close() })
	return err
}

// Stats returns the delivery counters.
func (r *RemoteWrite) Stats() RemoteWriteStats {
	s := RemoteWriteStats{
		Created:        r.stats.created.Load(),
		CreatedSamples: r.stats.createdSamples.Load(),
		Sent:           r.stats.sent.Load(),
		Failed:         r.stats.failed.Load(),
		Retried:        r.stats.retried.Load(),
		Dropped:        map[string]uint64{},
	}
	for reason, n := range r.stats.dropped {
		s.Dropped[reason] = n.Load()
	}
	s.Queued, _ = r.queue.size()
	return s
}

func (r *RemoteWrite) enqueueSnapshot() {
	now := time.Now()
	payload, err := r.encode(now)
	if err != nil {
		// Only a bug can get here: the messages are built from plain strings and floats.
		r.logger.Error("encode snapshot", "err", err)
		return
	}
	r.queue.push(batch{created: now, payload: payload})
	r.stats.created.Add(1)
	r.stats.createdSamples.Add(uint64(len(r.enc.series)))
	select {
	case r.queued <- struct{}{}:
	default:
	}
}

// encode returns the compressed WriteRequest of the current state, stamped now; the
// result is valid until the next call (queues copy or write it). Timestamps strictly
// increase from push to push (receivers reject a second, different sample at the same
// millisecond) across a wall-clock step back of up to contract.StalePushes intervals.
// After a longer step they follow the clock: held an hour ahead of it, every push would
// be dated further from the view's clock than its max_sample_age, and the agent no
// witness for that hour.
func (r *RemoteWrite) encode(now time.Time) ([]byte, error) {
	ms := now.UnixMilli()
	hold := contract.StalePushes * r.cfg.PushInterval.Duration.Milliseconds()
	if ms <= r.lastMs && r.lastMs-ms <= hold {
		ms = r.lastMs + 1
	}
	r.lastMs = ms
	return r.enc.encode(r.state, r.cfg.PushInterval.Duration.Seconds(), ms), nil
}

// sendLoop delivers the queue's head until ctx is done. Order matters: receivers such
// as Prometheus reject a sample older than one they already hold.
func (r *RemoteWrite) sendLoop(ctx context.Context) {
	attempt := 0
	failing := newEpisode(r.logger, slog.LevelWarn)   // retryable failures
	rejecting := newEpisode(r.logger, slog.LevelWarn) // batches the receiver refused
	for {
		b, ok := r.queue.head()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.queued:
				continue
			}
		}
		err := r.send(ctx, b.payload)
		if err == nil {
			// Also when the agent is stopping: the receiver has the batch, and one kept in
			// the spool would be sent again after a restart.
			r.queue.pop(b.id)
			r.stats.sent.Add(1)
			failing.over("receiver accepts pushes again", "retries", attempt)
			rejecting.over("receiver accepts batches again")
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		var pe *httpretry.Error
		if errors.As(err, &pe) && !pe.Retryable {
			r.queue.pop(b.id)
			r.stats.failed.Add(1)
			r.stats.drop(DropRejected)
			rejecting.happened("receiver rejected a batch; dropped", "status", pe.Status, "err", err)
			failing.over("receiver answers again", "retries", attempt)
			attempt = 0
			continue
		}
		r.stats.failed.Add(1)
		delay := backoff(attempt, r.cfg.PushInterval.Duration)
		if errors.As(err, &pe) && pe.RetryAfter > delay {
			delay = pe.RetryAfter
		}
		// One line when pushes start failing, one a minute while they do, one when they work.
		failing.happened("push failed; retrying with backoff", "err", err, "retry_in", delay)
		r.logger.Debug("push failed", "err", err, "attempt", attempt+1, "retry_in", delay)
		attempt++
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		r.stats.retried.Add(1)
	}
}

// backoff doubles from minBackoff up to the push interval (at most maxBackoff) and keeps a
// random half of it, so that many agents cut off together do not return together. The
// push interval caps it because every push carries the whole state: a receiver that comes
// back (a restarted view) must hear from every agent within about one interval, as it
// would from a healthy one.
func backoff(attempt int, pushInterval time.Duration) time.Duration {
	return httpretry.Backoff(attempt, minBackoff, min(pushInterval, maxBackoff))
}

func (r *RemoteWrite) send(ctx context.Context, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout.Duration)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(payload))
	if err != nil {
		return &httpretry.Error{Err: fmt.Errorf("build request for %s: %w", r.shown, httpretry.Cause(err))}
	}
	for k, v := range r.cfg.Headers {
		req.Header.Set(k, v)
	}
	// Protocol headers come last: a configured header must not break the encoding.
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", remoteWriteVersion)
	req.Header.Set("User-Agent", "edgeprobe/"+buildVersion())
	auth, err := r.authorization()
	if err != nil {
		return &httpretry.Error{Retryable: true, Err: err}
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return httpretry.Send(r.client, req, maxRetryAfter)
}

// authorization returns the Authorization header value from the credential files.
func (r *RemoteWrite) authorization() (string, error) {
	switch {
	case r.cfg.BearerTokenFile != "":
		token, err := readSecret(r.cfg.BearerTokenFile)
		if err != nil {
			return "", fmt.Errorf("bearer_token_file: %w", err)
		}
		return "Bearer " + token, nil
	case r.cfg.BasicAuth != nil:
		password, err := readSecret(r.cfg.BasicAuth.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("basic_auth.password_file: %w", err)
		}
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(r.cfg.BasicAuth.Username, password)
		return req.Header.Get("Authorization"), nil
	}
	return "", nil
}

// readSecret reads a one-line secret file (a regular file of at most
// tomlconf.MaxSecretBytes, opened without blocking: a FIFO or /dev/zero is refused); the
// trailing newline editors add is not part of it.
func readSecret(path string) (string, error) {
	data, err := tomlconf.ReadFileLimit(path, tomlconf.MaxSecretBytes)
	if err != nil {
		return "", err
	}
	secret := strings.TrimRight(string(data), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

// pushDescs are a RemoteWrite's delivery metrics. The receiver is a constant label, so
// that several RemoteWrites register on one registry as distinct collectors.
type pushDescs struct {
	created, createdSamples                             *prometheus.Desc
	sent, failed, retried, dropped, queued, queuedBytes *prometheus.Desc
}

func newPushDescs(receiver string) pushDescs {
	constant := prometheus.Labels{"receiver": receiver}
	return pushDescs{
		created: prometheus.NewDesc("edgeprobe_remote_write_created_batches_total",
			"Snapshots encoded and handed to the queue or spool.", nil, constant),
		createdSamples: prometheus.NewDesc("edgeprobe_remote_write_created_samples_total",
			"Samples in the snapshots handed to the queue or spool.", nil, constant),
		sent: prometheus.NewDesc("edgeprobe_remote_write_sent_batches_total",
			"Batches the receiver acknowledged.", nil, constant),
		failed: prometheus.NewDesc("edgeprobe_remote_write_failed_requests_total",
			"Push requests that failed: transport error, 5xx, 429 or other 4xx.", nil, constant),
		retried: prometheus.NewDesc("edgeprobe_remote_write_retried_requests_total",
			"Push requests repeated after a retryable failure.", nil, constant),
		dropped: prometheus.NewDesc("edgeprobe_remote_write_dropped_batches_total",
			"Batches given up, by reason.", []string{"reason"}, constant),
		queued: prometheus.NewDesc("edgeprobe_remote_write_queued_batches",
			"Batches waiting to be sent (memory queue or spool).", nil, constant),
		queuedBytes: prometheus.NewDesc("edgeprobe_remote_write_queued_bytes",
			"Compressed size of the batches waiting.", nil, constant),
	}
}

// Describe implements prometheus.Collector, so the /metrics exporter can show delivery.
func (r *RemoteWrite) Describe(ch chan<- *prometheus.Desc) {
	d := r.descs
	for _, desc := range []*prometheus.Desc{d.created, d.createdSamples, d.sent, d.failed, d.retried, d.dropped, d.queued, d.queuedBytes} {
		ch <- desc
	}
}

// Collect implements prometheus.Collector.
func (r *RemoteWrite) Collect(ch chan<- prometheus.Metric) {
	d := r.descs
	ch <- prometheus.MustNewConstMetric(d.created, prometheus.CounterValue, float64(r.stats.created.Load()))
	ch <- prometheus.MustNewConstMetric(d.createdSamples, prometheus.CounterValue, float64(r.stats.createdSamples.Load()))
	ch <- prometheus.MustNewConstMetric(d.sent, prometheus.CounterValue, float64(r.stats.sent.Load()))
	ch <- prometheus.MustNewConstMetric(d.failed, prometheus.CounterValue, float64(r.stats.failed.Load()))
	ch <- prometheus.MustNewConstMetric(d.retried, prometheus.CounterValue, float64(r.stats.retried.Load()))
	for _, reason := range dropReasons {
		ch <- prometheus.MustNewConstMetric(d.dropped, prometheus.CounterValue, float64(r.stats.dropped[reason].Load()), reason)
	}
	n, bytes := r.queue.size()
	ch <- prometheus.MustNewConstMetric(d.queued, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(d.queuedBytes, prometheus.GaugeValue, float64(bytes))
}
