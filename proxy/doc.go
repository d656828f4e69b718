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
// backend: connections, active connections, bytes each way (added when a
// connection ends), connect failures, idle timeouts and resets passed on.
// Counters of a route (its pattern) and backend (its address) survive
// reloads that keep them.
package proxy
