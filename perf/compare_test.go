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

// TestCompareSmoke runs every datapath in both topologies for one short
// repeat of 64-byte UDP and checks that each one that is not skipped
// delivered traffic to the sink, and that the JSON report is well formed.
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
	if got, want := len(rep.Records), len(Datapaths()); got != want {
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
