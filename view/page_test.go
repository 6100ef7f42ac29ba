package view

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"

	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// chromiumPath finds Debian's chromium, failing in CI where it must be installed.
func chromiumPath(t *testing.T) string {
	t.Helper()
	return testkit.LookTool(t, "Debian's chromium, scripts/deps/view.txt", "chromium", "chromium-browser")
}

// pageView is a view served for the page tests, recording the headers of the page's
// event-stream and history requests.
type pageView struct {
	base string
	ts   *httptest.Server

	mu      sync.Mutex
	streams []http.Header // of GET /api/v1/events, in order
	history int           // GET /api/v1/events/history requests
}

// startPageView serves a view whose state directory holds the verdict changes seed
// (as a view that ran before keeps them), numbered from 1.
func startPageView(t *testing.T, cfg *Config, seed ...Change) *pageView {
	t.Helper()
	return startPageViewRing(t, cfg, 0, seed...)
}

// startPageViewRing is startPageView with a ring of ring changes (0: the default).
func startPageViewRing(t *testing.T, cfg *Config, ring int, seed ...Change) *pageView {
	t.Helper()
	cfg.Defaults()
	if len(seed) > 0 {
		cfg.StateDir = t.TempDir()
		var b bytes.Buffer
		for i, c := range seed {
			c.ID = uint64(i + 1)
			line, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(append(line, '\n'))
		}
		if err := os.WriteFile(filepath.Join(cfg.StateDir, eventsFile), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(cfg, Options{KeepAlive: time.Second, EventRing: ring})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	pv := &pageView{}
	h := s.Handler()
	pv.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pv.mu.Lock()
		switch r.URL.Path {
		case "/api/v1/events":
			pv.streams = append(pv.streams, r.Header.Clone())
		case "/api/v1/events/history":
			pv.history++
		}
		pv.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	pv.base = pv.ts.URL
	t.Cleanup(func() {
		cancel()
		<-done
		pv.ts.Close()
	})
	return pv
}

func (pv *pageView) recorded() (streams []http.Header, history int) {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	return append([]http.Header(nil), pv.streams...), pv.history
}

// browser starts headless Chromium (Debian's, with the flags a container needs) with a
// window of w x h; it ends with the test.
func browser(t *testing.T, w, h int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	return ctx
}

// present polls in the page rather than waiting on one node, because the board
// replaces its rows on every refresh.
func present(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void]("document.querySelector(" + strconv.Quote(sel) + ") !== null")
}

// until polls a JavaScript condition.
func until(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond)
}

func waitPage(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// shot saves a screenshot of the whole page under the test's artifact directory
// (go test -run TestLivePage -artifacts ./view/ keeps them under _artifacts).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Errorf("screenshot of %d bytes is not a PNG", len(png))
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// hover moves the mouse over the middle of the element sel and returns the tooltip.
func hover(t *testing.T, ctx context.Context, sel string, fraction float64) string {
	t.Helper()
	xy := eval[[]float64](t, ctx, `(() => { const r = document.querySelector(`+strconv.Quote(sel)+`).getBoundingClientRect();
		return [r.left + r.width * `+strconv.FormatFloat(fraction, 'f', 3, 64)+`, r.top + r.height / 2]; })()`)
	if err := chromedp.Do(ctx, chromedp.MouseEvent(chromedp.MouseMoved, xy[0], xy[1])); err != nil {
		t.Fatalf("hover %s: %v", sel, err)
	}
	return eval[string](t, ctx, `document.getElementById("tip").hidden ? "" : document.getElementById("tip").innerText`)
}

// pageAgents are the agents of TestLivePage: edge4 is impaired all along.
var pageAgents = []string{"edge1", "edge2", "edge3", "edge4"}

// board is what the agents of the page tests see: pangyo down on the agents named,
// seoul down on edge1 and edge2 when split, busan down everywhere when busanDown.
type board struct {
	pangyoDown       []string
	split, busanDown bool
}

// fleet plays pageAgents: every 500 ms (their push interval is 1 s) they push the board,
// and at once when it changes, as agents do.
type fleet struct {
	t    *testing.T
	base string
	mu   sync.Mutex
	b    board
}

func startFleet(t *testing.T, base string) *fleet {
	f := &fleet{t: t, base: base}
	f.set(board{})
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				f.mu.Lock()
				err := f.push()
				f.mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return f
}

func (f *fleet) set(b board) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.b = b
	if err := f.push(); err != nil {
		f.t.Fatal(err)
	}
}

// push sends the board; f.mu is held.
func (f *fleet) push() error {
	at := time.Now()
	var pushes []agentPush
	for _, a := range pageAgents {
		sites := map[string]string{"pangyo": "up", "seoul": "up", "busan": "up", "daejeon": "up"}
		if slices.Contains(f.b.pangyoDown, a) {
			sites["pangyo"] = "down"
		}
		if f.b.split && (a == "edge1" || a == "edge2") {
			sites["seoul"] = "down"
		}
		if f.b.busanDown {
			sites["busan"] = "down"
		}
		pushes = append(pushes, agentPush{agent: a, interval: 1, since: at.Add(-200 * time.Millisecond), detect: 0.2, at: at,
			sites: sites, targets: 2, impaired: a == "edge4"})
	}
	var ts []*prompb.TimeSeries
	for _, p := range pushes {
		ts = append(ts, p.series()...)
	}
	raw, err := proto.Marshal(&prompb.WriteRequest{Timeseries: ts})
	if err != nil {
		return err
	}
	body := snappy.Encode(nil, raw)
	var resp *http.Response
	// A test that cuts every connection (CloseClientConnections) cuts a kept-alive push
	// too: tried again, as an agent does.
	for try := 0; ; try++ {
		req, err := http.NewRequest(http.MethodPost, f.base+"/api/v1/write", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		} else if try == 2 {
			return err
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("push: %s", resp.Status)
	}
	return nil
}

// pageHistory is what a view that ran for the last hour kept: the sites came up 52
// minutes ago, pangyo was lost for two minutes, seoul degraded and daejeon partitioned
// briefly, and a minute and a half ago every site went unknown (its agents paused).
func pageHistory(now time.Time) []Change {
	at := func(min float64) time.Time { return now.Add(-time.Duration(min * float64(time.Minute))) }
	d := func(v float64) *float64 { return &v }
	c := func(site, from, to string, min float64, detect *float64, down int) Change {
		return Change{Site: site, From: from, To: to, Time: at(min), DetectSeconds: detect, Witnesses: 3, Down: down, Up: 3 - down}
	}
	return []Change{
		c("busan", "unknown", "up", 52, d(0.31), 0),
		c("daejeon", "unknown", "up", 52, d(0.33), 0),
		c("pangyo", "unknown", "up", 52, d(0.29), 0),
		c("seoul", "unknown", "up", 52, d(0.35), 0),
		c("pangyo", "up", "lost", 41, d(0.38), 3),
		c("pangyo", "lost", "up", 39, d(0.52), 0),
		c("seoul", "up", "degraded", 25, d(0.3), 1),
		c("seoul", "degraded", "up", 23.5, d(0.4), 0),
		c("daejeon", "up", "partitioned", 12, d(0.41), 2),
		c("daejeon", "partitioned", "up", 10.5, d(0.44), 0),
		c("busan", "up", "unknown", 1.5, nil, 0),
		c("daejeon", "up", "unknown", 1.5, nil, 0),
		c("pangyo", "up", "unknown", 1.5, nil, 0),
		c("seoul", "up", "unknown", 1.5, nil, 0),
	}
}

// TestLivePage loads the board in headless Chromium over a view that kept the last hour
// of verdicts, and follows it through a loss: pangyo's timeline gains a lost span by
// itself (no reload), after the spans of its history, and the minutes the history does
// not reach are "no data"; hovering a span tells its start, end, duration and
// detect_seconds; a click on a cell shows that agent's targets with the failure reason;
// a partitioned site, a silenced one, an impaired agent and a stale one are each marked;
// the page loads nothing from elsewhere. Screenshots (desktop, the detail panel, a 400 px
// phone) are kept as artifacts.
func TestLivePage(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{"admin-secret"}
	pv := startPageView(t, cfg, pageHistory(time.Now())...)
	base := pv.base
	f := startFleet(t, base)
	// edge5 pushes once: it turns stale three push intervals later and stays listed.
	if code := postWrite(t, base, "", encodePushes(t, agentPush{agent: "edge5", interval: 1, at: time.Now(),
		sites: map[string]string{"pangyo": "up", "seoul": "up", "busan": "up", "daejeon": "up"}, targets: 2})); code != 204 {
		t.Fatalf("push: %d", code)
	}
	silence, _ := http.NewRequest(http.MethodPost, base+"/api/v1/silences", strings.NewReader(`{"site":"busan","duration":"2h","comment":"power work"}`))
	silence.Header.Set("Authorization", "Bearer admin-secret")
	if resp, err := http.DefaultClient.Do(silence); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("silence busan: %v %v", resp, err)
	}

	ctx := browser(t, 1280, 760)
	waitPage(t, ctx, "load the board",
		chromedp.Navigate(base+"/"),
		present(`.site[data-site="pangyo"][data-state="up"] .seg[data-state="up"]`),
		present(`#conn[data-state="live"]`),
	)
	// A page reload would lose this mark.
	eval[string](t, ctx, `window.loadedOnce = "same page"`)

	f.set(board{pangyoDown: []string{"edge1", "edge2"}, split: true, busanDown: true})
	time.Sleep(300 * time.Millisecond) // a moment of partition before the loss
	f.set(board{pangyoDown: []string{"edge1", "edge2", "edge3"}, split: true, busanDown: true})
	waitPage(t, ctx, "pangyo lost, with a lost span after its up span",
		present(`.site[data-site="pangyo"][data-state="lost"] .seg[data-state="lost"][data-end="now"]`),
		present(`#log li[data-to="lost"]`),
		present(`.site[data-site="seoul"][data-state="partitioned"]`),
		present(`.site[data-site="busan"][data-state="lost"][data-silenced="true"]`),
		present(`.agent.stale[data-agent="edge5"]`),
	)
	if got := eval[string](t, ctx, `window.loadedOnce || "reloaded"`); got != "same page" {
		t.Errorf("the page reloaded to show the change")
	}

	// pangyo's hour: no data until the history's first change 52 minutes ago, then up,
	// lost for two minutes, up, unknown while its agents paused, up, and lost up to now.
	spans := eval[string](t, ctx, `[...document.querySelectorAll('.site[data-site="pangyo"] .seg')].map(s => s.dataset.state).join(" ")`)
	if want := "up lost up unknown up partitioned lost"; spans != want {
		t.Errorf("pangyo's spans %q, want %q", spans, want)
	}
	covered := eval[bool](t, ctx, `[...document.querySelectorAll('.site[data-site="pangyo"] .seg')].some(s => {
		const bar = s.parentElement.getBoundingClientRect(), r = s.getBoundingClientRect();
		return r.left < bar.left + bar.width * 0.12; })`)
	if covered {
		t.Errorf("a span covers the minutes before the history begins: want them shown as no data")
	}
	lower := strings.ToLower
	if noData := hover(t, ctx, `.site[data-site="pangyo"] .tl`, 0.04); !strings.Contains(lower(noData), "no data") {
		t.Errorf("hover on the start of the hour: %q, want no data", noData)
	}
	clockRE := regexp.MustCompile(`\d\d:\d\d:\d\d`)
	old := hover(t, ctx, `.site[data-site="pangyo"] .seg[data-state="lost"]`, 0.5)
	if !strings.Contains(lower(old), "lost") || len(clockRE.FindAllString(old, -1)) < 2 || !strings.Contains(old, "lasted 2 min") ||
		!strings.Contains(old, "detected in 0.38 s") {
		t.Errorf("hover on the lost span of 41 minutes ago: %q; want lost, its start and end, 2 min and detected in 0.38 s", old)
	}
	now := hover(t, ctx, `.site[data-site="pangyo"] .seg[data-state="lost"][data-end="now"]`, 0.5)
	if !strings.Contains(lower(now), "lost") || !clockRE.MatchString(now) || !strings.Contains(now, "\u2192 now") ||
		!regexp.MustCompile(`detected in \d+\.\d+ s`).MatchString(now) || !strings.Contains(now, "for ") {
		t.Errorf("hover on the lost span of now: %q; want lost, its start, now, its duration and detect_seconds", now)
	}

	// Partitioned and silenced, each distinct from a plain loss.
	seoul := eval[string](t, ctx, `document.querySelector('.site[data-site="seoul"] .head').innerText`)
	if !strings.Contains(seoul, "reachable from some agents only") {
		t.Errorf("seoul %q: want the partition explained", seoul)
	}
	style := func(sel, prop string) string {
		return eval[string](t, ctx, `getComputedStyle(document.querySelector(`+strconv.Quote(sel)+`)).`+prop)
	}
	lostBadge, partBadge, busanBadge := `.site[data-site="pangyo"] .badge`, `.site[data-site="seoul"] .badge`, `.site[data-site="busan"] .badge`
	if style(lostBadge, "backgroundColor") == style(partBadge, "backgroundColor") {
		t.Errorf("lost and partitioned badges share the colour %s", style(lostBadge, "backgroundColor"))
	}
	if !strings.Contains(style(busanBadge, "backgroundImage"), "repeating-linear-gradient") || style(lostBadge, "backgroundImage") != "none" {
		t.Errorf("busan's badge %q, pangyo's %q: want the silenced one hatched, the other plain",
			style(busanBadge, "backgroundImage"), style(lostBadge, "backgroundImage"))
	}
	busan := eval[string](t, ctx, `document.querySelector('.site[data-site="busan"] .head').innerText`)
	icon := eval[bool](t, ctx, `document.querySelector('.site[data-site="busan"] svg.muted-icon') !== null`)
	if !strings.Contains(busan, "silenced") || !icon {
		t.Errorf("busan %q (muted icon %v): want it marked silenced", busan, icon)
	}
	banner := eval[string](t, ctx, `document.getElementById("banner").innerText`)
	if first := strings.SplitN(banner, "\n", 2)[0]; first != "LOST: pangyo" {
		t.Errorf("banner %q: want LOST: pangyo alone on its first line (busan is silenced)", banner)
	}
	impaired := eval[string](t, ctx, `(document.querySelector('.site[data-site="pangyo"] .agent.impaired[data-agent="edge4"]') || {}).innerText || ""`)
	stale := eval[string](t, ctx, `(document.querySelector('.site[data-site="pangyo"] .agent.stale[data-agent="edge5"]') || {}).innerText || ""`)
	if !strings.Contains(impaired, "impaired") || !strings.Contains(stale, "stale") {
		t.Errorf("cells edge4 %q, edge5 %q: want them marked impaired and stale", impaired, stale)
	}
	hover(t, ctx, `.site[data-site="pangyo"] .seg[data-state="lost"]`, 0.5)
	shot(t, ctx, "board-lost.png")

	// A click on a cell: that agent's targets at the site, with the failure reason.
	waitPage(t, ctx, "open edge1's targets at pangyo",
		chromedp.Click(chromedp.CSS(`.agent[data-site="pangyo"][data-agent="edge1"]`)),
		present(`#detail:not([hidden]) tr[data-target="t0-icmp"]`),
	)
	detail := eval[string](t, ctx, `document.getElementById("detail").innerText`)
	for _, want := range []string{"edge1 \u2192 pangyo", "t0-icmp", "t1-http", "down", "failed", "250.0 ms", "timeout", "no answer before the deadline"} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail panel %q lacks %q", detail, want)
		}
	}
	shot(t, ctx, "board-detail.png")
	waitPage(t, ctx, "close the panel", chromedp.KeyEvent("\x1b"), until(`document.getElementById("detail").hidden`))

	// The page loaded nothing but itself and the API.
	foreign := eval[string](t, ctx, `performance.getEntriesByType("resource").map(e => e.name).filter(u => !u.startsWith(location.origin)).join(" ")`)
	if foreign != "" {
		t.Errorf("the page loaded %s", foreign)
	}

	// A phone-width window: one column, still readable.
	waitPage(t, ctx, "phone width",
		chromedp.EmulateViewport(400, 900),
		until(`document.querySelector(".board").getBoundingClientRect().width <= 400`),
	)
	if wide := eval[float64](t, ctx, `document.documentElement.scrollWidth`); wide > 400 {
		t.Errorf("at 400 px the page is %v px wide: it scrolls sideways", wide)
	}
	if bar := eval[float64](t, ctx, `document.querySelector(".tl").getBoundingClientRect().width`); bar < 300 {
		t.Errorf("at 400 px a timeline is %v px wide: want the one-column layout, the bar across the screen", bar)
	}
	shot(t, ctx, "board-phone.png")
}

// TestTimelineSegments holds the page's timeline rule (segments) to what it must show
// and nothing it cannot know, in the page itself: the verdict before the oldest change
// the view holds only from that change's "from", a view restart (a change from unknown
// after one to up) as no data between them, a forgotten site as no data, and a site
// with no change held as its current verdict since its "since".
func TestTimelineSegments(t *testing.T) {
	pv := startPageView(t, DefaultConfig())
	ctx := browser(t, 800, 600)
	waitPage(t, ctx, "load the page", chromedp.Navigate(pv.base+"/"), present(`#conn[data-state="live"]`))
	for _, tt := range []struct{ name, changes, site, want string }{
		{"held from the oldest change's from",
			`[{"site":"s","from":"up","to":"lost","time":-30},{"site":"s","from":"lost","to":"up","time":-20}]`,
			`{"name":"s","state":"up","since":-20}`, "up -40..-30 | lost -30..-20 | up -20..now"},
		{"a first change from unknown tells nothing before it",
			`[{"site":"s","from":"unknown","to":"up","time":-30}]`,
			`{"name":"s","state":"up","since":-30}`, "up -30..now"},
		{"a restart between two changes",
			`[{"site":"s","from":"up","to":"degraded","time":-35},{"site":"s","from":"unknown","to":"up","time":-10}]`,
			`{"name":"s","state":"up","since":-10}`, "up -40..-35 | up -10..now"},
		{"forgotten, then back",
			`[{"site":"s","from":"unknown","to":"up","time":-40},{"site":"s","from":"up","to":"forgotten","time":-30},{"site":"s","from":"unknown","to":"lost","time":-5}]`,
			`{"name":"s","state":"lost","since":-5}`, "up -40..-30 | lost -5..now"},
		{"no change held",
			`[]`, `{"name":"s","state":"unknown","since":-15}`, "unknown -15..now"},
		{"a verdict newer than the changes held",
			`[{"site":"s","from":"unknown","to":"up","time":-40}]`,
			`{"name":"s","state":"lost","since":-2}`, "up -40..-2 | lost -2..now"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Times are minutes from now; the history held reaches back 40 minutes.
			got := eval[string](t, ctx, `(() => {
				const T = Date.now(), m = v => T + v * 60e3, back = v => v === T ? "now" : String(Math.round((v - T) / 60e3));
				st.changes = new Map(); st.reach = m(-40);
				for (const c of `+tt.changes+`) { c.t = m(c.time); (st.changes.get(c.site) || st.changes.set(c.site, []).get(c.site)).push(c); }
				const site = `+tt.site+`; site.since = new Date(m(site.since)).toISOString();
				return segments(site, m(-60), T).map(s => s.state + " " + back(s.realStart) + ".." + (s.ongoing ? "now" : back(s.end))).join(" | ");
			})()`)
			if got != tt.want {
				t.Errorf("segments: %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPageSelfContained: the page is one file that names no other origin; the CSP it is
// served with allows nothing else either.
func TestPageSelfContained(t *testing.T) {
	page, err := webFS.ReadFile("web/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?i)(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//`).Find(page); m != nil {
		t.Errorf("the page refers to another origin: %s", m)
	}
	if bytes.Contains(page, []byte("<link")) || regexp.MustCompile(`<script[^>]+src`).Match(page) {
		t.Errorf("the page loads a stylesheet or script of its own file")
	}
	base, _ := startView(t, DefaultConfig())
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

// TestLivePageReadToken: with read_tokens the page asks for a token and shows no data
// without one; opened with #token= it keeps the token in the tab, takes it off the
// address bar, reads the API and follows the event stream with it (fetch, as EventSource
// cannot send it), and after the stream is cut it reconnects with Last-Event-ID and gets
// the change it missed, without reloading the history; when it missed more than the
// view's ring holds, the view says reset and the page reads everything anew. A refused
// token is said so.
func TestLivePageReadToken(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadTokens = []string{"reader-secret"}
	pv := startPageViewRing(t, cfg, 8)
	base := pv.base
	f := startFleet(t, base)

	ctx := browser(t, 1100, 640)
	waitPage(t, ctx, "the page without a token",
		chromedp.Navigate(base+"/"),
		present(`#auth:not([hidden])`),
		until(`document.getElementById("main").hidden`),
	)
	msg := eval[string](t, ctx, `document.getElementById("auth").innerText + " / " + document.getElementById("conn").innerText`)
	if !strings.Contains(msg, "read token") || !strings.Contains(msg, "#token=") {
		t.Errorf("without a token the page says %q: want it to ask for a read token", msg)
	}
	if n := eval[float64](t, ctx, `document.querySelectorAll(".site").length`); n != 0 {
		t.Errorf("without a token the page shows %v sites", n)
	}
	shot(t, ctx, "auth-needed.png")

	waitPage(t, ctx, "a refused token",
		chromedp.Navigate(base+"/?again#token=wrong"),
		present(`#auth:not([hidden])`),
	)
	if msg := eval[string](t, ctx, `document.getElementById("auth-msg").innerText`); !strings.Contains(msg, "refused") {
		t.Errorf("with a wrong token the page says %q: want it refused", msg)
	}

	waitPage(t, ctx, "the page with #token=",
		chromedp.Navigate(base+"/?with-token#token=reader-secret"),
		present(`.site[data-site="pangyo"][data-state="up"]`),
		present(`#conn[data-state="live"]`),
	)
	where := eval[string](t, ctx, `location.hash + "|" + sessionStorage.getItem("edgeprobe-view-token")`)
	if where != "|reader-secret" { // the query string stays: it is the test's, not the token
		t.Errorf("hash|stored token = %q, want the token moved from the address bar to sessionStorage", where)
	}

	f.set(board{pangyoDown: []string{"edge1", "edge2", "edge3"}})
	waitPage(t, ctx, "the loss, live over the token's stream",
		present(`.site[data-site="pangyo"][data-state="lost"]`),
		present(`#log li[data-to="lost"]`),
	)
	streams, histories := pv.recorded()
	if len(streams) == 0 || streams[len(streams)-1].Get("Authorization") != "Bearer reader-secret" {
		t.Fatalf("event stream requests %v: want the read token as a bearer header", streams)
	}
	lostID := eval[float64](t, ctx, `st.lastId`)

	// Cut the stream, change the verdict while the page is away: it reconnects with the
	// last id it saw and gets the change from the view's ring.
	pv.ts.CloseClientConnections()
	f.set(board{})
	waitPage(t, ctx, "the missed recovery, replayed",
		until(`[...document.querySelectorAll("#log li")].some(li => li.textContent.includes("pangyo: lost \u2192 up"))`),
		present(`#conn[data-state="live"]`),
	)
	after, historiesAfter := pv.recorded()
	if len(after) <= len(streams) {
		t.Fatalf("the page did not reconnect its stream (%d requests)", len(after))
	}
	re := after[len(streams)]
	if got := re.Get("Last-Event-ID"); got != strconv.Itoa(int(lostID)) || re.Get("Authorization") != "Bearer reader-secret" {
		t.Errorf("reconnected with Last-Event-ID %q, Authorization %q; want %v and the token", got, re.Get("Authorization"), lostID)
	}
	if historiesAfter != histories {
		t.Errorf("the page read the history %d times more to catch up; the stream's replay should do", historiesAfter-histories)
	}

	// Cut again and miss more changes than the ring of 8 holds: reset, read anew.
	pv.ts.CloseClientConnections()
	for i := range 10 {
		f.set(board{split: i%2 == 0})
	}
	waitPage(t, ctx, "the reset, and the board read anew",
		until(`[...document.querySelectorAll("#log li")].some(li => li.textContent.includes("seoul: partitioned \u2192 up"))`),
		present(`.site[data-site="seoul"][data-state="up"]`),
		present(`#conn[data-state="live"]`),
	)
	if _, h := pv.recorded(); h <= historiesAfter {
		t.Errorf("after missing more than the ring holds the page did not read the history anew")
	}
	shot(t, ctx, "token-live.png")
}

// TestLivePageFailover: a view with [actions] shows its failover on the page: the site's
// state once the runbook ran, the audit log, and the hold when one is set.
func TestLivePageFailover(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "runbook")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`state_dir = "state"
admin_tokens = ["page-admin"]

[[actions.exec]]
site = "pangyo"
command = ["runbook"]
timeout = "10s"
`), filepath.Join(dir, "view.toml"))
	if err != nil {
		t.Fatal(err)
	}
	pv := startPageView(t, cfg)
	f := startFleet(t, pv.base)
	ctx := browser(t, 1100, 900)
	waitPage(t, ctx, "the board with its failover panel",
		chromedp.Navigate(pv.base+"/"),
		present(`.site[data-site="pangyo"][data-state="up"]`),
		present(`#failover:not([hidden]) #fo-sites tr[data-site="pangyo"]`),
	)
	f.set(board{pangyoDown: pageAgents})
	waitPage(t, ctx, "pangyo failed over, in the panel and its audit log",
		present(`.site[data-site="pangyo"][data-state="lost"]`),
		until(`[...document.querySelectorAll("#fo-sites td")].some(td => td.dataset.state === "failed_over")`),
		until(`[...document.querySelectorAll("#fo-audit li")].some(li => li.textContent.includes("failover"))`),
	)
	req, _ := http.NewRequest(http.MethodPost, pv.base+"/api/v1/failover/hold", strings.NewReader(`{"reason":"page test","who":"test"}`))
	req.Header.Set("Authorization", "Bearer page-admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("hold: %s", resp.Status)
	}
	waitPage(t, ctx, "the hold shown",
		until(`!document.getElementById("fo-hold").hidden && document.getElementById("fo-hold").textContent.includes("page test")`),
	)
	shot(t, ctx, "board-failover.png")
}
