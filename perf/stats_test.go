package perf

import (
	"math"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{3}, Summary{3, 3, 3}},
		{"odd", []float64{5, 1, 3}, Summary{1, 3, 5}},
		{"even", []float64{4, 1, 3, 2}, Summary{1, 2.5, 4}},
		{"ties", []float64{2, 2, 2}, Summary{2, 2, 2}},
		{"nan-ignored", []float64{nan, 7, 1, nan}, Summary{1, 4, 7}},
		{"all-nan", []float64{nan}, Summary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := summarize(in); got != tc.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			for i := range in {
				if !(in[i] == tc.in[i] || math.IsNaN(in[i]) && math.IsNaN(tc.in[i])) {
					t.Fatalf("summarize reordered its input: %v", in)
				}
			}
		})
	}
}

const procStatSample = `cpu  153882 0 36844 132474 734 0 399 2861 0 0
cpu0 76068 0 18264 67609 166 0 84 1420 0 0
cpu1 77813 0 18579 64864 568 0 315 1440 0 0
intr 1234 0 0
ctxt 5678
btime 1700000000
processes 42
softirq 1 2 3
`

func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat(strings.NewReader(procStatSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []cpuTimes{
		{cpu: 0, user: 76068, system: 18264, idle: 67609, iowait: 166, irq: 0, softirq: 84, steal: 1420},
		{cpu: 1, user: 77813, system: 18579, idle: 64864, iowait: 568, softirq: 315, steal: 1440},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d cpus, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cpu %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseProcStatErrors(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"only-aggregate", "cpu 1 2 3 4 5 6 7 8\n"},
		{"short", "cpu0 1 2 3 4 5 6 7\n"},
		{"not-a-number", "cpu0 1 2 x 4 5 6 7 8\n"},
		{"bad-index", "cpuX 1 2 3 4 5 6 7 8\n"},
		{"negative", "cpu0 1 2 -3 4 5 6 7 8\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseProcStat(strings.NewReader(tc.in)); err == nil {
				t.Errorf("parseProcStat(%q) succeeded", tc.in)
			}
		})
	}
}

func TestCPUUsage(t *testing.T) {
	before := []cpuTimes{
		{cpu: 0, user: 100, system: 100, idle: 100, softirq: 100},
		{cpu: 1, user: 10},
		{cpu: 2, user: 5},
	}
	after := []cpuTimes{
		// 200 ticks: 50 user, 20 nice, 60 system, 40 softirq, 10 irq, 10 steal, 5 idle, 5 iowait.
		{cpu: 0, user: 150, nice: 20, system: 160, idle: 105, iowait: 5, irq: 10, softirq: 140, steal: 10},
		{cpu: 1, user: 10}, // no ticks: idle
		{cpu: 3, user: 9},  // not in before: left out
	}
	got := cpuUsage(before, after)
	want := []CPUUsage{
		{CPU: 0, User: 35, System: 30, Softirq: 20, Other: 10, Idle: 5},
		{CPU: 1, Idle: 100},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %+v, want %+v", got[i], want[i])
		}
	}
	// A counter that went backwards counts as zero.
	if u := cpuUsage([]cpuTimes{{cpu: 0, user: 10, idle: 10}}, []cpuTimes{{cpu: 0, user: 5, idle: 20}}); u[0].User != 0 || u[0].Idle != 100 {
		t.Errorf("backwards counter: %+v", u[0])
	}
}

func TestMeanUsage(t *testing.T) {
	got := meanUsage([][]CPUUsage{
		{{CPU: 0, User: 10, Idle: 90}, {CPU: 1, System: 40, Idle: 60}},
		{{CPU: 0, User: 30, Idle: 70}, {CPU: 1, System: 60, Idle: 40}},
	})
	want := []CPUUsage{{CPU: 0, User: 20, Idle: 80}, {CPU: 1, System: 50, Idle: 50}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("meanUsage = %+v, want %+v", got, want)
	}
}

func TestDiffCounters(t *testing.T) {
	got := diffCounters(map[string]uint64{"a": 1, "b": 10}, map[string]uint64{"a": 5, "b": 3, "c": 2})
	if got["a"] != 4 || got["b"] != 0 || got["c"] != 2 || len(got) != 3 {
		t.Errorf("diffCounters = %v", got)
	}
	if diffCounters(nil, nil) != nil {
		t.Errorf("diffCounters(nil, nil) not nil")
	}
}

// FuzzParseProcStat: the parser never panics, and every core it returns
// gives usages that add up to 100% against itself plus one tick of each
// kind.
func FuzzParseProcStat(f *testing.F) {
	f.Add(procStatSample)
	f.Add("cpu0 1 2 3 4 5 6 7 8 9 10\n")
	f.Add("cpu9999999999999999999 1 2 3 4 5 6 7 8\n")
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := parseProcStat(strings.NewReader(s))
		if err != nil {
			return
		}
		later := make([]cpuTimes, len(cpus))
		for i, c := range cpus {
			c.user++
			c.nice++
			c.system++
			c.idle++
			c.iowait++
			c.irq++
			c.softirq++
			c.steal++
			later[i] = c
		}
		for _, u := range cpuUsage(cpus, later) {
			if sum := u.User + u.System + u.Softirq + u.Other + u.Idle; math.Abs(sum-100) > 1e-6 {
				t.Fatalf("cpu %d: usages add to %v", u.CPU, sum)
			}
		}
	})
}

func TestParseTaskStat(t *testing.T) {
	// The name holds a space and a ')', as a thread name may.
	line := "1234 (xlb (worker) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 100 1000000 500\n"
	u, s, err := parseTaskStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if u != 2500e6 || s != 370e6 {
		t.Errorf("user %d ns, system %d ns; want 2.5 s and 0.37 s", u, s)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u 37 0"} {
		if _, _, err := parseTaskStat([]byte(bad)); err == nil {
			t.Errorf("parseTaskStat(%q) succeeded", bad)
		}
	}
}

// FuzzParseTaskStat: the parser never panics on any input.
func FuzzParseTaskStat(f *testing.F) {
	f.Add([]byte("1234 (xlb) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 100 1000000 500\n"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = parseTaskStat(b)
	})
}
