package ring

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Desc mirrors struct xdp_desc: one packet in the UMEM, as carried by the RX
// and TX rings. Addr is a byte offset into the UMEM, not a pointer.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// Entry is what a ring carries: UMEM addresses on the fill and completion
// rings, descriptors on the RX and TX rings.
type Entry interface {
	uint64 | Desc
}

// Producer is the user-space side of a ring we fill and the kernel drains:
// the fill ring (uint64 frame addresses) and the TX ring (Desc).
//
// The indices are free-running uint32s; only their low bits (mask) select a
// slot, so wrap-around at 2^32 needs no special case. Producer is not safe
// for concurrent use: exactly one goroutine owns it.
type Producer[T Entry] struct {
	producer *uint32 // shared; written by us (store-release in Submit), read by the kernel
	consumer *uint32 // shared; written by the kernel, read by us (load-acquire in Reserve)
	flags    *uint32 // shared; written by the kernel (XDP_RING_NEED_WAKEUP)
	entries  []T     // shared; written by us between Reserve and Submit
	mask     uint32  // size - 1

	cachedProd uint32 // next slot to reserve; ahead of published by what is reserved but not submitted
	cachedCons uint32 // last consumer index seen + size: reserving up to it needs no atomic load
	published  uint32 // our last store to *producer
}

// Reserve claims up to n slots and returns the index of the first and how
// many it got (fewer than n when the ring is fuller than the cached view says
// even after one acquire load of the consumer index). Fill the slots with Set
// and publish them with Submit.
func (r *Producer[T]) Reserve(n uint32) (idx, got uint32) {
	free := r.cachedCons - r.cachedProd
	if free < n {
		r.cachedCons = atomic.LoadUint32(r.consumer) + r.mask + 1
		free = r.cachedCons - r.cachedProd
	}
	got = min(n, free)
	idx = r.cachedProd
	r.cachedProd += got
	return idx, got
}

// Set writes v into the slot of index idx, as returned by Reserve (plus an
// offset below got).
func (r *Producer[T]) Set(idx uint32, v T) {
	r.entries[idx&r.mask] = v
}

// Submit publishes the next n reserved slots to the kernel with one
// store-release of the producer index, after the entries written by Set.
func (r *Producer[T]) Submit(n uint32) {
	r.published += n
	atomic.StoreUint32(r.producer, r.published)
}

// Outstanding reports how many submitted entries the consumer has not
// consumed yet (one acquire load).
func (r *Producer[T]) Outstanding() uint32 {
	return r.published - atomic.LoadUint32(r.consumer)
}

// NeedWakeup reports whether the kernel set XDP_RING_NEED_WAKEUP on this
// ring, asking for a system call before it looks at the ring again.
func (r *Producer[T]) NeedWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// Size is the number of slots in the ring.
func (r *Producer[T]) Size() uint32 { return r.mask + 1 }

// Consumer is the user-space side of a ring the kernel fills and we drain:
// the RX ring (Desc) and the completion ring (uint64 frame addresses).
// Like Producer, it has exactly one owner goroutine.
type Consumer[T Entry] struct {
	producer *uint32 // shared; written by the kernel, read by us (load-acquire in Peek)
	consumer *uint32 // shared; written by us (store-release in Release), read by the kernel
	entries  []T     // shared; written by the kernel, read by us between Peek and Release
	mask     uint32  // size - 1

	cachedProd uint32 // last producer index seen: peeking up to it needs no atomic load
	cachedCons uint32 // next slot to peek; ahead of released by what is peeked but not released
	released   uint32 // our last store to *consumer
}

// Peek claims up to n filled slots and returns the index of the first and how
// many it got. The producer index is loaded (acquire) only when the cached view
// holds fewer than n. Read the slots with Get and hand them back with Release.
func (r *Consumer[T]) Peek(n uint32) (idx, got uint32) {
	avail := r.cachedProd - r.cachedCons
	if avail < n {
		r.cachedProd = atomic.LoadUint32(r.producer)
		avail = r.cachedProd - r.cachedCons
	}
	got = min(n, avail)
	idx = r.cachedCons
	r.cachedCons += got
	return idx, got
}

// Get returns the entry in the slot of index idx, as returned by Peek (plus
// an offset below got).
func (r *Consumer[T]) Get(idx uint32) T {
	return r.entries[idx&r.mask]
}

// Release hands the next n peeked slots back to the kernel with one
// store-release of the consumer index, after the entries were read.
func (r *Consumer[T]) Release(n uint32) {
	r.released += n
	atomic.StoreUint32(r.consumer, r.released)
}

// Size is the number of slots in the ring.
func (r *Consumer[T]) Size() uint32 { return r.mask + 1 }
