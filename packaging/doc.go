// Package packaging holds no code for the binary: it is the home of the deb and rpm recipe
// (nfpm.yaml), the systemd units, the default config and the maintainer scripts, and of the
// tests that prove them.
//
// The tests work on real packages, built by `make package` as a user would, and check them
// with the distributions' own tools: dpkg-deb and rpm read what the packages hold, dpkg
// installs, upgrades, removes and purges one inside a Debian root made by debootstrap, and
// Debian's qemu-user-static runs the ARM binaries. Everything a Debian or Fedora user relies
// on is thus checked by the tools those users run, not by re-reading our own files.
// They need root and the packages in scripts/deps/packaging.txt; elsewhere they skip, in CI
// they fail.
package packaging
