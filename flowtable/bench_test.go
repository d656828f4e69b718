package flowtable

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/xlbproject/xlb/hash"
)

// benchKey4 returns distinct TCP flows for i up to 2^31: clients spread over
// 198.18.0.0/15 and their source ports, to one VIP.
func benchKey4(i int) (Key4, uint32) {
	src := [4]byte{198, 18 | byte(i>>16)&1, byte(i >> 8), byte(i)}
	dst := [4]byte{198, 19, 255, 1}
	sport := 1024 + i>>17
	ports := [4]byte{byte(sport >> 8), byte(sport), 0, 80}
	k := Key4{
		Src:   binary.LittleEndian.Uint32(src[:]),
		Dst:   binary.LittleEndian.Uint32(dst[:]),
		Ports: binary.LittleEndian.Uint32(ports[:]),
		Proto: tcp,
	}
	return k, hash.Flow4(k.Src, k.Dst, k.Ports, k.Proto)
}

func benchKey6(i int) (Key6, uint32) {
	k := Key6{
		Src:   [16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)},
		Dst:   [16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 15: 1},
		Ports: 0x50000004,
		Proto: tcp,
	}
	return k, hash.Flow6(&k.Src, &k.Dst, k.Ports, k.Proto)
}

// BenchmarkTable measures the per-packet operations on tables of 64 Ki and
// 1 Mi slots, filled to 75% with flows whose keys and hashes are computed
// beforehand (the worker has them from parsing).
func BenchmarkTable(b *testing.B) {
	for _, size := range []int{1 << 16, 1 << 20} {
		b.Run(fmt.Sprintf("ipv4/%d", size), func(b *testing.B) { benchTable(b, size, benchKey4) })
		b.Run(fmt.Sprintf("ipv6/%d", size), func(b *testing.B) { benchTable(b, size, benchKey6) })
	}
}

func benchTable[K Key](b *testing.B, size int, mk func(int) (K, uint32)) {
	tb := mustNew[K](b, Config{Entries: size})
	n := size * 3 / 4
	keys := make([]K, 2*n) // the first n in the table, the rest not
	hashes := make([]uint32, 2*n)
	for i := range keys {
		keys[i], hashes[i] = mk(i)
	}
	for i := range n {
		tb.Upsert(hashes[i], &keys[i], 0, Entry{Backend: uint32(i)})
	}
	perEntry := float64(tb.Bytes()) / float64(tb.Cap())
	fill := float64(tb.Len()) / float64(tb.Cap())

	b.Run("lookup-hit", func(b *testing.B) {
		hits := tb.Stats().Hits
		for i := 0; b.Loop(); i++ {
			j := i % n
			sinkEntry, _ = tb.Lookup(hashes[j], &keys[j], 1)
		}
		b.ReportMetric(perEntry, "bytes/entry")
		b.ReportMetric(float64(tb.Stats().Hits-hits)/float64(b.N), "hits/op")
	})
	b.Run("lookup-miss", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			j := n + i%n
			sinkEntry, _ = tb.Lookup(hashes[j], &keys[j], 1)
		}
		b.ReportMetric(perEntry, "bytes/entry")
	})
	// Inserting new flows into the 75% full table: after the first ones
	// it evicts, which is the steady state of a busy table.
	b.Run("insert", func(b *testing.B) {
		s := tb.Stats()
		for i := 0; b.Loop(); i++ {
			j := n + i%n
			tb.Upsert(hashes[j], &keys[j], 2, Entry{Backend: uint32(j)})
		}
		b.ReportMetric(perEntry, "bytes/entry")
		b.ReportMetric(float64(tb.Stats().Evictions-s.Evictions)/float64(b.N), "evictions/op")
	})
	b.ReportMetric(fill, "fill")
}

// BenchmarkCensus measures a whole-table walk (what `xlb stats` costs a
// worker once per call) on the default table and on 1 Mi slots, filled to
// 75%: ns/op is the time one batch is delayed.
func BenchmarkCensus(b *testing.B) {
	for _, size := range []int{DefaultEntries, 1 << 20} {
		b.Run(fmt.Sprintf("slots=%d", size), func(b *testing.B) {
			t, err := New[Key4](Config{Entries: size})
			if err != nil {
				b.Fatal(err)
			}
			for i := range size * 3 / 4 {
				k, h := benchKey4(i)
				t.Upsert(h, &k, 0, Entry{Backend: uint32(i % 16)})
			}
			var n [16]int
			for b.Loop() {
				t.Census(1, 0, t.Buckets(), func(e Entry) { n[e.Backend&15]++ })
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size), "ns/slot")
		})
	}
}
