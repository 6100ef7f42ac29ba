package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgeprobe/edgeprobe/view"
)

// cmdView runs the central view until SIGINT or SIGTERM. Verdict changes go to stdout
// as JSON lines (the event log); diagnostics go to stderr.
func cmdView(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("view", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to serve on (default "+view.DefaultListen+", or listen in the config)")
	configPath := fs.String("config", "", "view.toml; without it the view runs with defaults")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: edgeprobe view [--listen ADDR] [--config view.toml]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Receives the agents' remote_write pushes and serves site verdicts:")
		fmt.Fprintln(fs.Output(), "  / (live page), /api/v1/sites, /api/v1/events, /api/v1/write, /metrics")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "edgeprobe view: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg := view.DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = view.LoadConfig(*configPath); err != nil {
			fmt.Fprintf(stderr, "edgeprobe view: %v\n", err)
			return exitUsage
		}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := view.New(cfg, view.Options{
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
		Events: stdout,
	})
	if err := srv.ListenAndServe(ctx); err != nil {
		fmt.Fprintf(stderr, "edgeprobe view: %v\n", err)
		return exitFailure
	}
	return exitOK
}
