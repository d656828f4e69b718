package perf

import "github.com/xlbproject/xlb/perf/procstat"

// CPUUsage is how one core spent a measured window, in percent of it.
type CPUUsage struct {
	CPU     int     `json:"cpu"`
	User    float64 `json:"user"`    // user and nice
	System  float64 `json:"system"`  // kernel, in process context (system calls)
	Softirq float64 `json:"softirq"` // kernel, in softirq (network receive and transmit)
	Other   float64 `json:"other"`   // hard irq and steal
	Idle    float64 `json:"idle"`    // idle and iowait
}

// cpuUsage turns two readings into per-core percentages of the window. A
// core missing from either reading (offlined meanwhile) is left out; a
// counter that went backwards counts as zero.
func cpuUsage(before, after []procstat.CPU) []CPUUsage {
	prev := make(map[int]procstat.CPU, len(before))
	for _, t := range before {
		prev[t.N] = t
	}
	var out []CPUUsage
	for _, a := range after {
		b, ok := prev[a.N]
		if !ok {
			continue
		}
		d := func(x, y uint64) float64 {
			if x < y {
				return 0
			}
			return float64(x - y)
		}
		user := d(a.User, b.User) + d(a.Nice, b.Nice)
		system := d(a.System, b.System)
		softirq := d(a.SoftIRQ, b.SoftIRQ)
		other := d(a.IRQ, b.IRQ) + d(a.Steal, b.Steal)
		idle := d(a.Idle, b.Idle) + d(a.IOWait, b.IOWait)
		total := user + system + softirq + other + idle
		if total == 0 {
			out = append(out, CPUUsage{CPU: a.N, Idle: 100})
			continue
		}
		pct := func(x float64) float64 { return 100 * x / total }
		out = append(out, CPUUsage{
			CPU:     a.N,
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
