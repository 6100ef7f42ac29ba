# The Prometheus artefacts: the shipped rules (packaging/prometheus/edgeprobe.rules.yml)
# checked and unit-tested with promtool, the remote_write 1.0 messages regenerated, and
# the tests of the Prometheus side alone (Debian's prometheus, scripts/deps/prom.txt).
# The encoder's benchmark is mk/bench.mk's bench-prom.

PROMTOOL ?= promtool

.PHONY: prom-rules prom-proto test-prom

## prom-rules: promtool check and unit tests of the shipped rules
prom-rules:
	$(PROMTOOL) check rules packaging/prometheus/edgeprobe.rules.yml
	cd packaging/prometheus && $(PROMTOOL) test rules edgeprobe.rules.test.yml

# Needs Debian's protobuf-compiler and protoc-gen-go of the google.golang.org/protobuf
# version in go.mod.
## prom-proto: regenerate exporters/prompb from remote.proto
prom-proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
	cd exporters/prompb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative remote.proto

## test-prom: the exporters' tests and the rules end to end against a real Prometheus (part of make check)
test-prom:
	$(GO) test -count=1 ./exporters/ ./packaging/prometheus/
