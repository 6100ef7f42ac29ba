package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// API paths, under the view's address.
const (
	PathStatus   = "/api/v1/failover"
	PathHold     = "/api/v1/failover/hold"
	PathRelease  = "/api/v1/failover/release"
	PathFailback = "/api/v1/failover/failback/" // + site
	PathAudit    = "/api/v1/failover/audit"
)

// Audit page sizes of GET /api/v1/failover/audit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = auditKeep
)

// maxRequestBytes bounds a request body: a reason is a sentence.
const maxRequestBytes = 64 << 10

// Request is the JSON body of the POST endpoints; every field is optional except the
// reason of a hold. Who names the operator in the audit log (default: "api" and the
// client's address).
type Request struct {
	Reason string `json:"reason,omitempty"`
	Who    string `json:"who,omitempty"`
}

// Response is the JSON answer of the POST endpoints; Error is set on failure.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Handler serves the failover API. The view mounts it behind its admin-token check:
//
//	GET  /api/v1/failover                 Status
//	POST /api/v1/failover/hold            {"reason": "..."}
//	POST /api/v1/failover/release
//	POST /api/v1/failover/failback/{site}
//	GET  /api/v1/failover/audit?limit=N   the latest records, newest first
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.HandleFunc("GET "+PathAudit, func(w http.ResponseWriter, r *http.Request) {
		limit := DefaultAuditLimit
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxAuditLimit {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: allowed: 1 to %d", s, MaxAuditLimit))
				return
			}
			limit = n
		}
		writeJSON(w, http.StatusOK, struct {
			Records []Record `json:"records"`
		}{c.Audit(limit)})
	})
	mux.HandleFunc("POST "+PathHold, c.post(func(req Request, who string) error {
		return c.Hold(req.Reason, who)
	}))
	mux.HandleFunc("POST "+PathRelease, c.post(func(_ Request, who string) error {
		return c.Release(who)
	}))
	mux.HandleFunc("POST "+PathFailback+"{site}", func(w http.ResponseWriter, r *http.Request) {
		site := r.PathValue("site")
		c.post(func(_ Request, who string) error { return c.Failback(site, who) })(w, r)
	})
	return methodErrors(mux)
}

// post decodes the optional JSON body, runs fn and answers with the new status.
func (c *Controller) post(fn func(req Request, who string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Request
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxRequestBytes))
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("request body: %v; allowed: {\"reason\": \"...\", \"who\": \"...\"}", err))
				return
			}
		}
		who := strings.TrimSpace(req.Who)
		if who == "" {
			who = "api " + r.RemoteAddr
		}
		if err := fn(req, who); err != nil {
			writeError(w, statusOf(err), err.Error())
			return
		}
		st := c.Status()
		writeJSON(w, http.StatusOK, Response{OK: true, Status: &st})
	}
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrUnknownSite):
		return http.StatusNotFound
	case errors.Is(err, ErrNoReason):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFailedOver), errors.Is(err, ErrBusy), errors.Is(err, ErrHeld), errors.Is(err, ErrNotHeld):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Response{Error: msg})
}

// methodErrors answers the mux's own 404 and 405 with JSON errors instead of text.
func methodErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(&muxErrors{ResponseWriter: w, r: r}, r)
	})
}

type muxErrors struct {
	http.ResponseWriter
	r       *http.Request
	swallow bool
}

func (m *muxErrors) WriteHeader(code int) {
	plain := strings.HasPrefix(m.Header().Get("Content-Type"), "text/plain")
	if plain && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		m.swallow = true
		m.Header().Del("X-Content-Type-Options")
		msg := fmt.Sprintf("no failover endpoint %s", m.r.URL.Path)
		if code == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s not allowed on %s; allowed: %s", m.r.Method, m.r.URL.Path, m.Header().Get("Allow"))
		}
		writeError(m.ResponseWriter, code, msg)
		return
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *muxErrors) Write(b []byte) (int, error) {
	if m.swallow {
		return len(b), nil
	}
	return m.ResponseWriter.Write(b)
}
