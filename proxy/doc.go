// Package proxy is the TLS passthrough proxy of splice VIPs
// (forward = "splice"): it routes each TCP connection by the server name
// in its TLS ClientHello, without terminating TLS.
//
// # Model
//
// For each splice VIP the proxy listens on the VIP's address and port in
// the balancer's own TCP stack: the steering program does not steer a
// splice VIP, so the kernel accepts its connections (the address must be
// local; config.CheckHost checks it). For each connection it
//
//  1. reads the ClientHello within the VIP's hello_timeout and
//     hello_max_bytes (sni.Parse, which reassembles a hello split over
//     several records within that bound);
//  2. picks the route whose pattern matches the server name (sni.Table:
//     exact names, then one-level wildcards, then the default route);
//  3. picks the backend with the route's Maglev table (hash.Build over
//     the backends' effective weights, health-checked down backends
//     weighing 0, as the datapath's tables) at hash.FlowOf of the
//     client's 5-tuple, the hash the datapath gives the same packets;
//  4. connects to the backend's address on the VIP's port within
//     connect_timeout, forwards the bytes read so far, and copies both
//     directions (io.Copy between two *net.TCPConn: splice(2) in the
//     kernel, no copy through user memory).
//
// A connection that cannot be routed is reset (SO_LINGER 0, so the
// client sees RST at once and no socket lingers) and counted by reason:
// not_tls, malformed, too_large, timeout, client_closed, no_sni,
// unknown_sni, no_backend, backend_connect_failed.
//
// The two connections end as the peers end them: a FIN from either side
// becomes a half-close (CloseWrite) of the other, and the pair is closed
// when both directions have ended. A reset from either side (its socket
// is then in TCP_CLOSE) is passed on as a reset of the other. A pair that
// moves no byte either way for idle_timeout (checked about once a second
// from the sockets' TCP_INFO byte counters, so the copy stays in the
// kernel) is reset on both sides.
//
// # Phase 2: handing a pair to the datapath
//
// With a Handover (AF_XDP mode, splice_table_size > 0; engine.Handover), a
// routed pair is handed to the steering program once it is quiescent, and
// from then on every packet of both connections is rewritten and sent out
// in XDP without reaching either socket (docs/sni-splice-design.md):
//
//  1. The pair is watched from its sockets' TCP_INFO, every two RTTs
//     (10 to 200 ms): once the backend has answered and the client sent
//     more than its hello (the handshake's end), nothing moved since the
//     last check and nothing is queued or unacknowledged, both copies are
//     interrupted (a read deadline in the past; a copy returns only after
//     writing what it read).
//  2. Both sockets go into repair mode (TCP_REPAIR, CAP_NET_ADMIN), where
//     they send nothing, keepalive off. Still quiescent (SIOCINQ, SIOCOUTQ,
//     tcpi_unacked all 0)? Their sequence numbers, window scales, options
//     and timestamp clocks are read and the pair inserted into the splice
//     table (splice.Table.Insert). A segment that reached a socket between
//     the read and the insert moved its rcv_nxt: the entries are removed.
//     On any failure both sockets leave repair mode without a window probe
//     and the copies resume; a pair found busy maxTries times stays copied.
//  3. Spliced, the sockets stay open in repair mode (the backend socket
//     holds the 4-tuple's local port) until the sweeper, once a second,
//     reads the pair's status from the datapath: both FINs seen and 10 s
//     without a packet, or a reset seen and 1 s without one, and the
//     entries are removed and the sockets closed, which in repair mode
//     sends nothing. A pair idle for idle_timeout, and every pair when the
//     proxy closes, is first reset on both sides by a raw socket (opened
//     at start, while xlb holds CAP_NET_RAW), each at the sequence number
//     its peer last acknowledged.
//
// A pair that stays copied is counted by why (Kept): closed_first,
// not_quiescent, splice_table_full, options_mismatch (timestamps on one
// connection only), other_interface (a peer the kernel reaches through an
// interface the datapath does not attach to), no_neighbor,
// handover_failed (logged). With a Handover the backend connection
// announces the client connection's MSS, so that the backend's segments
// fit the client's path once they reach it unchanged.
//
// # Reload and shutdown
//
// Prepare builds the next configuration's tables and opens the listeners
// of new VIPs; nothing running changes until Commit, and Abort undoes it,
// so a reload of the whole of xlb can stay one transaction. Commit swaps
// each VIP's routing state (new connections see it; established ones stay
// on their backend), closes the listeners of removed VIPs (their
// connections go on) and sets the health checks. Close stops accepting,
// resets every connection and waits for every goroutine.
//
// # Counters
//
// Per VIP: active connections and refusals by reason. Per route and per
// backend: connections, active connections, bytes copied each way (added
// when a connection ends), connect failures, idle timeouts and resets
// passed on; spliced connections (in all and now), the packets and bytes
// the datapath forwarded for them each way (added when they end), and the
// connections that stayed copied by reason.
// Counters of a route (its pattern) and backend (its address) survive
// reloads that keep them.
package proxy
