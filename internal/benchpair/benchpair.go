// Package benchpair rates xlb's per-packet code against the same work
// written with gopacket, the library a Go developer would reach for first.
//
// Why a package: the worker's whole path (datapath) and each
// encapsulation alone (datapath/packet) are rated the same way, and the
// README quotes both ratios; one runner keeps them comparable.
package benchpair

import (
	"testing"
	"time"
)

// batch is how many frames each side handles before the other takes its
// turn in the ratio loop: long enough that reading the clock costs little,
// short enough that both sides see the same moments of machine load.
const batch = 64

// Step builds one frame's work; its setup (buffers, parsers) runs outside
// the timed loop.
type Step func(b *testing.B) func()

// Run runs three sub-benchmarks of b: "xlb" and "gopacket", each alone
// with its allocations and Mpps, and "ratio", both in alternating batches
// of one loop. On a machine shared with other load the ratio is the
// figure to quote: the two absolute figures come from different moments.
func Run(b *testing.B, xlb, gopacket Step) {
	b.Run("xlb", func(b *testing.B) { alone(b, xlb) })
	b.Run("gopacket", func(b *testing.B) { alone(b, gopacket) })
	b.Run("ratio", func(b *testing.B) {
		x, g := xlb(b), gopacket(b)
		var tx, tg time.Duration
		for b.Loop() {
			t0 := time.Now()
			for range batch {
				x()
			}
			t1 := time.Now()
			for range batch {
				g()
			}
			tx, tg = tx+t1.Sub(t0), tg+time.Since(t1)
		}
		b.ReportMetric(float64(tx.Nanoseconds())/float64(batch*b.N), "xlb-ns/pkt")
		b.ReportMetric(float64(tg.Nanoseconds())/float64(batch*b.N), "gopacket-ns/pkt")
		b.ReportMetric(float64(tg)/float64(tx), "gopacket/xlb")
	})
}

func alone(b *testing.B, s Step) {
	step := s(b)
	b.ReportAllocs()
	for b.Loop() {
		step()
	}
	ReportMpps(b)
}

// ReportMpps adds packets per second, the unit the perf lab reports in,
// to a benchmark whose every iteration is one packet.
func ReportMpps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}
