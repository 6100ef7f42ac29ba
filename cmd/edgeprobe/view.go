package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/edgeprobe/edgeprobe/view"
)

// cmdView runs the central view until SIGINT or SIGTERM. Verdict changes go to stdout
// as JSON lines (the event log); diagnostics go to stderr.
func cmdView(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("view", "[--listen ADDR] [--config FILE] [--allow-unauthenticated]",
		"Receive the agents' remote_write pushes and decide per site: up, degraded, lost or unknown.\n"+
			"Serves / (live page), /api/v1/sites, /api/v1/events, /api/v1/write and /metrics.\n"+
			"Runs with defaults without a config file; SIGINT and SIGTERM stop it.", stderr)
	listen := fs.String("listen", "", "`address` to serve on (default "+view.DefaultListen+", or listen in the config)")
	configPath := fs.String("config", "", "view configuration `file` (TOML); optional")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to `file`, for diagnosis")
	memProfile := fs.String("memprofile", "", "write a heap profile (pprof) to `file` when the view stops, for diagnosis")
	allowUnauth := fs.Bool("allow-unauthenticated", false, "listen beyond loopback without tokens or client certificates (allow_unauthenticated in the config): anyone who reaches the view can push verdicts")
	if status, done := parseFlags(fs, args, stdout); done {
		return status
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	logger := newLogger(stderr)
	cfg := view.DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = view.LoadConfig(*configPath); err != nil {
			logConfigErrors(logger, "cannot start: invalid configuration", *configPath, err)
			return exitUsage
		}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *allowUnauth {
		cfg.AllowUnauthenticated = true
	}
	if err := cfg.CheckExposure(cfg.Listen); err != nil {
		logger.Error("cannot start: " + err.Error())
		return exitUsage
	}
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			logger.Error("cannot start: cpu profile", "error", err)
			return exitUsage
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	survivePipe()
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(cfg.SoftMemoryLimit())
	}
	srv, err := view.New(cfg, view.Options{Logger: logger, Events: stdout})
	if err != nil {
		logger.Error("cannot start", "error", err)
		return exitFailure
	}
	err = srv.ListenAndServe(ctx)
	if *memProfile != "" {
		// The profile is the heap as of the last collection, which ran under the load
		// just ended.
		if perr := writeHeapProfile(*memProfile); perr != nil {
			logger.Error("heap profile", "error", perr)
		}
	}
	srv.FlushEvents(flushGrace)
	if err != nil {
		logger.Error("view stopped", "error", err)
		return exitFailure
	}
	return exitOK
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
