package view

import (
	"context"
	"net/http"
	"sync"

	"github.com/edgeprobe/edgeprobe/failover"
)

// actionFeed hands verdicts to the failover controller in the order they happened, off
// the apply lock: the controller fsyncs its state and audit log when it decides, and a
// push must not wait for a disk. Each verdict carries the time it was computed at, which
// is the controller's "now", so a verdict delivered late is still judged on time.
//
// The queue is not bounded by a count: it holds verdict changes, which arrive at the rate
// sites change, and drains as fast as the controller decides (milliseconds); dropping one
// would make the controller's damping wrong.
type actionFeed struct {
	ctl *failover.Controller

	mu    sync.Mutex
	queue []actionUpdate
	wake  chan struct{} // capacity 1
}

type actionUpdate struct {
	site string
	v    failover.Verdict
}

func newActionFeed(ctl *failover.Controller) *actionFeed {
	return &actionFeed{ctl: ctl, wake: make(chan struct{}, 1)}
}

// put queues a verdict; it never blocks.
func (f *actionFeed) put(site string, st siteStatus) {
	f.mu.Lock()
	f.queue = append(f.queue, actionUpdate{site, failover.Verdict{State: st.Verdict, Since: st.Since,
		Witnesses: st.Witnesses, Down: st.Down, DetectSeconds: st.Detect, Silenced: st.Silenced, Time: st.Time}})
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run delivers the queued verdicts until ctx ends.
func (f *actionFeed) run(ctx context.Context) {
	var batch []actionUpdate
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		f.mu.Lock()
		batch, f.queue = f.queue, batch[:0]
		f.mu.Unlock()
		for _, u := range batch {
			if u.v.State == VerdictForgotten {
				// Nobody reports the site any more: nothing is known of it.
				u.v.State = VerdictUnknown
			}
			f.ctl.Update(u.site, u.v)
		}
		clear(batch)
	}
}

// requireMethodAuth lets reads (GET) through with a read token and everything else with
// an admin token only: the failover's status and audit are for readers, its hold,
// release and failback for administrators.
func (s *Server) requireMethodAuth(h http.Handler) http.HandlerFunc {
	read, admin := s.requireRead(h.ServeHTTP), s.requireAdmin(h.ServeHTTP)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			read(w, r)
			return
		}
		admin(w, r)
	}
}

// failoverAlert sends what the controller finds alert-worthy (an action held by a guard
// rail, the hold engaged, an update refused and retried, a conflict) to every notifier.
// The controller has logged it already (with part=failover), so it is not logged again.
func (s *Server) failoverAlert(a failover.Alert) {
	for _, n := range s.notifiers {
		n.actionAlert(a)
	}
}
