# Prometheus exporters and rules (exporters/README.md, packaging/prometheus/).

PROMTOOL ?= promtool

.PHONY: prom-rules prom-rules-gen prom-proto test-prom bench-prom bench-rules

# prom-rules checks the shipped rules (and the variants the tests use) and runs their unit
# tests: the alert cases and the view engine's verdict table (Debian's prometheus package).
prom-rules:
	cd packaging/prometheus && $(PROMTOOL) check rules edgeprobe.rules.yml edgeprobe.rules.region.yml testdata/*.rules.yml
	cd packaging/prometheus && $(PROMTOOL) test rules edgeprobe.rules.test.yml testdata/*.test.yml

# prom-rules-gen rewrites the generated rule files (go:generate lines in
# packaging/prometheus/rules.go) and the promtool tests made from testdata/verdicts.json.
prom-rules-gen:
	$(GO) generate ./packaging/prometheus/
	$(GO) test -count=1 -run 'TestVerdictTable' ./packaging/prometheus/ -update

# bench-rules measures failure -> EdgeprobeSiteLost firing on Prometheus and on
# VictoriaMetrics+vmalert (rules at 1 s), beside the view's lost, over 5 trials of the same
# pushes (Debian's prometheus and victoria-metrics packages; loopback only).
bench-rules:
	$(GO) test -tags benchrules -count=1 -run '^TestRuleLatency$$' -v ./packaging/prometheus/

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
