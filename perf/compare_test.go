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
// topologies for one short repeat of 64-byte UDP and checks that each one
// that is not skipped delivered traffic to the sink, and that the JSON report is well formed.
// It checks behaviour, not rates.
func TestCompareSmoke(t *testing.T) {
	testenv.Root(t, "builds namespace labs and runs every datapath with XDP and AF_XDP (~25s)")
	for _, topo := range []string{TopologyBridge, TopologyDirect} {
		t.Run(topo, func(t *testing.T) { smoke(t, topo) })
	}
}

func smoke(t *testing.T, topology string) {
	var out bytes.Buffer
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	prefix := fmt.Sprintf("xlbperf%d", os.Getpid())
	rep, err := Compare(Options{
		Duration:   time.Second,
		Warmup:     300 * time.Millisecond,
		Repeat:     1,
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
		if len(r.Runs) != 1 || r.Runs[0].Delivered == 0 || r.PPS.Median <= 0 {
			t.Errorf("%s: delivered nothing to the sink: %+v", r.Datapath, r)
		}
		if r.Runs[0].Stray != 0 {
			t.Errorf("%s: the sink counted %d frames not sent by the balancer", r.Datapath, r.Runs[0].Stray)
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
