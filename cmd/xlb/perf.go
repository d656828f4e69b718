package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/perf"
	"github.com/xlbproject/xlb/perf/tcpbench"
)

func cmdPerf(e *env, args []string) int {
	if len(args) > 0 && args[0] == "sweep" {
		return cmdPerfSweep(e, args[1:])
	}
	if len(args) > 0 && args[0] == "tcp" {
		return cmdPerfTCP(e, args[1:])
	}
	if len(args) == 0 || args[0] != "compare" {
		fmt.Fprintln(e.stderr, "usage: xlb perf compare [flags]   (xlb perf compare --help)")
		fmt.Fprintln(e.stderr, "       xlb perf sweep [flags]     (xlb perf sweep --help)")
		fmt.Fprintln(e.stderr, "       xlb perf tcp [flags]       (xlb perf tcp --help)")
		fmt.Fprintln(e.stderr, "\nBuilds a lab of namespaces (generator, balancer, sink), measures each datapath for a fixed\nduration and prints a markdown table; --json writes one record per run. sweep measures xlb's\nAF_XDP datapath over one per-queue knob at a time and recommends a [datapath] setting per knob.\ntcp runs real TCP (throughput, connection rate, latency) through xlb in both modes, HAProxy and nginx.")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	fs := newFlags(e, "perf compare", "[--duration D] [--repeat N] [--json FILE] [--frames 64,512,1500] [--traffic udp,tcp-syn,tcp-ack] [--datapaths a,b] [--topology bridge|direct] [--charts DIR] [--queues N --gen-cpus 0,1 --lb-cpus 1,0]")
	duration := fs.Duration("duration", 0, "measured time of each repeat (default 5s)")
	repeat := fs.Int("repeat", 0, "repeats per run; the table shows median (min-max) (default 3)")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	frames := fs.String("frames", "64", "comma-separated Ethernet frame sizes")
	traffic := fs.String("traffic", "udp", "comma-separated traffic kinds: udp, tcp-syn, tcp-ack")
	datapaths := fs.String("datapaths", "", "comma-separated datapaths (default all: "+strings.Join(perf.Datapaths(), ",")+")")
	topology := fs.String("topology", "", "bridge (default) or direct")
	charts := fs.String("charts", "", "write PNG charts (Mpps per datapath, CPU per core) into this directory")
	queues := fs.Int("queues", 0, "queues of the measured link, one xlb worker each (default 1; more needs --topology direct and xlb datapaths)")
	genCPUs := fs.String("gen-cpus", "", "comma-separated generator CPUs (default 0); a veth receives on the queue of the sending CPU")
	lbCPUs := fs.String("lb-cpus", "", "comma-separated balancer CPUs, one per queue (default 1, then 0, ...)")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	opts := perf.Options{Duration: *duration, Repeat: *repeat, JSONFile: *jsonFile, Topology: *topology, XLBBinary: bin, Out: e.stdout}
	for _, f := range splitList(*frames) {
		n, err := strconv.Atoi(f)
		if err != nil {
			fmt.Fprintf(e.stderr, "xlb: --frames: %q is not a size\n", f)
			return exitUsage
		}
		opts.FrameSizes = append(opts.FrameSizes, n)
	}
	for _, t := range splitList(*traffic) {
		opts.Traffic = append(opts.Traffic, perf.Traffic(t))
	}
	opts.Datapaths = splitList(*datapaths)
	opts.Queues = *queues
	var ok bool
	if opts.GenCPUs, ok = cpuList(e, "--gen-cpus", *genCPUs); !ok {
		return exitUsage
	}
	if opts.LBCPUs, ok = cpuList(e, "--lb-cpus", *lbCPUs); !ok {
		return exitUsage
	}
	rep, err := perf.Compare(opts)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: perf compare: %v\n", err)
	}
	if *charts != "" && len(rep.Records) > 0 {
		files, cerr := rep.WriteCharts(*charts)
		for _, f := range files {
			fmt.Fprintf(e.stdout, "chart: %s\n", f)
		}
		if cerr != nil {
			fmt.Fprintf(e.stderr, "xlb: perf compare: %v\n", cerr)
			err = cerr
		}
	}
	if err != nil {
		return exitFail
	}
	return exitOK
}

func cmdPerfSweep(e *env, args []string) int {
	fs := newFlags(e, "perf sweep", "[--duration D] [--repeat N] [--knobs batch,ring,...] [--topology bridge|direct] [--json FILE] [--charts DIR] [--toml FILE]")
	duration := fs.Duration("duration", 0, "measured time of each repeat (default 5s)")
	repeat := fs.Int("repeat", 0, "repeats per point; tables show median (min-max) (default 3)")
	knobs := fs.String("knobs", "", "comma-separated knobs (default all: "+strings.Join(perf.Knobs(), ",")+"; queues needs --topology direct)")
	topology := fs.String("topology", "", "bridge (default) or direct")
	jsonFile := fs.String("json", "", "write the sweep report as JSON to this file")
	charts := fs.String("charts", "", "write one PNG chart per knob into this directory")
	tomlFile := fs.String("toml", "", "write the recommended [datapath] settings to this file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	so := perf.SweepOptions{
		Base:      perf.Options{Duration: *duration, Repeat: *repeat, Topology: *topology, XLBBinary: bin, Out: e.stdout},
		Knobs:     splitList(*knobs),
		JSONFile:  *jsonFile,
		ChartsDir: *charts,
		TOMLFile:  *tomlFile,
	}
	if _, err := perf.Sweep(so); err != nil {
		fmt.Fprintf(e.stderr, "xlb: perf sweep: %v\n", err)
		return exitFail
	}
	return exitOK
}

// cpuList parses a comma-separated list of CPU numbers.
func cpuList(e *env, flag, s string) ([]int, bool) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			fmt.Fprintf(e.stderr, "xlb: %s: %q is not a CPU number\n", flag, f)
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// cmdPerfTCP runs real TCP through each balancer: xlb in both modes and the
// proxies users run today.
func cmdPerfTCP(e *env, args []string) int {
	fs := newFlags(e, "perf tcp", "[--duration D] [--repeat N] [--streams N] [--clients N] [--rate R] [--datapaths a,b] [--json FILE]")
	duration := fs.Duration("duration", 0, "measured time of each test window (default 5s)")
	repeat := fs.Int("repeat", 0, "windows per test; the table shows median (min-max) (default 3)")
	streams := fs.Int("streams", 0, "parallel streams of the many-stream throughput test (default 8)")
	clients := fs.Int("clients", 0, "concurrent clients of the connection-rate test (default 16)")
	rate := fs.Float64("rate", 0, "offered requests per second of the latency test (default 2000)")
	datapaths := fs.String("datapaths", "", "comma-separated datapaths (default all: "+strings.Join(tcpbench.AllDatapaths, ",")+")")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	rep, err := tcpbench.Run(tcpbench.Options{
		Duration: *duration, Repeat: *repeat, Streams: *streams, Clients: *clients, Rate: *rate,
		XLBBinary: bin, Datapaths: splitList(*datapaths), Out: e.stderr,
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: perf tcp: %v\n", err)
		return exitFail
	}
	if err := rep.WriteMarkdown(e.stdout); err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	if *jsonFile != "" {
		f, err := os.Create(*jsonFile)
		if err == nil {
			err = errors.Join(rep.WriteJSON(f), f.Close())
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "xlb: perf tcp: %v\n", err)
			return exitFail
		}
	}
	return exitOK
}
