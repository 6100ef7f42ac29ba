package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgeprobe/edgeprobe/config"

	"github.com/edgeprobe/edgeprobe/agent"
)

// stopGrace bounds how long a stopping agent waits for probes in flight. They are
// cancelled at once and usually return in microseconds; a prober that ignores its
// context must not keep systemd or a terminal waiting past a second.
const stopGrace = 800 * time.Millisecond

func cmdAgent(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agent", "[--config FILE]",
		"Probe the sites of the configuration and report target, site and agent states.\n"+
			"SIGHUP reloads the file (an invalid one is reported and the running config kept);\n"+
			"the files its include names are reloaded the same way within a second of a change.\n"+
			"SIGINT and SIGTERM stop the agent.", stderr)
	configPath := fs.String("config", defaultConfigPath, "agent configuration `file` (TOML)")
	if status, done := parseFlags(fs, args, stdout); done {
		return status
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q (the file goes after --config)", fs.Arg(0))
	}
	// Catch the signals before anything else: SIGHUP's default action would kill an agent
	// that a reload reached while it was still starting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hangup := make(chan os.Signal, 1)
	signal.Notify(hangup, syscall.SIGHUP)
	defer signal.Stop(hangup)
	survivePipe()

	logger := newLogger(stderr)
	cfg, err := config.Load(*configPath)
	if err != nil {
		logConfigErrors(logger, "cannot start: invalid configuration", *configPath, err)
		return exitUsage
	}
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	out, err := newOutputs(cfg, stdout, logger)
	if err != nil {
		logger.Error("cannot start the exporters", "config", *configPath, "error", err)
		return exitFailure
	}
	defer out.stdout.Flush(flushGrace)
	a, err := agent.New(cfg, agent.Options{Sinks: out.sinks, Logger: logger})
	if err != nil {
		out.close()
		logger.Error("cannot start the agent", "config", *configPath, "error", err)
		return exitFailure
	}

	out.start(ctx, logger)
	finished := make(chan error, 1)
	go func() { finished <- a.Run(ctx) }()
	logger.Info("agent started", "config", *configPath, "agent", cfg.Agent.Name,
		"sites", len(cfg.Sites), "targets", len(cfg.Targets()), "included_files", len(cfg.IncludedFiles()))
	running := cfg
	var current atomic.Pointer[config.Config] // running, for the include watcher
	current.Store(cfg)
	// loaded is how the included files stood at the last load or attempt: a reload is
	// tried once per change, and an invalid file is reported once, not every second.
	loaded := cfg.IncludeStamp()
	includes := watchIncludes(ctx, &current, includePoll)
	apply := func(next *config.Config) {
		if next != running {
			running = next
			current.Store(next)
			loaded = next.IncludeStamp()
		}
	}
	for {
		select {
		case err := <-finished:
			if err != nil {
				logger.Error("agent stopped", "error", err)
				return exitFailure
			}
			return exitOK
		case <-hangup:
			apply(reloadAgent(a, running, *configPath, logger))
		case stamp := <-includes:
			if stamp == loaded {
				continue
			}
			loaded = stamp
			logger.Info("included files changed; reloading", "config", *configPath)
			apply(reloadAgent(a, running, *configPath, logger))
		case <-ctx.Done():
			stop() // a second Ctrl-C kills at once
			logger.Info("stopping on signal")
			grace := time.After(stopGrace)
			select {
			case err := <-finished:
				if err != nil {
					logger.Error("agent stopped", "error", err)
				}
			case <-grace:
				logger.Warn("probes still running at exit", "waited", stopGrace)
				return exitOK
			}
			select {
			case <-out.wait():
			case <-grace:
				logger.Warn("exporters still shutting down at exit", "waited", stopGrace)
			}
			return exitOK
		}
	}
}

// reloadAgent reads the configuration file (and the files it includes) again and hands
// it to the running agent. Any error leaves the running configuration in place, so a
// typo during an incident never stops the probing. It returns the configuration now
// running.
func reloadAgent(a *agent.Agent, running *config.Config, path string, logger *slog.Logger) *config.Config {
	cfg, err := config.Load(path)
	if err != nil {
		logConfigErrors(logger, "reload rejected, running configuration kept", path, err)
		return running
	}
	if err := a.Reload(cfg); err != nil {
		logger.Error("reload rejected, running configuration kept", "config", path, "error", err)
		return running
	}
	logger.Info("configuration reloaded", "config", path, "sites", len(cfg.Sites), "targets", len(cfg.Targets()),
		"included_files", len(cfg.IncludedFiles()))
	if !reflect.DeepEqual(cfg.Exporters, running.Exporters) {
		logger.Warn("exporter settings changed; they apply at the next start, targets applied now", "config", path)
	}
	return cfg
}

// logConfigErrors logs msg and then each configuration error on a line of its own: a
// list folded into one quoted attribute is hard to read on a terminal.
func logConfigErrors(logger *slog.Logger, msg, path string, err error) {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	logger.Error(msg, "config", path, "errors", len(lines))
	for _, line := range lines {
		logger.Error("config error", "error", line)
	}
}
