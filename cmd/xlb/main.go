// Command xlb is the AF_XDP L4 load balancer: it runs the datapath, checks
// configs, attaches the backends' decapsulation program, reads counters and
// runs the self-contained demo lab.
//
// Exit codes (documented in the README):
//
//	0  success
//	1  runtime failure (attach, socket, kernel errors)
//	2  usage error (unknown command or flag)
//	3  invalid configuration (the message names file:line: key)
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitUsage  = 2
	exitConfig = 3
)

// env is what a subcommand may touch, so every subcommand runs in-process in
// tests with its own output buffers.
type env struct {
	stdout, stderr io.Writer
	signals        chan os.Signal // nil: the real process signals
}

type command struct {
	summary string
	run     func(e *env, args []string) int
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"run":      {"attach to an interface and balance traffic", cmdRun},
		"check":    {"validate a config file and print the resolved plan", cmdCheck},
		"stats":    {"print the counters of a running instance", cmdStats},
		"bgp":      {"print the BGP sessions and announced routes of a running instance", cmdBGP},
		"capture":  {"write the frames a running instance receives and sends as pcapng", cmdCapture},
		"reload":   {"make a running instance load its config file again, keeping flows", cmdReload},
		"firewall": {"list, add or delete firewall rules of a running instance", cmdFirewall},
		"decap":    {"attach, configure or inspect the backends' tunnel decapsulation program", cmdDecap},
		"lookup":   {"print the backend a new flow gets, from the config alone", cmdLookup},
		"demo":     {"build a namespace lab, balance real HTTP through xlb, tear it down", cmdDemo},

		"version": {"print the module version, VCS commit, Go version and kernel release", cmdVersion},
	}
}

func main() {
	os.Exit(run(&env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

func run(e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "xlb: unknown command %q\n", args[0])
		usage(e.stderr)
		return exitUsage
	}
	return c.run(e, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: xlb COMMAND [flags]   (xlb COMMAND --help for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid configuration")
}

// newFlags returns a FlagSet that reports to the env and describes itself.
func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("xlb "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: xlb %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and turns -h and bad flags into exit codes.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return exitUsage, false
	}
	return 0, true
}

func newLogger(w io.Writer, json bool) *slog.Logger {
	if json {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
