package tcpbench

import (
	"errors"
	"math"
	"testing"
	"time"
)

const procStatSample = `cpu  100 5 50 1000 10 1 20 4 0 0
cpu0 50 5 25 500 5 1 10 2 0 0
cpu1 50 0 25 500 5 0 10 2 0 0
intr 12345 0 0
ctxt 999
`

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want machineCPU
		err  bool
	}{
		{"sample", procStatSample, machineCPU{busy: 100 + 5 + 50 + 1 + 20 + 4, softirq: 20, total: 180 + 1000 + 10}, false},
		{"old kernel, 8 columns", "cpu 1 2 3 4 5 6 7 8\n", machineCPU{busy: 1 + 2 + 3 + 6 + 7 + 8, softirq: 7, total: 36}, false},
		{"cpu line later", "intr 1\ncpu 1 0 0 1 0 0 0 0\n", machineCPU{busy: 1, total: 2}, false},
		{"no cpu line", "cpu0 1 2 3 4 5 6 7 8\n", machineCPU{}, true},
		{"short", "cpu 1 2 3\n", machineCPU{}, true},
		{"not a number", "cpu 1 2 x 4 5 6 7 8\n", machineCPU{}, true},
		{"negative", "cpu 1 2 -3 4 5 6 7 8\n", machineCPU{}, true},
		{"empty", "", machineCPU{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if tc.err {
				if !errors.Is(err, ErrProcFormat) {
					t.Fatalf("error %v, want ErrProcFormat", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseTaskStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
		err  bool
	}{
		{"haproxy", "4242 (haproxy) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 70 0 0 20 0 2 0 1234 0 0", 220, false},
		{"name with spaces and parens", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0", 7, false},
		{"no paren", "7 xlb R 1 7 7 0 -1 0 0 0 0 0 3 4", 0, true},
		{"short", "7 (xlb) R 1 7 7", 0, true},
		{"bad utime", "7 (xlb) R 1 7 7 0 -1 0 0 0 0 0 x 4 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTaskStat([]byte(tc.in))
			if tc.err {
				if !errors.Is(err, ErrProcFormat) {
					t.Fatalf("error %v, want ErrProcFormat", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestCPUDelta(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := cpuSample{at: t0, procs: map[int]uint64{1: 100, 2: 50, 3: 10}, machine: machineCPU{busy: 1000, softirq: 200, total: 5000}}
	b := cpuSample{at: t0.Add(2 * time.Second),
		// 1 used 1 s, 2 went backwards (a reused PID), 3 exited, 4 started
		// and used 0.5 s.
		procs:   map[int]uint64{1: 200, 2: 10, 4: 50},
		machine: machineCPU{busy: 1300, softirq: 260, total: 5400}}
	got := cpuDelta(a, b)
	want := CPU{LBProcs: 75, Softirq: 30, Busy: 150} // 1.5 s in 2 s; 0.6 s; 3 s
	for _, f := range []struct {
		name      string
		got, want float64
	}{{"LBProcs", got.LBProcs, want.LBProcs}, {"Softirq", got.Softirq, want.Softirq}, {"Busy", got.Busy, want.Busy}} {
		if math.Abs(f.got-f.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if z := cpuDelta(b, b); z != (CPU{}) {
		t.Errorf("empty window gives %+v", z)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte(procStatSample))
	f.Add([]byte("cpu 1 2 3 4 5 6 7 8\n"))
	f.Add([]byte("cpu 18446744073709551615 18446744073709551615 0 0 0 0 0 0\n"))
	f.Add([]byte("cpu\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseProcStat(b)
		if err != nil && m != (machineCPU{}) {
			t.Fatalf("error %v with a value %+v", err, m)
		}
	})
}

func FuzzParseTaskStat(f *testing.F) {
	f.Add([]byte("4242 (haproxy) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 70 0 0 20 0 2 0 1234 0 0"))
	f.Add([]byte("7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseTaskStat(b)
		if err != nil && v != 0 {
			t.Fatalf("error %v with value %d", err, v)
		}
	})
}
