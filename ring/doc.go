// Package ring implements AF_XDP sockets on golang.org/x/sys/unix, for the
// datapath's hot loop.
//
// # Rings
//
// An AF_XDP socket shares four single-producer/single-consumer rings with the
// kernel. Producer is our side of the rings we fill (the fill ring of frame
// addresses, the TX ring of descriptors); Consumer is our side of the rings
// we drain (RX descriptors, completed frame addresses). Indices are
// free-running uint32s masked by the power-of-two size. Each side keeps local
// copies of both indices and touches the shared ones once per batch: an
// acquire load of the other side's index only when the cached view runs out,
// a release store of its own index when publishing (Submit, Release). The
// ring types work over any memory, so they are tested without a kernel.
//
// # Socket
//
// Socket is one AF_XDP socket bound to one queue, with its own UMEM (no
// sharing between sockets). One worker goroutine owns it: no method is safe
// for concurrent use, and the batch methods (Receive, Transmit, Recycle,
// Complete, Refill, Kick, TxPending) allocate nothing and never block. The
// worker's loop is:
//
//	n := s.Receive(batch[:])            // caller now owns the n frames
//	... rewrite s.Frame(d) in place ...  // or Recycle(d.Addr) to drop
//	for sent < n: sent += s.Transmit(batch[sent:n]); if short: s.Complete(); s.Kick()
//	s.Kick(); s.Complete(); s.Refill()
//	when idle: s.Poll(timeout, s.TxPending() > 0)
//
// Every frame is in exactly one place at a time: the fill ring, the kernel,
// the caller (after Receive), the TX ring, or the socket's LIFO free list.
// Transmit never drops: it queues what fits and leaves the rest with the
// caller. A frame given back twice makes Recycle or Complete panic, since it
// would otherwise be handed to the kernel twice.
//
// # Lifecycle
//
// Open creates the socket in the calling thread's network namespace and
// undoes everything on failure. The caller puts FD into the XSKMAP of its XDP
// program; closing the socket removes it from the map. Close releases the
// rings, the socket and the UMEM, and is idempotent; frames and byte slices
// obtained from the socket are invalid afterwards.
package ring
