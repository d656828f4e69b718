package ring

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// testOffsets lays a ring out like the kernel does: indices on separate
// cache lines, descriptors after them.
var testOffsets = unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}

// plainRing returns plain memory for a ring of size entries of T, with the
// shared producer and consumer indices both set to start.
func plainRing[T Entry](t testing.TB, size, start uint32) []byte {
	t.Helper()
	var zero T
	mem := make([]byte, int(testOffsets.Desc)+int(size)*int(unsafe.Sizeof(zero)))
	binary.NativeEndian.PutUint32(mem[testOffsets.Producer:], start)
	binary.NativeEndian.PutUint32(mem[testOffsets.Consumer:], start)
	return mem
}

// pair lays both sides of one ring over the same memory, standing for us and
// the kernel.
func pair[T Entry](t testing.TB, size, start uint32) (*Producer[T], *Consumer[T], []byte) {
	t.Helper()
	mem := plainRing[T](t, size, start)
	p, err := NewProducer[T](mem, testOffsets, size)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConsumer[T](mem, testOffsets, size)
	if err != nil {
		t.Fatal(err)
	}
	return &p, &c, mem
}

func TestDescMirrorsXDPDesc(t *testing.T) {
	if got, want := unsafe.Sizeof(Desc{}), unsafe.Sizeof(unix.XDPDesc{}); got != want {
		t.Fatalf("Desc is %d bytes, struct xdp_desc %d", got, want)
	}
	if got, want := unsafe.Offsetof(Desc{}.Options), unsafe.Offsetof(unix.XDPDesc{}.Options); got != want {
		t.Fatalf("Desc.Options at %d, xdp_desc.options at %d", got, want)
	}
	if got, want := unsafe.Sizeof(Stats{}), unsafe.Sizeof(unix.XDPStatistics{}); got != want {
		t.Fatalf("Stats is %d bytes, struct xdp_statistics %d", got, want)
	}
}

func TestRingRejectsBadGeometry(t *testing.T) {
	for _, tc := range []struct {
		name string
		mem  int
		off  unix.XDPRingOffset
		size uint32
	}{
		{"size 0", 4096, testOffsets, 0},
		{"size 3", 4096, testOffsets, 3},
		{"size 6", 4096, testOffsets, 6},
		{"size 1000", 1 << 16, testOffsets, 1000},
		{"descriptors past the end", 192 + 8*16 - 1, testOffsets, 8},
		{"index past the end", 4096, unix.XDPRingOffset{Producer: 4094, Consumer: 64, Flags: 128, Desc: 192}, 8},
		{"misaligned descriptors", 4096, unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 196}, 8},
		{"misaligned index", 4096, unix.XDPRingOffset{Producer: 2, Consumer: 64, Flags: 128, Desc: 192}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := make([]byte, tc.mem)
			if _, err := NewProducer[Desc](mem, tc.off, tc.size); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewProducer: err = %v, want ErrInvalidConfig", err)
			}
			if _, err := NewConsumer[Desc](mem, tc.off, tc.size); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewConsumer: err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewProducer[Desc](make([]byte, 4096), testOffsets, 6); err == nil || !strings.Contains(err.Error(), "size 6") {
		t.Errorf("error %v does not name the bad size", err)
	}
}

func TestRingFullAndEmpty(t *testing.T) {
	p, c, _ := pair[uint64](t, 8, 0)

	if idx, got := c.Peek(4); got != 0 {
		t.Fatalf("Peek on empty ring = (%d, %d), want 0 entries", idx, got)
	}
	if _, got := p.Reserve(20); got != 8 {
		t.Fatalf("Reserve(20) on empty ring of 8 got %d, want 8", got)
	}
	if _, got := p.Reserve(1); got != 0 {
		t.Fatalf("Reserve(1) on full ring got %d", got)
	}
	// Reserved but not submitted: invisible to the consumer.
	if _, got := c.Peek(8); got != 0 {
		t.Fatalf("Peek saw %d unsubmitted entries", got)
	}
	for i := range uint32(8) {
		p.Set(i, uint64(100+i))
	}
	p.Submit(8)
	if got := p.Outstanding(); got != 8 {
		t.Fatalf("Outstanding = %d, want 8", got)
	}

	idx, got := c.Peek(3)
	if got != 3 || idx != 0 {
		t.Fatalf("Peek(3) = (%d, %d), want (0, 3)", idx, got)
	}
	for i := range got {
		if v := c.Get(idx + i); v != uint64(100+i) {
			t.Fatalf("entry %d = %d, want %d", i, v, 100+i)
		}
	}
	// Peeked but not released: the producer still sees a full ring.
	if _, got := p.Reserve(1); got != 0 {
		t.Fatalf("Reserve before Release got %d", got)
	}
	c.Release(3)
	if _, got := p.Reserve(5); got != 3 {
		t.Fatalf("Reserve(5) with 3 free got %d", got)
	}
	p.Submit(3)
	// Peek more than available: 5 left of the first batch plus 3 new.
	if _, got := c.Peek(100); got != 8 {
		t.Fatalf("Peek(100) got %d, want 8", got)
	}
	c.Release(8)
	if got := p.Outstanding(); got != 0 {
		t.Fatalf("Outstanding after draining = %d", got)
	}
}

// TestRingWrapAround runs indices across 2^32 and checks that the shared
// indices and the data wrap with them.
func TestRingWrapAround(t *testing.T) {
	const size = 16
	start := uint32(1<<32 - 37)
	p, c, mem := pair[Desc](t, size, start)
	rng := rand.New(rand.NewPCG(1, 2))

	var next, want uint64
	for round := 0; round < 64; round++ {
		idx, got := p.Reserve(uint32(rng.IntN(size + 4)))
		for i := range got {
			p.Set(idx+i, Desc{Addr: next, Len: uint32(next), Options: ^uint32(next)})
			next++
		}
		p.Submit(got)

		idx, got = c.Peek(uint32(rng.IntN(size + 4)))
		for i := range got {
			d := c.Get(idx + i)
			if d != (Desc{Addr: want, Len: uint32(want), Options: ^uint32(want)}) {
				t.Fatalf("round %d: got %+v, want entry %d", round, d, want)
			}
			want++
		}
		c.Release(got)
	}
	if next < 64 || start+uint32(next) > start {
		t.Fatalf("test did not cross 2^32: %d entries from %#x", next, start)
	}
	if got, wantIdx := binary.NativeEndian.Uint32(mem[testOffsets.Producer:]), start+uint32(next); got != wantIdx {
		t.Errorf("shared producer index %#x, want %#x", got, wantIdx)
	}
	if got, wantIdx := binary.NativeEndian.Uint32(mem[testOffsets.Consumer:]), start+uint32(want); got != wantIdx {
		t.Errorf("shared consumer index %#x, want %#x", got, wantIdx)
	}
}

// TestRingConcurrent runs a producer and a consumer goroutine on the same
// memory, as user space and the kernel do, with random batch sizes. Under
// -race it also checks that the acquire/release pairs order the entries.
func TestRingConcurrent(t *testing.T) {
	const (
		size  = 64
		total = 200_000
	)
	p, c, _ := pair[Desc](t, size, 1<<32-1000)
	deadline := time.Now().Add(60 * time.Second)
	done := make(chan error, 1)

	go func() {
		rng := rand.New(rand.NewPCG(3, 4))
		for sent := uint64(0); sent < total; {
			if time.Now().After(deadline) {
				done <- errors.New("producer timed out")
				return
			}
			n := min(uint64(1+rng.IntN(size+8)), total-sent)
			idx, got := p.Reserve(uint32(n))
			for i := range got {
				s := sent + uint64(i)
				p.Set(idx+i, Desc{Addr: s, Len: uint32(s * 7), Options: ^uint32(s)})
			}
			p.Submit(got)
			sent += uint64(got)
		}
		done <- nil
	}()

	rng := rand.New(rand.NewPCG(5, 6))
	for seen := uint64(0); seen < total; {
		if time.Now().After(deadline) {
			t.Fatalf("consumer timed out after %d entries", seen)
		}
		idx, got := c.Peek(uint32(1 + rng.IntN(size+8)))
		for i := range got {
			d := c.Get(idx + i)
			if want := (Desc{Addr: seen, Len: uint32(seen * 7), Options: ^uint32(seen)}); d != want {
				t.Fatalf("entry %d: got %+v, want %+v", seen, d, want)
			}
			seen++
		}
		c.Release(got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// ringSink keeps the compiler from dropping the consumer's reads.
var ringSink uint64

func TestRingBatchAllocs(t *testing.T) {
	p, c, _ := pair[Desc](t, 256, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		idx, got := p.Reserve(64)
		for i := range got {
			p.Set(idx+i, Desc{Addr: uint64(i)})
		}
		p.Submit(got)
		idx, got = c.Peek(64)
		for i := range got {
			ringSink += c.Get(idx + i).Addr
		}
		c.Release(got)
	})
	if allocs != 0 {
		t.Fatalf("ring batch allocates %v times", allocs)
	}
}

// BenchmarkRingBatch produces and consumes batches on plain memory. With
// one shared-index load and store per batch, the cost per descriptor falls
// as the batch grows.
func BenchmarkRingBatch(b *testing.B) {
	for _, batch := range []uint32{1, 16, 64} {
		b.Run("batch="+strconv.Itoa(int(batch)), func(b *testing.B) {
			p, c, _ := pair[Desc](b, 2048, 0)
			b.ReportAllocs()
			for b.Loop() {
				idx, got := p.Reserve(batch)
				for i := range got {
					p.Set(idx+i, Desc{Addr: uint64(i), Len: 64})
				}
				p.Submit(got)
				idx, got = c.Peek(batch)
				for i := range got {
					ringSink += c.Get(idx + i).Addr
				}
				c.Release(got)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(uint64(b.N)*uint64(batch)), "ns/desc")
		})
	}
}

// FuzzRingOps drives a producer and a consumer over one ring from a byte
// script and checks each step against a model: a ring of size holds at most
// size entries, Reserve gets min(n, free), Peek gets min(n, filled), and
// entries come out in order, whatever the starting index.
func FuzzRingOps(f *testing.F) {
	f.Add(uint32(0), []byte{0x21, 0x12, 0x41, 0x0a})
	f.Add(uint32(1<<32-3), []byte{0xff, 0xfe, 0x05, 0x06, 0x81, 0x82})
	f.Add(uint32(1<<31), []byte{0x01, 0x01, 0x01, 0x02, 0x02, 0x03})
	f.Fuzz(func(t *testing.T, start uint32, script []byte) {
		const size = 16
		p, c, _ := pair[uint64](t, size, start)
		var produced, consumed, reserved uint64 // reserved: not yet submitted
		for _, op := range script {
			n := uint32(op >> 2)
			switch op & 3 {
			case 0, 1: // reserve n, fill, submit all reserved
				idx, got := p.Reserve(n)
				if want := min(uint64(n), size-(produced+reserved-consumed)); uint64(got) != want {
					t.Fatalf("Reserve(%d) got %d, want %d", n, got, want)
				}
				for i := range got {
					p.Set(idx+i, produced+reserved+uint64(i))
				}
				reserved += uint64(got)
				if op&3 == 1 {
					p.Submit(uint32(reserved))
					produced += reserved
					reserved = 0
				}
			case 2, 3: // peek n, check, release
				idx, got := c.Peek(n)
				if want := min(uint64(n), produced-consumed); uint64(got) != want {
					t.Fatalf("Peek(%d) got %d, want %d", n, got, want)
				}
				for i := range got {
					if v := c.Get(idx + i); v != consumed+uint64(i) {
						t.Fatalf("entry %d = %d", consumed+uint64(i), v)
					}
				}
				c.Release(got)
				consumed += uint64(got)
			}
			if out := p.Outstanding(); uint64(out) != produced-consumed {
				t.Fatalf("Outstanding = %d, want %d", out, produced-consumed)
			}
		}
	})
}
