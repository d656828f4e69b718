// Command xlb-lab is xlb's perf lab: it builds labs of network namespaces,
// runs the xlb binary and the reference datapaths in them and measures
// them side by side (compare), over one tuning knob at a time (sweep), and
// with real TCP against the proxies users run today (tcp).
//
// It is a command of its own so that the appliance, cmd/xlb, links none
// of what only the lab needs: the chart and font libraries, the plain Go
// AF_XDP library the ring is measured against, the packet generator. The
// lab runs xlb as a separate process, the binary given by --xlb (default:
// the xlb beside xlb-lab, as `make build` puts both in bin/; else one
// built from this module's source with `go build`).
//
// Exit codes: 0 success, 1 a run failed, 2 usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/lab/xlbbin"
)

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// errUsage marks an error in the arguments, as opposed to a failed run.
var errUsage = errors.New("usage")

// command is one subcommand: define registers its flags on fs and returns
// what runs once they are parsed; xlb is the --xlb flag every command has.
type command struct {
	summary, synopsis string
	define            func(fs *flag.FlagSet, out io.Writer, xlb *string) func() error
}

var commands = map[string]command{
	"compare": {
		"every datapath side by side: markdown, JSON, PNG charts",
		"[--duration D] [--repeat N] [--rounds N] [--json FILE] [--frames 64,512,1500] [--traffic udp,tcp-syn,tcp-ack] [--scenario forward|drop] [--datapaths a,b] [--rules 0,10,1000] [--topology bridge|direct] [--flows N] [--flow-table-size N] [--charts DIR] [--queues N --gen-cpus 0,1 --lb-cpus 1,0]",
		defineCompare,
	},
	"sweep": {
		"xlb's AF_XDP datapath over one per-queue knob at a time, and the recommended [datapath] settings",
		"[--duration D] [--repeat N] [--knobs batch,ring,...] [--topology bridge|direct] [--json FILE] [--charts DIR] [--toml FILE]",
		defineSweep,
	},
	"tcp": {
		"real TCP (throughput, connection rate, latency) through xlb in both modes, HAProxy and nginx; and SNI-routed TLS passthrough (xlb-splice, haproxy-sni, nginx-sni)",
		"[--duration D] [--repeat N] [--streams N] [--clients N] [--rate R] [--datapaths a,b] [--json FILE]",
		defineTCP,
	},
}

func main() {
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	// The xlb built from source when there was no binary to run.
	if err := xlbbin.Remove(); err != nil {
		fmt.Fprintf(os.Stderr, "xlb-lab: %v\n", err)
	}
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		usage(w)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	name := args[0]
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "xlb-lab: unknown command %q\n", name)
		usage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("xlb-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: xlb-lab %s [--xlb PATH] %s\n", name, c.synopsis)
		fs.PrintDefaults()
	}
	xlb := fs.String("xlb", siblingXLB(), "the xlb binary to run in the lab (empty: build cmd/xlb from this module's source)")
	act := c.define(fs, stdout, xlb)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xlb-lab %s: unexpected arguments: %s\n", name, strings.Join(fs.Args(), " "))
		fs.Usage()
		return exitUsage
	}
	if err := act(); err != nil {
		fmt.Fprintf(stderr, "xlb-lab %s: %v\n", name, err)
		if errors.Is(err, errUsage) {
			return exitUsage
		}
		return exitFail
	}
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: xlb-lab COMMAND [flags]   (xlb-lab COMMAND --help for its flags)")
	fmt.Fprintln(w, "\nBuilds a lab of network namespaces (needs root), measures each datapath for a fixed duration\nand prints a markdown table; --json writes one record per run.\n\ncommands:")
	for _, n := range slices.Sorted(maps.Keys(commands)) {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 a run failed, 2 usage error")
}

// siblingXLB is the xlb beside this executable, where `make build` puts
// it, or "" if there is none.
func siblingXLB() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "xlb")
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return ""
	}
	return p
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// intList parses a comma-separated list of integers given to flag.
func intList(flag, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%w: --%s: %q is not a number", errUsage, flag, f)
		}
		out = append(out, n)
	}
	return out, nil
}
