# Prometheus exporters and rules (exporters/README.md, packaging/prometheus/).

PROMTOOL ?= promtool

.PHONY: prom-rules prom-proto test-prom bench-prom

# prom-rules checks the shipped rules and runs their unit tests (Debian's prometheus package).
prom-rules:
	$(PROMTOOL) check rules packaging/prometheus/edgeprobe.rules.yml
	cd packaging/prometheus && $(PROMTOOL) test rules edgeprobe.rules.test.yml

# prom-proto regenerates the remote_write 1.0 messages; needs Debian's protobuf-compiler and
# protoc-gen-go of the google.golang.org/protobuf version in go.mod.
prom-proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
	cd exporters/prompb && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative remote.proto

# test-prom runs the exporters' tests and the rules end to end against a real Prometheus.
test-prom:
	$(GO) test -count=1 ./exporters/ ./packaging/prometheus/

# bench-prom measures encoding one remote_write push (10 sites x 5 targets) and its size.
bench-prom:
	$(GO) test -run '^$$' -bench EncodeSnapshot -benchmem ./exporters/
