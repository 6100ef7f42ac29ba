package packaging_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// target is one binary `make package` builds and the packages made from it.
type target struct {
	name    string // PKG_ARCHES name
	debArch string // "" when no deb is made from this build
	rpmArch string
	qemu    string // user-mode emulator for the binary, "" for the host's own arch
	qemuCPU string // CPU the emulator models, to prove the build runs on the oldest board
}

var targets = []target{
	{name: "amd64", debArch: "amd64", rpmArch: "x86_64"},
	{name: "arm64", debArch: "arm64", rpmArch: "aarch64", qemu: "qemu-aarch64-static", qemuCPU: "cortex-a53"},
	// ARM1176 is the core of the Pi Zero and Pi 1: the armhf deb must run there.
	{name: "armv6", debArch: "armhf", rpmArch: "armv6hl", qemu: "qemu-arm-static", qemuCPU: "arm1176"},
	{name: "armv7", rpmArch: "armv7hl", qemu: "qemu-arm-static", qemuCPU: "cortex-a7"},
}

// build is one run of `make package` into a directory of its own.
type build struct {
	version string
	dist    string // packages
	bins    string // binaries, one folder per target
}

func (b build) deb(tg target) string {
	return filepath.Join(b.dist, fmt.Sprintf("edgeprobe_%s-1_%s.deb", b.version, tg.debArch))
}

func (b build) rpm(tg target) string {
	return filepath.Join(b.dist, fmt.Sprintf("edgeprobe-%s-1.%s.rpm", b.version, tg.rpmArch))
}

func (b build) binary(tg target) string {
	return filepath.Join(b.bins, tg.name, "edgeprobe")
}

var (
	workDir   string // removed by TestMain
	repoRoot  string
	fullOnce  sync.Once
	fullBuild build
	fullErr   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeprobe-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the packaging tests' work dir:", err)
		os.Exit(1)
	}
	workDir = dir
	repoRoot, err = filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "finding the repository root:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	os.Exit(code)
}

// needRoot and needTools stop a test whose prerequisite is missing, by internal/testkit's
// skip policy: a skip on a developer's machine, a failure in CI, which installs
// scripts/deps/packaging.txt and runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	testkit.RequireRoot(t, "dpkg and rpm write owners and install into a chroot")
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		testkit.LookTool(t, "scripts/deps/packaging.txt; make deps installs it", tool)
	}
}

// run runs a command with a time limit and returns its stdout; on failure it fails the
// test with the command line and everything the command printed.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\nstdout:\n%s\nstderr:\n%s",
			name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// makePackage runs `make package` in the tree src into dir, as a user would, with the
// version and timestamp pinned for the whole test run; vars come after and may override.
func makePackage(src, dir string, vars ...string) (build, error) {
	pin, err := pinned()
	if err != nil {
		return build{}, err
	}
	b := build{dist: filepath.Join(dir, "dist"), bins: filepath.Join(dir, "bin")}
	args := []string{"-s", "-C", src, "package", "DIST=" + b.dist, "PKG_BUILDDIR=" + b.bins}
	args = append(append(args, pin...), vars...)
	for _, v := range args {
		if version, ok := strings.CutPrefix(v, "PKG_VERSION="); ok {
			b.version = version
		}
	}
	if _, err := runErr(nil, "make", args...); err != nil {
		return b, fmt.Errorf("building packages: %w", err)
	}
	return b, nil
}

var (
	pinOnce sync.Once
	pinVars []string
	pinErr  error
)

// pinned asks make once for PKG_VERSION and COMMIT_EPOCH: other work committed while the
// tests run must not change the version or the timestamps between two builds.
func pinned() ([]string, error) {
	pinOnce.Do(func() {
		out, err := runErr(nil, "make", "-s", "-C", repoRoot, "package-vars")
		if err != nil {
			pinErr = fmt.Errorf("asking make for the package version: %w", err)
			return
		}
		pinVars = strings.Fields(out)
	})
	return pinVars, pinErr
}

// packages builds every package once for all tests of this run.
func packages(t *testing.T) build {
	t.Helper()
	needTools(t, "make", "go")
	fullOnce.Do(func() {
		start := time.Now()
		fullBuild, fullErr = makePackage(repoRoot, filepath.Join(workDir, "full"))
		t.Logf("make package (every arch and format): %s", time.Since(start).Round(time.Second))
	})
	if fullErr != nil {
		t.Fatal(fullErr)
	}
	return fullBuild
}

// debianMirror is the Debian archive and suite this machine's apt uses, so debootstrap
// reaches the same mirror (or snapshot) that apt-get does.
func debianMirror() (mirror, suite string) {
	suite = "bookworm"
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok && v != "" {
				suite = strings.Trim(v, `"`)
			}
		}
	}
	mirror = "http://deb.debian.org/debian"
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := deb822Mirror(f, suite); m != "" {
			return m, suite
		}
	}
	if m := oneLineMirror("/etc/apt/sources.list", suite); m != "" {
		return m, suite
	}
	return mirror, suite
}

// deb822Mirror returns the first URI of a stanza that serves suite itself.
func deb822Mirror(path, suite string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(data), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || !slices.Contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

// oneLineMirror reads the classic "deb [options] URI suite components" format.
func oneLineMirror(path, suite string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.Index(line, "]"); j > i {
				line = line[:i] + line[j+1:]
			}
		}
		fs := strings.Fields(line)
		if len(fs) >= 3 && fs[0] == "deb" && fs[2] == suite {
			return fs[1]
		}
	}
	return ""
}

// debianRoot returns a fresh Debian root (minbase plus systemd, whose systemctl and units
// the maintainer scripts and systemd-analyze use) in a temporary directory. The first run
// makes it with debootstrap and keeps it as a tarball in the cache; later runs unpack that.
func debianRoot(t *testing.T) string {
	t.Helper()
	needRoot(t)
	needTools(t, "debootstrap", "tar", "chroot")
	mirror, suite := debianMirror()
	cacheDir := os.Getenv("EDGEPROBE_TEST_CACHE")
	if cacheDir == "" {
		cacheDir = "/var/cache/edgeprobe-test"
	}
	tarball := filepath.Join(cacheDir, fmt.Sprintf("debian-%s-minbase-systemd-amd64.tar", suite))
	if _, err := os.Stat(tarball); err != nil {
		start := time.Now()
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			t.Fatalf("creating the cache dir: %v", err)
		}
		tmp, err := os.MkdirTemp(workDir, "debootstrap-")
		if err == nil {
			err = os.Chmod(tmp, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		run(t, nil, "debootstrap", "--variant=minbase", "--include=systemd,procps", "--arch=amd64",
			suite, tmp, mirror)
		run(t, nil, "tar", "-C", tmp, "-cf", tarball+".part", ".")
		if err := os.Rename(tarball+".part", tarball); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(tmp)
		t.Logf("debootstrap %s from %s, cached in %s: %s", suite, mirror, tarball, time.Since(start).Round(time.Second))
	}
	root, err := os.MkdirTemp(workDir, "root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	run(t, nil, "tar", "-C", root, "-xf", tarball)
	// MkdirTemp makes it 0700 (and so it may be in the tarball): as "/" that would lock the
	// service user out of everything.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// inRoot runs a shell script inside root with a clean environment, as dpkg's or rpm's
// caller would have it.
func inRoot(root, script string) (string, error) {
	return runErr(nil, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"DEBIAN_FRONTEND=noninteractive", "chroot", root, "/bin/sh", "-ec", script)
}

func mustInRoot(t *testing.T, root, script string) string {
	t.Helper()
	out, err := inRoot(root, script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyFile copies a package into a root so the tools inside can read it.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
