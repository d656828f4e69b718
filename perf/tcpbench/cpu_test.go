package tcpbench

import (
	"math"
	"testing"
	"time"

	"github.com/xlbproject/xlb/perf/procstat"
)

func TestCPUDelta(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := cpuSample{at: t0, procs: map[int]uint64{1: 100, 2: 50, 3: 10}, machine: procstat.Times{User: 800, SoftIRQ: 200, Idle: 4000}}
	b := cpuSample{at: t0.Add(2 * time.Second),
		// 1 used 1 s, 2 went backwards (a reused PID), 3 exited, 4 started
		// and used 0.5 s.
		procs:   map[int]uint64{1: 200, 2: 10, 4: 50},
		machine: procstat.Times{User: 1040, SoftIRQ: 260, Idle: 4100}}
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
