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
// the same backend in both modes.
//
// What changes a running plan, always built off the datapath and swapped
// in whole:
//   - Reload: a new config (restart keys refused, see
//     config.RestartKeys); tables rebuilt, steering map, health targets and
//     plan updated.
//   - Health: a backend going down or up rebuilds only its VIP's table.
//   - Next hops: backends' MACs are looked up in the kernel's route and
//     neighbour tables at start, after a reload, and every second.
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
