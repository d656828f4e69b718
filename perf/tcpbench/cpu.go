package tcpbench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrProcFormat is wrapped by every error parsing a /proc file.
var ErrProcFormat = errors.New("tcpbench: malformed /proc file")

// userHZ is the unit of /proc's CPU times (USER_HZ), 100 on every Linux
// architecture this builds for.
const userHZ = 100

// machineCPU is the "cpu" line of /proc/stat, summed over all CPUs, in
// clock ticks.
type machineCPU struct {
	busy    uint64 // user, nice, system, irq, softirq, steal
	softirq uint64
	total   uint64 // busy, idle and iowait
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat. Guest time
// is already part of user time, so its columns are ignored.
func parseProcStat(b []byte) (machineCPU, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return machineCPU{}, fmt.Errorf("%w: /proc/stat cpu line has %d columns, want at least 8", ErrProcFormat, len(f)-1)
		}
		var v [8]uint64
		for i := range v {
			var err error
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return machineCPU{}, fmt.Errorf("%w: /proc/stat cpu column %d: %q", ErrProcFormat, i+1, f[i+1])
			}
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		busy := user + nice + system + irq + softirq + steal
		return machineCPU{busy: busy, softirq: softirq, total: busy + idle + iowait}, nil
	}
	if err := sc.Err(); err != nil {
		return machineCPU{}, fmt.Errorf("tcpbench: read /proc/stat: %w", err)
	}
	return machineCPU{}, fmt.Errorf("%w: /proc/stat has no cpu line", ErrProcFormat)
}

// parseTaskStat returns utime+stime, in clock ticks, from a /proc/PID/stat
// line "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so the
// fields count from the last ')'; utime and stime are fields 14 and 15 of
// the line. For a process they cover all its threads, live and exited.
func parseTaskStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: task stat without ')'", ErrProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: task stat has %d fields after the name, want at least 13", ErrProcFormat, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: task stat utime %q stime %q", ErrProcFormat, f[11], f[12])
	}
	return u + s, nil
}

// cpuSample is one reading of the counters a run's CPU figures come from.
type cpuSample struct {
	at      time.Time
	procs   map[int]uint64 // pid -> utime+stime ticks, processes in the lb namespace
	machine machineCPU
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
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		t, err := parseTaskStat(b)
		if err != nil {
			return nil, err
		}
		out[pid] = t
	}
	return out, nil
}

// sampleCPU reads the lb namespace's processes and the machine's totals.
func sampleCPU(ns string) (cpuSample, error) {
	procs, err := nsProcesses(ns)
	if err != nil {
		return cpuSample{}, err
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, fmt.Errorf("tcpbench: %w", err)
	}
	m, err := parseProcStat(b)
	if err != nil {
		return cpuSample{}, err
	}
	return cpuSample{at: time.Now(), procs: procs, machine: m}, nil
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
	pct := func(ticks float64) float64 { return 100 * ticks / userHZ / secs }
	return CPU{
		LBProcs: pct(float64(procs)),
		Softirq: pct(d(b.machine.softirq, a.machine.softirq)),
		Busy:    pct(d(b.machine.busy, a.machine.busy)),
	}
}
