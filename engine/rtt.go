package engine

import (
	"github.com/xlbproject/xlb/datapath"
)

// HandshakeRTT is one backend's TCP handshake round-trip times as the
// balancer sees them: from a client's SYN to that client's first ACK, both
// through the balancer (see datapath's rtt.go; the native program keeps
// the same histogram, see bpf/lbrtt.h).
type HandshakeRTT struct {
	Count      uint64  `json:"count"`
	SumSeconds float64 `json:"sum_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
	// Buckets counts the samples per bucket: bucket i holds RTTs under
	// BucketBoundsSeconds[i] and at or above the previous bound; the last
	// bucket has no upper bound.
	Buckets []uint64 `json:"buckets"`
}

// RTTBucketBoundsSeconds are the upper bounds of the handshake RTT
// histogram's buckets but the last (whose bound is +Inf), in seconds: the
// `le` labels of xlb_backend_handshake_rtt_seconds.
func RTTBucketBoundsSeconds() []float64 {
	b := make([]float64, datapath.RTTBuckets-1)
	for i := range b {
		b[i] = datapath.RTTBucketBound(i).Seconds()
	}
	return b
}

func handshakeRTT(h datapath.RTTHistogram) *HandshakeRTT {
	return &HandshakeRTT{
		Count:      h.Count(),
		SumSeconds: h.Sum.Seconds(),
		P50Seconds: h.Quantile(0.50).Seconds(),
		P99Seconds: h.Quantile(0.99).Seconds(),
		Buckets:    h.Buckets[:],
	}
}
