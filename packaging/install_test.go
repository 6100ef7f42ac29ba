package packaging_test

import (
	"bytes"
	"encoding/base64"
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
		got := mustInRoot(t, root, "stat -c '%a %U:%G %n' /usr/bin/edgeprobe /etc/edgeprobe/agent.toml /etc/edgeprobe/view.toml "+
			"/etc/edgeprobe/sites.d /etc/default/edgeprobe /usr/share/edgeprobe/prometheus/edgeprobe.rules.yml")
		want := "755 root:root /usr/bin/edgeprobe\n640 root:edgeprobe /etc/edgeprobe/agent.toml\n640 root:edgeprobe /etc/edgeprobe/view.toml\n" +
			"750 root:edgeprobe /etc/edgeprobe/sites.d\n644 root:root /etc/default/edgeprobe\n644 root:root /usr/share/edgeprobe/prometheus/edgeprobe.rules.yml\n"
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
	t.Run("sites.d", func(t *testing.T) { checkSitesDir(t, root) })
	t.Run("view with the packaged config", func(t *testing.T) { checkPackagedView(t, root) })

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
		test "$(stat -c '%a %U:%G' /etc/edgeprobe/view.toml)" = "640 root:edgeprobe"
		test "$(stat -c '%a %U:%G' /etc/edgeprobe/sites.d)" = "750 root:edgeprobe"
		test -f /etc/sysconfig/edgeprobe
		test -f /usr/share/edgeprobe/prometheus/edgeprobe.rules.yml
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
	// rpm removes the directories the package owns once they are empty.
	mustInRoot(t, root, `test ! -e /usr/bin/edgeprobe
		test ! -L /etc/systemd/system/multi-user.target.wants/edgeprobe.service
		test ! -e /etc/edgeprobe/sites.d
		test ! -e /usr/share/edgeprobe
		test ! -e /usr/share/doc/edgeprobe
		getent passwd edgeprobe >/dev/null`)
}

// checkSitesDir drops a file of sites into the shipped, empty sites.d, as configuration
// management would, and wants the shipped agent.toml valid both ways and the agent's user
// to read the file.
func checkSitesDir(t *testing.T, root string) {
	summary := regexp.MustCompile(`agent\.toml: ok, (\d+) sites`)
	check := func() string {
		t.Helper()
		out := mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --config /etc/edgeprobe/agent.toml 2>&1")
		m := summary.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("edgeprobe check printed no summary:\n%s", out)
		}
		return m[1]
	}
	if n := check(); n != "1" {
		t.Errorf("with sites.d empty: %s sites, want 1 (the shipped loopback site)", n)
	}
	mustInRoot(t, root, `printf '[[site]]\nname = "dc1"\n  [[site.tcp]]\n  address = "127.0.0.1:22"\n' > /tmp/dc1.toml
		install -m 0640 -o root -g edgeprobe /tmp/dc1.toml /etc/edgeprobe/sites.d/dc1.toml`)
	defer mustInRoot(t, root, "rm /etc/edgeprobe/sites.d/dc1.toml /tmp/dc1.toml")
	if n := check(); n != "2" {
		t.Errorf("with sites.d/dc1.toml: %s sites, want 2", n)
	}
	if out := mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --config /etc/edgeprobe/agent.toml 2>/dev/null"); !strings.Contains(out, `name = "dc1"`) {
		t.Errorf("the effective config does not hold the included site dc1:\n%s", out)
	}
	// Other users cannot list the directory: the sites may name internal hosts.
	if out, err := inRoot(root, "runuser -u nobody -- ls /etc/edgeprobe/sites.d"); err == nil {
		t.Errorf("nobody can list /etc/edgeprobe/sites.d:\n%s", out)
	}
}

// failoverConfig is an [actions] table for checkPackagedView: one DNS action whose key is
// /etc/edgeprobe/tsig.key, where packaging/README.md says to put it.
const failoverConfig = `
[actions]
dry_run = true
[[actions.dns]]
site = "pangyo"
server = "192.0.2.53:53"
zone = "example.test."
name = "www.example.test."
type = "A"
primary = ["192.0.2.13"]
failover = ["192.0.2.23"]
tsig_key_file = "tsig.key"
`

// checkPackagedView runs the view as its unit would, without systemd: the unit's
// ExecStart expanded with the unit's Environment= and the installed environment file, as
// the service user with no capability at all, in the directories StateDirectory= makes,
// in a network namespace of its own (so that 127.0.0.1:9470 is free whatever else runs
// on this machine). The view must start from the packaged view.toml, listen where it
// says (also when that is not the built-in default, which shows the file is read and the
// empty --listen does not override it), answer `edgeprobe status`, warn about nothing and
// stop cleanly; with EDGEPROBE_VIEW_LISTEN set in the environment file it must listen
// there instead. Then
// the file modes packaging/README.md prescribes for tokens and the TSIG key must keep
// the view's permission warnings quiet and the key from other users.
func checkPackagedView(t *testing.T, root string) {
	needTools(t, "unshare", "ip")
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/edgeprobe-view.service"))
	if err != nil {
		t.Fatal(err)
	}
	out := mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --view-config /etc/edgeprobe/view.toml 2>&1")
	if out != "/etc/edgeprobe/view.toml: ok, 0 DNS actions, 0 runbooks\n" {
		t.Errorf("edgeprobe check --view-config on the packaged view.toml:\n%s", out)
	}

	for _, c := range []struct {
		name   string
		edit   string   // a sed script applied to view.toml for this run
		env    []string // lines added to the environment file
		listen string
	}{
		{"as shipped", "", nil, "127.0.0.1:9470"},
		{"listen from view.toml", `s/^listen = .*/listen = "127.0.0.1:9472"/`, nil, "127.0.0.1:9472"},
		{"EDGEPROBE_VIEW_LISTEN", "", []string{"EDGEPROBE_VIEW_LISTEN=127.0.0.1:9471"}, "127.0.0.1:9471"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.edit != "" {
				mustInRoot(t, root, "cp -p /etc/edgeprobe/view.toml /tmp/view.toml.orig && sed -i "+shellQuote(c.edit)+" /etc/edgeprobe/view.toml")
				defer mustInRoot(t, root, "mv /tmp/view.toml.orig /etc/edgeprobe/view.toml")
			}
			argv := unitExecStart(t, root, string(unit), c.env)
			t.Logf("ExecStart as systemd expands it: %q", argv)
			quoted := make([]string, len(argv))
			for i, a := range argv {
				quoted[i] = shellQuote(a)
			}
			script := `install -d -o edgeprobe -g edgeprobe -m 0750 /var/lib/edgeprobe /var/lib/edgeprobe/view
				setpriv --reuid edgeprobe --regid edgeprobe --init-groups --no-new-privs --inh-caps -all --bounding-set -all -- ` +
				strings.Join(quoted, " ") + ` >/tmp/view.out 2>/tmp/view.err &
				pid=$!
				st=4
				for i in $(seq 150); do
					st=0; edgeprobe status --view http://` + c.listen + ` --timeout 2s >/tmp/status.out 2>&1 || st=$?
					[ "$st" -ne 4 ] && break
					kill -0 "$pid" 2>/dev/null || break
					sleep 0.2
				done
				kill -TERM "$pid" 2>/dev/null || true
				vs=0; wait "$pid" || vs=$?
				echo "status=$st view=$vs"
				stat -c '%a %U:%G' /var/lib/edgeprobe/view
				cat /tmp/status.out /tmp/view.err
				rm -f /tmp/status.out /tmp/view.out /tmp/view.err`
			out, err := inRootNet(root, script)
			if err != nil {
				t.Fatal(err)
			}
			// 3: the view answered and knows no site yet (4 would be "not reached").
			if !strings.HasPrefix(out, "status=3 view=0\n750 edgeprobe:edgeprobe\n") {
				t.Errorf("the view did not answer edgeprobe status on %s and stop cleanly (want status=3 view=0, state_dir 750 edgeprobe:edgeprobe):\n%s", c.listen, out)
			}
			if !strings.Contains(out, `msg="view listening" address=`+c.listen) {
				t.Errorf("the view did not say it listens on %s:\n%s", c.listen, out)
			}
			if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
				t.Errorf("the view warned or failed with the packaged config:\n%s", out)
			}
		})
	}

	t.Run("tokens and the TSIG key", func(t *testing.T) {
		// Tokens in the packaged view.toml (0640): no warning. The key file beside it,
		// 0640 root:edgeprobe: the view's user reads it, other users do not.
		secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		if err := os.WriteFile(filepath.Join(root, "tmp/tsig.key"),
			[]byte("key \"edgeprobe\" {\n\talgorithm hmac-sha256;\n\tsecret \""+secret+"\";\n};\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tmp/actions.toml"), []byte(failoverConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		mustInRoot(t, root, `cp -p /etc/edgeprobe/view.toml /tmp/view.toml.orig
			{ echo 'admin_tokens = ["an-admin-token"]'; cat /tmp/view.toml.orig; } > /etc/edgeprobe/view.toml
			install -m 0640 -o root -g edgeprobe /tmp/tsig.key /etc/edgeprobe/tsig.key
			cat /tmp/view.toml.orig /tmp/actions.toml > /etc/edgeprobe/failover.toml
			chmod 0644 /etc/edgeprobe/failover.toml`)
		defer mustInRoot(t, root, `mv /tmp/view.toml.orig /etc/edgeprobe/view.toml
			rm /etc/edgeprobe/tsig.key /etc/edgeprobe/failover.toml /tmp/tsig.key /tmp/actions.toml`)
		if out := mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --view-config /etc/edgeprobe/view.toml 2>&1"); strings.Contains(out, "warning") {
			t.Errorf("the view warns about the packaged view.toml with tokens in it:\n%s", out)
		}
		if out := mustInRoot(t, root, "runuser -u edgeprobe -- edgeprobe check --view-config /etc/edgeprobe/failover.toml 2>&1"); out != "/etc/edgeprobe/failover.toml: ok, 1 DNS actions, 0 runbooks\n" {
			t.Errorf("the view's user cannot use /etc/edgeprobe/tsig.key:\n%s", out)
		}
		out, err := inRoot(root, "runuser -u nobody -- edgeprobe check --view-config /etc/edgeprobe/failover.toml 2>&1")
		if err == nil || !strings.Contains(out, "tsig_key_file") {
			t.Errorf("another user could use /etc/edgeprobe/tsig.key (check: %v):\n%s", err, out)
		}
	})
}

// unitExecStart returns the ExecStart= command of a unit as systemd expands it, with the
// unit's Environment= and its EnvironmentFile=s as installed in root, extra lines added
// at the end of the last one that exists: "${NAME}" gives exactly one argument, empty
// when NAME is, and a word "$NAME" the value split at whitespace, zero or more
// arguments. Only what the shipped units use is implemented (no quoting, no specifiers).
func unitExecStart(t *testing.T, root, unit string, extra []string) []string {
	t.Helper()
	settings := unitSettings(unit)
	env := map[string]string{}
	for _, v := range settings["Environment"] {
		for _, kv := range strings.Fields(v) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	var lines []string
	for _, f := range settings["EnvironmentFile"] {
		data, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(f, "-")))
		switch {
		case err == nil:
			lines = append(lines, strings.Split(string(data), "\n")...)
		case !strings.HasPrefix(f, "-"):
			t.Fatalf("EnvironmentFile=%s: %v", f, err)
		}
	}
	for _, line := range append(lines, extra...) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("environment file line %q is not NAME=VALUE", line)
		}
		env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	if len(settings["ExecStart"]) != 1 {
		t.Fatalf("ExecStart=%q, want exactly one", settings["ExecStart"])
	}
	braced := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	var argv []string
	for _, word := range strings.Fields(settings["ExecStart"][0]) {
		if name, ok := strings.CutPrefix(word, "$"); ok && !strings.HasPrefix(name, "{") {
			argv = append(argv, strings.Fields(env[name])...)
			continue
		}
		argv = append(argv, braced.ReplaceAllStringFunc(word, func(m string) string {
			return env[braced.FindStringSubmatch(m)[1]]
		}))
	}
	return argv
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// inRootNet is inRoot in a network namespace of its own with its loopback up: what the
// script listens on is its own, and it reaches nothing outside.
func inRootNet(root, script string) (string, error) {
	return runErr(nil, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"unshare", "--net", "--", "/bin/sh", "-ec", `ip link set lo up
			exec chroot "$0" /bin/sh -ec "$1"`, root, script)
}
