# Packages: `make package` builds the deb and rpm packages of every architecture into dist/
# (packaging/README.md). nfpm comes from packaging/tools, a Go module of its own
# whose go.mod and go.sum pin it, so it stays out of the edgeprobe binary's module graph and
# nothing prebuilt is downloaded.
#
# Knobs: DIST (output dir), PKG_ARCHES (subset of amd64 arm64 armv6 armv7), PKG_FORMATS
# (deb rpm), PKG_VERSION (defaults to one derived from `git describe`), PKG_BUILDDIR.
# Two runs on one commit give byte-identical packages: every timestamp is the last
# commit's (SOURCE_DATE_EPOCH) and the binary is built with -trimpath and no VCS stamp.

DIST         ?= dist
PKG_ARCHES   ?= amd64 arm64 armv6 armv7
PKG_FORMATS  ?= deb rpm
PKG_BUILDDIR ?= bin/pkg
NFPM         := bin/nfpm

# deb and rpm versions must start with a digit and rpm's may not hold '-': a tag v1.2.3 gives
# 1.2.3, 3 commits later 1.2.3+3.gabc1234; with no tag 0.0.0~git<commit time>.<hash>, which
# sorts before any tagged release.
ifeq ($(origin PKG_VERSION),undefined)
PKG_VERSION := $(shell v='$(VERSION)'; case "$$v" in \
	(v[0-9]*) echo "$${v#v}" | sed 's/-/+/; s/-/./g' ;; \
	(*) echo "0.0.0~git$$(date -u -d @$(COMMIT_EPOCH) +%Y%m%d%H%M%S).$$(echo "$$v" | tr - .)" ;; esac)
endif
PKG_LDFLAGS := -s -w -X main.version=$(PKG_VERSION)

# Per target: GOARCH, GOARM, nfpm's arch name and the formats made from it. The one armhf
# deb is built for ARMv6 so it also runs on the Pi Zero and Pi 1 (Debian's armhf baseline is
# ARMv7, Raspberry Pi OS's is ARMv6); rpm names both variants.
pkg_goarch_amd64 := amd64
pkg_goarch_arm64 := arm64
pkg_goarch_armv6 := arm
pkg_goarch_armv7 := arm
pkg_goarm_armv6  := 6
pkg_goarm_armv7  := 7
pkg_nfpm_amd64   := amd64
pkg_nfpm_arm64   := arm64
pkg_nfpm_armv6   := arm6
pkg_nfpm_armv7   := arm7
pkg_formats_amd64 := deb rpm
pkg_formats_arm64 := deb rpm
pkg_formats_armv6 := deb rpm
pkg_formats_armv7 := rpm

PKG_ALL := $(addprefix package-,amd64 arm64 armv6 armv7)

.PHONY: package package-test package-version package-vars $(PKG_ALL)

## package: deb and rpm packages of PKG_ARCHES into DIST (default dist/)
package: $(addprefix package-,$(PKG_ARCHES))

## package-ARCH: the packages of one architecture (amd64, arm64, armv6, armv7)
$(PKG_ALL): package-%: $(NFPM)
	@mkdir -p $(PKG_BUILDDIR)/$* $(DIST)
	GOOS=linux GOARCH=$(pkg_goarch_$*) GOARM=$(pkg_goarm_$*) CGO_ENABLED=0 \
		$(GO) build -trimpath -buildvcs=false -ldflags '$(PKG_LDFLAGS)' \
		-o $(PKG_BUILDDIR)/$*/edgeprobe ./cmd/edgeprobe
	@set -e; for format in $(filter $(PKG_FORMATS),$(pkg_formats_$*)); do \
		echo "nfpm: $$format $(pkg_nfpm_$*) $(PKG_VERSION) -> $(DIST)/"; \
		EDGEPROBE_VERSION='$(PKG_VERSION)' EDGEPROBE_ARCH=$(pkg_nfpm_$*) \
		EDGEPROBE_BINARY=$(PKG_BUILDDIR)/$*/edgeprobe SOURCE_DATE_EPOCH=$(COMMIT_EPOCH) \
		$(NFPM) package --config packaging/nfpm.yaml --packager $$format --target $(DIST)/; \
	done

$(NFPM): packaging/tools/go.mod packaging/tools/go.sum
	$(GO) -C packaging/tools build -trimpath -o $(CURDIR)/$(NFPM) github.com/goreleaser/nfpm/v2/cmd/nfpm

## package-version: the version the packages get (for scripts and the package tests)
package-version:
	@echo '$(PKG_VERSION)'

# The package tests pass these to every build so that a commit landing meanwhile changes
# nothing.
## package-vars: the variables that fix a build's bytes, as make arguments
package-vars:
	@echo 'PKG_VERSION=$(PKG_VERSION)'
	@echo 'COMMIT_EPOCH=$(COMMIT_EPOCH)'

# They build packages themselves; root, Debian's debootstrap, rpm and qemu-user-static
# (scripts/deps/packaging.txt).
## package-test: the package tests alone (packaging/)
package-test: deps
	$(GO) test -count=1 -v -timeout 20m ./packaging/
