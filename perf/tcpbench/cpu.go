package tcpbench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/xlbproject/xlb/perf/procstat"
)

// cpuSample is one reading of the counters a run's CPU figures come from.
type cpuSample struct {
	at      time.Time
	procs   map[int]uint64 // pid -> utime+stime ticks, processes in the lb namespace
	machine procstat.Times
}

// netnsID is the identity of a network namespace as /proc shows it in
// /proc/PID/ns/net ("net:[4026532281]").
func netnsID(path string) (string, error) {
	id, err := os.Readlink(path)
	if err != nil {
		return "", fmt.Errorf("tcpbench: %w", err)
	}
	return id, nil
}

// nsProcesses returns the CPU ticks of every process whose network
// namespace is ns (a netnsID). Processes that vanish while it reads are
// skipped.
func nsProcesses(ns string) (map[int]uint64, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("tcpbench: %w", err)
	}
	out := map[int]uint64{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		if id, err := os.Readlink(filepath.Join(dir, "ns/net")); err != nil || id != ns {
			continue
		}
		t, err := procstat.ReadTask(filepath.Join(dir, "stat"))
		if errors.Is(err, procstat.ErrFormat) {
			return nil, err
		}
		if err != nil {
			continue // exited meanwhile
		}
		out[pid] = t.User + t.System
	}
	return out, nil
}

// sampleCPU reads the lb namespace's processes and the machine's totals.
func sampleCPU(ns string) (cpuSample, error) {
	procs, err := nsProcesses(ns)
	if err != nil {
		return cpuSample{}, err
	}
	st, err := procstat.Read()
	if err != nil {
		return cpuSample{}, err
	}
	return cpuSample{at: time.Now(), procs: procs, machine: st.All}, nil
}

// CPU is where CPU time went during one measured window.
type CPU struct {
	// LBProcs is the user+system time of the processes in the balancer's
	// namespace (xlb, haproxy, nginx and its workers), in percent of one
	// CPU. It includes the kernel work those processes do in system calls
	// (the proxies' TCP stacks, AF_XDP's copy-mode transmit inside xlb's
	// sendto/poll) but not softirq work.
	LBProcs float64 `json:"lb_procs_pct"`
	// Softirq is the machine's softirq time in percent of one CPU. Every
	// namespace's packet processing lands here: the client's and the
	// backends' TCP receive as well as the balancer's (xlb's native XDP
	// program runs entirely in softirq, on the CPU that sent the packet,
	// since veth receives on the sender's CPU). It cannot be split by
	// namespace, so it is an upper bound on the balancer's share.
	Softirq float64 `json:"machine_softirq_pct"`
	// Busy is the whole machine's non-idle time in percent of one CPU,
	// client, backends and other users of the machine included.
	Busy float64 `json:"machine_busy_pct"`
}

// cpuDelta turns two samples into a CPU. Processes present in only one
// sample count from zero (started) or are left out (exited: their time is
// lost, which the proxies and xlb, alive for the whole run, never are).
func cpuDelta(a, b cpuSample) CPU {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return CPU{}
	}
	var procs uint64
	for pid, t := range b.procs {
		if t0 := a.procs[pid]; t >= t0 {
			procs += t - t0
		}
	}
	d := func(x, y uint64) float64 {
		if x < y {
			return 0
		}
		return float64(x - y)
	}
	pct := func(ticks float64) float64 { return 100 * ticks / procstat.ClockTick / secs }
	return CPU{
		LBProcs: pct(float64(procs)),
		Softirq: pct(d(b.machine.SoftIRQ, a.machine.SoftIRQ)),
		Busy:    pct(d(b.machine.Busy(), a.machine.Busy())),
	}
}
