package perf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// cpuTimes is one "cpuN" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	cpu                                                   int
	user, nice, system, idle, iowait, irq, softirq, steal uint64
}

// CPUUsage is how one core spent a measured window, in percent of it.
type CPUUsage struct {
	CPU     int     `json:"cpu"`
	User    float64 `json:"user"`    // user and nice
	System  float64 `json:"system"`  // kernel, in process context (system calls)
	Softirq float64 `json:"softirq"` // kernel, in softirq (network receive and transmit)
	Other   float64 `json:"other"`   // hard irq and steal
	Idle    float64 `json:"idle"`    // idle and iowait
}

// errProcStat is wrapped by every /proc/stat parse error.
var errProcStat = errors.New("perf: malformed /proc/stat")

// parseProcStat reads the per-core lines ("cpu0 ...") of /proc/stat. The
// aggregate "cpu" line is skipped, and so is every other line. Guest time
// is already included in user time, so its columns are ignored.
func parseProcStat(r io.Reader) ([]cpuTimes, error) {
	var out []cpuTimes
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		cpu, err := strconv.Atoi(f[0][3:])
		if err != nil || cpu < 0 {
			return nil, fmt.Errorf("%w: %q", errProcStat, f[0])
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("%w: %s has %d columns, want at least 8", errProcStat, f[0], len(f)-1)
		}
		var v [8]uint64
		for i := range v {
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("%w: %s column %d: %q", errProcStat, f[0], i+1, f[i+1])
			}
		}
		out = append(out, cpuTimes{cpu, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("perf: read /proc/stat: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no cpuN lines", errProcStat)
	}
	return out, nil
}

// readProcStat reads the machine's per-core times. /proc/stat is not
// namespaced, so it is the same from any network namespace.
func readProcStat() ([]cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	return parseProcStat(bytes.NewReader(b))
}

// cpuUsage turns two readings into per-core percentages of the window. A
// core missing from either reading (offlined meanwhile) is left out; a
// counter that went backwards counts as zero.
func cpuUsage(before, after []cpuTimes) []CPUUsage {
	prev := make(map[int]cpuTimes, len(before))
	for _, t := range before {
		prev[t.cpu] = t
	}
	var out []CPUUsage
	for _, a := range after {
		b, ok := prev[a.cpu]
		if !ok {
			continue
		}
		d := func(x, y uint64) float64 {
			if x < y {
				return 0
			}
			return float64(x - y)
		}
		user := d(a.user, b.user) + d(a.nice, b.nice)
		system := d(a.system, b.system)
		softirq := d(a.softirq, b.softirq)
		other := d(a.irq, b.irq) + d(a.steal, b.steal)
		idle := d(a.idle, b.idle) + d(a.iowait, b.iowait)
		total := user + system + softirq + other + idle
		if total == 0 {
			out = append(out, CPUUsage{CPU: a.cpu, Idle: 100})
			continue
		}
		pct := func(x float64) float64 { return 100 * x / total }
		out = append(out, CPUUsage{
			CPU:     a.cpu,
			User:    pct(user),
			System:  pct(system),
			Softirq: pct(softirq),
			Other:   pct(other),
			Idle:    pct(idle),
		})
	}
	return out
}

// meanUsage averages per-core usage over runs, core by core.
func meanUsage(runs [][]CPUUsage) []CPUUsage {
	var out []CPUUsage
	idx := map[int]int{}
	count := map[int]float64{}
	for _, r := range runs {
		for _, u := range r {
			i, ok := idx[u.CPU]
			if !ok {
				i = len(out)
				idx[u.CPU] = i
				out = append(out, CPUUsage{CPU: u.CPU})
			}
			o := &out[i]
			o.User += u.User
			o.System += u.System
			o.Softirq += u.Softirq
			o.Other += u.Other
			o.Idle += u.Idle
			count[u.CPU]++
		}
	}
	for i := range out {
		n := count[out[i].CPU]
		out[i].User /= n
		out[i].System /= n
		out[i].Softirq /= n
		out[i].Other /= n
		out[i].Idle /= n
	}
	return out
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture this builds for.
const clockTick = 100

// taskCPU reads the user and system CPU time of a process or thread from
// its /proc stat file (/proc/PID/stat, /proc/self/task/TID/stat), in
// nanoseconds at clock-tick resolution.
func taskCPU(path string) (userNs, sysNs uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("perf: %w", err)
	}
	return parseTaskStat(b)
}

// parseTaskStat parses a /proc stat line: "PID (COMM) STATE ..." where
// COMM may hold spaces and parentheses, so fields count from the last ')':
// utime and stime are the 14th and 15th fields of the line.
func parseTaskStat(b []byte) (userNs, sysNs uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%w: task stat without ')'", errProcStat)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%w: task stat has %d fields after the name", errProcStat, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%w: task stat utime %q stime %q", errProcStat, f[11], f[12])
	}
	const ns = 1e9 / clockTick
	return u * ns, s * ns, nil
}
