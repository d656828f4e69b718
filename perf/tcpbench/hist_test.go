package tcpbench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistIndexBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 255, 256, 257, 1000, 1 << 20, 1<<20 + 12345, 1<<40 - 1, math.MaxUint64} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("value %d: index %d outside [0, %d)", v, i, histBuckets)
		}
		lo, hi := histBounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if lo > 0 && float64(hi-lo) > float64(lo)/(1<<histSubBits) {
			t.Errorf("bucket %d = [%d, %d] wider than 1/%d of its low end", i, lo, hi, 1<<histSubBits)
		}
	}
	// Buckets tile the number line: each starts right after the last.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := histBounds(i - 1)
		lo, _ := histBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lo, i-1, prevHi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	dists := []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform-us", func() time.Duration { return time.Duration(rng.IntN(1000)) * time.Microsecond }},
		{"exponential", func() time.Duration { return time.Duration(rng.ExpFloat64() * 100e3) }},
		{"lognormal-tail", func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*1.5) * 50e3) }},
		{"small-exact", func() time.Duration { return time.Duration(rng.IntN(200)) }},
		{"constant", func() time.Duration { return 123456 }},
	}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			for _, n := range []int{1, 2, 999, 20000} {
				h := NewHistogram()
				ref := make([]time.Duration, n)
				for i := range ref {
					ref[i] = d.gen()
					h.Record(ref[i])
				}
				slices.Sort(ref)
				if h.Count() != uint64(n) {
					t.Fatalf("count %d, want %d", h.Count(), n)
				}
				for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
					rank := max(int(math.Ceil(q*float64(n))), 1)
					want := ref[rank-1]
					got := h.Quantile(q)
					if diff := math.Abs(float64(got - want)); diff > float64(want)/(1<<histSubBits)+1 {
						t.Errorf("n=%d q=%v: %v, sorted reference %v (off by more than 1/%d)", n, q, got, want, 1<<histSubBits)
					}
				}
			}
		})
	}
}

func TestHistogramMergeAndEdges(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	if a.Quantile(0.5) != 0 {
		t.Error("empty histogram's median is not 0")
	}
	for i := range 1000 {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	for _, q := range []float64{0.1, 0.5, 0.99, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %v, recorded together %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	h := NewHistogram()
	h.Record(-time.Second)
	h.Record(time.Duration(math.MaxInt64))
	top := h.Quantile(1)
	if h.Quantile(0) != 0 || float64(math.MaxInt64-top) > math.MaxInt64/(1<<histSubBits) {
		t.Errorf("extremes: %v %v", h.Quantile(0), top)
	}
	if h.Quantile(-1) != 0 || h.Quantile(2) != top {
		t.Error("quantiles outside [0, 1] not clamped")
	}
}

func TestHistogramRecordAllocs(t *testing.T) {
	h := NewHistogram()
	if n := testing.AllocsPerRun(100, func() { h.Record(1234567) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}
