package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/perf"
	"github.com/xlbproject/xlb/perf/tcpbench"
)

func defineCompare(fs *flag.FlagSet, out io.Writer, xlb *string) func() error {
	duration := fs.Duration("duration", 0, "measured time of each repeat (default 5s)")
	repeat := fs.Int("repeat", 0, "repeats per run; the table shows median (min-max) (default 3)")
	rounds := fs.Int("rounds", 0, "times every datapath is started and measured, in reverse order every other round; the report rates each round against its ceiling (default 1)")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	frames := fs.String("frames", "64", "comma-separated Ethernet frame sizes")
	traffic := fs.String("traffic", "udp", "comma-separated traffic kinds: udp, tcp-syn, tcp-ack")
	scenario := fs.String("scenario", "", "forward (default): datapaths forward to the sink; drop: the traffic comes from a denied source range and datapaths drop it")
	datapaths := fs.String("datapaths", "", "comma-separated datapaths (default every one of the scenario: forward "+
		strings.Join(perf.DatapathsOf(perf.ScenarioForward), ",")+"; drop "+strings.Join(perf.DatapathsOf(perf.ScenarioDrop), ",")+")")
	rules := fs.String("rules", "", "comma-separated firewall sizes (entries per VIP) to measure each xlb datapath with (default 0, none; drop: 1)")
	topology := fs.String("topology", "", "bridge (default) or direct")
	charts := fs.String("charts", "", "write PNG charts (Mpps per datapath, CPU per core) into this directory")
	queues := fs.Int("queues", 0, "queues of the measured link, one xlb worker each (default 1; more needs --topology direct and xlb datapaths)")
	genCPUs := fs.String("gen-cpus", "", "comma-separated generator CPUs (default 0); a veth receives on the queue of the sending CPU")
	lbCPUs := fs.String("lb-cpus", "", "comma-separated balancer CPUs, one per queue (default 1, then 0, ...)")
	flows := fs.Int("flows", 0, fmt.Sprintf("distinct 5-tuples the generator cycles through, 1 to %d (default 4096); above a datapath's flow table, every tcp-syn frame is a new flow that evicts another", labprogs.MaxFlows))
	flowTable := fs.Int("flow-table-size", 0, fmt.Sprintf("flow_table_size of the xlb datapaths, a power of two (default: xlb-native %d, xlb-afxdp xlb's default per worker)", perf.NativeFlowTableSize))
	return func() error {
		opts := perf.Options{Duration: *duration, Repeat: *repeat, Rounds: *rounds, JSONFile: *jsonFile, Topology: *topology,
			XLBBinary: *xlb, Queues: *queues, Flows: *flows, FlowTableSize: *flowTable, Scenario: perf.Scenario(*scenario), Datapaths: splitList(*datapaths), Out: out}
		var err error
		if opts.FrameSizes, err = intList("frames", *frames); err != nil {
			return err
		}
		if opts.Rules, err = intList("rules", *rules); err != nil {
			return err
		}
		for _, t := range splitList(*traffic) {
			opts.Traffic = append(opts.Traffic, perf.Traffic(t))
		}
		if opts.GenCPUs, err = intList("gen-cpus", *genCPUs); err != nil {
			return err
		}
		if opts.LBCPUs, err = intList("lb-cpus", *lbCPUs); err != nil {
			return err
		}
		rep, err := perf.Compare(opts)
		// A partial report (some runs failed) still gets its charts.
		if *charts != "" && len(rep.Records) > 0 {
			files, cerr := rep.WriteCharts(*charts)
			for _, f := range files {
				fmt.Fprintf(out, "chart: %s\n", f)
			}
			err = errors.Join(err, cerr)
		}
		return err
	}
}

func defineSweep(fs *flag.FlagSet, out io.Writer, xlb *string) func() error {
	duration := fs.Duration("duration", 0, "measured time of each repeat (default 5s)")
	repeat := fs.Int("repeat", 0, "repeats per point; tables show median (min-max) (default 3)")
	knobs := fs.String("knobs", "", "comma-separated knobs (default all: "+strings.Join(perf.Knobs(), ",")+"; queues needs --topology direct)")
	topology := fs.String("topology", "", "bridge (default) or direct")
	jsonFile := fs.String("json", "", "write the sweep report as JSON to this file")
	charts := fs.String("charts", "", "write one PNG chart per knob into this directory")
	tomlFile := fs.String("toml", "", "write the recommended [datapath] settings to this file")
	return func() error {
		_, err := perf.Sweep(perf.SweepOptions{
			Base:      perf.Options{Duration: *duration, Repeat: *repeat, Topology: *topology, XLBBinary: *xlb, Out: out},
			Knobs:     splitList(*knobs),
			JSONFile:  *jsonFile,
			ChartsDir: *charts,
			TOMLFile:  *tomlFile,
		})
		return err
	}
}

// defineTCP runs real TCP through each balancer: xlb in both modes and the
// proxies users run today. Progress goes to stderr, the table to out.
func defineTCP(fs *flag.FlagSet, out io.Writer, xlb *string) func() error {
	duration := fs.Duration("duration", 0, "measured time of each test window (default 5s)")
	repeat := fs.Int("repeat", 0, "windows per test; the table shows median (min-max) (default 3)")
	streams := fs.Int("streams", 0, "parallel streams of the many-stream throughput test (default 8)")
	clients := fs.Int("clients", 0, "concurrent clients of the connection-rate test (default 16)")
	rate := fs.Float64("rate", 0, "offered requests per second of the latency test (default 2000)")
	datapaths := fs.String("datapaths", "", "comma-separated datapaths (default all: "+strings.Join(tcpbench.AllDatapaths, ",")+")")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	return func() error {
		rep, err := tcpbench.Run(tcpbench.Options{
			Duration: *duration, Repeat: *repeat, Streams: *streams, Clients: *clients, Rate: *rate,
			XLBBinary: *xlb, Datapaths: splitList(*datapaths), Out: fs.Output(),
		})
		if err != nil {
			return err
		}
		if err := rep.WriteMarkdown(out); err != nil {
			return err
		}
		if *jsonFile == "" {
			return nil
		}
		f, err := os.Create(*jsonFile)
		if err != nil {
			return err
		}
		return errors.Join(rep.WriteJSON(f), f.Close())
	}
}
