// Package labprogs holds the perf lab's own XDP programs: none of them is
// part of xlb's datapath. They exist so that the lab (package perf) can
// drive and measure the balancer with kernel-side tools only.
//
//   - Gen (gen.c) generates traffic: run under BPF_PROG_TEST_RUN in
//     live-frame mode, it transmits a template frame out of an interface
//     once per repetition, rewriting source address and port from a
//     per-CPU sequence so the frames spread over many flows, with valid
//     checksums. Its per-CPU counter says how many frames it sent.
//   - Sink (sink.c) counts and drops what reaches the far side, per CPU,
//     keeping frames from the balancer's MAC apart from stray ones.
//   - fwd.c holds the reference forwarders: L2Fwd (rewrite MACs, XDP_TX:
//     the native-XDP ceiling), XSK (redirect everything to the AF_XDP
//     socket of its queue: the least kernel work for an AF_XDP forwarder)
//     and Pass (lets a veth receive what its peer sends with XDP_TX).
//
// Lifecycle: every Load function returns objects the caller must Close.
// Nothing is attached here; the caller attaches programs (with a bpf_link
// or netlink) in the right network namespace and detaches them before
// closing. Configuration (flows, MACs, checksum sums) is written into the
// programs' read-only globals before loading, so it is fixed for the life
// of the object: load a new one to change it.
//
// The C sources are compiled by bpf2go (generate.go); the generated Go and
// object files are committed.
package labprogs
