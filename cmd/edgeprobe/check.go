package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/view"
)

// testActionsTimeout bounds --test-actions as a whole: each action's read and update
// have their own timeout, this guards against many slow servers in a row.
const testActionsTimeout = 2 * time.Minute

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "[--config FILE] | --view-config FILE [--test-actions]",
		"Validate an agent configuration. On success print the effective configuration\n"+
			"(every default filled in) as TOML on stdout and exit 0; otherwise print every\n"+
			"error on stderr and exit 2.\n"+
			"With --view-config, validate a view configuration instead; --test-actions then sends\n"+
			"each DNS action's server a signed update that changes nothing, proving the key and\n"+
			"the update policy (exit 1 when one fails).", stderr)
	configPath := fs.String("config", defaultConfigPath, "agent configuration `file` (TOML)")
	viewConfig := fs.String("view-config", "", "view configuration `file` (TOML) to check instead")
	testActions := fs.Bool("test-actions", false, "with --view-config: test every [[actions.dns]] against its server (changes nothing)")
	quiet := fs.Bool("quiet", false, "print only errors: for systemd's ExecStartPre, whose output goes to the journal")
	if status, done := parseFlags(fs, args, stdout); done {
		return status
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q (the file goes after --config or --view-config)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["config"] && set["view-config"]:
		return usageError(fs, "--config and --view-config: check one file at a time")
	case *testActions && *viewConfig == "":
		return usageError(fs, "--test-actions needs --view-config FILE")
	case *viewConfig != "":
		return checkView(*viewConfig, *testActions, *quiet, stdout, stderr)
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

// checkView validates a view.toml and, asked to, tests its DNS actions against their
// servers (failover.Config.TestActions).
func checkView(path string, testActions, quiet bool, stdout, stderr io.Writer) int {
	cfg, err := view.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if !quiet {
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "%s: ok, %d DNS actions, %d runbooks\n", path, len(cfg.Actions.DNS), len(cfg.Actions.Exec))
	}
	if !testActions {
		return exitOK
	}
	if len(cfg.Actions.DNS) == 0 {
		fmt.Fprintf(stdout, "%s: no [[actions.dns]] to test\n", path)
		return exitOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), testActionsTimeout)
	defer cancel()
	results, err := cfg.Actions.TestActions(ctx)
	for _, r := range results {
		what := fmt.Sprintf("%s (site %s): %s %s on %s", r.Action, r.Site, r.Name, r.Type, r.Server)
		if r.Err != nil {
			fmt.Fprintf(stdout, "%s: FAILED: %v\n", what, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok, the server accepts the key's updates; it holds the %s records (%s)\n",
			what, r.Holds, strings.Join(r.Found, ", "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgeprobe check: %v\n", err)
		return exitFailure
	}
	return exitOK
}
