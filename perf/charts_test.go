package perf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// cannedReport is a small report as Compare returns it: one measured
// datapath of each kind, one skipped, two frame sizes.
func cannedReport() Report {
	rep := Report{CPUs: 2, Setup: ReportSetup{Topology: TopologyDirect, DurationSec: 3, Repeat: 3}}
	cpu := []CPUUsage{{CPU: 0, User: 5, System: 20, Softirq: 70}, {CPU: 1, User: 40, System: 50, Softirq: 5}}
	for _, size := range []int{64, 1500} {
		for i, d := range []struct{ name, kind string }{{"xlb-afxdp", KindXLB}, {"xdp-tx", KindCeiling}, {"asavie", KindBaseline}} {
			m := float64(i+1) * 1e6 / float64(size/64+1)
			rep.Records = append(rep.Records, Record{
				Datapath: d.name, Kind: d.kind, Traffic: UDP, FrameSize: size,
				PPS: Summary{Min: 0.9 * m, Median: m, Max: 1.05 * m}, CPU: cpu,
				Runs: []Run{{PPS: m}},
			})
		}
		rep.Records = append(rep.Records, Record{Datapath: "xlb-native", Kind: KindXLB, Traffic: UDP, FrameSize: size, Skipped: "not yet"})
	}
	return rep
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

func TestWriteCharts(t *testing.T) {
	dir := t.TempDir()
	files, err := cannedReport().WriteCharts(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mpps-udp-64.png", "cpu-udp-64.png", "mpps-udp-1500.png", "cpu-udp-1500.png"}
	if len(files) != len(want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Errorf("file %d is %s, want %s", i, filepath.Base(f), want[i])
		}
		checkPNG(t, f)
	}
}

func checkPNG(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 1000 || !bytes.HasPrefix(b, pngSignature) {
		t.Errorf("%s: %d bytes, not a PNG with a chart in it", file, len(b))
	}
}
