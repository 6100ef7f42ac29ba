//go:build linux

package probes

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// quietLog keeps the expected handshake failures of the TLS tests out of the output.
var quietLog = log.New(io.Discard, "", 0)

func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "status: ok")
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s x-probe=%s", r.Method, body, r.Host, r.Header.Get("X-Probe"))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 64<<10)
		for range 40 { // 2.5 MiB
			io.WriteString(w, chunk)
		}
		io.WriteString(w, "needle")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for range 50 {
			io.WriteString(w, "x")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return mux
}

func TestHTTPProbe(t *testing.T) {
	srv := httptest.NewServer(testMux())
	defer srv.Close()
	tests := []struct {
		name string
		spec HTTPSpec
		want Reason
	}{
		{"ok", HTTPSpec{URL: "/healthz"}, ReasonNone},
		{"exact status", HTTPSpec{URL: "/nocontent", Status: []string{"204"}}, ReasonNone},
		{"status not accepted", HTTPSpec{URL: "/nocontent", Status: []string{"200"}}, ReasonStatus},
		{"5xx", HTTPSpec{URL: "/broken"}, ReasonStatus},
		{"5xx accepted", HTTPSpec{URL: "/broken", Status: []string{"5xx"}}, ReasonNone},
		{"body match", HTTPSpec{URL: "/healthz", BodyMatch: `status: ok`}, ReasonNone},
		{"body mismatch", HTTPSpec{URL: "/healthz", BodyMatch: `status: degraded`}, ReasonBody},
		{"method, body, headers", HTTPSpec{URL: "/echo", Method: "POST", Body: "ping",
			Headers:   map[string]string{"X-Probe": "1", "Host": "site.example.test"},
			BodyMatch: `^POST ping host=site\.example\.test x-probe=1$`}, ReasonNone},
		{"redirect not followed: 3xx counts", HTTPSpec{URL: "/redirect"}, ReasonNone},
		{"redirect not followed, 2xx wanted", HTTPSpec{URL: "/redirect", Status: []string{"2xx"}}, ReasonStatus},
		{"redirect followed", HTTPSpec{URL: "/redirect", Redirects: 1, BodyMatch: "status: ok"}, ReasonNone},
		{"redirect loop stops at the limit", HTTPSpec{URL: "/loop", Redirects: 3}, ReasonStatus},
		{"huge body within limit", HTTPSpec{URL: "/huge", BodyLimit: 4 << 20, BodyMatch: "needle$"}, ReasonNone},
		{"huge body over the default limit", HTTPSpec{URL: "/huge", BodyMatch: "needle$"}, ReasonBody},
		{"huge body cut off without match", HTTPSpec{URL: "/huge"}, ReasonNone},
		{"slow body", HTTPSpec{URL: "/slow"}, ReasonTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.URL = srv.URL + tt.spec.URL
			p, err := New(KindHTTP, tt.spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := probeOnce(t, p, probeTimeout(tt.want))
			if r.Reason != tt.want || r.OK != (tt.want == ReasonNone) {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
			if r.OK && (r.Phases.Connect <= 0 || r.Phases.Processing <= 0) {
				t.Errorf("phases %+v: want connect and processing timed", r.Phases)
			}
		})
	}
}

// TestHTTPFreshConnections checks that every probe opens its own connection unless
// keep_alive is asked for.
func TestHTTPFreshConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(testMux())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	for _, tt := range []struct {
		keepAlive bool
		want      int64
	}{{false, 3}, {true, 1}} {
		conns.Store(0)
		p, err := New(KindHTTP, HTTPSpec{URL: srv.URL + "/healthz", KeepAlive: tt.keepAlive}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if r := probeOnce(t, p, time.Second); !r.OK {
				t.Fatalf("%+v", r)
			}
		}
		if got := conns.Load(); got != tt.want {
			t.Errorf("keep_alive %v: %d connections for 3 probes, want %d", tt.keepAlive, got, tt.want)
		}
		p.(*httpProber).Close()
	}
}

func TestHTTPTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(testMux())
	srv.Config.ErrorLog = quietLog
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	// A client certificate signed by a CA of our own, for a server that asks for one.
	certFile, keyFile := testkit.NewCA(t).Client(t, "client").Files(t, t.TempDir(), "client")
	mtls := httptest.NewUnstartedServer(testMux())
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	mtls.Config.ErrorLog = quietLog
	mtls.StartTLS()
	defer mtls.Close()

	tests := []struct {
		name string
		url  string
		tls  TLSSpec
		want Reason
	}{
		{"unknown CA", srv.URL, TLSSpec{}, ReasonTLS},
		{"ca_file", srv.URL, TLSSpec{CAFile: caFile}, ReasonNone},
		{"server_name mismatch", srv.URL, TLSSpec{CAFile: caFile, ServerName: "other.example.test"}, ReasonTLS},
		{"server_name in the certificate", srv.URL, TLSSpec{CAFile: caFile, ServerName: "example.com"}, ReasonNone},
		{"insecure", srv.URL, TLSSpec{Insecure: true}, ReasonNone},
		{"client certificate required, none given", mtls.URL, TLSSpec{Insecure: true}, ReasonTLS},
		{"client certificate given", mtls.URL, TLSSpec{Insecure: true, CertFile: certFile, KeyFile: keyFile}, ReasonNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(KindHTTP, HTTPSpec{URL: tt.url + "/healthz", TLS: tt.tls}, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := probeOnce(t, p, probeTimeout(tt.want))
			if r.Reason != tt.want || r.OK != (tt.want == ReasonNone) {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
			if r.OK && r.Phases.TLS <= 0 {
				t.Errorf("phases %+v: want the TLS handshake timed", r.Phases)
			}
		})
	}
}

func TestHTTPHostile(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want Reason
	}{
		{"accepts, never answers", "http://" + silentTCP(t) + "/", ReasonTimeout},
		{"refused", "http://" + testkit.FreePort(t, "tcp") + "/", ReasonRefused},
		{"name does not resolve", "http://nonexistent.invalid/", ReasonResolve},
	}
	env := &Env{Resolver: NewResolver([]string{testkit.FreePort(t, "udp")})}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(KindHTTP, HTTPSpec{URL: tt.url}, env)
			if err != nil {
				t.Fatal(err)
			}
			r := probeOnce(t, p, probeTimeout(tt.want))
			if r.Reason != tt.want || r.OK {
				t.Fatalf("got %+v, want reason %q", r, tt.want)
			}
		})
	}
}

func TestHTTPSpecErrors(t *testing.T) {
	tests := []struct {
		spec HTTPSpec
		want string
	}{
		{HTTPSpec{}, "url: missing"},
		{HTTPSpec{URL: "ftp://example.test/"}, `has scheme "ftp"; allowed: http or https`},
		{HTTPSpec{URL: "http:///path"}, "has no host"},
		{HTTPSpec{URL: "http://127.0.0.1/", Family: "ip6"}, `family: "ip6" contradicts the address 127.0.0.1`},
		{HTTPSpec{URL: "http://a.test/", Method: "GE T"}, `method: "GE T"`},
		{HTTPSpec{URL: "http://a.test/", Headers: map[string]string{"Bad Name": "x"}}, `headers."Bad Name": "Bad Name" is not a valid header name`},
		{HTTPSpec{URL: "http://a.test/", Status: []string{"2xx", "700"}}, `status[1]: "700"`},
		{HTTPSpec{URL: "http://a.test/", Status: []string{"ok"}}, `status[0]: "ok"`},
		{HTTPSpec{URL: "http://a.test/", BodyMatch: "(["}, "body_match: "},
		{HTTPSpec{URL: "http://a.test/", BodyLimit: -1}, "body_limit: -1"},
		{HTTPSpec{URL: "http://a.test/", Redirects: -2}, "redirects: -2"},
		{HTTPSpec{URL: "http://a.test/", Family: "ipv4"}, `family: "ipv4"`},
		{HTTPSpec{URL: "https://a.test/", TLS: TLSSpec{CertFile: "c.pem"}}, "tls: cert_file and key_file go together"},
	}
	for _, tt := range tests {
		_, err := New(KindHTTP, tt.spec, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("spec %+v: error %v, want %q", tt.spec, err, tt.want)
		}
	}
}

// TestHTTPFamily serves on ::1 only and asks for a name with both an A (127.0.0.1) and
// an AAAA (::1) record: family ip6 reaches the server, ip4 goes to 127.0.0.1, where
// nothing listens on that port.
func TestHTTPFamily(t *testing.T) {
	requireIPv6Loopback(t)
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(testMux())
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	env := &Env{Resolver: NewResolver([]string{startDNSPair(t, &movingZone{})})}
	for _, tt := range []struct {
		family string
		want   Reason
	}{{"ip6", ReasonNone}, {"ip4", ReasonRefused}} {
		p, err := New(KindHTTP, HTTPSpec{URL: "http://dual.example.test:" + port + "/healthz", Family: tt.family}, env)
		if err != nil {
			t.Fatal(err)
		}
		if r := probeOnce(t, p, probeTimeout(tt.want)); r.Reason != tt.want {
			t.Errorf("family %s: %+v, want reason %q", tt.family, r, tt.want)
		}
	}
}
