package packaging_test

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/view"
)

const (
	maxBinaryBytes = 16 << 20 // stripped binary, per architecture (packaging/README.md)
	maxDebBytes    = 6 << 20
)

// entry is what a package says about one of its files.
type entry struct {
	perms, owner, group string
}

// Files both formats carry, with the modes and owners a user relies on: agent.toml may
// hold push credentials and view.toml tokens, so only root and the service's group read
// them.
var commonFiles = map[string]entry{
	"/usr/bin/edgeprobe":                                         {"-rwxr-xr-x", "root", "root"},
	"/etc/edgeprobe/agent.toml":                                  {"-rw-r-----", "root", "edgeprobe"},
	"/etc/edgeprobe/view.toml":                                   {"-rw-r-----", "root", "edgeprobe"},
	"/usr/lib/systemd/system/edgeprobe.service":                  {"-rw-r--r--", "root", "root"},
	"/usr/lib/systemd/system/edgeprobe-view.service":             {"-rw-r--r--", "root", "root"},
	"/usr/share/doc/edgeprobe/README.md":                         {"-rw-r--r--", "root", "root"},
	"/usr/share/doc/edgeprobe/agent.toml.example":                {"-rw-r--r--", "root", "root"},
	"/usr/share/doc/edgeprobe/view.toml.example":                 {"-rw-r--r--", "root", "root"},
	"/usr/share/edgeprobe/prometheus/edgeprobe.rules.yml":        {"-rw-r--r--", "root", "root"},
	"/usr/share/edgeprobe/prometheus/edgeprobe.rules.region.yml": {"-rw-r--r--", "root", "root"},
	"/usr/share/edgeprobe/grafana/edgeprobe.dashboard.json":      {"-rw-r--r--", "root", "root"},
}

// Directories the package owns: sites.d, where configuration management drops one file of
// sites each, is read by the agent's group only, like the configs. An rpm owns exactly
// these; a deb also lists their parents (/etc, /usr/share, ...), which are not checked.
var ownedDirs = map[string]entry{
	"/etc/edgeprobe":                  {"drwxr-xr-x", "root", "root"},
	"/etc/edgeprobe/sites.d":          {"drwxr-x---", "root", "edgeprobe"},
	"/usr/share/doc/edgeprobe":        {"drwxr-xr-x", "root", "root"},
	"/usr/share/edgeprobe":            {"drwxr-xr-x", "root", "root"},
	"/usr/share/edgeprobe/prometheus": {"drwxr-xr-x", "root", "root"},
	"/usr/share/edgeprobe/grafana":    {"drwxr-xr-x", "root", "root"},
}

// The configuration files, as dpkg's conffiles and rpm's %config(noreplace): an upgrade
// keeps the admin's edits.
var (
	debConffiles = []string{"/etc/default/edgeprobe", "/etc/edgeprobe/agent.toml", "/etc/edgeprobe/view.toml"}
	rpmConffiles = []string{"/etc/edgeprobe/agent.toml", "/etc/edgeprobe/view.toml", "/etc/sysconfig/edgeprobe"}
)

func withFile(path string, e entry) map[string]entry {
	m := map[string]entry{path: e}
	for k, v := range commonFiles {
		m[k] = v
	}
	return m
}

var (
	debFiles = withFile("/etc/default/edgeprobe", entry{"-rw-r--r--", "root", "root"})
	rpmFiles = withFile("/etc/sysconfig/edgeprobe", entry{"-rw-r--r--", "root", "root"})
)

func TestDebPackages(t *testing.T) {
	needTools(t, "dpkg-deb", "tar")
	b := packages(t)
	for _, tg := range targets {
		if tg.debArch == "" {
			continue
		}
		t.Run(tg.debArch, func(t *testing.T) {
			pkg := b.deb(tg)
			fields := run(t, nil, "dpkg-deb", "--showformat=${Package} ${Version} ${Architecture} ${Pre-Depends}\n", "--show", pkg)
			want := "edgeprobe " + b.version + "-1 " + tg.debArch + " passwd\n"
			if fields != want {
				t.Errorf("control fields = %q, want %q", fields, want)
			}

			got, dirs := map[string]entry{}, map[string]entry{}
			for _, line := range strings.Split(strings.TrimSpace(run(t, nil, "dpkg-deb", "-c", pkg)), "\n") {
				// drwxr-xr-x root/root 0 2026-11-24 19:22 ./etc/
				f := strings.Fields(line)
				if len(f) < 6 {
					continue
				}
				owner, group, _ := strings.Cut(f[1], "/")
				path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
				if strings.HasPrefix(f[0], "d") {
					dirs[path] = entry{f[0], owner, group}
				} else {
					got[path] = entry{f[0], owner, group}
				}
			}
			compareFiles(t, got, debFiles)
			for path, want := range ownedDirs {
				if g, ok := dirs[path]; !ok {
					t.Errorf("directory %s missing from the package", path)
				} else if g != want {
					t.Errorf("directory %s: %s %s:%s, want %s %s:%s", path, g.perms, g.owner, g.group, want.perms, want.owner, want.group)
				}
			}

			conffiles := run(t, nil, "dpkg-deb", "-I", pkg, "conffiles")
			if want := strings.Join(debConffiles, "\n") + "\n"; sortLines(conffiles) != want {
				t.Errorf("conffiles = %q, want %q", conffiles, want)
			}

			control := filepath.Join(t.TempDir(), "control")
			run(t, nil, "dpkg-deb", "-e", pkg, control)
			for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
				fi, err := os.Stat(filepath.Join(control, script))
				if err != nil {
					t.Errorf("maintainer script %s: %v", script, err)
					continue
				}
				if fi.Mode().Perm() != 0o755 {
					t.Errorf("maintainer script %s has mode %v, want 0755", script, fi.Mode().Perm())
				}
			}

			extract := func(path string) string {
				return run(t, nil, "sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xO "$2"`, "sh", pkg, "."+path)
			}
			bin := filepath.Join(t.TempDir(), "edgeprobe")
			if err := os.WriteFile(bin, []byte(extract("/usr/bin/edgeprobe")), 0o755); err != nil {
				t.Fatal(err)
			}
			checkELF(t, bin, tg)
			checkSize(t, pkg, maxDebBytes)
			checkUnits(t, extract)
		})
	}
}

func TestRPMPackages(t *testing.T) {
	needTools(t, "rpm")
	b := packages(t)
	for _, tg := range targets {
		t.Run(tg.rpmArch, func(t *testing.T) {
			pkg := b.rpm(tg)
			if _, err := os.Stat(pkg); err != nil {
				t.Fatal(err)
			}
			q := func(args ...string) string {
				return run(t, nil, "rpm", append([]string{"-qp", "--nosignature"}, append(args, pkg)...)...)
			}
			header := q("--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{OS}\n")
			if want := "edgeprobe " + b.version + " 1 " + tg.rpmArch + " linux\n"; header != want {
				t.Errorf("header = %q, want %q", header, want)
			}

			got, dirs := map[string]entry{}, map[string]entry{}
			flags := map[string]string{}
			listing := q("--qf", "[%{FILEMODES:perms}|%{FILEUSERNAME}|%{FILEGROUPNAME}|%{FILEFLAGS:fflags}|%{FILENAMES}\n]")
			for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
				f := strings.Split(line, "|")
				if len(f) != 5 {
					continue
				}
				if strings.HasPrefix(f[0], "d") {
					dirs[f[4]] = entry{f[0], f[1], f[2]}
					continue
				}
				got[f[4]] = entry{f[0], f[1], f[2]}
				flags[f[4]] = f[3]
			}
			compareFiles(t, got, rpmFiles)
			// rpm removes on erase only the directories a package owns.
			compareFiles(t, dirs, ownedDirs)
			for _, conf := range rpmConffiles {
				if flags[conf] != "cn" {
					t.Errorf("%s has file flags %q, want \"cn\" (%%config(noreplace))", conf, flags[conf])
				}
			}
			if got, want := sortLines(q("--configfiles")), strings.Join(rpmConffiles, "\n")+"\n"; got != want {
				t.Errorf("--configfiles = %q, want %q", got, want)
			}

			scripts := q("--scripts")
			for _, want := range []string{
				"preinstall scriptlet", "useradd --system",
				"postinstall scriptlet", "systemctl --no-reload preset",
				"preuninstall scriptlet", "disable --now",
				"postuninstall scriptlet", "try-restart",
			} {
				if !strings.Contains(scripts, want) {
					t.Errorf("--scripts lacks %q:\n%s", want, scripts)
				}
			}
			if requires := q("--requires"); !strings.Contains(requires, "shadow-utils") {
				t.Errorf("requires lack shadow-utils (useradd):\n%s", requires)
			}
		})
	}
}

func compareFiles(t *testing.T, got, want map[string]entry) {
	t.Helper()
	for path, w := range want {
		g, ok := got[path]
		if !ok {
			t.Errorf("%s missing from the package", path)
			continue
		}
		if g != w {
			t.Errorf("%s: %s %s:%s, want %s %s:%s", path, g.perms, g.owner, g.group, w.perms, w.owner, w.group)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected file %s in the package", path)
		}
	}
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armv6": elf.EM_ARM, "armv7": elf.EM_ARM,
}

// checkELF proves the packaged binary is for the package's architecture, static (no
// interpreter, so no libc to match on the board) and stripped.
func checkELF(t *testing.T, path string, tg target) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("reading the binary: %v", err)
	}
	defer f.Close()
	if f.Machine != elfMachine[tg.name] {
		t.Errorf("%s: ELF machine %v, want %v", path, f.Machine, elfMachine[tg.name])
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not a static binary", path)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table: not stripped", path)
	}
}

func checkSize(t *testing.T, path string, limit int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes (%.2f MiB, limit %d MiB)", filepath.Base(path), fi.Size(), float64(fi.Size())/(1<<20), limit>>20)
	if fi.Size() > limit {
		t.Errorf("%s is %d bytes, over the %d MiB limit", path, fi.Size(), limit>>20)
	}
}

func TestBinarySizes(t *testing.T) {
	b := packages(t)
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			checkELF(t, b.binary(tg), tg)
			checkSize(t, b.binary(tg), maxBinaryBytes)
		})
	}
}

// TestReproducible exports the last commit twice, into two directories, builds the amd64
// packages from each at a different wall-clock time, and wants the same bytes: every
// timestamp comes from the commit, and neither the build machine nor the source path nor
// the clock gets in. (A build of the working tree could not prove this: other work may
// change it between two builds.)
func TestReproducible(t *testing.T) {
	needTools(t, "git", "tar", "make", "go")
	var builds []build
	for i, name := range []string{"first", "second"} {
		if i > 0 {
			time.Sleep(time.Second) // a leaked wall-clock second would now differ
		}
		src := filepath.Join(workDir, name, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, nil, "sh", "-c", `git -C "$1" archive HEAD | tar -x -C "$2"`, "sh", repoRoot, src)
		b, err := makePackage(src, filepath.Join(workDir, name), "PKG_ARCHES=amd64")
		if err != nil {
			t.Fatal(err)
		}
		builds = append(builds, b)
	}
	tg := targets[0]
	for _, file := range []func(build) string{
		func(b build) string { return b.binary(tg) },
		func(b build) string { return b.deb(tg) },
		func(b build) string { return b.rpm(tg) },
	} {
		first, err := os.ReadFile(file(builds[0]))
		if err != nil {
			t.Fatal(err)
		}
		second, err := os.ReadFile(file(builds[1]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s differs between two builds of one commit", filepath.Base(file(builds[0])))
		}
	}
}

// unitSettings reads the [Service] section of a unit file: each key's values in order
// (Environment= and StateDirectory= may be given more than once).
func unitSettings(text string) map[string][]string {
	settings := map[string][]string{}
	section := ""
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			if k, v, ok := strings.Cut(line, "="); ok {
				settings[k] = append(settings[k], v)
			}
		}
	}
	return settings
}

// checkUnits reads the units and the view's config as the package holds them (read
// returns a packaged file's contents) and checks what ties them together: the commands
// the units run, the config file each reads, and that the view's state_dir is a directory
// the sandbox lets it write (StateDirectory=, the only writable place under
// ProtectSystem=strict besides a private /tmp).
func checkUnits(t *testing.T, read func(path string) string) {
	t.Helper()
	agent := unitSettings(read("/usr/lib/systemd/system/edgeprobe.service"))
	viewUnit := unitSettings(read("/usr/lib/systemd/system/edgeprobe-view.service"))
	for _, c := range []struct {
		unit      string
		settings  map[string][]string
		key, want string
	}{
		{"edgeprobe.service", agent, "ExecStart", "/usr/bin/edgeprobe agent --config ${EDGEPROBE_CONFIG} $EDGEPROBE_ARGS"},
		{"edgeprobe.service", agent, "ExecStartPre", "/usr/bin/edgeprobe check --quiet --config ${EDGEPROBE_CONFIG}"},
		{"edgeprobe-view.service", viewUnit, "ExecStart", "/usr/bin/edgeprobe view --config ${EDGEPROBE_VIEW_CONFIG} --listen ${EDGEPROBE_VIEW_LISTEN} $EDGEPROBE_VIEW_ARGS"},
		// An empty listen argument leaves view.toml's in force; a drop-in may set it.
		{"edgeprobe-view.service", viewUnit, "Environment", "EDGEPROBE_VIEW_CONFIG=/etc/edgeprobe/view.toml EDGEPROBE_VIEW_LISTEN= EDGEPROBE_VIEW_ARGS="},
		{"edgeprobe-view.service", viewUnit, "ProtectSystem", "strict"},
	} {
		if got := strings.Join(c.settings[c.key], " "); got != c.want {
			t.Errorf("%s: %s=%q, want %q", c.unit, c.key, got, c.want)
		}
	}

	cfg, err := view.ParseConfig([]byte(read("/etc/edgeprobe/view.toml")), "/etc/edgeprobe/view.toml")
	if err != nil {
		t.Fatalf("the packaged view.toml: %v", err)
	}
	if cfg.Listen != view.DefaultListen {
		t.Errorf("the packaged view.toml listens on %q, want %s (loopback, as the environment file says)", cfg.Listen, view.DefaultListen)
	}
	writable := false
	for _, v := range viewUnit["StateDirectory"] {
		for _, dir := range strings.Fields(v) {
			writable = writable || cfg.StateDir == filepath.Join("/var/lib", dir)
		}
	}
	if cfg.StateDir == "" || !writable {
		t.Errorf("the packaged view.toml's state_dir %q is not one of the view unit's StateDirectory=%q", cfg.StateDir, viewUnit["StateDirectory"])
	}
}
