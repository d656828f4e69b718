package perf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab/xlbbin"
)

// TestMain removes the xlb binary the smoke tests built once and shared.
func TestMain(m *testing.M) { os.Exit(xlbbin.RunAndRemove(m)) }

// TestCompareSmoke runs every datapath of the forward scenario in both
// topologies for one short repeat of 64-byte UDP (two rounds in the
// direct one) and checks that each one that is not skipped delivered
// traffic to the sink in every round, and that the JSON report is well
// formed. It checks behaviour, not rates.
func TestCompareSmoke(t *testing.T) {
	testenv.Root(t, "builds namespace labs and runs every datapath with XDP and AF_XDP (~35s)")
	t.Run(TopologyBridge, func(t *testing.T) { smoke(t, TopologyBridge, 1) })
	t.Run(TopologyDirect, func(t *testing.T) { smoke(t, TopologyDirect, 2) })
}

func smoke(t *testing.T, topology string, rounds int) {
	var out bytes.Buffer
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	prefix := fmt.Sprintf("xlbperf%d", os.Getpid())
	rep, err := Compare(Options{
		Duration:   time.Second,
		Warmup:     300 * time.Millisecond,
		Repeat:     1,
		Rounds:     rounds,
		FrameSizes: []int{64},
		Traffic:    []Traffic{UDP},
		Prefix:     prefix,
		Topology:   topology,
		JSONFile:   jsonFile,
		Out:        &out,
	})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := filepath.Glob("/run/netns/" + prefix + "-*"); len(ents) != 0 {
		t.Errorf("namespaces left behind: %v", ents)
	}
	if got, want := len(rep.Records), len(DatapathsOf(ScenarioForward)); got != want {
		t.Fatalf("%d records, want one per datapath (%d)", got, want)
	}
	for _, r := range rep.Records {
		if r.Skipped != "" {
			continue
		}
		if len(r.Runs) != rounds || r.PPS.Median <= 0 {
			t.Errorf("%s: %d runs, want one per round (%d): %+v", r.Datapath, len(r.Runs), rounds, r)
		}
		for i, run := range r.Runs {
			if run.Delivered == 0 || run.Round != i+1 {
				t.Errorf("%s: run %d (round %d) delivered %d frames to the sink", r.Datapath, i, run.Round, run.Delivered)
			}
			if run.Stray != 0 {
				t.Errorf("%s: the sink counted %d frames not sent by the balancer", r.Datapath, run.Stray)
			}
		}
		if len(r.CPU) == 0 {
			t.Errorf("%s: no CPU accounting", r.Datapath)
		}
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	if len(back.Records) != len(rep.Records) || back.Records[0].Datapath != rep.Records[0].Datapath {
		t.Errorf("JSON report differs from the returned one")
	}
	if !strings.Contains(out.String(), "| datapath |") {
		t.Errorf("no markdown table in the output")
	}
	if got := strings.Contains(out.String(), "Round by round"); got != (rounds > 1) {
		t.Errorf("rounds table shown %v with %d rounds", got, rounds)
	}
}

// TestReportAdd checks that a later round's records join the first's, in
// the first's order, keeping the first reason a round failed.
func TestReportAdd(t *testing.T) {
	rec := func(dp string, round int, pps float64, failed string) Record {
		r := Record{Datapath: dp, Traffic: UDP, FrameSize: 64, Error: failed}
		if failed == "" {
			r.Runs = []Run{{Round: round, PPS: pps}}
		}
		return r
	}
	var r Report
	r.add([]Record{rec("xlb-native", 1, 3e6, "")})
	r.add([]Record{rec("xdp-tx", 1, 4e6, "")})
	r.add([]Record{rec("xdp-tx", 2, 5e6, "")})
	r.add([]Record{rec("xlb-native", 2, 0, "start: boom")})
	r.add([]Record{rec("xlb-native", 3, 2e6, "")})
	r.add([]Record{rec("xlb-native", 4, 0, "later")})
	for i := range r.Records {
		r.Records[i].summarize()
	}
	if len(r.Records) != 2 || r.Records[0].Datapath != "xlb-native" || r.Records[1].Datapath != "xdp-tx" {
		t.Fatalf("records %+v: want xlb-native then xdp-tx", r.Records)
	}
	n := r.Records[0]
	if len(n.Runs) != 2 || n.Runs[1].Round != 3 || n.Error != "start: boom" || n.PPS.Median != 2.5e6 {
		t.Errorf("xlb-native: %+v: want rounds 1 and 3, the first error, median 2.5 Mpps", n)
	}
	if got := r.Records[1].roundPPS(2); got != 5e6 {
		t.Errorf("xdp-tx round 2: %g pps, want 5e6", got)
	}
}

// TestMarkdownRounds checks the ratio to the ceiling: in the main table
// from the medians of every round, and round by round from each round's
// own, a round that failed left empty.
func TestMarkdownRounds(t *testing.T) {
	runs := func(pps ...float64) []Run {
		var rs []Run
		for i, p := range pps {
			if p > 0 {
				rs = append(rs, Run{Round: i + 1, PPS: p * 1e6, Seconds: 1})
			}
		}
		return rs
	}
	r := Report{Setup: ReportSetup{Rounds: 3}, Records: []Record{
		{Datapath: "xlb-native", Kind: KindXLB, Traffic: UDP, FrameSize: 64, Runs: runs(3, 2, 0)},
		{Datapath: "xdp-tx", Kind: KindCeiling, Traffic: UDP, FrameSize: 64, Runs: runs(4, 4, 5)},
		{Datapath: "ring-fwd", Kind: KindCeiling, Traffic: UDP, FrameSize: 64, Runs: runs(2, 2, 2)},
		{Datapath: "asavie", Kind: KindBaseline, Traffic: UDP, FrameSize: 64, Runs: runs(1, 1, 1)},
	}}
	for i := range r.Records {
		r.Records[i].summarize()
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| Mpps delivered | vs ceiling |",
		"| xlb-native | xlb | udp | 64 | 2.500 (2.000-3.000) | 0.62 xdp-tx |",
		"| xdp-tx | ceiling | udp | 64 | 4.000 (4.000-5.000) |  |",
		"| asavie | baseline | udp | 64 | 1.000 (1.000-1.000) | 0.50 ring-fwd |",
		"| datapath | traffic | frame | vs | round 1 | round 2 | round 3 | median (min-max) |",
		"| xlb-native | udp | 64 | xdp-tx | 0.75 | 0.50 | | 0.62 (0.50-0.75) |",
		"| asavie | udp | 64 | ring-fwd | 0.50 | 0.50 | 0.50 | 0.50 (0.50-0.50) |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

// TestCompareFirewallSmoke runs each datapath of the drop scenario in both
// topologies, and the xlb datapaths forwarding through a firewall, for one
// short repeat, and checks that drops (forwards) were counted. It checks
// behaviour, not rates.
func TestCompareFirewallSmoke(t *testing.T) {
	testenv.Root(t, "builds namespace labs, runs xlb with a firewall, nftables and XDP (~40s)")
	testenv.Tool(t, "nft")
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"drop-bridge", Options{Scenario: ScenarioDrop, Topology: TopologyBridge}},
		{"drop-direct", Options{Scenario: ScenarioDrop, Topology: TopologyDirect}},
		{"forward-rules", Options{Datapaths: []string{"xlb-afxdp", "xlb-native"}, Rules: []int{10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			o := tc.o
			o.Duration, o.Warmup, o.Repeat, o.Out = time.Second, 300*time.Millisecond, 1, &out
			o.Prefix = fmt.Sprintf("xlbperf%d", os.Getpid())
			rep, err := Compare(o)
			t.Log(out.String())
			if err != nil {
				t.Fatal(err)
			}
			want := len(DatapathsOf(o.Scenario))
			if o.Datapaths != nil {
				want = len(o.Datapaths)
			}
			if len(rep.Records) != want {
				t.Fatalf("%d records, want %d", len(rep.Records), want)
			}
			for _, r := range rep.Records {
				if len(r.Runs) != 1 {
					t.Errorf("%s: %d runs, want 1", r.label(), len(r.Runs))
					continue
				}
				run := r.Runs[0]
				switch {
				case o.Scenario == ScenarioDrop && (run.Dropped == 0 || r.DropCounter == ""):
					t.Errorf("%s: counted no drops (%q): %+v", r.label(), r.DropCounter, run)
				case o.Scenario == ScenarioDrop && run.Delivered != 0:
					t.Errorf("%s: the sink got %d frames of the denied range", r.label(), run.Delivered)
				case o.Scenario != ScenarioDrop && (run.Delivered == 0 || r.Rules != 10):
					t.Errorf("%s: delivered nothing through a firewall of 10 entries: %+v", r.label(), run)
				}
			}
			if ents, _ := filepath.Glob("/run/netns/" + o.Prefix + "-*"); len(ents) != 0 {
				t.Errorf("namespaces left behind: %v", ents)
			}
		})
	}
}
