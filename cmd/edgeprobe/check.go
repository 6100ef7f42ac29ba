package main

import (
	"fmt"
	"io"

	"github.com/edgeprobe/edgeprobe/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "[--config FILE]",
		"Validate an agent configuration. On success print the effective configuration\n"+
			"(every default filled in) as TOML on stdout and exit 0; otherwise print every\n"+
			"error on stderr and exit 2.", stderr)
	configPath := fs.String("config", defaultConfigPath, "agent configuration `file` (TOML)")
	quiet := fs.Bool("quiet", false, "print only errors: for systemd's ExecStartPre, whose output goes to the journal")
	if status, done := parseFlags(fs, args, stdout); done {
		return status
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q (the file goes after --config)", fs.Arg(0))
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *quiet {
		return exitOK // the agent logs the warnings below when it starts
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err := cfg.WriteEffective(stdout); err != nil {
		fmt.Fprintf(stderr, "edgeprobe check: writing the effective config of %s: %v\n", *configPath, err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "%s: ok, %d sites, %d targets\n", *configPath, len(cfg.Sites), len(cfg.Targets()))
	return exitOK
}
