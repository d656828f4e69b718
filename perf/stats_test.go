package perf

import (
	"math"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/perf/procstat"
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

func TestCPUUsage(t *testing.T) {
	before := []procstat.CPU{
		{N: 0, Times: procstat.Times{User: 100, System: 100, Idle: 100, SoftIRQ: 100}},
		{N: 1, Times: procstat.Times{User: 10}},
		{N: 2, Times: procstat.Times{User: 5}},
	}
	after := []procstat.CPU{
		// 200 ticks: 50 user, 20 nice, 60 system, 40 softirq, 10 irq, 10 steal, 5 idle, 5 iowait.
		{N: 0, Times: procstat.Times{User: 150, Nice: 20, System: 160, Idle: 105, IOWait: 5, IRQ: 10, SoftIRQ: 140, Steal: 10}},
		{N: 1, Times: procstat.Times{User: 10}}, // no ticks: idle
		{N: 3, Times: procstat.Times{User: 9}},  // not in before: left out
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
	b := []procstat.CPU{{Times: procstat.Times{User: 10, Idle: 10}}}
	a := []procstat.CPU{{Times: procstat.Times{User: 5, Idle: 20}}}
	if u := cpuUsage(b, a); u[0].User != 0 || u[0].Idle != 100 {
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

// FuzzCPUUsage: for any /proc/stat procstat parses, every core's usages
// against itself plus one tick of each kind add up to 100%.
func FuzzCPUUsage(f *testing.F) {
	f.Add("cpu  2 0 2 2 0 0 1 1 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 1 1 0 0\n")
	f.Add("cpu 1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := procstat.Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		later := make([]procstat.CPU, len(st.CPUs))
		for i, c := range st.CPUs {
			c.User++
			c.Nice++
			c.System++
			c.Idle++
			c.IOWait++
			c.IRQ++
			c.SoftIRQ++
			c.Steal++
			later[i] = c
		}
		for _, u := range cpuUsage(st.CPUs, later) {
			if sum := u.User + u.System + u.Softirq + u.Other + u.Idle; math.Abs(sum-100) > 1e-6 {
				t.Fatalf("cpu %d: usages add to %v", u.CPU, sum)
			}
		}
	})
}
