package capture

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// VerdictKind says what the worker did with a frame.
type VerdictKind uint8

const (
	// Forwarded: sent to Verdict's backend.
	Forwarded VerdictKind = iota
	// Dropped: not sent, for Verdict's drop reason.
	Dropped
	// Answered: the balancer answered the client itself (an echo reply, a
	// frag-needed or packet-too-big).
	Answered
)

// Verdict is what happened to a captured frame. It holds no pointers, so
// a ring of them is nothing for the garbage collector to scan.
type Verdict struct {
	Kind    VerdictKind
	Drop    uint8    // Dropped: the datapath's Drop value
	V4      bool     // Forwarded: Backend holds an IPv4 address in its first 4 bytes
	Backend [16]byte // Forwarded: the backend's address
}

// BackendAddr is the backend a Forwarded frame went to (invalid otherwise).
func (v *Verdict) BackendAddr() netip.Addr {
	switch {
	case v.Kind != Forwarded:
		return netip.Addr{}
	case v.V4:
		return netip.AddrFrom4([4]byte(v.Backend[:4]))
	}
	return netip.AddrFrom16(v.Backend)
}

// Meta describes one captured frame.
type Meta struct {
	Time    int64  // wall clock, Unix nanoseconds (the batch's)
	OrigLen uint32 // the frame's length on the wire
	CapLen  uint32 // bytes kept (at most the snaplen)
	Queue   uint16
	Dir     Direction // RX or TX
	Verdict Verdict
}

// DefaultSlots is the ring size per worker: with the default snaplen a
// ring takes 2 MiB, enough for about a millisecond of a busy queue while
// the reader is slow.
const DefaultSlots = 1024

// Ring is one worker's capture buffer: fixed-size slots, one producer (the
// worker) and one consumer (the engine). See the package documentation.
type Ring struct {
	Filter Filter
	meta   []Meta
	data   []byte
	snap   int
	mask   uint64
	_      [64]byte
	head   atomic.Uint64 // next slot the producer fills; written by the producer
	_      [56]byte
	tail   atomic.Uint64 // next slot the consumer reads; written by the consumer
	_      [56]byte
	lost   atomic.Uint64 // matching frames left out because the ring was full
}

// NewRing returns a ring of slots slots (a power of two) of f.Snaplen bytes
// each for a worker.
func NewRing(f Filter, slots int) (*Ring, error) {
	if slots <= 0 || slots&(slots-1) != 0 {
		return nil, fmt.Errorf("capture: ring of %d slots: want a power of two", slots)
	}
	if f.Snaplen <= 0 || f.Snaplen > MaxSnaplen {
		return nil, fmt.Errorf("capture: snaplen %d out of range", f.Snaplen)
	}
	return &Ring{Filter: f, meta: make([]Meta, slots), data: make([]byte, slots*f.Snaplen), snap: f.Snaplen, mask: uint64(slots - 1)}, nil
}

// Reserve is the producer's: it returns the next free slot (its metadata
// and its snaplen bytes), or ok=false when the ring is full. The slot
// becomes the consumer's only on Commit; one that is not committed is
// simply reserved again next time.
func (r *Ring) Reserve() (m *Meta, buf []byte, ok bool) {
	h := r.head.Load()
	if h-r.tail.Load() > r.mask {
		return nil, nil, false
	}
	i := h & r.mask
	off := int(i) * r.snap
	return &r.meta[i], r.data[off : off+r.snap : off+r.snap], true
}

// Commit is the producer's: it hands the reserved slot to the consumer.
func (r *Ring) Commit() { r.head.Store(r.head.Load() + 1) }

// Lose is the producer's: it counts a matching frame the ring had no room
// for.
func (r *Ring) Lose() { r.lost.Add(1) }

// Lost is how many matching frames the ring had no room for.
func (r *Ring) Lost() uint64 { return r.lost.Load() }

// Drain is the consumer's: it calls fn for every committed slot, oldest
// first, and frees each slot once fn returns. It stops at fn's first error.
// It returns how many slots it consumed.
func (r *Ring) Drain(fn func(m *Meta, data []byte) error) (int, error) {
	t, h := r.tail.Load(), r.head.Load()
	n := 0
	for ; t != h; t++ {
		i := t & r.mask
		m := &r.meta[i]
		off := int(i) * r.snap
		if err := fn(m, r.data[off:off+int(m.CapLen)]); err != nil {
			return n, err
		}
		r.tail.Store(t + 1)
		n++
	}
	return n, nil
}
