package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDebInstallCycle installs the amd64 deb into a real Debian root with dpkg and takes it
// through what a user does: install, configure, upgrade, remove, purge. The root has no
// running systemd (as a chroot or a container build), so the scripts must not try to start
// anything, yet the agent must come out enabled for the first boot.
func TestDebInstallCycle(t *testing.T) {
	needTools(t, "dpkg-deb")
	b := packages(t)
	root := debianRoot(t)
	amd64 := targets[0]

	// A newer build of the same tree: a second version string, a new binary stamped with it.
	upgradeVersion := b.version + "+upgrade"
	up, err := makePackage(repoRoot, filepath.Join(workDir, "upgrade"), "PKG_ARCHES=amd64", "PKG_FORMATS=deb", "PKG_VERSION="+upgradeVersion)
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, b.deb(amd64), filepath.Join(root, "tmp/edgeprobe-1.deb"))
	copyFile(t, up.deb(amd64), filepath.Join(root, "tmp/edgeprobe-2.deb"))

	mustInRoot(t, root, "dpkg -i /tmp/edgeprobe-1.deb")
	t.Run("install", func(t *testing.T) {
		passwd := mustInRoot(t, root, "getent passwd edgeprobe")
		f := strings.Split(strings.TrimSpace(passwd), ":")
		if len(f) != 7 || f[5] != "/var/lib/edgeprobe" || f[6] != "/usr/sbin/nologin" {
			t.Fatalf("edgeprobe user = %q, want home /var/lib/edgeprobe and shell /usr/sbin/nologin", passwd)
		}
		if uid, _ := strconv.Atoi(f[2]); uid == 0 || uid >= 1000 {
			t.Errorf("edgeprobe uid %d is not a system uid", uid)
		}
		got := mustInRoot(t, root, "stat -c '%a %U:%G %n' /usr/bin/edgeprobe /etc/edgeprobe/agent.toml /etc/default/edgeprobe")
		want := "755 root:root /usr/bin/edgeprobe\n640 root:edgeprobe /etc/edgeprobe/agent.toml\n644 root:root /etc/default/edgeprobe\n"
		if got != want {
			t.Errorf("installed files:\n%swant:\n%s", got, want)
		}
		// The service runs as edgeprobe: it must read the config and find it valid.
		mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --config /etc/edgeprobe/agent.toml >/dev/null")
		if out := mustInRoot(t, root, "edgeprobe version"); !strings.Contains(out, b.version) {
			t.Errorf("edgeprobe version = %q, want it to name %s", out, b.version)
		}
		if out := mustInRoot(t, root, "systemctl is-enabled edgeprobe.service || true"); strings.TrimSpace(out) != "enabled" {
			t.Errorf("agent after the first install: %q, want enabled", out)
		}
		if out := mustInRoot(t, root, "systemctl is-enabled edgeprobe-view.service || true"); strings.TrimSpace(out) != "disabled" {
			t.Errorf("view after the first install: %q, want disabled", out)
		}
	})

	t.Run("units", func(t *testing.T) { verifyUnits(t, root) })

	// The unit's privilege model without systemd: the service user, CAP_NET_RAW as the
	// only (ambient) capability, no new privileges. A raw ICMP socket must work that way
	// and fail without the capability (raw mode: datagram sockets depend on the sysctl
	// ping_group_range, which other tests may change meanwhile).
	t.Run("icmp with CAP_NET_RAW only", func(t *testing.T) {
		asService := "setpriv --reuid edgeprobe --regid edgeprobe --init-groups --no-new-privs " +
			"--inh-caps -all,+net_raw --ambient-caps +net_raw --bounding-set -all,+net_raw "
		mustInRoot(t, root, asService+"edgeprobe probe icmp 127.0.0.1 --icmp-mode raw --timeout 2s")
		out := mustInRoot(t, root, "timeout 3 "+asService+"edgeprobe agent --config /etc/edgeprobe/agent.toml 2>&1 || test $? = 124")
		if !regexp.MustCompile(`(?m)^.*\bsite\b.*\bloopback\b.*-> up\s*$`).MatchString(out) {
			t.Errorf("the agent with the shipped config did not report the loopback site up:\n%s", out)
		}
		noCaps := "setpriv --reuid edgeprobe --regid edgeprobe --init-groups --no-new-privs --inh-caps -all --bounding-set -all "
		if out, err := inRoot(root, noCaps+"edgeprobe probe icmp 127.0.0.1 --icmp-mode raw --timeout 2s"); err == nil {
			t.Errorf("icmp worked without CAP_NET_RAW, so this test proves nothing about it:\n%s", out)
		}
	})

	t.Run("upgrade keeps a changed conffile", func(t *testing.T) {
		mustInRoot(t, root, `echo '# changed by the admin' >> /etc/edgeprobe/agent.toml
			mkdir -p /var/lib/edgeprobe/spool && echo batch > /var/lib/edgeprobe/spool/0001
			systemctl disable edgeprobe.service`)
		mustInRoot(t, root, "dpkg -i --force-confold /tmp/edgeprobe-2.deb </dev/null")
		if out := mustInRoot(t, root, "dpkg-query -W -f '${Version} ${Status}' edgeprobe"); out != upgradeVersion+"-1 install ok installed" {
			t.Errorf("after the upgrade dpkg says %q", out)
		}
		if out := mustInRoot(t, root, "edgeprobe version"); !strings.Contains(out, upgradeVersion) {
			t.Errorf("edgeprobe version after the upgrade = %q, want %s", out, upgradeVersion)
		}
		if out := mustInRoot(t, root, "tail -n 1 /etc/edgeprobe/agent.toml"); out != "# changed by the admin\n" {
			t.Errorf("the admin's change to agent.toml is gone after the upgrade; last line %q", out)
		}
		if out := mustInRoot(t, root, "systemctl is-enabled edgeprobe.service || true"); strings.TrimSpace(out) != "disabled" {
			t.Errorf("the upgrade re-enabled the agent the admin disabled: %q", out)
		}
		mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --config /etc/edgeprobe/agent.toml >/dev/null")
	})

	t.Run("remove", func(t *testing.T) {
		mustInRoot(t, root, "systemctl enable edgeprobe.service && dpkg -r edgeprobe")
		if out := mustInRoot(t, root, "dpkg-query -W -f '${Status}' edgeprobe"); out != "deinstall ok config-files" {
			t.Errorf("after remove dpkg says %q, want config-files", out)
		}
		mustInRoot(t, root, `test ! -e /usr/bin/edgeprobe
			test ! -e /usr/lib/systemd/system/edgeprobe.service
			test -f /etc/edgeprobe/agent.toml
			test -f /var/lib/edgeprobe/spool/0001
			getent passwd edgeprobe >/dev/null`)
	})

	t.Run("purge", func(t *testing.T) {
		mustInRoot(t, root, "dpkg -P edgeprobe")
		mustInRoot(t, root, `test ! -e /etc/edgeprobe
			test ! -e /etc/default/edgeprobe
			test ! -e /var/lib/edgeprobe
			test ! -L /etc/systemd/system/multi-user.target.wants/edgeprobe.service
			! dpkg-query -W edgeprobe 2>/dev/null`)
		// By design the system user stays (Debian policy: its id must not be reused).
		mustInRoot(t, root, "getent passwd edgeprobe >/dev/null")
	})

	// An image being built may not have systemd yet: the agent must still come up enabled
	// once it does.
	t.Run("install without systemctl", func(t *testing.T) {
		mustInRoot(t, root, `mv /usr/bin/systemctl /usr/bin/systemctl.away
			dpkg -i /tmp/edgeprobe-1.deb
			mv /usr/bin/systemctl.away /usr/bin/systemctl`)
		if out := mustInRoot(t, root, "systemctl is-enabled edgeprobe.service || true"); strings.TrimSpace(out) != "enabled" {
			t.Errorf("agent after an install without systemctl: %q, want enabled", out)
		}
	})
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// verifyUnits runs systemd's own checks on the installed units, against the installed
// binary: verify (syntax, paths, dependencies) and the offline security assessment.
func verifyUnits(t *testing.T, root string) {
	needTools(t, "systemd-analyze")
	units := []string{"/usr/lib/systemd/system/edgeprobe.service", "/usr/lib/systemd/system/edgeprobe-view.service"}
	// verify exits 0 on what it ignores (an unknown key, a misspelt syscall group) and
	// only prints it: any output at all is a finding.
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--root=" + root}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, unit := range units {
		// security exits non-zero when the score is worse than --threshold (default 100).
		out, err := runErr(nil, "systemd-analyze", "security", "--offline=true", "--root="+root, "--no-pager", unit)
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v", unit, err)
			continue
		}
		m := exposure.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s printed no overall exposure:\n%s", unit, out)
			continue
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("systemd-analyze security %s: exposure %.1f", filepath.Base(unit), score)
		// 2.0 and below is systemd's "OK"; anything above means a protection went missing.
		if score > 2.0 {
			t.Errorf("%s: exposure %.1f, want at most 2.0:\n%s", unit, score, out)
		}
	}
}

// TestRPMInstallCycle installs the x86_64 rpm with rpm itself into a Debian root (rpm runs
// the scriptlets chrooted into it, with that root's shell, getent, useradd and systemctl)
// and checks Fedora's habits: the system presets decide enablement, and the stock Fedora
// preset is "disable *"; a changed %config(noreplace) survives an upgrade; erase disables.
func TestRPMInstallCycle(t *testing.T) {
	needTools(t, "rpm")
	b := packages(t)
	root := debianRoot(t)
	amd64 := targets[0]
	upgradeVersion := b.version + "+upgrade"
	up, err := makePackage(repoRoot, filepath.Join(workDir, "upgrade-rpm"), "PKG_ARCHES=amd64", "PKG_FORMATS=rpm", "PKG_VERSION="+upgradeVersion)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system-preset"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system-preset/99-default-disable.preset"), []byte("disable *\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// --nodeps: the Debian root's rpm database does not know its shadow-utils equivalent.
	rpmIn := func(args ...string) string {
		return run(t, nil, "rpm", append([]string{"--root=" + root, "--nodeps", "--nosignature"}, args...)...)
	}
	run(t, nil, "rpm", "--root="+root, "--initdb")
	rpmIn("-i", b.rpm(amd64))
	mustInRoot(t, root, `getent passwd edgeprobe >/dev/null
		test "$(stat -c '%a %U:%G' /etc/edgeprobe/agent.toml)" = "640 root:edgeprobe"
		test -f /etc/sysconfig/edgeprobe
		runuser -u edgeprobe -- edgeprobe check --config /etc/edgeprobe/agent.toml >/dev/null`)
	for _, unit := range []string{"edgeprobe.service", "edgeprobe-view.service"} {
		if out := mustInRoot(t, root, "systemctl is-enabled "+unit+" || true"); strings.TrimSpace(out) != "disabled" {
			t.Errorf("%s after the rpm install: %q, want disabled (presets)", unit, out)
		}
	}

	mustInRoot(t, root, "echo '# changed by the admin' >> /etc/edgeprobe/agent.toml")
	rpmIn("-U", up.rpm(amd64))
	if out := run(t, nil, "rpm", "--root="+root, "-q", "--qf", "%{VERSION}", "edgeprobe"); out != upgradeVersion {
		t.Errorf("after the upgrade rpm says version %q, want %s", out, upgradeVersion)
	}
	if out := mustInRoot(t, root, "tail -n 1 /etc/edgeprobe/agent.toml"); out != "# changed by the admin\n" {
		t.Errorf("the admin's change to agent.toml is gone after the rpm upgrade; last line %q", out)
	}

	mustInRoot(t, root, "systemctl enable edgeprobe.service")
	rpmIn("-e", "edgeprobe")
	mustInRoot(t, root, `test ! -e /usr/bin/edgeprobe
		test ! -L /etc/systemd/system/multi-user.target.wants/edgeprobe.service
		getent passwd edgeprobe >/dev/null`)
}
