// Package flowtable is the connection tracking of one AF_XDP worker: it
// remembers which backend each flow was given, so that an established flow
// stays on its backend when the Maglev tables change (weights, added
// backends, reloads), for as long as the caller still accepts that backend.
//
// # Model
//
// Each worker owns one Table per address family (Table[Key4],
// Table[Key6]). The XDP program steers a flow to one queue, so a flow is
// only ever seen by one worker, and the table needs no locks and no atomics:
// every method must be called by the owning goroutine only.
//
// The caller hashes the packet once (hash.Flow4 or hash.Flow6) for Maglev
// and passes the same hash h to the table with the key. The same key must
// always come with the same h. The table mixes h with a per-table random
// seed (murmur3's finalizer) to pick the bucket, because the flow hash's
// seed is public by design and would otherwise let a sender aim flows at one
// bucket to evict the flows there. This raises the cost of such an attack;
// it does not remove it (flows whose 32-bit flow hashes are equal still
// share a bucket, and finding them takes about 2^32 hash evaluations).
//
// # Decisions, and what the caller does
//
// The table stores an Entry, a backend ID and a VIP ID that the caller
// chooses and the table never interprets. Per packet:
//
//	h := hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto)
//	k := flowtable.Key4{Src: fl.Src, Dst: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
//	e, ok := t.Lookup(h, &k, now)  // a hit refreshes the idle deadline
//	if !ok || syn || !plan.valid(e) {
//		e = pick from the VIP's Maglev table
//		t.Upsert(h, &k, now, e)     // a SYN always takes a fresh decision
//	}
//
// Validity is the caller's contract, not the table's: when a backend is
// removed or marked down, the next plan simply stops accepting its ID
// (typically a bitmap indexed by backend ID, or a generation check), and the
// flows that pointed to it re-pick on their next packet. Nothing is scanned
// or flushed on a plan change. A drained backend (weight 0) is still valid:
// its established flows stay while new flows avoid it. IDs must therefore be
// stable across reloads and must not be reused for a different backend
// while entries naming the old one may still be live (one TCP timeout).
//
// TCP FIN and RST are not tracked. The balancer sees only the client's half
// of the connection: a client FIN is a half-close that the server may answer
// with more data, and deleting on RST gains little since the entry idles out
// anyway. A caller that wants it can Delete on RST.
//
// # Time
//
// now is a millisecond clock that the caller reads once per batch, for
// example uint32(time.Since(epoch) / time.Millisecond) with epoch set when
// the worker starts; the table never reads the time itself. The clock may
// wrap (every 49.7 days): deadlines are compared modulo 2^32, which is
// correct while an entry is visited at least once every 2^31 ms, and Sweep
// guarantees that.
//
// Each entry has an idle deadline, now plus its protocol's timeout, pushed
// forward by every Lookup hit. An entry past its deadline is a miss and its
// slot is free again. The defaults:
//   - TCP 900 s, as IPVS's established-TCP timeout. It is longer than the
//     idle timeouts of the middleboxes usually in front of a balancer (AWS
//     NLB 350 s, Azure LB 240 s by default), so xlb is not the first to
//     break an idle connection. A long timeout costs nothing while the table
//     has room, and once it is full, eviction takes the stalest entries
//     first, so the timeout mostly decides how long an idle flow survives a
//     plan change.
//   - Every other protocol (UDP) 30 s, as Linux conntrack's unreplied-UDP
//     timeout: UDP has no connection end, and most UDP flows are request and
//     answer.
//
// # Eviction
//
// The table is set associative: a power of two of buckets, each of Ways (8)
// slots, and a flow lives in the one bucket its hash selects. Lookup reads
// the bucket's first cache line (8 tags and 8 deadlines) and the matching
// slot's key. Upsert puts a new flow in an empty or expired slot of its
// bucket, and when there is none it evicts the live entry closest to its
// idle deadline: with one protocol that is the least recently used entry,
// and between TCP and UDP it is the one that would have expired first. All
// work is bounded by the 8 ways; nothing ever rehashes or allocates after
// New.
//
// # Sizing
//
// An IPv4 slot takes 32 bytes and an IPv6 slot 56 (Bytes reports the total):
// 1 Mi IPv4 entries per worker cost 32 MiB, 1 Mi IPv6 entries 56 MiB. The
// operating system backs the memory as it is first written, so an idle
// table costs little resident memory, and on Linux the table asks for
// transparent huge pages, which spares a TLB miss per lookup in a large
// table.
//
// Size for about twice the concurrent flows one worker must keep (flows
// arriving per second times how long they live, divided by the number of
// queues). A flow can only go to its own bucket, so some buckets fill up
// before the table does: with the table 50% full, about 0.8% of new flows
// displace a live one; 75% full, about 5%; 100%, about 14%. A table too
// small does not break forwarding; it only makes displaced flows re-pick
// through Maglev, which sends most of them to the same backend anyway unless
// the plan changed meanwhile.
//
// # Lifecycle
//
// New allocates everything. The table lives as long as its worker and keeps
// its entries across plan reloads; there is nothing to close, and the
// garbage collector frees it with the worker. The owner calls Sweep with a
// few buckets per loop iteration (idle or not), and publishes Stats to other
// goroutines itself, for example by copying them into atomics once per
// batch.
package flowtable
