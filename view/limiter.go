package view

import (
	"sync"
	"time"
)

// limiter is a token bucket per agent: rate pushes a second, burst at once.
type limiter struct {
	rate  float64
	burst float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	pruneSize int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}, pruneSize: 4096}
}

// allow takes one token from each agent's bucket, or none when one of them is empty; it
// then says how long until that one has a token again.
func (l *limiter) allow(now time.Time, agents ...string) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) >= l.pruneSize {
		l.prune(now)
	}
	ok = true
	for _, a := range agents {
		b := l.buckets[a]
		if b == nil {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[a] = b
		}
		b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
		b.last = now
		if b.tokens < 1 {
			ok = false
			wait = max(wait, time.Duration((1-b.tokens)/l.rate*float64(time.Second)))
		}
	}
	if ok {
		for _, a := range agents {
			l.buckets[a].tokens--
		}
	}
	return wait, ok
}

// limited names the first of agents whose bucket is empty at now, for messages.
func (l *limiter) limited(now time.Time, agents []string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range agents {
		if b := l.buckets[a]; b != nil && b.tokens+now.Sub(b.last).Seconds()*l.rate < 1 {
			return a
		}
	}
	return agents[0]
}

// prune forgets the buckets that are full again (their agents are as if never seen), so
// that pushes under ever new agent names cannot grow the map without end.
func (l *limiter) prune(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, a)
		}
	}
	l.pruneSize = max(4096, 2*len(l.buckets))
}
