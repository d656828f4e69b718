package perf

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != defaultDuration || o.Repeat != defaultRepeat || o.Rounds != defaultRounds || len(o.FrameSizes) != 1 || o.FrameSizes[0] != 64 ||
		len(o.Traffic) != 1 || o.Traffic[0] != UDP || !slices.Equal(o.Datapaths, DatapathsOf(ScenarioForward)) || o.Flows != defaultFlows ||
		len(o.GenCPUs) != 1 || len(o.LBCPUs) != 1 || o.Tuning.Batch != 64 || o.Tuning.Ring != 2048 || o.Out == nil || o.Prefix == "" || o.Topology != TopologyBridge {
		t.Errorf("defaults: %+v", o)
	}
	if o, _ := (Options{Warmup: -1}).withDefaults(); o.Warmup != 0 {
		t.Errorf("negative warmup: %s, want none", o.Warmup)
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"short-duration", Options{Duration: time.Millisecond}},
		{"repeat", Options{Repeat: -1}},
		{"rounds-negative", Options{Rounds: -1}},
		{"rounds-many", Options{Rounds: maxRounds + 1}},
		{"frame-small", Options{FrameSizes: []int{59}}},
		{"frame-big", Options{FrameSizes: []int{1515}}},
		{"traffic", Options{Traffic: []Traffic{"icmp"}}},
		{"datapath", Options{Datapaths: []string{"dpdk"}}},
		{"flows", Options{Flows: -1}},
		{"backends", Options{Backends: 201}},
		{"gen-cpu", Options{GenCPUs: []int{-1}}},
		{"lb-cpus", Options{LBCPUs: []int{0, 1}}},
		{"lb-cpu", Options{LBCPUs: []int{1 << 20}}},
		{"batch", Options{Tuning: Tuning{Batch: 512}}},
		{"ring", Options{Tuning: Tuning{Ring: 1000}}},
		{"tx-budget", Options{Tuning: Tuning{TxBudget: 16}}},
		{"topology", Options{Topology: "mesh"}},
		{"queues-bridge", Options{Queues: 2, Datapaths: []string{"xlb-afxdp"}}},
		{"queues-single-queue-datapath", Options{Queues: 2, Topology: TopologyDirect, Datapaths: []string{"ring-fwd"}}},
		{"queues-cpus", Options{Queues: 2, Topology: TopologyDirect, Datapaths: []string{"xlb-afxdp"}, LBCPUs: []int{0}}},
		{"queues-many", Options{Queues: 65, Topology: TopologyDirect, Datapaths: []string{"xlb-afxdp"}}},
		{"scenario", Options{Scenario: "ddos"}},
		{"forward-only-datapath-dropping", Options{Scenario: ScenarioDrop, Datapaths: []string{"xdp-tx"}}},
		{"drop-only-datapath-forwarding", Options{Datapaths: []string{"nft-ingress"}}},
		{"flow-table-not-pow2", Options{FlowTableSize: 3000}},
		{"flow-table-small", Options{FlowTableSize: 512}},
		{"flow-table-big", Options{FlowTableSize: 1 << 25}},
		{"rules-negative", Options{Rules: []int{-1}}},
		{"rules-too-many", Options{Rules: []int{maxRules + 1}}},
		{"rules-twice", Options{Rules: []int{10, 0, 10}}},
		{"rules-none-dropping", Options{Scenario: ScenarioDrop, Rules: []int{0}}},
		{"rules-without-xlb", Options{Scenario: ScenarioDrop, Datapaths: []string{"nft-ingress", "xdp-drop"}, Rules: []int{10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.o.withDefaults(); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestOptionsQueues(t *testing.T) {
	o, err := Options{Queues: 2, Topology: TopologyDirect, Datapaths: []string{"xlb-afxdp", "xlb-native"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.LBCPUs) != 2 {
		t.Errorf("LBCPUs %v: want one per queue", o.LBCPUs)
	}
}

func TestOptionsRules(t *testing.T) {
	o, err := Options{Rules: []int{0, 10, 1000, 100000}, Datapaths: []string{"xlb-afxdp", "xlb-native", "xdp-tx"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Rules, []int{0, 10, 1000, 100000}) {
		t.Errorf("rules %v", o.Rules)
	}
}
