// Package prompb holds the Prometheus remote_write 1.0 messages (WriteRequest, TimeSeries,
// Label, Sample) generated from remote.proto with google.golang.org/protobuf.
//
// Why a copy of four messages instead of an import: the maintained Go types for the 1.0
// format live in github.com/prometheus/prometheus/prompb, which brings in the Prometheus
// server's module graph and the unmaintained gogo/protobuf runtime, and the remote-write
// client in github.com/prometheus/client_golang/exp ships only the 2.0 messages. The wire
// format is frozen by the specification, so these four messages compiled with the
// maintained protobuf runtime are both small and exact. Both the agent's remote_write
// exporter (encoding) and any receiver in this module (decoding) use them.
package prompb

//go:generate protoc --go_out=. --go_opt=paths=source_relative remote.proto
