package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeFiles writes files (name relative to dir -> content) and returns dir.
func writeFiles(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func siteNames(c *Config) []string {
	var names []string
	for _, s := range c.Sites {
		names = append(names, s.Name)
	}
	return names
}

const includeMain = `include = ["sites.d/*.toml", "extra.toml"]

[agent]
name = "edge1"
state_dir = ""

[[site]]
name = "pangyo"
  [[site.icmp]]
  address = "198.51.100.11"
`

// TestIncludeSites: the sites of the files include names join the main file's, in
// order (the main file's, then each pattern's matches by name), with the main file's
// agent defaults; relative file names in an included file are relative to its own
// directory; hidden files and the main file itself are not read.
func TestIncludeSites(t *testing.T) {
	dir := writeFiles(t, t.TempDir(), map[string]string{
		"agent.toml": includeMain,
		"sites.d/b.toml": `[[site]]
name = "seoul"
  [[site.tcp]]
  address = "198.51.100.14:443"
  tls = { enable = true, ca_file = "ca/ca.pem" }
`,
		"sites.d/ca/ca.pem": "not checked here, only readable\n",
		"sites.d/a.toml": `[[site]]
name = "gasan"
  [[site.http]]
  url = "http://198.51.100.13/healthz"
  interval = "2s"

[[site]]
name = "guro"
  [[site.icmp]]
  address = "198.51.100.15"
`,
		"sites.d/.b.toml.swp": "not TOML at all",
		"sites.d/notes.txt":   "not matched",
		"extra.toml": `[[site]]
name = "daejeon"
  [[site.icmp]]
  address = "198.51.100.16"
`,
	})
	cfg, err := Load(filepath.Join(dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := siteNames(cfg), []string{"pangyo", "gasan", "guro", "seoul", "daejeon"}; !reflect.DeepEqual(got, want) {
		t.Errorf("sites %v, want %v", got, want)
	}
	if got, want := cfg.Include, []string{filepath.Join(dir, "sites.d/*.toml"), filepath.Join(dir, "extra.toml")}; !reflect.DeepEqual(got, want) {
		t.Errorf("include resolved to %v, want %v", got, want)
	}
	if got := cfg.Sites[3].TCP[0].TLS.CAFile; got != filepath.Join(dir, "sites.d/ca/ca.pem") {
		t.Errorf("ca_file of an included site resolved to %s, want it beside the included file", got)
	}
	targets := cfg.Targets()
	if len(targets) != 5 || targets[1].Site != "gasan" || targets[1].Interval != 2*time.Second || targets[2].Interval != time.Second {
		t.Errorf("targets %+v: want 5, gasan's at 2s, guro's at the agent's 1s", targets)
	}
	if got, want := cfg.IncludedFiles(), []string{filepath.Join(dir, "sites.d/a.toml"), filepath.Join(dir, "sites.d/b.toml"), filepath.Join(dir, "extra.toml")}; !reflect.DeepEqual(got, want) {
		t.Errorf("IncludedFiles %v, want %v", got, want)
	}

	// The effective configuration is one whole file: every site, no include.
	var out bytes.Buffer
	if err := cfg.WriteEffective(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "\ninclude") || !strings.Contains(out.String(), "# With the sites of "+filepath.Join(dir, "sites.d/a.toml")) {
		t.Errorf("effective config writes include, or does not say where the sites came from:\n%s", out.String())
	}
	again, err := Parse(out.Bytes(), filepath.Join(dir, "effective.toml"))
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(again.Targets(), cfg.Targets()) {
		t.Errorf("the effective config has other targets")
	}

	// A pattern that matches the main file does not read it again.
	dir = writeFiles(t, t.TempDir(), map[string]string{
		"agent.toml": strings.Replace(includeMain, `"sites.d/*.toml", "extra.toml"`, `"*.toml"`, 1),
		"extra.toml": "[[site]]\nname = \"daejeon\"\n  [[site.icmp]]\n  address = \"198.51.100.16\"\n",
	})
	cfg, err = Load(filepath.Join(dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := siteNames(cfg), []string{"pangyo", "daejeon"}; !reflect.DeepEqual(got, want) {
		t.Errorf("include = [\"*.toml\"] beside agent.toml: sites %v, want %v", got, want)
	}
}

// TestIncludeErrors: every problem of the main file and of each included file in one
// run, each with its own FILE:LINE: KEY.
func TestIncludeErrors(t *testing.T) {
	dir := writeFiles(t, t.TempDir(), map[string]string{
		"agent.toml": `include = ["sites.d/*.toml", "missing.toml", "bad[.toml", ""]

[agent]
name = "edge 1"

[[site]]
name = "pangyo"
  [[site.icmp]]
  address = "198.51.100.11"
`,
		"sites.d/a.toml": `# a file that took too much from agent.toml
include = ["more/*.toml"]

[agent]
name = "edge2"

[[site]]
name = "seoul"
  [[site.icmp]]
  address = "198.51.100.12"

[[site]]
name = "pangyo"
  [[site.icmp]]
  address = "198.51.100.13"

[exporters.stdout]
format = "json"

[[control.icmp]]
address = "198.51.100.1"

[[sites]]
name = "typo"
`,
		"sites.d/b.toml": `[[site]]
name = "seoul"
  [[site.icmp]]
  address = ""
  timeout = "5s"
`,
		"sites.d/c.toml": "[[site]\nname = 1\n",
	})
	_, err := Load(filepath.Join(dir, "agent.toml"))
	a, b, c := filepath.Join(dir, "sites.d/a.toml"), filepath.Join(dir, "sites.d/b.toml"), filepath.Join(dir, "sites.d/c.toml")
	main := filepath.Join(dir, "agent.toml")
	want := []string{
		main + `:1: include[1]: stat ` + filepath.Join(dir, "missing.toml") + `: no such file or directory; allowed: an existing file, or a glob pattern (which may match none)`,
		main + `:1: include[2]: "bad[.toml" is not a valid pattern: syntax error in pattern`,
		main + `:1: include[3]: empty; allowed: a file name or a glob pattern such as "sites.d/*.toml"`,
		main + `:4: agent.name: "edge 1" has characters outside letters, digits, '.', '_', '-'`,
		a + `:2: include: not allowed in an included file, which holds only [[site]] entries; include belongs in ` + main,
		a + `:4: agent: not allowed in an included file, which holds only [[site]] entries; agent belongs in ` + main,
		a + `:13: site[1].name: "pangyo" is already the name of site[0] in ` + main + `:7; site names must be unique, across included files too`,
		a + `:17: exporters: not allowed in an included file, which holds only [[site]] entries; exporters belongs in ` + main,
		a + `:20: control: not allowed in an included file, which holds only [[site]] entries; control belongs in ` + main,
		a + `:23: sites: not allowed in an included file, which holds only [[site]] entries`,
		b + `:2: site[0].name: "seoul" is already the name of site[0] in ` + a + `:8; site names must be unique, across included files too`,
		b + `:4: site[0].icmp[0].address: missing; allowed: an IP address or a host name`,
		b + `:5: site[0].icmp[0].timeout: 5s is above the target's interval 1s; allowed: "auto" or a duration up to the interval`,
		c + `:2: invalid TOML: expected end of table array name delimiter ']', but got '\n' instead`,
	}
	got := configErrorLines(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestIncludeNoSites: include that matches nothing and a main file without sites say so.
func TestIncludeNoSites(t *testing.T) {
	dir := writeFiles(t, t.TempDir(), map[string]string{"agent.toml": "include = [\"sites.d/*.toml\"]\n[agent]\nname = \"e\"\n"})
	_, err := Load(filepath.Join(dir, "agent.toml"))
	want := []string{filepath.Join(dir, "agent.toml") + `: site: no sites, here or in the 0 files include matches; add at least one [[site]] with a name and targets`}
	if got := configErrorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
}

// TestIncludeStamp: the stamp Load takes equals StatIncludes until a file is changed,
// added or removed.
func TestIncludeStamp(t *testing.T) {
	dir := writeFiles(t, t.TempDir(), map[string]string{
		"agent.toml":     includeMain,
		"extra.toml":     "",
		"sites.d/a.toml": "[[site]]\nname = \"seoul\"\n  [[site.icmp]]\n  address = \"198.51.100.12\"\n",
	})
	cfg, err := Load(filepath.Join(dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IncludeStamp() == "" || cfg.IncludeStamp() != cfg.StatIncludes() {
		t.Fatalf("stamp %q, now %q: want equal and not empty", cfg.IncludeStamp(), cfg.StatIncludes())
	}
	last := cfg.StatIncludes()
	changed := func(what string) {
		t.Helper()
		now := cfg.StatIncludes()
		if now == last {
			t.Errorf("%s: the stamp did not change", what)
		}
		last = now
	}
	a := filepath.Join(dir, "sites.d/a.toml")
	// The same size, one second older: a rewrite with a touched-back mtime still shows.
	if err := os.WriteFile(a, []byte("[[site]]\nname = \"seoux\"\n  [[site.icmp]]\n  address = \"198.51.100.12\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed("a file rewritten")
	old := time.Now().Add(-time.Second)
	if err := os.Chtimes(a, old, old); err != nil {
		t.Fatal(err)
	}
	changed("a file's mtime changed")
	writeFiles(t, dir, map[string]string{"sites.d/b.toml": ""})
	changed("a file added")
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	changed("a file removed")
	writeFiles(t, dir, map[string]string{"sites.d/.c.toml.swp": "x", "sites.d/c.txt": "x"})
	if cfg.StatIncludes() != last {
		t.Errorf("a hidden or unmatched file changed the stamp")
	}
	if (&Config{}).StatIncludes() != "" {
		t.Errorf("a config without include has a stamp")
	}
}

// TestIncludeWarnings: secrets written inline in an included file that every user can
// read are named with that file and its own keys.
func TestIncludeWarnings(t *testing.T) {
	dir := writeFiles(t, t.TempDir(), map[string]string{
		"agent.toml": includeMain,
		"extra.toml": "",
		"sites.d/a.toml": `[[site]]
name = "seoul"
  [[site.http]]
  url = "http://198.51.100.13/healthz"
  headers = { Authorization = "Bearer x" }
`,
	})
	a := filepath.Join(dir, "sites.d/a.toml")
	if err := os.Chmod(a, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(filepath.Join(dir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a + " holds secrets inline (site[0].http[0].headers) and is readable by every user; chmod o-r " + a}
	if got := cfg.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}
