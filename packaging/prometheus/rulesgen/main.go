// Command rulesgen writes edgeprobe's Prometheus/VictoriaMetrics rule file for a quorum,
// quorum_by and max_up_fraction, given as flags or read from a view.toml:
//
//	go run ./packaging/prometheus/rulesgen [-config view.toml | -quorum N -quorum-by LABEL -max-up-fraction F] [-o FILE]
//
// Groups that FILE holds after the generated ones (prometheus.GeneratedEnd) are kept.
// Exit status 2 on bad flags or settings the view would refuse.
package main

import (
	"fmt"
	"os"

	"github.com/edgeprobe/edgeprobe/packaging/prometheus"
)

func main() {
	p, out, err := prometheus.ParseArgs(os.Args[1:], os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rulesgen:", err)
		os.Exit(2)
	}
	data := prometheus.Generate(p)
	if out == "" {
		_, err = os.Stdout.Write(data)
	} else {
		// Groups added by hand after the generated ones survive the rewrite.
		if existing, rerr := os.ReadFile(out); rerr == nil {
			data = prometheus.Merge(data, existing)
		}
		err = os.WriteFile(out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rulesgen:", err)
		os.Exit(1)
	}
}
