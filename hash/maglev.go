package hash

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Table sizes. The size must be prime so that every skip in [1, M-1] is
// coprime with M and each backend's permutation visits every slot.
const (
	// DefaultTableSize is the size Katran and Envoy use: good balance
	// (within about 1%) for up to a few hundred backends per VIP.
	DefaultTableSize uint32 = 65537

	// MinTableSize is the smallest size Cilium offers. Smaller tables
	// cannot keep even a handful of backends balanced.
	MinTableSize uint32 = 251

	// MaxTableSize is the largest prime below 2^24. Beyond it the slot
	// choice (h*M)>>32 gives some slots noticeably more hashes than others
	// (at most one part in 2^32/M, 0.4% here), and one table would take
	// more than 64 MiB of slots, in Go and again in a BPF array map.
	MaxTableSize uint32 = 16777213
)

// EmptySlot marks a slot that belongs to no backend: every slot of a table
// without a weighted backend. It is -1 once read as an int32.
const EmptySlot uint32 = 0xffffffff

// Seeds of the two jhash values of a backend's address: the offset and the
// skip of its Maglev permutation. Changing either reshuffles every table.
const (
	offsetSeed uint32 = 0x4d474f46 // "MGOF"
	skipSeed   uint32 = 0x4d47534b // "MGSK"
)

var (
	// ErrTableSize reports a table size that is not a prime in
	// [MinTableSize, MaxTableSize], or too small for the backends.
	ErrTableSize = errors.New("invalid table size")

	// ErrDuplicateBackend reports two backends with the same address:
	// they would have the same permutation.
	ErrDuplicateBackend = errors.New("duplicate backend address")
)

// Backend is one Maglev participant. Its identity, from which its
// permutation is derived, is Addr (as Addr.As16, so an IPv4 address and its
// IPv4-mapped IPv6 form are the same backend; zones are ignored), never its
// position in a list.
type Backend struct {
	Addr netip.Addr
	// Weight is the backend's relative share of the slots; 0 drains it
	// (no slot, so no new flow).
	Weight uint32
}

// Table is an immutable Maglev lookup table. It is built off the datapath
// by Build, then published (typically through an atomic.Pointer) to any
// number of concurrent readers.
type Table struct {
	slots []uint32 // slot -> index into the backends given to Build, or EmptySlot
	empty bool     // no backend has a slot
}

// Lookup returns the index (into the slice given to Build) of the backend
// for the flow hash h, or -1 if the table is empty. The slot is
// (h * size) >> 32 in 64-bit arithmetic (Lemire's fastrange): a multiply
// and a shift, no division, the same in Go and in BPF. It must only be
// called on a Table returned by Build.
func (t *Table) Lookup(h uint32) int32 {
	return int32(t.slots[(uint64(h)*uint64(len(t.slots)))>>32])
}

// Size returns the number of slots.
func (t *Table) Size() uint32 { return uint32(len(t.slots)) }

// Empty reports whether no backend has a slot, i.e. Lookup always returns -1.
func (t *Table) Empty() bool { return t.empty }

// Slots returns the slot array (slot -> backend index, EmptySlot for none),
// for copying into a BPF array map. It is the table's own memory, shared by
// every reader: callers must not modify it.
func (t *Table) Slots() []uint32 { return t.slots }

// member is one weighted backend's state while the table fills.
type member struct {
	key    [16]byte // Addr.As16(): sort key and hash input
	index  uint32   // position in the caller's slice
	weight uint32
	pos    uint32 // next slot of the permutation: offset + j*skip mod M
	skip   uint32
	credit uint64 // accumulated weight, spent maxWeight per slot taken
}

// Build builds the Maglev table of backends (in any order) with size slots;
// size 0 means DefaultTableSize. Slot values are indexes into backends as
// passed, but which backend address owns each slot depends only on the set
// of (Addr, Weight) pairs and on size: two instances given the same backends
// in different orders build tables that map every hash to the same address.
// Backends with weight 0 get no slot; if none has a weight the table is
// empty (Lookup returns -1), not an error. See the package documentation
// for the algorithm.
func Build(backends []Backend, size uint32) (*Table, error) {
	if size == 0 {
		size = DefaultTableSize
	}
	if size < MinTableSize || size > MaxTableSize || !isPrime(size) {
		return nil, fmt.Errorf("hash: table size %d is not a prime in [%d, %d]: %w",
			size, MinTableSize, MaxTableSize, ErrTableSize)
	}
	if uint64(len(backends)) > uint64(size) {
		return nil, fmt.Errorf("hash: %d backends do not fit in %d slots: %w",
			len(backends), size, ErrTableSize)
	}

	all := make([]member, len(backends))
	for i, b := range backends {
		if !b.Addr.IsValid() {
			return nil, fmt.Errorf("hash: backend %d: invalid address", i)
		}
		all[i] = member{key: b.Addr.As16(), index: uint32(i), weight: b.Weight}
	}
	slices.SortFunc(all, func(x, y member) int { return bytes.Compare(x.key[:], y.key[:]) })
	for i := 1; i < len(all); i++ {
		if all[i].key == all[i-1].key {
			return nil, fmt.Errorf("hash: backends %d and %d: address %s: %w",
				all[i-1].index, all[i].index, netip.AddrFrom16(all[i].key).Unmap(), ErrDuplicateBackend)
		}
	}

	// Drained backends take no part; the others keep the sorted order.
	members := all[:0]
	var maxWeight uint32
	for _, m := range all {
		if m.weight == 0 {
			continue
		}
		m.pos = jhash16(&m.key, offsetSeed) % size
		m.skip = jhash16(&m.key, skipSeed)%(size-1) + 1
		maxWeight = max(maxWeight, m.weight)
		members = append(members, m)
	}

	t := &Table{slots: make([]uint32, size), empty: len(members) == 0}
	for i := range t.slots {
		t.slots[i] = EmptySlot
	}
	if t.empty {
		return t, nil
	}
	fill(t.slots, members, maxWeight)
	return t, nil
}

// fill runs weighted Maglev population. Each round visits the members in
// address order; a member adds its weight to its credit and, when the
// credit reaches maxWeight, spends maxWeight to take the next free slot of
// its permutation. Members of the largest weight take one slot every round,
// a member of weight w one every maxWeight/w rounds. Filling stops at the
// slot that makes the table full, even within a round. Very uneven weights
// cost idle rounds: at worst about N*M credit steps (70 ms for 1000
// backends, one of weight 2^30 and the others 1, at M = 65537).
func fill(slots []uint32, members []member, maxWeight uint32) {
	size := uint32(len(slots))
	for filled := uint32(0); ; {
		for i := range members {
			m := &members[i]
			m.credit += uint64(m.weight)
			if m.credit < uint64(maxWeight) {
				continue
			}
			m.credit -= uint64(maxWeight)
			for slots[m.pos] != EmptySlot {
				m.pos = advance(m.pos, m.skip, size)
			}
			slots[m.pos] = m.index
			m.pos = advance(m.pos, m.skip, size)
			filled++
			if filled == size {
				return
			}
		}
	}
}

// advance returns (pos + skip) mod size for pos, skip < size < 2^31.
func advance(pos, skip, size uint32) uint32 {
	pos += skip
	if pos >= size {
		pos -= size
	}
	return pos
}

// isPrime reports whether n is prime, by trial division: n <= MaxTableSize
// needs at most about 2000 divisions.
func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint32(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}
