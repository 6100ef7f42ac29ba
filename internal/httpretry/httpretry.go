// Package httpretry is the one retry policy of edgeprobe's HTTP clients that push
// somewhere: the agent's remote_write exporter and the view's notifiers. Network errors,
// 429 and 5xx are retried after a backoff that doubles and keeps a random half of
// itself (so that many clients cut off together do not return together), at least as
// long as a Retry-After header asks, in either of its forms (seconds or an HTTP date),
// capped so that a misconfigured receiver cannot silence a client for days.
package httpretry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/netcheck"
)

// Backoff is the delay before retry number attempt (0 for the first retry): base
// doubled attempt times, at most ceiling, of which a random half is kept.
func Backoff(attempt int, base, ceiling time.Duration) time.Duration {
	ceiling = max(base, ceiling)
	d := ceiling
	if attempt < 30 {
		d = min(base<<attempt, ceiling)
	}
	return d/2 + rand.N(d/2+1)
}

// RetryAfter reads either form of a Retry-After value (seconds, or an HTTP date relative
// to now), at most limit; 0 when there is none or it does not parse.
func RetryAfter(value string, now time.Time, limit time.Duration) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(value); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(value); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, limit))
}

// Retryable says whether an answer with status may succeed when sent again.
func Retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// Error is a request that failed: Status 0 for a transport error.
type Error struct {
	Status     int
	Retryable  bool
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// maxExcerpt is how much of an error response's body an Error quotes.
const maxExcerpt = 256

// Send makes one request and classifies its outcome: nil on 2xx, an *Error otherwise.
// The URL in the error has its password and query values redacted.
func Send(client *http.Client, req *http.Request, maxRetryAfter time.Duration) error {
	shown := netcheck.Redact(req.URL.String())
	resp, err := client.Do(req)
	if err != nil {
		// net/http words the error with the URL (password hidden, query not): keep the
		// cause alone.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &Error{Retryable: req.Context().Err() == nil, Err: fmt.Errorf("%s %s: %w", req.Method, shown, err)}
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxExcerpt))
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	e := &Error{Status: resp.StatusCode, Retryable: Retryable(resp.StatusCode),
		Err: fmt.Errorf("%s %s: %s: %s", req.Method, shown, resp.Status, strings.TrimSpace(string(excerpt)))}
	if e.Retryable {
		e.RetryAfter = RetryAfter(resp.Header.Get("Retry-After"), time.Now(), maxRetryAfter)
	}
	return e
}

// Poster POSTs bodies with retries.
type Poster struct {
	Client     *http.Client
	MaxRetries int           // after the first attempt
	Base       time.Duration // the first backoff
	Max        time.Duration // the longest backoff, and the longest Retry-After honoured
	// OnRetry, if set, hears of each failed attempt that will be retried.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Post sends body to url with the given headers until it is accepted, the error is not
// retryable, MaxRetries retries failed, or ctx ends. header is set on every attempt
// (a signature over a timestamp is made anew by sign, when set).
func (p *Poster) Post(ctx context.Context, url string, body []byte, header http.Header, sign func(http.Header, []byte)) error {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("build request to %s: %w", netcheck.Redact(url), err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		if sign != nil {
			sign(req.Header, body)
		}
		err = Send(p.Client, req, p.Max)
		if err == nil {
			return nil
		}
		e, _ := err.(*Error)
		if e == nil || !e.Retryable || attempt >= p.MaxRetries || ctx.Err() != nil {
			return err
		}
		wait := max(Backoff(attempt, p.Base, p.Max), e.RetryAfter)
		if p.OnRetry != nil {
			p.OnRetry(attempt+1, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
