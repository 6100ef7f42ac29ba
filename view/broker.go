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
// it missed from the event ring, then the live ones, none twice; when the ring no longer
// holds them all it gets `event: reset`, meaning: read /api/v1/sites anew.
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
	if !send(": connected\nretry: 1000\n\n") {
		return
	}
	// Subscribed first, replayed second: a change made in between comes twice, and its
	// id tells which to skip.
	var sent uint64
	if last, ok := lastEventID(r); ok {
		missed, complete := s.eventLog.since(last, 0)
		if !complete && !send("event: reset\ndata: {}\n\n") {
			return
		}
		for _, c := range missed {
			if !send(sseFrame(c)) {
				return
			}
			sent = c.ID
		}
	}
	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case c, open := <-sub.ch:
			if !open {
				return
			}
			if c.ID <= sent {
				continue
			}
			if !send(sseFrame(c)) {
				return
			}
			sent = c.ID
		case <-keepAlive.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}

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

// broker fans verdict changes out to SSE clients. A client whose queue is full is cut
// off (its channel closed) rather than waited for; it reconnects with Last-Event-ID and
// loses nothing the ring still holds.
type broker struct {
	mu       sync.Mutex
	clients  map[*subscriber]struct{}
	byClient map[string]int // streams per client host
	dropped  int
	refused  int
}

type subscriber struct {
	ch     chan Change
	client string
}

const sseQueue = 64

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
	sub := &subscriber{ch: make(chan Change, sseQueue), client: client}
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
	close(sub.ch)
	if b.byClient[sub.client]--; b.byClient[sub.client] <= 0 {
		delete(b.byClient, sub.client)
	}
}

func (b *broker) unsubscribe(sub *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drop(sub)
}

func (b *broker) publish(c Change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.clients {
		select {
		case sub.ch <- c:
		default:
			b.drop(sub)
			b.dropped++
		}
	}
}

func (b *broker) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.clients {
		b.drop(sub)
	}
}

func (b *broker) counts() (clients, dropped, refused int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients), b.dropped, b.refused
}
