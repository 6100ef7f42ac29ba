package view

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request) {
	s.metrics.received.Inc()
	boundAgent, ok := s.authorize(r)
	if !ok {
		s.reject(w, http.StatusUnauthorized, "unauthorized", "missing or unknown bearer token")
		return
	}
	// An agent's own token is limited before its body is even read.
	if boundAgent != "" {
		if wait, ok := s.limiter.allow(time.Now(), boundAgent); !ok {
			s.rateLimited(w, boundAgent, wait)
			return
		}
	}
	if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "io.prometheus.write.v2") {
		s.reject(w, http.StatusUnsupportedMediaType, "unsupported", "remote_write 2.0 is not supported; send remote_write 1.0 (prometheus.WriteRequest)")
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "snappy") {
		s.reject(w, http.StatusUnsupportedMediaType, "unsupported", fmt.Sprintf("content encoding %q is not supported; want snappy", ce))
		return
	}
	limit := s.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes exceeds max_body_bytes %d", r.ContentLength, limit))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds max_body_bytes %d", limit))
			return
		}
		s.reject(w, http.StatusBadRequest, "read", "read body: "+err.Error())
		return
	}
	s.decodeSlots <- struct{}{}
	reports, err := DecodeWrite(body, limit)
	<-s.decodeSlots
	if err != nil {
		var pe *pushError
		reason, code := "bad_content", http.StatusBadRequest
		if errors.As(err, &pe) {
			reason = pe.reason
		}
		if reason == "too_large" {
			code = http.StatusRequestEntityTooLarge
		}
		s.reject(w, code, reason, err.Error())
		return
	}
	if boundAgent != "" {
		for _, rep := range reports {
			if rep.Agent != boundAgent {
				s.reject(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token of agent %q cannot push series of agent %q", boundAgent, rep.Agent))
				return
			}
		}
	} else {
		names := make([]string, len(reports))
		for i, rep := range reports {
			names[i] = rep.Agent
		}
		if wait, ok := s.limiter.allow(time.Now(), names...); !ok {
			who := names[0]
			if len(names) > 1 {
				who = fmt.Sprintf("%s (one of the %d agents in the push)", s.limiter.limited(time.Now(), names), len(names))
			}
			s.rateLimited(w, who, wait)
			return
		}
	}
	s.applyMu.Lock()
	changes, ignored := s.engine.Apply(reports, time.Now())
	s.publish(changes)
	s.applyMu.Unlock()
	s.metrics.ignored.Add(float64(ignored))
	select {
	case s.wake <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// rateLimited answers 429 with the seconds until the agent may push again.
func (s *Server) rateLimited(w http.ResponseWriter, agent string, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
	s.reject(w, http.StatusTooManyRequests, "rate_limited",
		fmt.Sprintf("agent %s pushes faster than push_rate %g/s (burst %d)", agent, s.cfg.PushRate, s.cfg.PushBurst))
}

func (s *Server) reject(w http.ResponseWriter, code int, reason, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	s.log.Warn("push rejected", "reason", reason, "error", msg)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edgeprobe view"`)
	}
	http.Error(w, msg, code)
}
