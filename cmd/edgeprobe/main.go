// Command edgeprobe is the one binary of the project: the probing agent, the central
// view, a reader of the view's verdicts, a config checker, an ad-hoc prober and a
// self-contained demo.
//
// Each subcommand is a func(args, stdout, stderr) int with its own flag.FlagSet: it
// writes only to the writers it is given and returns its exit status (0 ok, 1 runtime
// failure, 2 bad usage or config; status says more, status.go), so main is one table
// from names to functions. The
// tests build the binary and run it as a user would, signals and exit statuses included.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgeprobe/edgeprobe/exporters"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// defaultConfigPath is where packages install the agent's configuration.
const defaultConfigPath = "/etc/edgeprobe/agent.toml"

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is the one table of subcommands, in the order the usage text lists them.
var commands = []command{
	{"agent", "probe the configured sites and report their state", cmdAgent},
	{"view", "run the central view that turns agents' pushes into site verdicts", cmdView},
	{"status", "show the view's verdicts as a table, or follow their changes", cmdStatus},
	{"check", "validate a config file and print the effective config", cmdCheck},
	{"failover", "show the view's failover state, hold or release its actions, fail a site back", cmdFailover},
	{"probe", "send one ad-hoc probe and print the result", cmdProbe},
	{"demo", "watch a simulated site go dark on loopback (no root needed)", cmdDemo},
	{"version", "print the version, Go version and platform", cmdVersion},
}

func main() {
	exporters.Version = version
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		agentProcs()
		agentGC()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		return cmdVersion(nil, stdout, stderr)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "edgeprobe: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: edgeprobe COMMAND [options]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'edgeprobe COMMAND --help' for a command's options.")
}

// flushGrace is how long a process waits at exit for its queued stdout lines.
const flushGrace = 2 * time.Second

// survivePipe keeps the process alive when stdout's reader goes away. By default a write
// to a closed pipe on stdout kills a Go program with SIGPIPE; asked for, the signal is
// only delivered (to a channel nobody reads) and the write fails with EPIPE, which the
// agent's stdout queue and the view's event log count as dropped lines. Notify rather
// than signal.Ignore: an ignored signal stays ignored in the programs the process
// starts (the failover's commands).
func survivePipe() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}
