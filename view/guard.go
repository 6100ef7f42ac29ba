package view

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/edgeprobe/edgeprobe/internal/linequeue"
)

// The view's defences at the HTTP level (view/README.md, "Hostile input"): which Host a
// request may name, how many connections it may hold, and how much memory the pushes
// being read and decoded may take at once. They sit in front of every handler, so a
// new endpoint is covered without asking.

// Bounds of the push memory budget (max_push_memory).
const (
	// Half of max_push_memory is for bodies being read, half for bodies being decoded:
	// a push holds its body's share while it waits for a decoding share, never the
	// other way round, so two budgets cannot deadlock where one shared pool could.
	// Bodies announcing more than smallBody may together take only half of the bodies'
	// share, so that a few large bodies held open cannot starve the agents' ordinary
	// pushes (tens of kilobytes).
	smallBody = 256 << 10
	// minBodyCharge is what any body is charged at least: the smallest a push costs the
	// view in buffers, so that the budget also bounds the number of bodies in flight.
	minBodyCharge = 16 << 10
	// budgetWait is how long a push waits for its share before it is answered 503
	// with Retry-After: long enough for a burst to pass, short against the agents'
	// 5 s timeout.
	budgetWait = time.Second
)

// hardening is the state of those defences, one per Server.
type hardening struct {
	anyHost  bool
	hosts    map[string]bool // names a Host header may carry; IP literals always may
	reserved map[string]bool // agents with their own token (agent_tokens)

	bodies, large, decoding *budget
	conns                   *connLimit
	pushes                  atomic.Pointer[pushConns] // of the Serve under way (pushconn.go)
	rejects                 *rejectLog
	events                  *linequeue.Queue
}

func newHardening(cfg *Config, s *Server) *hardening {
	// A Config built in code may skip Defaults; a zero budget or cap would refuse all.
	if cfg.MaxPushMemory <= 0 {
		cfg.MaxPushMemory = DefaultMaxPushMemory
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	h := &hardening{
		hosts:    map[string]bool{"localhost": true},
		reserved: map[string]bool{},
		bodies:   newBudget(cfg.MaxPushMemory / 2),
		large:    newBudget(cfg.MaxPushMemory / 4),
		decoding: newBudget(cfg.MaxPushMemory / 2),
		conns:    newConnLimit(cfg.MaxConnections),
		rejects:  newRejectLog(s.log),
		events: linequeue.New(s.opts.Events, s.log,
			"event log: lines dropped, stdout is not read fast enough or failed (edgeprobe_view_log_dropped_total)"),
	}
	addHost := func(name string) {
		if name = hostKey(name); name != "" {
			h.hosts[name] = true
		}
	}
	// A rebinding attack needs a name the attacker controls: the view's own names (its
	// listen host, the machine's host name) and IP literals are safe to allow.
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		addHost(host)
	}
	if name, err := os.Hostname(); err == nil {
		addHost(name)
	}
	for _, name := range cfg.AllowedHosts {
		if name == "*" {
			h.anyHost = true
		}
		addHost(name)
	}
	for _, at := range cfg.AgentTokens {
		h.reserved[at.Agent] = true
	}
	return h
}

// hostKey is a Host header (or a configured name) as compared: without port, brackets
// and trailing dot, in lower case.
func hostKey(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	return strings.ToLower(host)
}

// hostAllowed says whether a request naming host may be served. DNS rebinding points a
// name the attacker owns at the view's address, so that a page of that name may read
// and push as if it were the view's own: its requests still carry the attacker's name
// in Host. An empty Host (HTTP/1.0) comes from no browser.
func (h *hardening) hostAllowed(host string) bool {
	if h.anyHost || host == "" {
		return true
	}
	key := hostKey(host)
	if _, err := netip.ParseAddr(key); err == nil {
		return true
	}
	return h.hosts[key]
}

// guard checks every request's Host before any handler sees it.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hard.hostAllowed(r.Host) {
			msg := "Host " + r.Host + " is not a name of this view; add it to allowed_hosts in view.toml"
			if r.URL.Path == writePath {
				s.metrics.received.Inc()
				s.reject(w, http.StatusMisdirectedRequest, "host", msg)
				return
			}
			s.hard.rejects.note("host", msg)
			http.Error(w, msg, http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writePath is where agents push.
const writePath = "/api/v1/write"

// budget is a memory budget in bytes: a weighted semaphore whose waiters are served in
// order, so that a large push is not overtaken for ever by small ones.
type budget struct {
	size int64
	sem  *semaphore.Weighted
	used atomic.Int64
}

func newBudget(size int64) *budget {
	return &budget{size: size, sem: semaphore.NewWeighted(size)}
}

// errBusy says a push waited budgetWait for memory in vain.
var errBusy = errors.New("busy")

// acquire takes n bytes, waiting at most budgetWait (and no longer than ctx). n must not
// exceed the size: the caller refuses such a push first.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if !b.sem.TryAcquire(n) {
		ctx, cancel := context.WithTimeout(ctx, budgetWait)
		defer cancel()
		if err := b.sem.Acquire(ctx, n); err != nil {
			return errBusy
		}
	}
	b.used.Add(n)
	return nil
}

func (b *budget) release(n int64) {
	b.used.Add(-n)
	b.sem.Release(n)
}

// connLimit caps the view's open connections at max. When a new connection finds the
// cap reached, a connection without a request in progress is closed to make room: the
// one that has waited longest of those that still have not sent their request's headers
// newGrace after connecting (a client sends them at once; one that dawdles is a
// slowloris), or else of those idle for idleGrace between requests (agents push every
// second or so, so their keep-alive connections are idle for less). An agent whose idle
// connection is closed reconnects on its next push. Only when no connection may be
// closed does the view stop accepting until one can; new connections then wait in the
// kernel's backlog, and every connection the view holds is bounded by its timeouts.
type connLimit struct {
	max int

	mu     sync.Mutex
	open   int
	closed bool
	// The connections without a request in progress, oldest first: those that have
	// not sent one yet (StateNew) and those between requests (StateIdle).
	fresh, idle connList
	changed     chan struct{} // a connection closed or the listener did
	evicted     atomic.Uint64
}

// Grace before a connection without a request in progress may be closed for room.
const (
	newGrace  = time.Second
	idleGrace = 5 * time.Second
)

// connList is a list of connections linked through themselves, so that the ConnState
// hook, called twice a push, neither allocates nor looks a connection up.
type connList struct{ front, back *limitedConn }

func (ls *connList) pushBack(c *limitedConn) {
	c.list, c.prev, c.next = ls, ls.back, nil
	if ls.back != nil {
		ls.back.next = c
	} else {
		ls.front = c
	}
	ls.back = c
}

func (ls *connList) remove(c *limitedConn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		ls.front = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		ls.back = c.prev
	}
	c.list, c.prev, c.next = nil, nil, nil
}

func newConnLimit(max int) *connLimit {
	return &connLimit{max: max, changed: make(chan struct{}, 1)}
}

// listener wraps ln so that it holds to the cap.
func (l *connLimit) listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l}
}

type limitedListener struct {
	net.Listener
	l    *connLimit
	once sync.Once
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	if err := ll.l.room(); err != nil {
		return nil, err
	}
	c, err := ll.Listener.Accept()
	if err != nil {
		ll.l.release()
		return nil, err
	}
	return &limitedConn{Conn: c, l: ll.l}, nil
}

// room waits until a connection may be accepted, closing one to make room when one
// may be closed, and counts the connection to come.
func (l *connLimit) room() error {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return net.ErrClosed
		}
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return nil
		}
		now := time.Now()
		wait := idleGrace
		var victim *limitedConn
		for _, w := range [...]struct {
			ls    *connList
			grace time.Duration
		}{{&l.fresh, newGrace}, {&l.idle, idleGrace}} {
			c := w.ls.front
			if c == nil {
				continue
			}
			if left := c.since.Add(w.grace).Sub(now); left > 0 {
				wait = min(wait, left)
			} else if victim == nil {
				victim = c
			}
		}
		if victim != nil {
			l.forgetLocked(victim)
		}
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Add(1)
			victim.Close()
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-l.changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func (ll *limitedListener) Close() error {
	ll.once.Do(func() {
		ll.l.mu.Lock()
		ll.l.closed = true
		ll.l.mu.Unlock()
		ll.l.signal()
	})
	return ll.Listener.Close()
}

func (l *connLimit) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *connLimit) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
	l.signal()
}

func (l *connLimit) forgetLocked(c *limitedConn) {
	if c.list != nil {
		c.list.remove(c)
	}
}

type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
	// Under l.mu: the list the connection is in (nil: none, a request is in progress
	// or it closed), since when, and its neighbours there.
	list       *connList
	since      time.Time
	prev, next *limitedConn
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.forgetLocked(c)
		c.l.mu.Unlock()
		c.l.release()
	})
	return err
}

// track is the http.Server's ConnState hook: it keeps the lists of connections without a
// request in progress, the ones that may be closed to make room.
func (l *connLimit) track(nc net.Conn, state http.ConnState) {
	if rc, ok := nc.(*returnedConn); ok {
		nc = rc.Conn
	}
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetLocked(c)
	var ls *connList
	switch state {
	case http.StateNew:
		ls = &l.fresh
	case http.StateIdle:
		ls = &l.idle
	default:
		return
	}
	c.since = time.Now()
	ls.pushBack(c)
}

func (l *connLimit) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// serve applies the connection cap to an http.Server about to serve ln.
func (s *Server) serve(srv *http.Server, ln net.Listener) net.Listener {
	srv.ConnState = s.hard.conns.track
	return s.hard.conns.listener(ln)
}

var (
	connsDesc        = prometheus.NewDesc("edgeprobe_view_connections", "Open HTTP connections (max_connections caps them).", nil, nil)
	evictedDesc      = prometheus.NewDesc("edgeprobe_view_connections_evicted_total", "Connections without a request in progress closed to make room under max_connections.", nil, nil)
	pushMemoryDesc   = prometheus.NewDesc("edgeprobe_view_push_memory_bytes", "Bytes of max_push_memory held by pushes, by use (bodies being read, bodies being decoded).", []string{"use"}, nil)
	logDroppedDesc   = prometheus.NewDesc("edgeprobe_view_log_dropped_total", "Event log lines dropped because stdout was not read fast enough or failed.", nil, nil)
	takenDesc        = prometheus.NewDesc("edgeprobe_view_connections_taken", "Open connections whose pushes the view reads itself, taken over from net/http after an accepted push.", nil, nil)
	hardeningMetrics = []*prometheus.Desc{connsDesc, evictedDesc, pushMemoryDesc, logDroppedDesc, takenDesc}
)

// Describe and Collect make the defences' counters part of the view's /metrics.
func (h *hardening) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range hardeningMetrics {
		ch <- d
	}
}

func (h *hardening) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(h.conns.count()))
	ch <- prometheus.MustNewConstMetric(evictedDesc, prometheus.CounterValue, float64(h.conns.evicted.Load()))
	ch <- prometheus.MustNewConstMetric(pushMemoryDesc, prometheus.GaugeValue, float64(h.bodies.used.Load()), "bodies")
	ch <- prometheus.MustNewConstMetric(pushMemoryDesc, prometheus.GaugeValue, float64(h.decoding.used.Load()), "decoding")
	ch <- prometheus.MustNewConstMetric(logDroppedDesc, prometheus.CounterValue, float64(h.events.Dropped()))
	ch <- prometheus.MustNewConstMetric(takenDesc, prometheus.GaugeValue, float64(h.pushes.Load().count()))
}
