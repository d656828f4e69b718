// Package datapath runs xlb's AF_XDP workers and the control logic around
// them.
//
// Model. One Worker per configured NIC queue owns one ring.Socket (its UMEM
// and four rings) and runs on its own locked OS thread pinned to one CPU. It
// receives a batch, and for each frame parses it in place (datapath/packet),
// finds the VIP, hashes the 5-tuple (hash.Flow4), picks the backend from the
// VIP's Maglev table, writes an IPIP header into the frame's headroom and
// queues the same frame on the TX ring of the same queue. Frames are never
// copied: a frame moves fill ring -> RX ring -> worker -> TX ring ->
// completion ring -> fill ring. A frame that is not forwarded is counted
// under a named drop reason and recycled at once.
//
// Shared state. Everything a worker reads per packet hangs off one immutable
// *Plan published through an atomic.Pointer: VIP index, Maglev tables,
// backend addresses and next-hop MACs. The control side builds a new Plan off
// the datapath and swaps it in; workers pick it up at their next batch and
// never take a lock. Counters are per worker (no shared cache lines) and read
// with atomic loads by Stats.
//
// Lifecycle. Start loads and attaches everything for a validated config and
// returns an Engine; Engine.Close detaches the XDP program first (traffic goes
// back to the kernel stack at once), then stops the workers and closes their
// sockets. The XDP program is attached with a bpf_link, so even if the
// process is killed the kernel detaches it.
package datapath
