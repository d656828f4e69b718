package tcpbench

import (
	"math/bits"
	"time"
)

// histSubBits sets the histogram's precision: each power of two is split
// into 2^histSubBits equal buckets, so a recorded value is known to within
// 1/2^histSubBits (0.8%) of itself, like an HDR histogram with two
// significant decimal digits.
const histSubBits = 7

// histBuckets covers every uint64: values below 2^(histSubBits+1) get a
// bucket each, every higher power of two 2^histSubBits buckets.
const histBuckets = (64 - histSubBits + 1) << histSubBits

// Histogram is a log-linear histogram of durations in nanoseconds. Record
// is O(1) and allocation-free, so a load generator can record every
// request; Merge adds per-goroutine histograms together. The zero value is
// not ready: use NewHistogram.
type Histogram struct {
	counts []uint64
	n      uint64
	max    uint64
}

// NewHistogram returns an empty histogram (about 60 KB).
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, histBuckets)}
}

// histIndex is the bucket of v: with b = max(0, len(v) - histSubBits - 1)
// dropped low bits, v>>b keeps histSubBits+1 significant bits.
func histIndex(v uint64) int {
	b := max(0, bits.Len64(v)-histSubBits-1)
	return b<<histSubBits + int(v>>b)
}

// histBounds is the range [lo, hi] of values that land in bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 2<<histSubBits {
		return uint64(i), uint64(i)
	}
	b := i>>histSubBits - 1
	sub := uint64(i - b<<histSubBits)
	return sub << b, (sub+1)<<b - 1
}

// Record adds one value; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histIndex(v)]++
	h.n++
	h.max = max(h.max, v)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is how many values were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the value at quantile q in [0, 1]: the smallest
// recorded value v such that at least ceil(q*n) values are <= v, as the
// middle of its bucket (never above the largest value recorded). Zero if
// nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(q*float64(h.n) + 0.999999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histBounds(i)
			return time.Duration(min(lo+(hi-lo)/2, h.max))
		}
	}
	return time.Duration(h.max)
}
