// Package health checks xlb's backends so that one that stops answering
// leaves its VIP's Maglev table and comes back once it answers again.
//
// # Model
//
// A Target is one backend of one VIP: a caller-chosen ID, the backend's own
// address and a Spec. A Spec is one of three kinds:
//
//   - KindNone: never probed, always up.
//   - KindTCP: a probe succeeds when a TCP connection to Addr:Port is
//     accepted; it is closed at once.
//   - KindHTTP: a probe connects, sends "GET Path" with the Host header
//     (default "ADDR:PORT"), "Connection: close" and User-Agent
//     xlb-health/1, and succeeds when the status is Expect (default 200).
//     The status line and headers may take at most 64 KiB: an answer whose
//     head runs longer fails the probe with that reason, so a broken or
//     hostile backend (an endless status line) costs the balancer a bounded
//     read, not its memory. At most 4 KiB of the body is read and the rest
//     ignored: a long body is no failure, the status decides. The
//     connection is never reused.
//
// Each probe is bounded by Timeout (connect, send and the response head).
// A tracker per target turns results into a State: Up goes Down after Fall
// consecutive failures, Down goes Up after Rise consecutive successes, so a
// single lost probe never changes anything while Fall > 1.
//
// Defaults (Spec.WithDefaults): interval 1 s, timeout 500 ms (at most the
// interval), rise 2, fall 3, path "/", expect 200, port the VIP's. A dead
// backend thus leaves the table 2 to 3.5 s after it stops answering (its
// third failed probe, which may wait out its timeout) and a revived one
// returns 1 to 2 s after it answers again. A port-0 VIP has no port to
// default to: its checks must name one.
//
// # Initial state: Up
//
// A target starts Up and needs Fall failures to go Down. The alternative,
// starting Down until Rise successes, would make every start and every
// restart of xlb drop all new flows of every VIP for Rise intervals, and a
// reload that adds a backend would have to hold it back; a restart of the
// balancer must not look like an outage of every backend. This is what
// keepalived does for IPVS unless told otherwise (its "alpha" mode starts
// servers down). The cost: a backend that is already dead when xlb starts
// gets new flows for up to Fall intervals, as it would if it had died just
// then.
//
// A reload (Checker.Set) keeps a target whose ID, Addr and Spec are
// unchanged exactly as it is, counters and all. A target whose Addr or Spec
// changed restarts its probes with fresh counters but keeps its State, so a
// changed check must gather Fall failures to drop a live backend and Rise
// successes to revive a dead one. A new ID starts Up.
//
// # Reaching backends the way the datapath does
//
// The datapath sends a backend its flows from the balancer's network
// namespace, encapsulated to the backend's own address, with the VIP inside.
// Probes go from the same namespace to the same backend address: xlb runs in
// the balancer's namespace, so a plain dial from the process takes the same
// route and next hop as the encapsulated traffic, and a backend whose
// address or path is gone fails both. The probe is neither encapsulated
// nor addressed to the VIP (every backend holds the VIP, so a probe to it
// would reach whichever one a route picks), so a backend's server must
// listen on the backend's address or on 0.0.0.0 (or ::) for its checks to
// pass, not only on the VIP. Probes leave from the balancer's own address
// and their answers come back to it, not to a VIP, so the steering program
// passes them to the kernel. The checker never changes namespace; WithDial
// replaces the dialer, which tests use to probe from a lab host's
// namespace.
//
// # Lifecycle
//
// New returns an empty Checker; Set starts, keeps, restarts and stops
// targets; Close stops everything and waits; Set after Close returns
// ErrClosed. Each probed target has one goroutine that sleeps a random part
// of the interval first (so targets set together do not probe in
// lockstep), then probes once per interval; a probe cut short by Set or
// Close counts for nothing. onChange runs on the target's goroutine after a
// change and is never called for a target once Set has removed or replaced
// it or Close has returned. State changes are logged with slog: Warn for
// down (with the last error), Info for up. Status returns a sorted snapshot
// for `xlb stats`.
package health
