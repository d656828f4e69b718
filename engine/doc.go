// Package engine runs xlb's datapath for a config: it is the control plane
// around package datapath's workers.
//
// Model. Start loads and attaches everything for a validated config: in
// afxdp mode the steering program (bpf.Steer) plus one AF_XDP socket and
// datapath.Worker per queue; in native mode the in-kernel lb program
// (bpf.LB). It builds the Maglev tables and a datapath.PlanSpec from the
// config (stable VIP and backend IDs, next hops, counters carried across
// plans), compiles it with datapath.NewPlan and publishes it. In native
// mode the same spec is written into the lb program's maps, so a flow gets
// the same backend in both modes: the lb program does per packet what the
// workers do (every forward mode, echo, ICMP errors to the flow's backend,
// frag-needed, the fragment policy, flow idle timeouts), and its outer
// sources, MTU and timeouts are set from the same config.
//
// State. Everything derived from one config (tables, health targets and
// health state, backend IDs, counters, the plan spec and plan) is one
// immutable state. A reload, a health change or a new next hop builds the
// next state aside and commits it:
//   - Reload: restart keys are refused (config.RestartKeys); what only the
//     loaded maps know is checked (native VIP indexes and maglev map room),
//     backend IDs are assigned on a clone, tables and plan are built. Only
//     then are the steering map, the native settings (sources, flow
//     timeouts) and maps (backends, tables, VIPs), the health targets and
//     the plan committed, in that order; a failing step undoes the steps
//     before it (and its own partial effect), so a failed reload changes
//     nothing. Every line the reload reports is applied in both modes
//     (config refuses in native mode what the lb program cannot do).
//   - Health: a backend going down or up rebuilds only its VIP's table.
//   - Next hops: backends' MACs are looked up in the kernel's route and
//     neighbour tables at start, after a reload, and every second.
//
// Firewall (firewall.go). The rules (package firewall) are installed before
// the program is attached and changed by reloads and by FirewallAdd and
// FirewallDel (the control socket) without touching anything else. A change
// compiles aside and is stored only once the maps took it. A reload stages
// the new rules before it commits, keeping a removed VIP's entries until
// the VIP map has dropped it, and restores the old rules if the commit
// fails. Runtime rules survive reloads (the reload says how many, and
// which it dropped: their VIP gone, or the file now has the prefix) but not
// a restart; a runtime rule with an expiry is removed by a timer.
//
// Backend IDs (see ids) are an index and a generation: an index is reused
// as soon as its backend is gone, with the next generation, so flows still
// on the old ID re-pick; churn never exhausts them. Both the Go flow table
// and the native program check the whole ID, so this holds in both modes.
//
// Failure. A worker that returns (failed CPU pin, socket error), the
// interface being deleted (a netlink link subscription) or the XDP program
// no longer being the one attached (checked every second) is fatal: it is
// logged at error level, Stats reports state "failed" with the reason, and
// Failed is closed so that `xlb run` stops and exits non-zero.
//
// BGP. AnnounceTo makes the engine state the routes it can forward (one
// host route per VIP address with a backend its health checks do not hold
// down) to a RouteSink (the bgp.Speaker) after every commit, from a
// goroutine of its own, so no BGP work holds the engine's locks; a failed
// datapath withdraws everything at once, and StopAnnouncing withdraws
// everything for a graceful stop while the datapath still forwards.
//
// ICMP. The echo replies and frag-needed / packet-too-big messages the
// balancer sends are rate-limited (datapath.icmp_rate_limit and
// icmp_rate_burst, reloadable): per worker in AF_XDP mode, per CPU in native
// mode (the lb program's per-CPU bucket, bpf.LB.SetICMPRate), each sender
// with a bucket of its own so that none takes a lock.
//
// Threads. Workers own their CPUs: the engine keeps its other threads (table
// builds, health probes, the garbage collector) off the worker CPUs when
// the process may use others (reserveWorkerCPUs).
//
// Contracts. One reload or health application at a time (reloadMu); the
// plan inputs are guarded by mu; the health checker's callback only records
// news and wakes the refresher, so it never waits on a reload. Close
// detaches the XDP program first (traffic goes back to the kernel stack at
// once), then stops the workers and closes their sockets; the programs are
// attached with bpf_links, so even a killed process is detached by the
// kernel. Stats reads counters without stopping anything.
//
// The kernel-facing parts (steering program, lb program, health checker)
// are reached through small interfaces so that the control logic can be
// tested alone; the real ones are tested end to end by cmd/xlb's lab tests.
package engine
