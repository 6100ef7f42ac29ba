// Package e2e runs the built edgeprobe binary against real failures: sites whose
// network goes dark, a web server that stops answering, an agent whose own uplink is cut;
// and the view acting on them, rewriting records on Debian's named by signed updates.
//
// Loopback cannot show any of that (127.0.0.0/8 always answers), so every test builds a
// network of namespaces with internal/testnet, runs the servers of each site inside it,
// starts `edgeprobe agent` on an edge through `ip netns exec`, and reads the agent's JSON
// lines from stdout as an operator's pipeline would. The binary is built once, in
// TestMain, exactly as `make build` builds it, so the tests exercise what ships.
//
// The tests assert outcomes and their order, never speed: the detection figures come from
// TestBenchDetect (bench_test.go, build tag "bench", `make bench-detect-agent`).
package e2e
