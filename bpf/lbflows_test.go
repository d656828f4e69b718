package bpf

import (
	"testing"

	"github.com/xlbproject/xlb/internal/testenv"
)

// BenchmarkNativeFlowCount measures what a stats call or a metrics scrape
// pays in native mode to count the flows per backend (xlb_backend_flows):
// one batched walk of an IPv4 flow table of 2^18 entries, filled from one
// CPU (with BPF_F_NO_COMMON_LRU a CPU's inserts fill its share of the LRU
// and then evict, so about 180k of them stay).
func BenchmarkNativeFlowCount(b *testing.B) {
	testenv.Root(b, "loads the lb program")
	const n = 1 << 18
	lb, err := LoadLB(LBOptions{FlowTableSize: n, TableSize: lbTestTableSize, MaxVIPs: 16, MaxBackends: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer lb.Close()
	now, _, err := lb.clock()
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]lbFlowKey4, n)
	vals := make([]lbFlowValue, n)
	for i := range keys {
		keys[i] = lbFlowKey4{Saddr: uint32(i), Daddr: 1, Ports: uint32(i), Proto: 6}
		vals[i] = lbFlowValue{Seen: now, Backend: uint32(i % 8)}
	}
	if _, err := lb.objs.Flows.BatchUpdate(keys, vals, nil); err != nil {
		b.Fatal(err)
	}
	var total uint64
	for b.Loop() {
		c, err := lb.FlowsByBackend()
		if err != nil {
			b.Fatal(err)
		}
		total = 0
		for _, k := range c {
			total += k
		}
	}
	if total == 0 {
		b.Fatal("no flows counted")
	}
	b.ReportMetric(float64(total), "flows")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(total), "ns/flow")
}
