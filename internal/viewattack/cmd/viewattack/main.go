// Command viewattack runs the hostile clients of internal/viewattack against edgeprobe
// views on loopback and prints what each attack cost (make bench-view-attacks): with
// --before, the same attacks against a second binary first, row beside row.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/viewattack"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("viewattack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg viewattack.Config
	fs.StringVar(&cfg.View, "view", "", "edgeprobe `binary` whose view to attack")
	before := fs.String("before", "", "an older edgeprobe `binary` to attack first, for the before/after table")
	list := fs.String("attacks", "", "comma-separated `names` (default all): "+strings.Join(viewattack.Names(), ", "))
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "each attack's window")
	fs.IntVar(&cfg.Honest, "honest", 6, "honest agents pushing meanwhile")
	fs.DurationVar(&cfg.Every, "every", 200*time.Millisecond, "each honest agent's push interval")
	inProcess := fs.Bool("in-process", false, "run the attacks in this process, beside the honest agents, instead of in a niced child")
	attacker := fs.String("attacker", "", "(internal) run only this attack, against --addr, and print its answers")
	addr := fs.String("addr", "", "(internal) the view's host:port, with --attacker")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *attacker != "" {
		if err := viewattack.RunAttacker(*attacker, *addr, cfg.Duration, cfg.Honest, stdout); err != nil {
			fmt.Fprintln(stderr, "viewattack:", err)
			return 1
		}
		return 0
	}
	if !*inProcess {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "viewattack:", err)
			return 1
		}
		cfg.Attacker = self
	}
	if cfg.View == "" {
		fmt.Fprintln(stderr, "viewattack: --view BINARY is required")
		return 2
	}
	if *list != "" {
		cfg.Attacks = strings.Split(*list, ",")
	}
	cfg.Log = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var builds []string
	var results [][]viewattack.Result
	for _, bin := range []string{*before, cfg.View} {
		if bin == "" {
			continue
		}
		c := cfg
		c.View = bin
		rs, err := viewattack.Run(ctx, c)
		if err != nil {
			fmt.Fprintln(stderr, "viewattack:", err)
			return 1
		}
		builds = append(builds, bin)
		results = append(results, rs)
	}
	fmt.Fprintln(stdout)
	for _, name := range results[0] {
		fmt.Fprintf(stdout, "%-14s %s\n", name.Attack, viewattack.About(name.Attack))
	}
	fmt.Fprintln(stdout)
	viewattack.Table(stdout, builds, results)
	return 0
}
