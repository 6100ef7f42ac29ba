package view

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// The view has three kinds of callers (docs/architecture.md, "Failover"; view/README.md):
// agents that push (tokens, agent_tokens), readers of the page and API (read_tokens,
// open when none are set) and administrators who set silences and hold or release the
// failover (admin_tokens; that API is off without them). Every token is a bearer token.

// bearerToken is the token of an Authorization header; the scheme is matched without
// regard to case, as RFC 7235 says.
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// tokenIn says whether got is one of want, in constant time for each.
func tokenIn(got string, want []string) bool {
	if got == "" {
		return false
	}
	found := false
	for _, w := range want {
		if subtle.ConstantTimeCompare([]byte(got), []byte(w)) == 1 {
			found = true
		}
	}
	return found
}

// authorize checks a push's bearer token. It returns the agent the token is bound to ("" for
// a shared token or when no tokens are configured).
func (s *Server) authorize(r *http.Request) (agent string, ok bool) {
	if len(s.cfg.Tokens) == 0 && len(s.cfg.AgentTokens) == 0 {
		return "", true
	}
	got := bearerToken(r)
	if got == "" {
		return "", false
	}
	for _, at := range s.cfg.AgentTokens {
		if subtle.ConstantTimeCompare([]byte(got), []byte(at.token)) == 1 {
			return at.Agent, true
		}
	}
	return "", tokenIn(got, s.cfg.Tokens)
}

// requireRead lets a request through when reads are open or it carries a read or admin
// token.
func (s *Server) requireRead(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(s.cfg.ReadTokens) > 0 {
			got := bearerToken(r)
			if !tokenIn(got, s.cfg.ReadTokens) && !tokenIn(got, s.cfg.AdminTokens) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="edgeprobe view"`)
				http.Error(w, "missing or unknown read token (read_tokens)", http.StatusUnauthorized)
				return
			}
		}
		h(w, r)
	}
}

// requireAdmin lets a request through only with an admin token.
func (s *Server) requireAdmin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(s.cfg.AdminTokens) == 0 {
			http.Error(w, "this view has no admin_tokens: its admin API is off", http.StatusForbidden)
			return
		}
		if !tokenIn(bearerToken(r), s.cfg.AdminTokens) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeprobe view admin"`)
			http.Error(w, "missing or unknown admin token (admin_tokens)", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}
