// Package bgp is the BGP speaker xlb embeds to announce its VIPs to the
// datacenter routers, so that several identical balancers share the
// traffic through the routers' ECMP.
//
// # Model
//
// Every balancer announces each VIP it can serve as a host route (/32,
// /128) with itself as the next hop. The routers install one multipath
// route per VIP and hash each flow (on its 4-tuple) onto one balancer.
// Because every balancer builds the same Maglev table from the same
// configuration (order-independent, keyed by backend address), any
// balancer sends a flow to the same backend: when a balancer goes away
// and the routers rehash its flows onto the others, those flows keep
// their backend and no connection is lost.
//
// The speaker is GoBGP (github.com/osrg/gobgp/v4) as a library, not a
// daemon: Start runs a server.BgpServer in the process and drives it
// through its Go API; no gRPC port is opened. v4 rather than v3: v4 is
// the maintained line (v3.37.0 is the last v3), its library API takes
// native netip and BGP types instead of protobuf Any wrappers, it logs
// through log/slog, its peer events carry why a session went down, and
// its server goroutines end on Stop. By default the speaker does not
// listen for BGP either (Config.ListenPort zero): it dials its peers, so
// each router must accept the balancers' connections.
//
// # Contracts
//
//   - Announce(routes) states the complete set of routes to announce. It
//     diffs against what is announced and sends only the difference:
//     new routes and routes whose communities or MED changed are
//     (re)announced, missing ones withdrawn, the rest left alone, so
//     calling it with an unchanged set sends nothing. The engine calls it
//     whenever the set of VIPs it can forward changes (datapath attached,
//     workers running, at least one backend up), and withdraws a VIP
//     whose backends are all down, as GLB does.
//   - Reconfigure(cfg) adds, removes and replaces peers by address. A peer
//     whose settings are unchanged keeps its session untouched; a changed
//     one is re-established. It refuses (ErrRestartRequired) to change the
//     ASN, router ID or listen port, and an invalid cfg changes nothing.
//   - A peer that is unreachable, refuses the session or sends a
//     NOTIFICATION (a wrong ASN, a bad password) is never an error of the
//     API: it is logged through log/slog (the first failed connection of a
//     run as a warning, repeats at debug level) and counted per peer in
//     Status. GoBGP reports failed connections and NOTIFICATIONs only in
//     its log, so the speaker's slog handler recognises those records
//     (TestECMP pins the messages of the GoBGP version in go.mod); the
//     rest comes from its peer events.
//   - Shutdown is the stop order: withdraw every route, wait the drain
//     time while routers converge and the caller still forwards the flows
//     they send, then Close, which ends the sessions with a Cease
//     NOTIFICATION. The caller detaches its datapath only afterwards. A
//     balancer that dies without either is removed by its routers when
//     the hold time expires, so the hold time bounds how long flows are
//     sent to a dead balancer.
//
// # Next hops and families
//
// IPv4 and IPv6 routes are announced (MP-BGP, ipv6-unicast for IPv6).
// A session negotiates the family of its own transport and the other one
// only when the peer has a next hop of that family configured
// (Peer.NextHop, Peer.NextHop6): an IPv4 session has no IPv6 local
// address to offer as the next hop of an IPv6 route. Without a configured
// next hop the session's local address is used, which is what ECMP on a
// shared segment needs. A configured next hop is set by a per-peer export
// policy, since GoBGP keeps one path per prefix for all peers.
//
// # Network namespaces
//
// GoBGP makes its sockets on its own goroutines, so they belong to the
// network namespace of whatever OS thread runs them: the process's. A
// speaker therefore serves the namespace of the process it runs in; xlb
// is started in the balancer's namespace (ip netns exec), and the tests
// run one speaker per lab host as a child process started inside that
// host's namespace.
package bgp
