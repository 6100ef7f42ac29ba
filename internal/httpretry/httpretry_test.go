package httpretry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 3 ", 3 * time.Second},
		{"-5", 0},
		{"soon", 0},
		{now.Add(45 * time.Second).Format(http.TimeFormat), 45 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"86400", time.Minute}, // capped
		{now.Add(48 * time.Hour).Format(http.TimeFormat), time.Minute},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.value, now, time.Minute); got != tt.want {
			t.Errorf("RetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for attempt := range 40 {
		ceiling := min(50*time.Millisecond<<min(attempt, 30), 5*time.Second)
		for range 20 {
			d := Backoff(attempt, 50*time.Millisecond, 5*time.Second)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestPosterRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := calls.Add(1); {
		case r.Header.Get("X-Sig") != "signed":
			w.WriteHeader(http.StatusBadRequest)
		case n == 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		case n == 2:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	p := &Poster{Client: srv.Client(), MaxRetries: 3, Base: time.Millisecond, Max: 10 * time.Millisecond}
	sign := func(h http.Header, _ []byte) { h.Set("X-Sig", "signed") }
	if err := p.Post(context.Background(), srv.URL, []byte("{}"), nil, sign); err != nil || calls.Load() != 3 {
		t.Fatalf("Post = %v after %d calls, want success on the third", err, calls.Load())
	}
	calls.Store(0)
	err := p.Post(context.Background(), srv.URL, []byte("{}"), nil, nil)
	if e, ok := err.(*Error); !ok || e.Status != http.StatusBadRequest || e.Retryable || calls.Load() != 1 {
		t.Fatalf("Post without the signature = %v after %d calls, want one 400, not retried", err, calls.Load())
	}
}

func TestSendRedactsURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/hook?api_key=s3cret"
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	err := Send(srv.Client(), req, time.Second)
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v shows a secret", err)
	}
	dead, _ := http.NewRequest(http.MethodPost, "http://user:hunter2@127.0.0.1:1/x?token=s3cret", nil)
	err = Send(&http.Client{Timeout: time.Second}, dead, time.Second)
	if e, ok := err.(*Error); !ok || !e.Retryable || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("transport error %v: want retryable and without secrets", err)
	}
}
