package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// newFlagSet returns the FlagSet of one subcommand. parseFlags prints its usage text to
// stdout when asked for with -h/--help; a usage error prints the problem on stderr.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edgeprobe "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: edgeprobe %s %s\n\n%s\n", name, synopsis, about)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nOptions:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args and says whether the command is done already, and with which
// exit status: after --help (0, usage on stdout) or a bad flag (2, message on stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (status int, done bool) {
	stderr := fs.Output()
	usage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on every error; a hint is enough there
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return exitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", fs.Name())
		return exitUsage, true
	}
	return exitOK, false
}

// usageError reports a bad argument the flag package cannot catch, the way the flag
// package reports its own: the problem and where to read the usage.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\nRun '%s --help' for usage.\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitUsage
}

// newLogger is the diagnostics log of every long-running subcommand: text on stderr,
// so that stdout carries only the results a pipe or journald collects.
func newLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, nil))
}
