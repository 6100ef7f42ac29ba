package view

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sseWriteTimeout bounds one write to an SSE client, so a client that stopped reading
// holds a goroutine for at most this long.
const sseWriteTimeout = 10 * time.Second

// handleEvents streams verdict changes as server-sent events, each with its id. A client
// that reconnects with Last-Event-ID (browsers do by themselves) first gets the changes
// it missed, then the live ones, none twice; when the event ring no longer holds them
// all it gets `event: reset`, meaning: read /api/v1/sites anew.
//
// Every client reads from the one event ring at its own pace: the broker only wakes it,
// so a burst of changes (a thousand sites turning up at a view's start) costs no copy per
// client, and a slow client is not cut off: it falls behind, and only when it falls
// further behind than the ring is it told to reset. A client that stops reading
// altogether is cut when a write has been blocked for sseWriteTimeout.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	client := clientAddr(r)
	sub, refusal := s.broker.subscribe(client, s.cfg.MaxEventClients, s.cfg.MaxEventClientsPerClient)
	if sub == nil {
		s.log.Warn("events client refused", "remote", r.RemoteAddr, "reason", refusal)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many event clients: "+refusal, http.StatusServiceUnavailable)
		return
	}
	defer s.broker.unsubscribe(sub)
	rc := http.NewResponseController(w)
	// The server's read timeout would end the stream; its request is read already.
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func(text string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := io.WriteString(w, text); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// Subscribed first, then the position taken, then the client told it is connected:
	// a change made after that is read from the ring like any other.
	sent := s.eventLog.lastID()
	if last, ok := lastEventID(r); ok {
		sent = last
	}
	if !send(": connected\nretry: 1000\n\n") {
		return
	}
	// catchUp sends what the ring holds after sent, sseBatch at a time.
	catchUp := func() bool {
		for {
			batch, complete := s.eventLog.since(sent, sseBatch)
			if !complete {
				s.broker.reset()
				if !send("event: reset\ndata: {}\n\n") {
					return false
				}
				if len(batch) == 0 {
					sent = s.eventLog.lastID()
				}
			}
			for _, c := range batch {
				if !send(sseFrame(c)) {
					return false
				}
				sent = c.ID
			}
			if len(batch) < sseBatch {
				return true
			}
		}
	}
	if !catchUp() {
		return
	}
	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case _, open := <-sub.wake:
			if !open || !catchUp() {
				return
			}
		case <-keepAlive.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}

// sseBatch is how many events a client is sent per read of the ring.
const sseBatch = 256

// sseFrame is one change as a server-sent event.
func sseFrame(c Change) string {
	data, _ := json.Marshal(c)
	return "id: " + strconv.FormatUint(c.ID, 10) + "\ndata: " + string(data) + "\n\n"
}

// lastEventID is the id a reconnecting client saw last: the Last-Event-ID header, or a
// last_event_id query parameter for clients that cannot set headers.
func lastEventID(r *http.Request) (uint64, bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	return id, err == nil
}

// clientAddr is the host a request came from, for the per-client cap.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// broker wakes the SSE clients when a verdict changes; each reads the change from the
// event ring itself.
type broker struct {
	mu       sync.Mutex
	clients  map[*subscriber]struct{}
	byClient map[string]int // streams per client host
	resets   int            // clients told to reset: they fell behind the ring
	refused  int
}

type subscriber struct {
	wake   chan struct{} // capacity 1: there is something new in the ring
	client string
}

func newBroker() *broker {
	return &broker{clients: map[*subscriber]struct{}{}, byClient: map[string]int{}}
}

// subscribe adds a stream for client, or returns nil and why when limit streams are open
// already, or perClient of them from that client.
func (b *broker) subscribe(client string, limit, perClient int) (*subscriber, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case limit > 0 && len(b.clients) >= limit:
		b.refused++
		return nil, fmt.Sprintf("max_event_clients %d", limit)
	case perClient > 0 && b.byClient[client] >= perClient:
		b.refused++
		return nil, fmt.Sprintf("max_event_clients_per_client %d from %s", perClient, client)
	}
	sub := &subscriber{wake: make(chan struct{}, 1), client: client}
	b.clients[sub] = struct{}{}
	b.byClient[client]++
	return sub, ""
}

// drop removes sub; b.mu is held.
func (b *broker) drop(sub *subscriber) {
	if _, ok := b.clients[sub]; !ok {
		return
	}
	delete(b.clients, sub)
	close(sub.wake)
	if b.byClient[sub.client]--; b.byClient[sub.client] <= 0 {
		delete(b.byClient, sub.client)
	}
}

func (b *broker) unsubscribe(sub *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drop(sub)
}

// publish wakes every client; it never blocks.
func (b *broker) publish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.clients {
		select {
		case sub.wake <- struct{}{}:
		default: // woken already
		}
	}
}

// reset counts a client that fell further behind than the ring.
func (b *broker) reset() {
	b.mu.Lock()
	b.resets++
	b.mu.Unlock()
}

func (b *broker) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.clients {
		b.drop(sub)
	}
}

func (b *broker) counts() (clients, resets, refused int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients), b.resets, b.refused
}
