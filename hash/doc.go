// Package hash picks a backend for a flow: a 5-tuple flow hash (Flow4,
// Flow6) and a Maglev lookup table per VIP (Build, Table.Lookup). The Go
// worker and the native BPF datapath must pick the same backend for the
// same packet, and so must several xlb instances behind one ECMP group, so
// everything here is specified down to the bit and uses only 32-bit unsigned
// add, subtract, xor, rotate, shift and (for Lookup) one 64-bit multiply.
//
// # Flow hash
//
// The hash is Bob Jenkins' lookup3 in the form of the Linux kernel's
// include/linux/jhash.h (the one Katran and Cilium use too), with a fixed
// seed, FlowSeed, xored with the IP protocol number:
//
//	Flow4 = jhash_3words(saddr, daddr, ports, FlowSeed ^ proto)
//	Flow6 = jhash2({saddr[0..3], daddr[0..3], ports}, 9, FlowSeed ^ proto)
//
// Each word is four packet bytes loaded little-endian, exactly what a BPF
// program on x86 or arm64 gets from *(__u32 *)&iph->saddr; ports is the
// first four bytes of the TCP or UDP header (source port, destination port),
// 0 for other protocols. No byte swaps on either side. The hash is not
// symmetric: the two directions of a connection hash differently, which a
// load balancer, seeing only the client-to-VIP direction, does not need.
// The tests hold golden vectors for both functions, for the BPF side to
// match, and check the jhash core against lookup3's published values.
//
// # Maglev table
//
// A Table has M slots, M a prime (DefaultTableSize 65537; M > 100 N keeps
// each of N backends within about 1% of its share). Each weighted backend
// has a permutation of the slots derived from its address only:
//
//	key    = Addr.As16() as four little-endian words
//	offset = jhash2(key, 4, 0x4d474f46) % M
//	skip   = jhash2(key, 4, 0x4d47534b) % (M-1) + 1
//	its j-th preferred slot = (offset + j*skip) % M
//
// The backends take turns, in the order of their 16-byte keys, each taking
// its next preferred slot that is still free, until every slot is taken
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4).
//
// Weights follow Katran's weighted Maglev: in each turn a backend adds its
// weight to a credit and takes a slot only when the credit reaches the
// largest weight W, spending W. Backends of weight W take a slot every
// turn, a backend of weight w one every W/w turns, so its share of the slots
// is w/sum(w) to within a slot per turn. With equal weights this is plain
// Maglev. Weight 0 drains a backend: it takes no slot, so new flows avoid
// it, while the flow tables keep its established flows on it.
//
// Lookup maps a flow hash h to slot (h*M)>>32 (Lemire's fastrange: the
// high half of a 64-bit product, no division) and returns the backend index
// stored there, or -1 for EmptySlot.
//
// # Determinism
//
// A table depends only on the set of (address, weight) pairs and on M: not
// on the order the backends are listed in, not on the process, the host,
// the run or the Go version (no map iteration, no randomized hash, no
// floating point). Slot values are indexes into the caller's slice, for the
// caller's convenience, but the address behind each slot is the same for
// every instance given the same backends. That is what lets several xlb
// instances behind ECMP send a flow to the same backend whichever instance
// the router picks, and lets the BPF datapath (which receives Slots copied
// into an array map) agree with the Go one.
//
// Removing or adding one of N backends moves its own ~1/N of the slots plus,
// because the other backends' turns shift, a fraction of a percent of the
// slots between the others (about 0.6% for N = 100 to 1000 at M = 65537,
// less with a larger M). Connection tracking in the datapath keeps
// established flows where they were; the table only decides new flows.
//
// # Lifecycle
//
// Build runs on the control plane, off the datapath (about 1.5 ms for
// M = 65537 and up to 1000 backends), and returns an immutable Table. The
// control plane publishes it, typically through an atomic.Pointer per VIP,
// and drops its reference when it swaps in the next one; readers need no
// locks. Build returns an empty table, not an error, when no backend has a
// weight: a VIP whose backends are all drained still exists and its Lookup
// returns -1 (drop). Nothing here holds resources: there is nothing to close.
package hash
