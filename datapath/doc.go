// Package datapath is xlb's per-packet path: the AF_XDP worker loop, the
// Forwarder that turns a received frame into the frame to send, and the
// immutable Plan they read. It knows nothing of config files, health checks
// or BPF maps; package engine builds its plans and runs its workers.
//
// Model. One Worker per NIC queue owns one ring.Socket (its UMEM and four
// rings) and runs on its own locked OS thread pinned to one CPU. It
// receives a batch, and for each frame parses it in place
// (datapath/packet), finds the VIP, hashes the 5-tuple (hash.Flow4/Flow6),
// picks the backend from the VIP's Maglev table (or the flow table, for a
// tracked flow), writes the forwarding header into the frame's headroom and
// queues the same frame on the TX ring of the same queue. Frames are never
// copied: a frame moves fill ring -> RX ring -> worker -> TX ring ->
// completion ring -> fill ring. A frame that is not forwarded is counted
// under a named Drop and recycled at once.
//
// Plans. The control plane describes what the hot path needs in a
// PlanSpec (per VIP: match key, forwarding method, flags, Maglev table,
// backends with stable IDs, next hops and counters) and NewPlan compiles
// it into a Plan: a VIP index without Go maps, backend state by ID, outer
// sources and flow timeouts. A Plan is immutable once built and is published
// whole through an atomic.Pointer; workers load it once per batch and never
// take a lock, so a reload never stops forwarding.
//
// Contracts.
//   - Forwarder is single-goroutine: each worker has its own, with its own
//     flow tables. Per batch the worker calls BeginBatch(plan, now) once
//     (the only clock read: it ages the flow tables, sweeps a few buckets
//     and applies a new plan's timeouts), then Forward for each frame with
//     that same plan.
//   - Forward never allocates (tests assert AllocsPerRun == 0) and never
//     panics on a malformed frame: it counts it and returns ok=false.
//   - Flow tables store backend and VIP IDs, not pointers: a tracked flow
//     keeps its backend while the current plan has that exact ID up, and
//     takes a fresh Maglev decision when the ID is gone, down, or its index
//     (the low IDIndexBits bits) now holds another generation. The control
//     plane may therefore reuse an index at once, with a new generation,
//     but must never reuse a whole ID while flows may still carry it.
//   - BackendCounters are written by worker i into slot i only; the control
//     plane carries the same object from plan to plan so counts survive.
//   - Counters are atomics read by any goroutine (Worker.Counters); the
//     set is not one instant.
//   - The ICMP messages a worker originates (echo replies, frag-needed,
//     packet-too-big) take tokens from a per-forwarder bucket refilled in
//     BeginBatch from the batch clock (PlanSpec.ICMPRate); when it is empty
//     they are withheld and counted.
//   - Per backend, each worker keeps a histogram of TCP handshake RTTs
//     (a client's SYN to its first ACK, on the batch clock): the SYN's
//     flow entry carries a pending bit in its VIP ID and its time sits in
//     a side table, so established flows pay nothing (rtt.go).
//   - Capture: a worker loads its capture ring pointer once per batch; nil
//     (no capture) takes the usual loop. With a ring, each frame its filter
//     matches is copied in as received (before Forward rewrites it) and as
//     sent, with the backend or drop reason Forward left behind; a full
//     ring loses the copy and counts it, never the frame (package capture).
//   - A worker's loop returns only when halted or on an error; Done and Err
//     let the control plane notice a worker that died.
//   - With spin the loop never sleeps in poll(2), but it still polls
//     (without sleeping) whenever the fill ring's need_wakeup flag asks the
//     application to, or the driver would stop receiving for good.
package datapath
