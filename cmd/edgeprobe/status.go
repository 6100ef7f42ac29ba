package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/edgeprobe/edgeprobe/internal/netcheck"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
	"github.com/edgeprobe/edgeprobe/probes"
	"github.com/edgeprobe/edgeprobe/view"
)

// Exit statuses of edgeprobe status (besides exitOK, every site up, and exitUsage).
// Lost is the one a health check must not miss, so it has 1, the status scripts test
// first; a site that is not up but not lost either is 3, as monitoring plugins call
// "unknown"; not reaching the view at all is 4, so that it is never mistaken for a
// verdict.
const (
	statusLost   = 1 // some site is lost (and not silenced)
	statusNotUp  = 3 // none lost, but some not up: degraded, partitioned, unknown, silenced lost, a state this version does not know, or no site at all
	statusNoView = 4 // the view could not be reached or read
)

const statusAbout = `Show the view's verdicts as a table: site, state, since when, witnesses, how many
of them see it down, and which agents do.

Exit status: 0 every site is up; 1 some site is lost; 3 none is lost but some is not up
(degraded, partitioned, unknown, lost but silenced, a state this version does not know)
or the view knows no site; 4 the view could not be reached or read; 2 bad usage.

--watch then follows the view's events and prints a line per verdict change, reconnecting
(with Last-Event-ID) when the stream breaks; on SIGINT or SIGTERM it exits with the status
of the verdicts it knows last.`

// Bounds on what the view may send back.
const (
	maxSitesBytes   = 256 << 20 // /api/v1/sites of 10000 sites with their agents is well below
	maxEventBytes   = 1 << 20   // one server-sent event
	eventsIdleLimit = time.Minute
	maxEventsRetry  = 30 * time.Second
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[--view URL] [--token-file FILE] [--ca-file FILE] [--watch]", statusAbout, stderr)
	viewURL := fs.String("view", "http://"+view.DefaultListen, "the view's base `URL`")
	tokenFile := fs.String("token-file", "", "`file` holding a read token (sent as a bearer token), for a view with read_tokens")
	caFile := fs.String("ca-file", "", "PEM `file` of the CA of an https view's certificate (default: the system's roots)")
	watch := fs.Bool("watch", false, "after the table, print a line per verdict change until interrupted")
	timeout := fs.Duration("timeout", 5*time.Second, "for connecting and each answer")
	if status, done := parseFlags(fs, args, stdout); done {
		return status
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if msg := netcheck.URL(*viewURL); msg != "" {
		return usageError(fs, "--view: %s", msg)
	}
	if *timeout <= 0 {
		return usageError(fs, "--timeout %v: must be above zero", *timeout)
	}
	c := &viewClient{base: strings.TrimRight(*viewURL, "/"), timeout: *timeout}
	if *tokenFile != "" {
		data, err := tomlconf.ReadFileLimit(*tokenFile, tomlconf.MaxSecretBytes)
		if err != nil {
			return usageError(fs, "--token-file: %v", err)
		}
		if c.token = strings.TrimRight(string(data), "\r\n"); c.token == "" {
			return usageError(fs, "--token-file: %s is empty", *tokenFile)
		}
	}
	var tlsConf *tls.Config
	if *caFile != "" {
		abs, err := filepath.Abs(*caFile)
		if err == nil {
			tlsConf, err = probes.TLSSpec{CAFile: abs}.ClientConfig()
		}
		if err != nil {
			return usageError(fs, "--ca-file: %v", err)
		}
	}
	c.client, c.stream = newViewHTTP(tlsConf, *timeout)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !*watch {
		sites, err := c.sites(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "edgeprobe status: %v\n", err)
			return statusNoView
		}
		writeSites(stdout, sites, time.Now())
		return sitesStatus(knownOf(sites))
	}
	return c.watch(ctx, stdout, stderr)
}

// newViewHTTP returns the client for the API's answers (each bounded by timeout) and
// the one for the event stream, which may stay open for days: only its connection and
// response headers are bounded, and silence is caught by eventsIdleLimit.
func newViewHTTP(tlsConf *tls.Config, timeout time.Duration) (api, stream *http.Client) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConf
	transport.ResponseHeaderTimeout = timeout
	transport.TLSHandshakeTimeout = timeout
	transport.Proxy = nil // the view is reached directly, as the agents reach it
	return &http.Client{Transport: transport, Timeout: timeout}, &http.Client{Transport: transport}
}

// viewClient reads a view's API (view/README.md, "HTTP API").
type viewClient struct {
	base    string // the view's URL without a trailing slash
	token   string
	timeout time.Duration
	client  *http.Client
	stream  *http.Client
}

// siteVerdict is one entry of GET /api/v1/sites. Fields this version does not know are
// ignored, states it does not know are shown as they are.
type siteVerdict struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	Witnesses int       `json:"witnesses"`
	Down      int       `json:"down"`
	Silenced  bool      `json:"silenced"`
	Agents    []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Isolated bool   `json:"isolated"`
		Stale    bool   `json:"stale"`
	} `json:"agents"`
}

// verdictChange is one event of GET /api/v1/events.
type verdictChange struct {
	Site          string    `json:"site"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	Time          time.Time `json:"time"`
	DetectSeconds *float64  `json:"detect_seconds"`
	Silenced      bool      `json:"silenced"`
}

func (c *viewClient) request(ctx context.Context, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// check turns an answer other than 200 into an error that says what to do.
func (c *viewClient) check(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	msg := fmt.Sprintf("%s %s: %s", resp.Request.Method, netcheck.Redact(resp.Request.URL.String()), resp.Status)
	if text := strings.TrimSpace(string(excerpt)); text != "" {
		msg += ": " + clean(text)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		if c.token == "" {
			msg += " (this view needs a read token: --token-file FILE)"
		} else {
			msg += " (the view does not know the token of --token-file)"
		}
	}
	return errors.New(msg)
}

// reachError says that the view could not be reached, and where it was looked for.
func (c *viewClient) reachError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("cannot reach the view at %s: %v", netcheck.Redact(c.base), err)
}

// sites reads GET /api/v1/sites.
func (c *viewClient) sites(ctx context.Context) ([]siteVerdict, error) {
	req, err := c.request(ctx, "/api/v1/sites")
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, c.reachError(err)
	}
	defer resp.Body.Close()
	if err := c.check(resp); err != nil {
		return nil, err
	}
	var doc struct {
		Sites []siteVerdict `json:"sites"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSitesBytes)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("GET %s/api/v1/sites: not the view's answer: %v", netcheck.Redact(c.base), err)
	}
	sort.Slice(doc.Sites, func(i, j int) bool { return doc.Sites[i].Name < doc.Sites[j].Name })
	return doc.Sites, nil
}

// known is what the status command knows of each site's verdict.
type known map[string]knownVerdict

type knownVerdict struct {
	state    string
	silenced bool
}

func knownOf(sites []siteVerdict) known {
	k := known{}
	for _, s := range sites {
		k[s.Name] = knownVerdict{s.State, s.Silenced}
	}
	return k
}

// sitesStatus is the exit status for the verdicts in k (see statusLost).
func sitesStatus(k known) int {
	if len(k) == 0 {
		return statusNotUp
	}
	status := exitOK
	for _, v := range k {
		switch {
		case v.state == view.VerdictLost && !v.silenced:
			return statusLost
		case v.state != view.VerdictUp:
			status = statusNotUp
		}
	}
	return status
}

// writeSites prints the verdicts as an aligned table.
func writeSites(w io.Writer, sites []siteVerdict, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tSTATE\tSINCE\tWITNESSES\tDOWN\tAGENTS DOWN")
	for _, s := range sites {
		state := clean(s.State)
		if s.Silenced {
			state += " (silenced)"
		}
		var down []string
		for _, a := range s.Agents {
			if a.State != "down" {
				continue
			}
			name := clean(a.Name)
			switch {
			case a.Stale:
				name += " (stale)"
			case a.Isolated:
				name += " (isolated)"
			}
			down = append(down, name)
		}
		agentsDown := "-"
		if len(down) > 0 {
			agentsDown = strings.Join(down, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", clean(s.Name), state, ago(s.Since, now), s.Witnesses, s.Down, agentsDown)
	}
	tw.Flush()
	if len(sites) == 0 {
		fmt.Fprintln(w, "(the view knows no site: no agent has pushed, or all were forgotten)")
	}
}

// ago says how long before now t was, in the two largest units: "12s ago", "3m05s ago",
// "2h03m ago", "4d02h ago"; "-" for no time.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "now"
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds ago", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds ago", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm ago", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh ago", s/86400, s%86400/3600)
}

// clean makes text from the view safe to print on a terminal: with a control or other
// unprintable character it is shown quoted, escapes and all.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// watch prints the table, then a line per verdict change until ctx is done, and returns
// the exit status of the verdicts it knows then. The stream is opened before the table
// is read, so that no change falls between the two.
func (c *viewClient) watch(ctx context.Context, stdout, stderr io.Writer) int {
	w := &watcher{c: c, out: stdout, errs: stderr, retry: time.Second}
	resp, err := w.connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "edgeprobe status: %v\n", err)
		return statusNoView
	}
	sites, err := c.sites(ctx)
	if err != nil {
		resp.Body.Close()
		fmt.Fprintf(stderr, "edgeprobe status: %v\n", err)
		return statusNoView
	}
	writeSites(stdout, sites, time.Now())
	w.known = knownOf(sites)
	w.width = 0
	for name := range w.known {
		w.width = max(w.width, len([]rune(clean(name))))
	}
	for {
		err := w.follow(ctx, resp)
		if ctx.Err() != nil {
			return sitesStatus(w.known)
		}
		fmt.Fprintf(stderr, "edgeprobe status: events stream: %v; reconnecting\n", err)
		for delay := w.retry; ; delay = min(2*delay, maxEventsRetry) {
			select {
			case <-ctx.Done():
				return sitesStatus(w.known)
			case <-time.After(delay):
			}
			if resp, err = w.connect(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return sitesStatus(w.known)
			}
			fmt.Fprintf(stderr, "edgeprobe status: %v; retrying in %v\n", err, min(2*delay, maxEventsRetry))
		}
		fmt.Fprintln(stderr, "edgeprobe status: events stream back")
		if w.lastID == "" {
			// Without event ids the view cannot replay what the break lost: re-read.
			w.resync(ctx)
		}
	}
}

// watcher follows GET /api/v1/events (server-sent events, docs/architecture.md, "Events").
type watcher struct {
	c         *viewClient
	out, errs io.Writer
	known     known
	width     int           // of the site column
	lastID    string        // the last event id seen, sent as Last-Event-ID
	retry     time.Duration // the stream's retry: field
}

func (w *watcher) connect(ctx context.Context) (*http.Response, error) {
	req, err := w.c.request(ctx, "/api/v1/events")
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if w.lastID != "" {
		req.Header.Set("Last-Event-ID", w.lastID)
	}
	resp, err := w.c.stream.Do(req)
	if err != nil {
		return nil, w.c.reachError(err)
	}
	if err := w.c.check(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// follow reads events from resp until the stream ends, breaks, is silent for
// eventsIdleLimit (the view sends a comment every 15 s) or ctx is done.
func (w *watcher) follow(ctx context.Context, resp *http.Response) error {
	defer resp.Body.Close()
	var silent atomic.Bool
	idle := time.AfterFunc(eventsIdleLimit, func() {
		silent.Store(true)
		resp.Body.Close()
	})
	defer idle.Stop()
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventBytes)
	var event, id string
	var data []string
	for sc.Scan() {
		idle.Reset(eventsIdleLimit)
		line := sc.Text()
		if line == "" {
			// Dispatch (the HTML Living Standard's event stream interpretation). A reset
			// is acted on even without data.
			if id != "" {
				w.lastID = id
			}
			if len(data) > 0 || event == "reset" {
				w.dispatch(ctx, event, strings.Join(data, "\n"))
			}
			event, id, data = "", "", data[:0]
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "": // a comment: ": keep-alive"
		case "event":
			event = value
		case "data":
			data = append(data, value)
		case "id":
			if !strings.ContainsRune(value, 0) {
				id = value
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				w.retry = min(max(time.Duration(ms)*time.Millisecond, 100*time.Millisecond), maxEventsRetry)
			}
		}
	}
	if err := sc.Err(); err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case silent.Load():
			return fmt.Errorf("nothing from the view for %v, not even a keep-alive", eventsIdleLimit)
		}
		return err
	}
	return errors.New("the view ended it")
}

func (w *watcher) dispatch(ctx context.Context, event, data string) {
	switch event {
	case "", "message", "verdict":
		var ch verdictChange
		if err := json.Unmarshal([]byte(data), &ch); err != nil || ch.Site == "" {
			fmt.Fprintf(w.errs, "edgeprobe status: an event that is not a verdict change: %s\n", clean(data))
			return
		}
		w.known[ch.Site] = knownVerdict{ch.To, ch.Silenced}
		w.line(ch)
	case "reset":
		// The view no longer holds the events since Last-Event-ID: re-read the sites.
		fmt.Fprintln(w.errs, "edgeprobe status: the view lost events this stream missed; re-reading the sites")
		w.resync(ctx)
	}
}

// line prints one verdict change.
func (w *watcher) line(ch verdictChange) {
	at := ch.Time
	if at.IsZero() {
		at = time.Now()
	}
	site := clean(ch.Site)
	w.width = max(w.width, len([]rune(site)))
	text := fmt.Sprintf("%s  %-*s  %s -> %s", at.Local().Format("15:04:05.000"), w.width, site, clean(ch.From), clean(ch.To))
	if ch.DetectSeconds != nil {
		text += "  after " + time.Duration(*ch.DetectSeconds*float64(time.Second)).Round(time.Millisecond).String()
	}
	if ch.Silenced {
		text += "  (silenced)"
	}
	fmt.Fprintln(w.out, text)
}

// resync re-reads the sites and prints a line for each whose verdict differs from what
// the watcher knew: changes it may have missed.
func (w *watcher) resync(ctx context.Context) {
	sites, err := w.c.sites(ctx)
	if err != nil {
		if ctx.Err() == nil {
			fmt.Fprintf(w.errs, "edgeprobe status: %v\n", err)
		}
		return
	}
	now := time.Now()
	fresh := knownOf(sites)
	for _, s := range sites {
		if old, ok := w.known[s.Name]; !ok || old != fresh[s.Name] {
			from := old.state
			if !ok {
				from = "(new)"
			}
			w.line(verdictChange{Site: s.Name, From: from, To: s.State, Time: now, Silenced: s.Silenced})
		}
	}
	var gone []string
	for name := range w.known {
		if _, ok := fresh[name]; !ok {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		w.line(verdictChange{Site: name, From: w.known[name].state, To: "(forgotten)", Time: now})
	}
	w.known = fresh
}
