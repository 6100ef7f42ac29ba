package view

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// sseWriteTimeout bounds one write to an SSE client, so a client that stopped reading
// holds a goroutine for at most this long.
const sseWriteTimeout = 10 * time.Second

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	sub := s.broker.subscribe(s.cfg.MaxEventClients)
	if sub == nil {
		s.log.Warn("events client refused", "remote", r.RemoteAddr, "max_event_clients", s.cfg.MaxEventClients)
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("too many event clients (max_event_clients %d)", s.cfg.MaxEventClients), http.StatusServiceUnavailable)
		return
	}
	defer s.broker.unsubscribe(sub)
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
	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case data, open := <-sub:
			if !open {
				return
			}
			if !send("data: " + string(data) + "\n\n") {
				return
			}
		case <-keepAlive.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}

// broker fans verdict changes out to SSE clients. A client whose queue is full is cut
// off (its channel closed) rather than waited for; browsers reconnect on their own.
type broker struct {
	mu      sync.Mutex
	clients map[chan []byte]struct{}
	dropped int
	refused int
}

const sseQueue = 64

func newBroker() *broker { return &broker{clients: map[chan []byte]struct{}{}} }

// subscribe adds a client, or returns nil when limit clients are connected already.
func (b *broker) subscribe(limit int) chan []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if limit > 0 && len(b.clients) >= limit {
		b.refused++
		return nil
	}
	ch := make(chan []byte, sseQueue)
	b.clients[ch] = struct{}{}
	return ch
}

func (b *broker) unsubscribe(ch chan []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.clients[ch]; ok {
		delete(b.clients, ch)
		close(ch)
	}
}

func (b *broker) publish(data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.clients {
		select {
		case ch <- data:
		default:
			delete(b.clients, ch)
			close(ch)
			b.dropped++
		}
	}
}

func (b *broker) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.clients {
		delete(b.clients, ch)
		close(ch)
	}
}

func (b *broker) counts() (clients, dropped, refused int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients), b.dropped, b.refused
}
