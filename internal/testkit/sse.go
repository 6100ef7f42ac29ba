package testkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Event is one server-sent event (the HTML standard's "event stream" format).
type Event struct {
	ID      string    // its id: field; "" when it had none
	Type    string    // its event: field; "" for the default type, message
	Data    string    // its data: lines, joined by "\n"
	Arrived time.Time // when this process read the blank line that ended it
}

// EventsOptions are the optional settings of DialEvents and FollowEvents.
type EventsOptions struct {
	Client *http.Client // nil: a client without timeout (the stream lasts)
	Header http.Header  // added to the request, e.g. Authorization
	// LastEventID is sent as Last-Event-ID: the id of the last event a previous
	// connection read (Events.LastID), so that the server sends only what came after.
	LastEventID string
	// Retry keeps trying to connect for this long while the connection is refused or
	// the server answers 503 (a server still starting, or full); 0 tries once.
	Retry time.Duration
}

// Events is a subscription to a server-sent event stream. It reads in the background
// from DialEvents until the stream ends or Close, and keeps every event and comment (it
// is meant for tests and load runs of bounded length).
type Events struct {
	url    string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	events   []Event
	taken    int // events returned by Next
	comments []string
	lastID   string
	err      error         // why the stream ended, once done is closed
	more     chan struct{} // closed and replaced when something arrives
}

// DialEvents connects to the event stream at url and returns once the server has
// subscribed this client: after a 200 with Content-Type text/event-stream and the first
// line of the body (the view writes ": connected" once the client is subscribed, so no
// event published after DialEvents returns is missed). ctx bounds the connection and
// the stream's life.
func DialEvents(ctx context.Context, url string, opts EventsOptions) (*Events, error) {
	client := opts.Client
	if client == nil {
		client = &http.Client{}
	}
	ctx, cancel := context.WithCancel(ctx)
	var resp *http.Response
	deadline := time.Now().Add(opts.Retry)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			cancel()
			return nil, err
		}
		for k, vs := range opts.Header {
			req.Header[k] = append(req.Header[k], vs...)
		}
		req.Header.Set("Accept", "text/event-stream")
		if opts.LastEventID != "" {
			req.Header.Set("Last-Event-ID", opts.LastEventID)
		}
		resp, err = client.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
			if resp.StatusCode != http.StatusServiceUnavailable {
				cancel()
				return nil, err
			}
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			cancel()
			return nil, fmt.Errorf("events %s: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: Content-Type %q, want text/event-stream", url, ct)
	}
	s := &Events{url: url, cancel: cancel, done: make(chan struct{}), more: make(chan struct{}), lastID: opts.LastEventID}
	first := make(chan struct{})
	go s.read(resp, first)
	select {
	case <-first:
		return s, nil
	case <-s.done:
		return nil, s.Err()
	}
}

// FollowEvents is DialEvents for a test: it fails tb when the stream cannot be
// followed, and closes it when the test ends. Connecting is retried for 15 s unless
// opts.Retry says otherwise.
func FollowEvents(tb TB, url string, opts EventsOptions) *Events {
	tb.Helper()
	if opts.Retry == 0 {
		opts.Retry = 15 * time.Second
	}
	s, err := DialEvents(context.Background(), url, opts)
	if err != nil {
		tb.Fatalf("following %s: %v", url, err)
	}
	tb.Cleanup(s.Close)
	return s
}

// read parses the stream as the HTML standard says, closing first after the first line.
func (s *Events) read(resp *http.Response, first chan struct{}) {
	defer close(s.done)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var id, typ string
	var data []string
	hasData, hasID := false, false
	once := sync.OnceFunc(func() { close(first) })
	for sc.Scan() {
		once()
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			s.dispatch(id, hasID, typ, data, hasData)
			id, typ, data, hasData, hasID = "", "", nil, false, false
			continue
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			s.add(func() { s.comments = append(s.comments, strings.TrimPrefix(c, " ")) })
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data, hasData = append(data, value), true
		case "id":
			if !strings.ContainsRune(value, 0) {
				id, hasID = value, true
			}
		case "event":
			typ = value
		}
	}
	err := sc.Err()
	if err == nil {
		err = errors.New("the server ended the stream")
	}
	s.add(func() { s.err = fmt.Errorf("events %s: %w", s.url, err) })
}

// dispatch ends one event: its id becomes the last id even without data, and an event
// with data is kept.
func (s *Events) dispatch(id string, hasID bool, typ string, data []string, hasData bool) {
	if !hasID && !hasData {
		return
	}
	now := time.Now()
	s.add(func() {
		if hasID {
			s.lastID = id
		}
		if hasData {
			s.events = append(s.events, Event{ID: s.lastID, Type: typ, Data: strings.Join(data, "\n"), Arrived: now})
		}
	})
}

// add changes the state under the lock and wakes the waiters.
func (s *Events) add(change func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change()
	close(s.more)
	s.more = make(chan struct{})
}

// Next returns the oldest event that Next has not returned yet, waiting for it until ctx
// ends. Once the stream has ended and every event was returned, it returns why it ended.
func (s *Events) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if s.taken < len(s.events) {
			e := s.events[s.taken]
			s.taken++
			s.mu.Unlock()
			return e, nil
		}
		more := s.more
		s.mu.Unlock()
		select {
		case <-more:
		case <-s.done:
			s.mu.Lock()
			empty := s.taken == len(s.events)
			s.mu.Unlock()
			if empty {
				return Event{}, s.Err()
			}
		case <-ctx.Done():
			return Event{}, fmt.Errorf("events %s: no event: %w", s.url, ctx.Err())
		}
	}
}

// NextWithin is Next with a time limit.
func (s *Events) NextWithin(d time.Duration) (Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	e, err := s.Next(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("events %s: no event within %v", s.url, d)
	}
	return e, err
}

// All returns every event read so far, whether Next returned it or not.
func (s *Events) All() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// WaitComment waits up to d for a comment line (": text") whose text starts with prefix,
// counting those read already, and says whether one came.
func (s *Events) WaitComment(prefix string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		s.mu.Lock()
		for _, c := range s.comments {
			if strings.HasPrefix(c, prefix) {
				s.mu.Unlock()
				return true
			}
		}
		more := s.more
		s.mu.Unlock()
		select {
		case <-more:
		case <-s.done:
			return false
		case <-timer.C:
			return false
		}
	}
}

// LastID is the id of the last event read (or the LastEventID the stream was dialled
// with): what a reconnection passes as EventsOptions.LastEventID.
func (s *Events) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// Done is closed when the stream has ended; Err then says why.
func (s *Events) Done() <-chan struct{} { return s.done }

// Err is why the stream ended, or nil while it goes on.
func (s *Events) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the stream and waits for the reader. The events read stay readable.
func (s *Events) Close() {
	s.cancel()
	<-s.done
}
