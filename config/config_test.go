package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
	"github.com/edgeprobe/edgeprobe/probes"
)

// configErrorLines returns the lines of a *tomlconf.Errors, failing the test on any other
// kind of error.
func configErrorLines(t *testing.T, err error) []string {
	t.Helper()
	var ce *tomlconf.Errors
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, want *tomlconf.Errors: %v", err, err)
	}
	return strings.Split(ce.Error(), "\n")
}

func TestLoadInvalidFiles(t *testing.T) {
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	reserved := "reserved: agent, site, target, kind, state, phase, reason, le, version, goversion, receiver, instance, job"
	tests := []struct {
		file string
		want []string // exact lines; {dir} is the absolute testdata directory
	}{
		{"invalid-unknown-key.toml", []string{
			`testdata/invalid-unknown-key.toml:4: agent.intervall: unknown key; allowed here: name, interval, timeout, timeout_min, timeout_max, confirm_interval, fail_threshold, lateness_allowance, icmp_mode, state_dir, labels`,
			`testdata/invalid-unknown-key.toml:16: site[1].http[1].urll: unknown key; allowed here: name, interval, timeout, labels, url, method, headers, body, status, body_match, body_limit, redirects, keep_alive, family, tls`,
			`testdata/invalid-unknown-key.toml:20: exporters.stdout.colour: unknown key; allowed here: format, results, summary`,
			`testdata/invalid-unknown-key.toml:22: exporters.extra: unknown key; allowed here: stdout, prometheus, remote_write`,
		}},
		{"invalid-key-case.toml", []string{
			`testdata/invalid-key-case.toml:3: agent.Interval: unknown key; keys are case-sensitive: did you mean "interval"?`,
			`testdata/invalid-key-case.toml:8: site[0].icmp[0].Address: unknown key; keys are case-sensitive: did you mean "address"?`,
		}},
		{"invalid-bare-number.toml", []string{
			`testdata/invalid-bare-number.toml:4: agent.interval: bare number 5 is not a duration; use a string with a unit, e.g. "500ms"`,
			`testdata/invalid-bare-number.toml:12: site[0].icmp[1].timeout: bare number 0.5 is not a duration; use a string with a unit, e.g. "500ms", or "auto"`,
			`testdata/invalid-bare-number.toml:16: exporters.remote_write[0].push_interval: bare number 1 is not a duration; use a string with a unit, e.g. "500ms"`,
		}},
		{"invalid-durations.toml", []string{
			`testdata/invalid-durations.toml:3: agent.interval: "0s" is not positive; allowed: a duration above zero`,
			`testdata/invalid-durations.toml:4: agent.timeout: "fast" is not a duration; use a number with a unit (ms, s, m, h), e.g. "500ms", or "auto"`,
			`testdata/invalid-durations.toml:5: agent.timeout_min: "-5ms" is not positive; allowed: a duration above zero`,
			`testdata/invalid-durations.toml:6: agent.confirm_interval: "5 s" is not a duration; use a number with a unit (ms, s, m, h), e.g. "500ms"`,
			`testdata/invalid-durations.toml:12: site[0].icmp[0].interval: bare number 1 is not a duration; use a string with a unit, e.g. "500ms"`,
		}},
		{"invalid-timeouts.toml", []string{
			`testdata/invalid-timeouts.toml:4: agent.timeout: 600ms is above agent.interval 500ms; allowed: "auto" or a duration up to the interval`,
			`testdata/invalid-timeouts.toml:5: agent.timeout_min: 300ms is above agent.timeout_max 200ms; allowed: at most timeout_max`,
			`testdata/invalid-timeouts.toml:7: agent.confirm_interval: 500ms is not shorter than agent.interval 500ms; allowed: less than the interval`,
			`testdata/invalid-timeouts.toml:8: agent.fail_threshold: 0 is too small; allowed: 1 or more`,
			`testdata/invalid-timeouts.toml:9: agent.lateness_allowance: 2s is above 1s; allowed: "0s" (off) or a duration up to 1s`,
			`testdata/invalid-timeouts.toml:15: site[0].icmp[0].timeout: 3s is above the target's interval 2s; allowed: "auto" or a duration up to the interval`,
			`testdata/invalid-timeouts.toml:16: site[0].icmp[1].timeout: 600ms (from agent.timeout) is above the target's interval 250ms; allowed: "auto" or a duration up to the interval`,
		}},
		{"invalid-no-sites.toml", []string{
			`testdata/invalid-no-sites.toml: site: no sites; add at least one [[site]] with a name and targets`,
		}},
		{"invalid-sites.toml", []string{
			`testdata/invalid-sites.toml:2: agent.name: "edge 1" has characters outside letters, digits, '.', '_', '-'`,
			`testdata/invalid-sites.toml:10: site[1].name: "pangyo" is already the name of site[0]; site names must be unique`,
			`testdata/invalid-sites.toml:14: site[2].name: missing; every site needs a name of letters, digits, '.', '_', '-'`,
			`testdata/invalid-sites.toml:19: site[3].name: "gasan dong" has characters outside letters, digits, '.', '_', '-'`,
			`testdata/invalid-sites.toml:23: site[4]: site "empty" has no targets; add [[site.icmp]], [[site.dns]], [[site.http]] or [[site.tcp]]`,
			`testdata/invalid-sites.toml:26: control: has no targets; add [[control.icmp]], [[control.dns]], [[control.http]] or [[control.tcp]], or remove [control]`,
		}},
		{"invalid-targets.toml", []string{
			`testdata/invalid-targets.toml:8: site[0].icmp[1].name: "icmp:198.51.100.11" is already the name of site[0].icmp[0]; target names must be unique within a site (set name = "...")`,
			`testdata/invalid-targets.toml:11: site[0].icmp[2].address: "198.51.100.300" is neither an IP address nor a host name`,
			`testdata/invalid-targets.toml:12: site[0].icmp[2].family: "ipv4" is not allowed; allowed: "", "ip4", "ip6"`,
			`testdata/invalid-targets.toml:15: site[0].icmp[3].family: "ip4" contradicts the address 2001:db8::1`,
			`testdata/invalid-targets.toml:16: site[0].icmp[3].size: 4 is out of range; allowed: 8 to 65487`,
			`testdata/invalid-targets.toml:19: site[0].dns[0].server: port "99999" is not a number from 1 to 65535`,
			`testdata/invalid-targets.toml:20: site[0].dns[0].query: missing; allowed: a domain name such as "www.example.test."`,
			`testdata/invalid-targets.toml:21: site[0].dns[0].type: "BOGUS" is not a DNS record type; allowed: a mnemonic such as A, AAAA, CNAME, MX, NS, SOA, TXT`,
			`testdata/invalid-targets.toml:22: site[0].dns[0].rcodes[1]: "OK" is not an rcode; allowed: a mnemonic such as NOERROR, NXDOMAIN, SERVFAIL, REFUSED`,
			"testdata/invalid-targets.toml:23: site[0].dns[0].answers[0]: \"(unclosed\" is not a valid regular expression: missing closing ): `(unclosed`",
			`testdata/invalid-targets.toml:24: site[0].dns[0].transport: "quic" is not allowed; allowed: "udp", "tcp", "tls"`,
			`testdata/invalid-targets.toml:27: site[0].http[0].url: "ftp://198.51.100.13/" has scheme "ftp"; allowed: http or https`,
			`testdata/invalid-targets.toml:29: site[0].http[1].url: "http:///healthz" has no host; allowed e.g. "http://198.51.100.13/healthz"`,
			`testdata/invalid-targets.toml:33: site[0].http[2].status[1]: "20x" is not a status code; allowed: a code from 100 to 599 ("204") or a class ("2xx")`,
			`testdata/invalid-targets.toml:33: site[0].http[2].status[2]: "600" is not a status code; allowed: a code from 100 to 599 ("204") or a class ("2xx")`,
			"testdata/invalid-targets.toml:34: site[0].http[2].body_match: \"a(b\" is not a valid regular expression: missing closing ): `a(b`",
			`testdata/invalid-targets.toml:35: site[0].http[2].method: "GE T" is not an HTTP method; allowed: a token such as GET, HEAD or POST`,
			`testdata/invalid-targets.toml:36: site[0].http[2].redirects: -1 is out of range; allowed: 0 to 20`,
			`testdata/invalid-targets.toml:37: site[0].http[2].tls: cert_file and key_file go together; set both for a client certificate, or neither`,
			`testdata/invalid-targets.toml:38: site[0].http[2].tls.enable: applies to tcp targets only; http uses TLS for https URLs`,
			`testdata/invalid-targets.toml:42: site[0].http[3].name: "web" is already the name of site[0].http[2]; target names must be unique within a site (set name = "...")`,
			`testdata/invalid-targets.toml:45: site[0].tcp[0].address: "198.51.100.15" is not host:port; allowed e.g. "198.51.100.13:443" or "[2001:db8::13]:443"`,
			`testdata/invalid-targets.toml:47: site[0].tcp[1].address: port "0" is not a number from 1 to 65535`,
			`testdata/invalid-targets.toml:49: site[0].tcp[2].address: "bad_host!" is neither an IP address nor a host name`,
		}},
		{"invalid-exporters.toml", []string{
			`testdata/invalid-exporters.toml:3: agent.icmp_mode: "fast" is not allowed; allowed: "auto", "raw", "datagram"`,
			`testdata/invalid-exporters.toml:12: exporters.stdout.format: "yaml" is not allowed; allowed: "text", "json"`,
			`testdata/invalid-exporters.toml:13: exporters.stdout.results: "some" is not allowed; allowed: "changes", "all"`,
			`testdata/invalid-exporters.toml:16: exporters.prometheus.listen: "9469" is not host:port; allowed e.g. "127.0.0.1:9469", or ":9469" for all addresses`,
			`testdata/invalid-exporters.toml:17: exporters.prometheus.path: "metrics" does not start with '/'; allowed e.g. "/metrics"`,
			`testdata/invalid-exporters.toml:18: exporters.prometheus.web_config: open {dir}/missing-web.yml: no such file or directory; allowed: an existing, readable regular file`,
			`testdata/invalid-exporters.toml:21: exporters.remote_write[0].url: "view.example:9470/api/v1/write" has scheme "view.example"; allowed: http or https`,
			`testdata/invalid-exporters.toml:23: exporters.remote_write[0].queue_size: 0 is too small; allowed: 1 or more`,
			`testdata/invalid-exporters.toml:24: exporters.remote_write[0].headers.Content-Type: is set by edgeprobe; reserved: Authorization, Content-Encoding, Content-Length, Content-Type, Host, User-Agent, X-Prometheus-Remote-Write-Version`,
			`testdata/invalid-exporters.toml:25: exporters.remote_write[0].bearer_token_file: open {dir}/missing.token: no such file or directory; allowed: an existing, readable regular file`,
			`testdata/invalid-exporters.toml:26: exporters.remote_write[0].basic_auth: set together with bearer_token_file; allowed: one of the two`,
			`testdata/invalid-exporters.toml:26: exporters.remote_write[0].basic_auth.password_file: missing; basic_auth needs a username and a password_file`,
			`testdata/invalid-exporters.toml:28: exporters.remote_write[0].spool: needs agent.state_dir, which is set to ""; set a state directory or remove the spool`,
			`testdata/invalid-exporters.toml:29: exporters.remote_write[0].spool.max_bytes: -1 is too small; allowed: 1 or more`,
			`testdata/invalid-exporters.toml:33: exporters.remote_write[1].name: "view" is already the name of exporters.remote_write[0]; receiver names must be unique (set name = "...")`,
		}},
		{"invalid-labels.toml", []string{
			`testdata/invalid-labels.toml:3: agent.labels.1abc: "1abc" is not a Prometheus label name; allowed: letters, digits and '_', not starting with a digit`,
			`testdata/invalid-labels.toml:3: agent.labels.__meta: names starting with "__" are reserved for Prometheus`,
			`testdata/invalid-labels.toml:3: agent.labels.a-b: "a-b" is not a Prometheus label name; allowed: letters, digits and '_', not starting with a digit`,
			`testdata/invalid-labels.toml:3: agent.labels.empty: empty value; Prometheus treats an empty label as absent, so remove it instead`,
			`testdata/invalid-labels.toml:3: agent.labels.site: is set by edgeprobe itself; ` + reserved,
			`testdata/invalid-labels.toml:7: site[0].labels.job: is set by edgeprobe itself; ` + reserved,
			`testdata/invalid-labels.toml:10: site[0].icmp[0].labels.target: is set by edgeprobe itself; ` + reserved,
		}},
		{"invalid-syntax.toml", []string{
			`testdata/invalid-syntax.toml:7: invalid TOML: Invalid float value: "198.51.100.11"`,
		}},
		{"invalid-types.toml", []string{
			`testdata/invalid-types.toml:3: agent.fail_threshold: must be an integer, not the string "3"`,
			`testdata/invalid-types.toml:4: agent.labels: must be a table of key = value pairs, not the string "region=kr"`,
			`testdata/invalid-types.toml:7: site[0].name: must be a string, not the integer 5`,
			`testdata/invalid-types.toml:10: site[0].icmp[0].size: must be an integer, not the float 56.5`,
			`testdata/invalid-types.toml:17: site[1].dns[0].rcodes: must be an array, not the string "NOERROR"`,
			`testdata/invalid-types.toml:18: site[1].dns[0].recursion: must be true or false, not the string "yes"`,
		}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", tt.file))
			if cfg != nil {
				t.Errorf("Load returned a config along with the error")
			}
			got := configErrorLines(t, err)
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "{dir}", abs))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errors differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
	// Every invalid file must be in the table, so none goes untested.
	files, err := filepath.Glob("testdata/invalid-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expected errors in the table", f)
		}
	}
}

// TestParseInvalidSnippets covers shapes that are easier to read inline than as files.
func TestParseInvalidSnippets(t *testing.T) {
	const site = "[[site]]\nname = \"a\"\n[[site.icmp]]\naddress = \"198.51.100.11\"\n"
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"no file name", "[agent]\ninterval = 5\n" + site, []string{
			`line 2: agent.interval: bare number 5 is not a duration; use a string with a unit, e.g. "500ms"`,
		}},
		{"unknown key in an inline array of tables", `
[[site]]
name = "a"
icmp = [{ address = "198.51.100.11" }, { adress = "198.51.100.12" }]
`, []string{
			`line 4: site[0].icmp[1].adress: unknown key; allowed here: name, interval, timeout, labels, address, family, size`,
			`line 4: site[0].icmp[1].address: missing; allowed: an IP address or a host name`,
		}},
		{"unknown key inside an unknown table is reported once", site + "[extra]\n[extra.deeper]\nx = 1\n", []string{
			`line 5: extra: unknown key; allowed here: include, agent, site, control, exporters`,
		}},
		{"names too long", "[agent]\nname = \"" + strings.Repeat("e", 257) + "\"\n[[site]]\nname = \"" + strings.Repeat("s", 257) +
			"\"\n[[site.http]]\nurl = \"http://198.51.100.13/" + strings.Repeat("p", 250) + "\"\n", []string{
			`line 2: agent.name: 257 bytes long; allowed: at most 256`,
			`line 4: site[0].name: 257 bytes long; allowed: at most 256`,
			`line 5: site[0].http[0].name: 276 bytes long (the name defaults to the address or URL); allowed: at most 256: set a shorter name = "..."`,
		}},
		{"site written as a table", "[site]\nname = \"a\"\n", []string{
			`line 1: site: must be an array, not a table`,
		}},
		{"timeout as a number", "[agent]\ntimeout = 1\n" + site, []string{
			`line 2: agent.timeout: bare number 1 is not a duration; use a string with a unit, e.g. "500ms", or "auto"`,
		}},
		{"duration as a boolean", "[agent]\ninterval = true\n" + site, []string{
			`line 2: agent.interval: must be a string with a unit, e.g. "500ms", not the boolean true`,
		}},
		{"default timeout_max below timeout_min", "[agent]\ninterval = \"100ms\"\nconfirm_interval = \"50ms\"\ntimeout_min = \"200ms\"\n" + site, []string{
			`line 4: agent.timeout_min: 200ms is above agent.timeout_max 100ms (its default, min(interval, 1s)); allowed: at most timeout_max`,
		}},
		{"zero is not a default request", site + "size = 0\n[[site.http]]\nurl = \"http://198.51.100.13/\"\nbody_limit = 0\nstatus = []\n", []string{
			`line 5: site[0].icmp[0].size: 0 is out of range; allowed: 8 to 65487`,
			`line 8: site[0].http[0].body_limit: 0 is too small; allowed: 1 or more`,
			`line 9: site[0].http[0].status: empty; list at least one accepted code, e.g. ["2xx"]`,
		}},
		{"dns server and query", site + "[[site.dns]]\nserver = \"ns..example\"\nquery = \"a..b\"\nrcodes = []\n", []string{
			`line 6: site[0].dns[0].server: "ns..example" is neither an IP address nor a host name`,
			`line 7: site[0].dns[0].query: "a..b" is not a domain name`,
			`line 8: site[0].dns[0].rcodes: empty; list at least one accepted rcode, e.g. ["NOERROR"]`,
		}},
		{"url that does not parse", site + "[[site.http]]\nurl = \"http://[::1\"\n", []string{
			`line 6: site[0].http[0].url: "http://[::1" is not a URL: missing ']' in host`,
		}},
		{"control target names are unique within the control set", site + "[[control.icmp]]\naddress = \"203.0.113.1\"\n[[control.icmp]]\naddress = \"203.0.113.1\"\n", []string{
			`line 7: control.icmp[1].name: "icmp:203.0.113.1" is already the name of control.icmp[0]; target names must be unique within a site (set name = "...")`,
		}},
		{"basic auth without a username, file is a directory", site + "[[exporters.remote_write]]\nurl = \"http://view.example/\"\n[exporters.remote_write.basic_auth]\npassword_file = \"/\"\n", []string{
			`line 7: exporters.remote_write[0].basic_auth.username: missing; basic_auth needs a username and a password_file`,
			`line 8: exporters.remote_write[0].basic_auth.password_file: open /: not a regular file (a directory); allowed: an existing, readable regular file`,
		}},
		{"deep nesting is refused before decoding", "a = " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n", []string{
			`arrays or inline tables nest more than 32 levels deep`,
		}},
		{"target interval below the auto timeout's floor", site + "interval = \"10ms\"\n", []string{
			`line 5: site[0].icmp[0].interval: 10ms is below agent.timeout_min 20ms, the floor of the auto timeout; allowed: at least timeout_min, or set a fixed timeout`,
		}},
		{"prometheus listen port", site + "[exporters.prometheus]\nlisten = \"127.0.0.1:http\"\n", []string{
			`line 6: exporters.prometheus.listen: port "http" is not a number from 1 to 65535`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.toml), "")
			if cfg != nil {
				t.Fatalf("Parse accepted the config")
			}
			got := configErrorLines(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoadIOErrors(t *testing.T) {
	_, err := Load("testdata/does-not-exist.toml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v does not wrap fs.ErrNotExist", err)
	}
	if want := "open testdata/does-not-exist.toml: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing file: error %q, want %q", err, want)
	}
	_, err = Load("testdata")
	if want := "open testdata: not a regular file (a directory)"; err == nil || err.Error() != want {
		t.Errorf("directory: error %q, want %q", err, want)
	}
}

func TestParseDefaults(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("os.Hostname: %v", err)
	}
	cfg, err := Load("testdata/valid-minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: "testdata/valid-minimal.toml",
		Agent: AgentConfig{
			Name:              host,
			Interval:          Duration{Duration: time.Second},
			Timeout:           Timeout{Auto: true},
			TimeoutMin:        Duration{Duration: 20 * time.Millisecond},
			TimeoutMax:        Duration{Duration: time.Second},
			ConfirmInterval:   Duration{Duration: 100 * time.Millisecond},
			FailThreshold:     3,
			LatenessAllowance: Duration{Duration: 5 * time.Millisecond},
			ICMPMode:          probes.ICMPAuto,
			StateDir:          "/var/lib/edgeprobe",
		},
		Sites: []SiteConfig{{
			Name: "pangyo",
			TargetSet: TargetSet{ICMP: []ICMPTarget{{
				TargetOptions: TargetOptions{
					Name:     "icmp:198.51.100.11",
					Interval: Duration{Duration: time.Second},
					Timeout:  Timeout{Auto: true},
				},
				ICMPSpec: probes.ICMPSpec{Address: "198.51.100.11", Size: 56},
			}}},
		}},
		Exporters: ExportersConfig{
			Stdout: &StdoutConfig{Format: "text", Results: "changes", Summary: Duration{Duration: 10 * time.Second}},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults differ\ngot:  %+v\nwant: %+v", cfg, want)
	}
}

// TestParseKindDefaults checks the defaults of every target kind and exporter section.
func TestParseKindDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
[agent]
name = "edge1"
interval = "500ms"
[[site]]
name = "a"
  [[site.dns]]
  server = "198.51.100.12"
  query = "www.example.test"
  [[site.http]]
  url = "http://198.51.100.13/"
  [[site.http]]
  url = "https://www.example.test/"
  redirects = 2
  [[site.tcp]]
  address = "198.51.100.14:22"
[exporters.prometheus]
[[exporters.remote_write]]
url = "http://view.example/api/v1/write"
  [exporters.remote_write.spool]
[[exporters.remote_write]]
url = "https://[2001:db8::1]:9470/api/v1/write"
`), "inline.toml")
	if err != nil {
		t.Fatal(err)
	}
	recursion := true
	site := cfg.Sites[0]
	if got, want := site.DNS[0].DNSSpec, (probes.DNSSpec{
		Server: "198.51.100.12", Transport: "udp", Query: "www.example.test.", Type: "A",
		Rcodes: []string{"NOERROR"}, Recursion: &recursion,
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("dns defaults: got %+v, want %+v", got, want)
	}
	if got, want := site.HTTP[0].HTTPSpec, (probes.HTTPSpec{
		URL: "http://198.51.100.13/", Method: "GET", Status: []string{"2xx", "3xx"}, BodyLimit: 1 << 20,
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("http defaults: got %+v, want %+v", got, want)
	}
	if got, want := site.HTTP[1].Status, []string{"2xx"}; !reflect.DeepEqual(got, want) {
		t.Errorf("http status with redirects: got %v, want %v", got, want)
	}
	if got, want := site.TCP[0].TCPSpec, (probes.TCPSpec{Address: "198.51.100.14:22"}); !reflect.DeepEqual(got, want) {
		t.Errorf("tcp defaults: got %+v, want %+v", got, want)
	}
	if got, want := cfg.Agent.TimeoutMax.Duration, 500*time.Millisecond; got != want {
		t.Errorf("timeout_max = %v, want min(interval, 1s) = %v", got, want)
	}
	if got, want := *cfg.Exporters.Prometheus, (PrometheusConfig{Listen: "127.0.0.1:9469", Path: "/metrics"}); got != want {
		t.Errorf("prometheus defaults: got %+v, want %+v", got, want)
	}
	rw := cfg.Exporters.RemoteWrite
	if got, want := rw[0], (RemoteWriteConfig{
		URL: "http://view.example/api/v1/write", Name: "view.example:80",
		PushInterval: Duration{Duration: time.Second}, Timeout: Duration{Duration: 5 * time.Second}, QueueSize: 1000,
		Spool: &SpoolConfig{MaxBytes: 64 << 20, MaxAge: Duration{Duration: time.Hour}},
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("remote_write defaults: got %+v, want %+v", got, want)
	}
	if got, want := rw[1].Name, "[2001:db8::1]:9470"; got != want {
		t.Errorf("remote_write name = %q, want %q", got, want)
	}
	if rw[1].Spool != nil {
		t.Errorf("remote_write without [spool] got a spool: %+v", rw[1].Spool)
	}
}

func TestParseStateDir(t *testing.T) {
	const site = "[[site]]\nname = \"a\"\n[[site.icmp]]\naddress = \"198.51.100.11\"\n"
	abs, err := filepath.Abs("testdata/state")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ agent, want string }{
		{"", "/var/lib/edgeprobe"},
		{`state_dir = "/srv/edgeprobe"`, "/srv/edgeprobe"},
		{`state_dir = "state"`, abs}, // relative to the config file
		{`state_dir = ""`, ""},       // nothing on disk
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte("[agent]\n"+tt.agent+"\n"+site), "testdata/agent.toml")
		if err != nil {
			t.Errorf("%s: %v", tt.agent, err)
			continue
		}
		if cfg.Agent.StateDir != tt.want {
			t.Errorf("%s: state_dir = %q, want %q", tt.agent, cfg.Agent.StateDir, tt.want)
		}
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, err := Load("../agent.toml.example")
	if err != nil {
		t.Fatalf("agent.toml.example does not pass:\n%v", err)
	}
	targets := cfg.Targets()
	perSite := map[string]int{}
	for _, tg := range targets {
		perSite[tg.Site]++
	}
	want := map[string]int{"pangyo": 7, "gasan": 4, "": 2}
	if len(targets) != 13 || !reflect.DeepEqual(perSite, want) {
		t.Errorf("example has %d targets %v, want 13 %v", len(targets), perSite, want)
	}
	if len(cfg.Exporters.RemoteWrite) != 1 || cfg.Exporters.RemoteWrite[0].Spool == nil || cfg.Exporters.Prometheus == nil {
		t.Errorf("example lacks an exporter section: %+v", cfg.Exporters)
	}
}

// TestExampleDocumentsEveryOption fails when a config key is added without showing it in
// agent.toml.example. Options that are the same in several places are shown once: control
// targets as site targets, TLS settings in one tls table, name/interval/timeout/labels
// on one target kind.
func TestExampleDocumentsEveryOption(t *testing.T) {
	data, err := os.ReadFile("../agent.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	// Options commented out in the example (their files must exist) count as shown.
	commented := regexp.MustCompile(`(?m)^(\s*)# ?(\[.*\]|[a-z_]+ = .*)$`)
	shown := map[string]bool{}
	for _, plain := range tomlconf.WrittenKeys(commented.ReplaceAllString(string(data), "$1$2")) {
		shown[canonicalOption(plain)] = true
	}
	for _, key := range tomlconf.SchemaKeys(Config{}) {
		if !shown[canonicalOption(key)] {
			t.Errorf("agent.toml.example does not show %s", key)
		}
	}
}

var (
	tlsOption    = regexp.MustCompile(`^.*\.tls\.`)
	targetOption = regexp.MustCompile(`^site\.(icmp|dns|http|tcp)\.(name|interval|timeout|labels)$`)
)

func canonicalOption(plain string) string {
	if rest, ok := strings.CutPrefix(plain, "control."); ok {
		plain = "site." + rest
	}
	plain = tlsOption.ReplaceAllString(plain, "tls.")
	return targetOption.ReplaceAllString(plain, "site.target.$2")
}

func TestConfigTargetsOrderNamesAndOverrides(t *testing.T) {
	cfg, err := Load("testdata/valid-overrides.toml")
	if err != nil {
		t.Fatal(err)
	}
	type brief struct {
		Site, Name string
		Kind       probes.Kind
		Interval   time.Duration
		Timeout    string
		Labels     map[string]string
	}
	var got []brief
	for _, tg := range cfg.Targets() {
		got = append(got, brief{tg.Site, tg.Name, tg.Kind, tg.Interval, tg.Timeout.String(), tg.Labels})
	}
	site := map[string]string{"region": "kr", "tier": "site", "dc": "pg"}
	agent := map[string]string{"region": "kr", "tier": "agent"}
	want := []brief{
		{"pangyo", "gw", probes.KindICMP, 500 * time.Millisecond, "200ms", site},
		{"pangyo", "dns:198.51.100.12/www.example.test./AAAA", probes.KindDNS, 2 * time.Second, "1.5s", site},
		{"pangyo", "http:http://198.51.100.13/healthz", probes.KindHTTP, 5 * time.Second, "4s",
			map[string]string{"region": "kr", "tier": "target", "dc": "pg"}},
		{"pangyo", "tcp:198.51.100.14:443", probes.KindTCP, 2 * time.Second, "auto", site},
		{"gasan", "icmp:203.0.113.21", probes.KindICMP, 2 * time.Second, "1.5s", agent},
		{"gasan", "icmp:web.example.test", probes.KindICMP, 2 * time.Second, "1.5s", agent},
		{"", "tcp:203.0.113.80:80", probes.KindTCP, 2 * time.Second, "1.5s", agent},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targets differ\ngot:  %+v\nwant: %+v", got, want)
	}
	targets := cfg.Targets()
	if spec, ok := targets[1].Spec.(probes.DNSSpec); !ok || spec.Type != "AAAA" || !reflect.DeepEqual(spec.Rcodes, []string{"NOERROR", "NXDOMAIN"}) {
		t.Errorf("dns spec not canonical: %#v", targets[1].Spec)
	}
	if spec, ok := targets[5].Spec.(probes.ICMPSpec); !ok || spec != (probes.ICMPSpec{Address: "web.example.test", Family: "ip6", Size: 1200}) {
		t.Errorf("icmp spec from an inline array: %#v", targets[5].Spec)
	}
	rw := cfg.Exporters.RemoteWrite[0]
	abs, _ := filepath.Abs("testdata")
	if rw.BearerTokenFile != filepath.Join(abs, "view.token") || rw.TLS.CAFile != filepath.Join(abs, "client.pem") {
		t.Errorf("relative file names not resolved against the config's directory: %q, %q", rw.BearerTokenFile, rw.TLS.CAFile)
	}
}

// TestConfigTargetsBuiltInCode: Targets fills what Load would, for configs made in tests.
func TestConfigTargetsBuiltInCode(t *testing.T) {
	cfg := &Config{
		Agent: AgentConfig{Interval: Duration{Duration: time.Second}, Timeout: Timeout{Fixed: 300 * time.Millisecond}},
		Sites: []SiteConfig{{Name: "s", TargetSet: TargetSet{
			TCP: []TCPTarget{{TCPSpec: probes.TCPSpec{Address: "127.0.0.1:80"}}},
		}}},
	}
	got := cfg.Targets()
	want := []Target{{Site: "s", Name: "tcp:127.0.0.1:80", Kind: probes.KindTCP, Interval: time.Second,
		Timeout: Timeout{Fixed: 300 * time.Millisecond}, Spec: probes.TCPSpec{Address: "127.0.0.1:80"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestConfigWriteEffectiveRoundTrip(t *testing.T) {
	for _, file := range []string{"../agent.toml.example", "testdata/valid-minimal.toml", "testdata/valid-overrides.toml"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			first, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := first.WriteEffective(&out); err != nil {
				t.Fatal(err)
			}
			second, err := Parse(out.Bytes(), "effective.toml")
			if err != nil {
				t.Fatalf("effective config does not parse: %v\n%s", err, out.String())
			}
			second.Path = first.Path
			// The effective config is written with its inline secrets masked (Masked).
			shown, _ := first.Masked()
			if !reflect.DeepEqual(shown, second) {
				t.Errorf("round trip changed the config\nbefore: %+v\nafter:  %+v", shown, second)
			}
			if !reflect.DeepEqual(shown.Targets(), second.Targets()) {
				t.Errorf("round trip changed the targets")
			}
			var again bytes.Buffer
			if err := second.WriteEffective(&again); err != nil {
				t.Fatal(err)
			}
			if strings.TrimPrefix(again.String(), "# Effective configuration of "+file+", defaults filled in.\n\n") !=
				strings.TrimPrefix(out.String(), "# Effective configuration of "+file+", defaults filled in.\n\n") {
				t.Errorf("writing the effective config is not stable\nfirst:\n%s\nsecond:\n%s", out.String(), again.String())
			}
		})
	}
}

func TestTimeoutText(t *testing.T) {
	tests := []struct {
		in      string
		want    Timeout
		wantErr string
	}{
		{"auto", Timeout{Auto: true}, ""},
		{"750ms", Timeout{Fixed: 750 * time.Millisecond}, ""},
		{"AUTO", Timeout{}, `"AUTO" is not a duration; use a number with a unit (ms, s, m, h), e.g. "500ms", or "auto"`},
		{"2", Timeout{}, `bare number 2 is not a duration; use a string with a unit, e.g. "500ms", or "auto"`},
	}
	for _, tt := range tests {
		var to Timeout
		err := to.UnmarshalText([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || to != tt.want {
			t.Errorf("UnmarshalText(%q) = %+v, %v; want %+v", tt.in, to, err, tt.want)
			continue
		}
		if text, _ := to.MarshalText(); string(text) != tt.in {
			t.Errorf("MarshalText(%+v) = %q, want %q", to, text, tt.in)
		}
	}
}

// FuzzParse: no input makes Parse panic or hang, and what it accepts it can write back.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	files = append(files, "../agent.toml.example")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("clude")) {
			// include reads the files it names, which a fuzzer may make any on the
			// machine; TestInclude* cover it. (A key spelt with \u escapes gets through,
			// and is as harmless as any config naming a file.)
			t.Skip("include reads the machine's files")
		}
		cfg, err := Parse(data, "fuzz.toml")
		if err != nil {
			var ce *tomlconf.Errors
			if !errors.As(err, &ce) || len(ce.Errors) == 0 {
				t.Fatalf("error is not a non-empty *tomlconf.Errors: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if err := cfg.WriteEffective(&out); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(out.Bytes(), "fuzz.toml"); err != nil {
			t.Fatalf("effective config does not parse again: %v\n%s", err, out.String())
		}
	})
}

// TestLatenessAllowance: the guard's allowance defaults to 5ms, "0s" turns it off, and a
// negative one is refused like any other duration.
func TestLatenessAllowance(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
		err  string
	}{
		{"", DefaultLatenessAllowance, ""},
		{`lateness_allowance = "0s"`, 0, ""},
		{`lateness_allowance = "20ms"`, 20 * time.Millisecond, ""},
		{`lateness_allowance = "-1ms"`, 0, "t.toml:2: agent.lateness_allowance: "},
	} {
		text := "[agent]\n" + tc.line + "\n[[site]]\nname = \"a\"\n  [[site.icmp]]\n  address = \"198.51.100.11\"\n"
		cfg, err := Parse([]byte(text), "t.toml")
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one starting %q", tc.line, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.err == "" && cfg.Agent.LatenessAllowance.Duration != tc.want:
			t.Errorf("%q: allowance %v, want %v", tc.line, cfg.Agent.LatenessAllowance, tc.want)
		}
	}
}
