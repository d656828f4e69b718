package perf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/testenv"
)

// point is a measured sweep point with a median rate and its spread.
func point(setting string, def bool, min, med, max float64) SweepPoint {
	return SweepPoint{Setting: setting, Default: def, TOML: "x = " + setting + "\n", Record: Record{
		PPS: Summary{Min: min * 1e6, Median: med * 1e6, Max: max * 1e6}, Runs: []Run{{PPS: med * 1e6, Sent: 100, Delivered: 90}}, Drops: 10,
		Counters: map[string]uint64{"user_ns": 9000, "system_ns": 18000},
	}}
}

func TestRecommend(t *testing.T) {
	failed := SweepPoint{Setting: "boom", Record: Record{Error: "failed"}}
	for _, tc := range []struct {
		name   string
		points []SweepPoint
		want   string
	}{
		{"clear win", []SweepPoint{point("a", true, 1, 1.1, 1.2), point("b", false, 1.3, 1.4, 1.5)}, "b"},
		{"within noise", []SweepPoint{point("a", true, 1, 1.1, 1.3), point("b", false, 1.2, 1.4, 1.5)}, "a"},
		{"default best", []SweepPoint{point("a", false, 1, 1.1, 1.2), point("b", true, 1.3, 1.4, 1.5)}, "b"},
		{"default failed", []SweepPoint{{Setting: "a", Default: true}, point("b", false, 1, 1, 1), point("c", false, 2, 2, 2)}, "c"},
		{"all failed", []SweepPoint{failed}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr := KnobResult{Points: tc.points}
			kr.recommend()
			if kr.Recommended != tc.want {
				t.Errorf("recommended %q, want %q", kr.Recommended, tc.want)
			}
		})
	}
}

// TestSweepTOMLParses builds the snippet of every knob's every point and
// checks that xlb's config parser takes it, wrapped in a minimal file.
func TestSweepTOMLParses(t *testing.T) {
	var rep SweepReport
	for _, k := range knobs {
		for _, p := range k.points(2) {
			rep.Knobs = append(rep.Knobs, KnobResult{Knob: k.name, Recommended: p.label, TOML: p.toml})
			parseSnippet(t, SweepReport{Knobs: rep.Knobs[len(rep.Knobs)-1:]}.TOML())
		}
	}
	rep.Knobs = append(rep.Knobs, KnobResult{Knob: "nothing"})
	if s := rep.TOML(); !strings.Contains(s, "# nothing: nothing measured") {
		t.Errorf("a knob without a recommendation is not said so:\n%s", s)
	}
}

func parseSnippet(t *testing.T, snippet string) {
	t.Helper()
	file := snippet + "interface = \"eth0\"\n\n[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n"
	if _, err := config.Parse("sweep.toml", []byte(file)); err != nil {
		t.Errorf("snippet does not parse: %v\n%s", err, file)
	}
}

func cannedSweep() SweepReport {
	rep := SweepReport{Traffic: UDP, Frame: 64, Setup: ReportSetup{Topology: TopologyDirect, DurationSec: 3, Repeat: 2}}
	kr := KnobResult{Knob: "batch", About: "descriptors per batch", Points: []SweepPoint{
		point("16", false, 0.5, 0.55, 0.6), point("64", true, 0.7, 0.75, 0.8), point("256", false, 0.9, 0.95, 1),
		{Setting: "512", Record: Record{Error: "exit 1"}},
	}}
	kr.Points[2].Record.Counters["rx_packets_q0"], kr.Points[2].Record.Counters["rx_packets_q1"] = 30, 10
	kr.recommend()
	rep.Knobs = append(rep.Knobs, kr)
	return rep
}

func TestSweepMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := cannedSweep().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"#### batch", "| 256 | 0.950 (0.900-1.000) |", "| 100 | 200 | 10 (10%) | q0 75%, q1 25% | **recommended** |",
		"| 64 | 0.750 (0.700-0.800) |", "| default |", "| 512 | failed: exit 1 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestSweepCharts(t *testing.T) {
	files, err := cannedSweep().WriteCharts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || filepath.Base(files[0]) != "sweep-batch.png" {
		t.Fatalf("wrote %v, want sweep-batch.png", files)
	}
	checkPNG(t, files[0])
}

func TestSweepInvalid(t *testing.T) {
	for _, so := range []SweepOptions{
		{Knobs: []string{"colour"}},
		{Knobs: []string{"queues"}, Base: Options{Topology: TopologyBridge}},
		{Base: Options{FrameSizes: []int{64, 128}}},
		{Base: Options{Duration: time.Millisecond}},
	} {
		if _, err := Sweep(so); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", so, err)
		}
	}
}

// TestSweepSmoke sweeps one knob over two points for one short repeat and
// checks the rows, the chart and that the snippet parses as xlb config.
func TestSweepSmoke(t *testing.T) {
	testenv.Root(t, "builds two namespace labs and runs xlb twice (~15s)")
	saved := knobs
	t.Cleanup(func() { knobs = saved })
	spin := *findKnob("spin")
	knobs = []knob{spin}
	dir := t.TempDir()
	var out bytes.Buffer
	rep, err := Sweep(SweepOptions{
		Base: Options{
			Duration: time.Second, Warmup: 300 * time.Millisecond, Repeat: 1,
			Topology: TopologyDirect, Prefix: fmt.Sprintf("xlbperf%d", os.Getpid()), Out: &out,
		},
		ChartsDir: dir,
		TOMLFile:  filepath.Join(dir, "sweep.toml"),
		JSONFile:  filepath.Join(dir, "sweep.json"),
	})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Knobs) != 1 || len(rep.Knobs[0].Points) != 2 {
		t.Fatalf("want one knob with two points: %+v", rep.Knobs)
	}
	for _, p := range rep.Knobs[0].Points {
		if !p.measured() || p.Record.Runs[0].Delivered == 0 {
			t.Errorf("spin %s: delivered nothing: %+v", p.Setting, p.Record)
		}
	}
	if rep.Knobs[0].Recommended == "" {
		t.Error("no recommendation")
	}
	checkPNG(t, filepath.Join(dir, "sweep-spin.png"))
	b, err := os.ReadFile(filepath.Join(dir, "sweep.toml"))
	if err != nil {
		t.Fatal(err)
	}
	parseSnippet(t, string(b))
	if !strings.Contains(out.String(), "#### spin") || !strings.Contains(out.String(), "[datapath]\nspin = ") {
		t.Errorf("no table or snippet in the output")
	}
}
