package viewattack

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Table prints one row per attack and build: the view's peak RSS, the honest pushes'
// latency and failures, forged and stuck verdicts, the view's stderr lines and fate,
// and what the attacker was answered. builds names the result sets in order.
func Table(w io.Writer, builds []string, results [][]Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "attack\tbuild\tRSS peak MiB\thonest p50 / p99 ms\thonest failed\tforged reads\tflips seen\tstderr lines\tview\tattacker answered")
	for i := range results[0] {
		for b, rs := range results {
			if i >= len(rs) {
				continue
			}
			r := rs[i]
			fate := "alive"
			if r.Died != "" {
				fate = "died: " + r.Died
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s / %s\t%d of %d\t%d of %d\t%d of %d\t%d\t%s\t%s\n",
				r.Attack, builds[b], float64(r.RSSMax)/(1<<20), ms(r.P50), ms(r.P99), r.Failed, r.Failed+r.Pushes,
				r.Forged, r.Checks, r.FlipsSeen, r.Flips, r.StderrLines, fate, answers(r.Answers))
		}
	}
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

// answers is "204 x12, 413 x3": statuses the attacker got; "none" for 0 (no answer
// before the connection closed); reads (rebinding) as "read 200".
func answers(m map[int]int) string {
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		name := fmt.Sprint(c)
		switch {
		case c == 0:
			name = "none"
		case c >= 1000:
			name = fmt.Sprintf("read %d", c-1000)
		}
		parts = append(parts, fmt.Sprintf("%s x%d", name, m[c]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
