package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Indexes of the steer program's counters map: mirror enum steer_counter in
// steer.c (tests check each one against the program's behaviour).
const (
	steerSeen = iota
	steerRedirected
	steerPassed
	steerMalformed
	steerNoSocket
	steerSpliced
	steerSpliceExpired
	steerCounterMax
)

// Indexes of the lb program's counters map: mirror enum lb_counter in lb.c.
const (
	lbSeen = iota
	lbForwarded
	lbPassed
	lbMalformed
	lbFlowHit
	lbEchoReply
	lbFragNeeded
	lbICMPError
	lbICMPRateLimited
	lbSYNUntracked
	lbFirstDrop // the drop reasons follow, in lbDropNames order
)

// lbDropNames are the lb program's drop reasons in enum lb_counter order,
// named as the Go worker names them (datapath.Drop).
var lbDropNames = [...]string{
	"bad_ip_version",
	"bad_ip_length",
	"bad_ipv6_length",
	"truncated_ext_header",
	"too_many_ext_headers",
	"fragment",
	"unsupported_protocol",
	"truncated_l4",
	"truncated_icmp",
	"unsupported_icmp",
	"no_vip",
	"no_backend",
	"no_neighbor",
	"too_big",
	"no_headroom",
	"no_source",
	"echo_disabled",
	"echo_rate_limited",
}

const lbCounterMax = lbFirstDrop + len(lbDropNames)

// SumPerCPU is sumPerCPU for the programs of bpf's subpackages (bpf/decap).
func SumPerCPU(m *ebpf.Map, out []uint64) error { return sumPerCPU(m, out) }

// sumPerCPU reads len(out) entries of a per-CPU array of u64 and stores each
// entry's sum over CPUs in out.
func sumPerCPU(m *ebpf.Map, out []uint64) error {
	if m.MaxEntries() != uint32(len(out)) {
		return fmt.Errorf("map %s has %d entries, want %d", m, m.MaxEntries(), len(out))
	}
	var perCPU []uint64
	for i := range out {
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return fmt.Errorf("lookup %d: %w", i, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[i] = sum
	}
	return nil
}
