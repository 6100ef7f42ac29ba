package failover

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHandler: the API's status, hold, release, failback and audit, its answers in
// JSON, errors included.
func TestHandler(t *testing.T) {
	script := writeScript(t, "#!/bin/sh\n")
	c, _ := newController(t, execConfig(t, script, ""))
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, body %s", method, path, ct, data)
		}
		var out map[string]any
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: %s is not JSON: %v", method, path, data, err)
		}
		return resp.StatusCode, out
	}
	errOf := func(m map[string]any) string { s, _ := m["error"].(string); return s }

	code, st := call("GET", PathStatus, "")
	if code != 200 || st["hold"] != nil || len(st["sites"].([]any)) != 1 {
		t.Fatalf("status %d %v", code, st)
	}
	for _, tt := range []struct {
		method, path, body string
		code               int
		err                string
	}{
		{"POST", PathHold, "", 400, "a hold needs a reason"},
		{"POST", PathHold, `{"reason":`, 400, "request body"},
		{"POST", PathHold, `{"reason":"x","force":true}`, 400, `unknown field "force"`},
		{"POST", PathRelease, "", 409, "not held"},
		{"POST", PathFailback + "nowhere", "", 404, "no actions are configured"},
		{"POST", PathFailback + "dca", "", 409, "not failed over (it is primary)"},
		{"GET", PathAudit + "?limit=0", "", 400, "allowed: 1 to 1000"},
		{"GET", PathAudit + "?limit=x", "", 400, "allowed: 1 to 1000"},
		{"GET", PathHold, "", 405, "method GET not allowed"},
		{"DELETE", PathStatus, "", 405, "not allowed"},
		{"GET", PathStatus + "/nothing", "", 404, "no failover endpoint"},
	} {
		code, out := call(tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(errOf(out), tt.err) {
			t.Errorf("%s %s %s: %d %q, want %d and %q", tt.method, tt.path, tt.body, code, errOf(out), tt.code, tt.err)
		}
	}
	code, out := call("POST", PathHold, `{"reason":"maintenance","who":"alice"}`)
	if code != 200 || out["ok"] != true {
		t.Fatalf("hold: %d %v", code, out)
	}
	if code, out := call("POST", PathHold, `{"reason":"again"}`); code != 409 || !strings.Contains(errOf(out), "by alice") {
		t.Errorf("second hold: %d %v", code, out)
	}
	_, st = call("GET", PathStatus, "")
	if h, _ := st["hold"].(map[string]any); h["reason"] != "maintenance" || h["who"] != "alice" {
		t.Errorf("hold in status: %v", st["hold"])
	}
	c.Update("dca", verdict("lost", time.Now()))
	c.idle()
	if code, out := call("POST", PathRelease, `{"who":"bob"}`); code != 200 {
		t.Fatalf("release: %d %v", code, out)
	}
	c.idle()
	if code, out := call("POST", PathFailback+"dca", ""); code != 200 {
		t.Fatalf("failback: %d %v", code, out)
	}
	c.idle()
	code, out = call("GET", PathAudit+"?limit=3", "")
	recs, _ := out["records"].([]any)
	if code != 200 || len(recs) != 3 {
		t.Fatalf("audit: %d %v", code, out)
	}
	newest := recs[0].(map[string]any)
	if newest["decision"] != DecisionFailback || !strings.HasPrefix(newest["who"].(string), "api 127.0.0.1:") {
		t.Errorf("newest record %v", newest)
	}
	_, st = call("GET", PathStatus, "")
	site := st["sites"].([]any)[0].(map[string]any)
	if site["state"] != StatePrimary || len(site["last"].([]any)) == 0 {
		t.Errorf("site %v", site)
	}
}
