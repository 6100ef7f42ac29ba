package failover

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/damp"
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

const testSecret = "sMcguyyzMSnhe9+kvSj0FnwZ1V9jsmwqYwTDC9po1dI="

// configDir is a config directory with a key file (tsig.key), a key file with two keys
// (two.key), a bad one (md5.key) and a runbook.
func configDir(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"tsig.key": keyFileText("edgeprobe", testSecret),
		"two.key":  keyFileText("a", testSecret) + keyFileText("b", testSecret),
		"md5.key":  "# old\nkey \"k\" {\n\talgorithm hmac-md5;\n\tsecret \"" + testSecret + "\";\n};\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "runbook"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "notexec"), []byte("#!/bin/sh\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	return dir
}

// exampleConfig is the example of the brief and README.md, with the files of
// configDir.
const exampleConfig = `
[actions]
dry_run = false
max_concurrent_failovers = 1
max_failovers_per_hour = 2
lost_for = "0s"
[[actions.dns]]
site = "dca"
server = "198.51.100.53:53"
zone = "example.test."
name = "www.example.test."
type = "A"
primary = ["198.51.100.13"]
failover = ["198.51.100.23"]
ttl = "5s"
tsig_key_file = "tsig.key"
failback = "manual"
recover_for = "30s"
timeout = "2s"
[[actions.exec]]
site = "dca"
command = ["runbook", "failover"]
on = ["failover", "failback"]
timeout = "30s"
`

func TestConfigExample(t *testing.T) {
	dir := configDir(t)
	cfg, err := parseActions(t, dir, exampleConfig, "/var/lib/edgeprobe")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.DNS[0]
	if a.key.Name != "edgeprobe." || a.TSIGKeyFile != filepath.Join(dir, "tsig.key") || a.TTL.Duration != 5*time.Second ||
		a.RecoverFor.Duration != 30*time.Second || a.Transport != DefaultTransport || a.rrtype == 0 {
		t.Errorf("dns action %+v", a)
	}
	if e := cfg.Exec[0]; e.Command[0] != filepath.Join(dir, "runbook") || !e.runsOn(ActionFailback) {
		t.Errorf("exec action %+v", e)
	}
	if cfg.StateDir != "/var/lib/edgeprobe" || !cfg.Enabled() || !slices.Equal(cfg.Sites(), []string{"dca"}) {
		t.Errorf("config %+v", cfg)
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := configDir(t)
	cfg, err := parseActions(t, dir, `
[[actions.dns]]
site = "dca"
server = "192.0.2.53"
zone = "Example.Test"
name = "WWW.example.test"
type = "aaaa"
primary = ["2001:DB8::13"]
failover = ["2001:db8:0::23"]
tsig_key_file = "two.key"
tsig_key = "b"
[[actions.exec]]
site = "dcb"
command = ["runbook"]
`, "/state")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{MaxConcurrentFailovers: DefaultMaxConcurrentFailovers, MaxFailoversPerHour: DefaultMaxFailoversPerHour,
		MaxAttempts: DefaultMaxAttempts, AuditMaxBytes: DefaultAuditMaxBytes}
	if cfg.MaxConcurrentFailovers != want.MaxConcurrentFailovers || cfg.MaxFailoversPerHour != want.MaxFailoversPerHour ||
		cfg.MaxAttempts != want.MaxAttempts || cfg.AuditMaxBytes != want.AuditMaxBytes || cfg.LostFor.Duration != 0 ||
		cfg.RetryMin.Duration != DefaultRetryMin || cfg.RetryMax.Duration != DefaultRetryMax || cfg.DryRun {
		t.Errorf("defaults %+v", cfg)
	}
	a := cfg.DNS[0]
	if a.Server != "192.0.2.53:53" || a.Zone != "example.test." || a.Name != "www.example.test." || a.Type != "AAAA" ||
		!slices.Equal(a.primary, []string{"2001:db8::13"}) || !slices.Equal(a.failover, []string{"2001:db8::23"}) ||
		a.TTL.Duration != DefaultTTL || a.Failback != FailbackManual || a.RecoverFor.Duration != damp.DefaultRecoverFor ||
		a.Timeout.Duration != DefaultDNSTimeout || a.key.Name != "b." {
		t.Errorf("dns defaults %+v", a)
	}
	if e := cfg.Exec[0]; !slices.Equal(e.On, []string{ActionFailover}) || e.Timeout.Duration != DefaultExecTimeout {
		t.Errorf("exec defaults %+v", e)
	}
	if fb, rf := cfg.policy("dcb"); fb != FailbackManual || rf != damp.DefaultRecoverFor {
		t.Errorf("policy of a runbook-only site: %s %s", fb, rf)
	}
}

// TestConfigErrors: every problem is reported, at its indexed key and line, in one run.
func TestConfigErrors(t *testing.T) {
	dir := configDir(t)
	dns := func(fields string) string {
		base := map[string]string{"site": `"dca"`, "server": `"192.0.2.53:53"`, "zone": `"example.test."`,
			"name": `"www.example.test."`, "type": `"A"`, "primary": `["198.51.100.13"]`, "failover": `["198.51.100.23"]`,
			"tsig_key_file": `"tsig.key"`}
		var b strings.Builder
		b.WriteString("[[actions.dns]]\n")
		over := map[string]string{}
		for line := range strings.SplitSeq(strings.TrimSpace(fields), "\n") {
			if k, v, ok := strings.Cut(line, " = "); ok {
				over[k] = v
			}
		}
		for _, k := range []string{"site", "server", "zone", "name", "type", "primary", "failover", "tsig_key_file"} {
			v, ok := over[k]
			if !ok {
				v = base[k]
			}
			if v != "DELETE" {
				b.WriteString(k + " = " + v + "\n")
			}
			delete(over, k)
		}
		for k, v := range over {
			b.WriteString(k + " = " + v + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name, text, stateDir string
		want                 []string // regexps, each matching one error line
	}{
		{"no state dir", "[actions]\n" + dns(""), "", []string{`view.toml:1: actions: needs the view's state_dir`}},
		{"zero limits", "[actions]\nmax_concurrent_failovers = 0\nmax_failovers_per_hour = -1\nmax_attempts = 0\n", "/s", []string{
			`:2: actions.max_concurrent_failovers: 0 is not allowed; allowed: 1 or more`,
			`:3: actions.max_failovers_per_hour: -1 is not allowed`,
			`:4: actions.max_attempts: 0 is not allowed`}},
		{"retry bounds", "[actions]\nretry_min = \"2s\"\nretry_max = \"1s\"\naudit_max_bytes = 10\n", "/s", []string{
			`actions.retry_max: 1s is shorter than retry_min 2s`, `actions.audit_max_bytes: 10 is too small`}},
		{"lost_for bare number", "[actions]\nlost_for = 5\n", "/s", []string{`actions.lost_for: bare number 5 is not a duration`}},
		{"missing everything", "[[actions.dns]]\nsite = \"\"\n", "/s", []string{
			`actions.dns\[0\].site: missing`, `actions.dns\[0\].server: missing`, `actions.dns\[0\].zone: missing`,
			`actions.dns\[0\].name: missing`, `actions.dns\[0\].type: missing`, `actions.dns\[0\].tsig_key_file: missing`}},
		{"bad server and names", dns("server = \"192.0.2.53:99999\"\nzone = \"exa mple.\"\nname = \"www.other.test.\""), "/s", []string{
			`actions.dns\[0\].server: port "99999" is not a number`, `actions.dns\[0\].zone: "exa mple." is not a domain name`}},
		{"name outside zone", dns("name = \"www.other.test\""), "/s", []string{
			`actions.dns\[0\].name: www.other.test. is not inside zone example.test.`}},
		{"relative-looking name", dns("name = \"www\""), "/s", []string{`did you mean "www.example.test."\?`}},
		{"unknown type", dns("type = \"MX\""), "/s", []string{`actions.dns\[0\].type: "MX" is not allowed; allowed: A, AAAA, CNAME`}},
		{"bad records", dns("primary = [\"2001:db8::1\", \"198.51.100.13\", \"198.51.100.13\"]\nfailover = []"), "/s", []string{
			`actions.dns\[0\].primary\[0\]: "2001:db8::1" is not an IPv4 address`, `actions.dns\[0\].primary\[2\]: 198.51.100.13 is listed twice`,
			`actions.dns\[0\].failover: missing; allowed: the A records`}},
		{"same records", dns("failover = [\"198.51.100.13\"]"), "/s", []string{`actions.dns\[0\].failover: the same records as primary`}},
		{"aaaa with v4", dns("type = \"AAAA\"\nprimary = [\"198.51.100.13\"]\nfailover = [\"2001:db8::2\"]"), "/s", []string{
			`actions.dns\[0\].primary\[0\]: "198.51.100.13" is not an IPv6 address`}},
		{"cname two", dns("type = \"CNAME\"\nprimary = [\"a.example.test\", \"b.example.test\"]\nfailover = [\"c d\"]"), "/s", []string{
			`actions.dns\[0\].primary: 2 records; a CNAME RRset holds exactly one`, `actions.dns\[0\].failover\[0\]: "c d" is not a domain name`}},
		{"cname at apex", dns("type = \"CNAME\"\nname = \"example.test.\"\nprimary = [\"a.example.test\"]\nfailover = [\"b.example.test\"]"), "/s", []string{
			`actions.dns\[0\].name: a CNAME cannot stand at the zone's apex`}},
		{"ttl bounds", dns("ttl = \"500ms\"") + dns("name = \"api.example.test\"\nttl = \"48h\""), "/s", []string{
			`actions.dns\[0\].ttl: 500ms is not allowed; allowed: whole seconds from 1s to 24h0m0s`, `actions.dns\[1\].ttl: 48h0m0s is not allowed`}},
		{"key files", dns("tsig_key_file = \"nope.key\"") + dns("name = \"a.example.test\"\ntsig_key_file = \"adir\"") +
			dns("name = \"b.example.test\"\ntsig_key_file = \"md5.key\"") + dns("name = \"c.example.test\"\ntsig_key_file = \"two.key\"") +
			dns("name = \"d.example.test\"\ntsig_key_file = \"two.key\"\ntsig_key = \"c\""), "/s", []string{
			`actions.dns\[0\].tsig_key_file: open .*nope.key: no such file`,
			`actions.dns\[1\].tsig_key_file: open .*adir: not a regular file \(a directory\)`,
			`actions.dns\[2\].tsig_key_file: .*md5.key:3: unknown algorithm "hmac-md5"`,
			`actions.dns\[3\].tsig_key_file: .*two.key: the file holds 2 keys \("a", "b"\); name one with tsig_key`,
			`actions.dns\[4\].tsig_key: .*two.key: no key "c" in the file`}},
		{"policies", dns("failback = \"sometimes\"\ntimeout = \"2m\"\ntransport = \"tls\"") +
			dns("name = \"api.example.test\"\nfailback = \"auto\"\nrecover_for = \"1m\"") + dns("name = \"api.example.test\""), "/s", []string{
			`actions.dns\[0\].failback: "sometimes" is not allowed; allowed: manual, auto`,
			`actions.dns\[0\].timeout: 2m0s is too long`, `actions.dns\[0\].transport: "tls" is not allowed`,
			`actions.dns\[1\].failback: "auto" differs from "sometimes" in actions.dns\[0\]`,
			`actions.dns\[1\].recover_for: 1m0s differs from 10s in actions.dns\[0\]`,
			`actions.dns\[2\].name: api.example.test. A on 192.0.2.53:53 is rewritten by actions.dns\[1\] already`}},
		{"exec", "[[actions.exec]]\nsite = \"a b\"\n[[actions.exec]]\nsite = \"dca\"\ncommand = [\"notexec\"]\non = [\"boot\", \"failover\", \"failover\"]\ntimeout = \"2h\"\n" +
			"[[actions.exec]]\nsite = \"dca\"\ncommand = [\"missing\"]\non = []\n", "/s", []string{
			`:2: actions.exec\[0\].site: "a b" holds a space`, `actions.exec\[0\].command: missing`,
			`actions.exec\[1\].command\[0\]: .*notexec is not an executable regular file`,
			`actions.exec\[1\].on\[0\]: "boot" is not allowed`, `actions.exec\[1\].on\[2\]: "failover" is listed twice`,
			`actions.exec\[1\].timeout: 2h0m0s is too long`,
			`actions.exec\[2\].command\[0\]: stat .*missing: no such file`, `actions.exec\[2\].on: empty`}},
		{"unknown key", "[[actions.dns]]\nsite = \"dca\"\nrecords = []\n", "/s", []string{
			`actions.dns\[0\].records: unknown key; allowed here: site, server, zone, name, type, primary, failover, ttl, tsig_key_file`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseActions(t, dir, tt.text, tt.stateDir)
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.text)
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tt.want {
				re := regexp.MustCompile(w)
				if !slices.ContainsFunc(lines, re.MatchString) {
					t.Errorf("no error matches %q; got:\n%s", w, err)
				}
			}
			if len(lines) < len(tt.want) {
				t.Errorf("%d errors, want %d:\n%s", len(lines), len(tt.want), err)
			}
		})
	}
}

// TestREADMEExample: the options block of README.md parses and shows every key.
func TestREADMEExample(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```toml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```toml block")
	}
	written := tomlconf.WrittenKeys(block)
	var wrap struct {
		Actions Config `toml:"actions"`
	}
	for _, k := range tomlconf.SchemaKeys(&wrap) {
		if !slices.Contains(written, k) {
			t.Errorf("README.md's example does not show %s", k)
		}
	}
	// The example names files that exist on a configured host only: check its syntax
	// and types, and that nothing but those files is wrong.
	_, err = parseActions(t, t.TempDir(), block, "/var/lib/edgeprobe")
	for _, line := range strings.Split(errString(err), "\n") {
		if line != "" && !strings.Contains(line, "/etc/edgeprobe/") && !strings.Contains(line, "/usr/local/bin/") {
			t.Errorf("README.md's example: %s", line)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
