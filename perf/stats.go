package perf

import (
	"math"
	"slices"
)

// Summary is the spread of one measure over the repeats of a run.
type Summary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// summarize returns the minimum, median (the mean of the two middle values
// for an even count) and maximum of xs; all zero for no values. NaNs are
// ignored.
func summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{Min: v[0], Median: med, Max: v[n-1]}
}
