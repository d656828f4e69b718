// Package tcpbench measures real TCP through a load balancer in a lab of
// network namespaces: xlb in both datapath modes against the proxies
// users run today, HAProxy (mode tcp) and nginx's stream module; and TLS
// passthrough routed by server name: xlb's splice VIPs against HAProxy's
// req.ssl_sni and nginx's ssl_preread.
//
// # SNI routing
//
// The SNI-routed datapaths (xlb-splice, haproxy-sni, nginx-sni) listen on
// the proxies' address on their own ports, and route one name to both
// backends. Every client connection opens the way a TLS connection does,
// in its shape: a real ClientHello for that name (made once by Go's TLS
// client), the backend's answer (a 133-byte record), the client's last
// flight (a 69-byte record); then the same load as the other datapaths.
// No TLS handshake completes: a passthrough balancer only reads the
// ClientHello and copies bytes, and leaving the cryptography out keeps the
// figures about the balancer. Every SNI datapath gets the same clients
// and backends, so the comparison stays fair.
//
// xlb's splice VIPs hand a pair to the steering program once it is
// quiescent after its handshake (the backend has answered, the client sent
// more than its hello, nothing moved for two RTTs); from then on its
// packets never reach a socket. So the long-lived connections of the SNI
// datapaths (the streams, the latency test's connections) pause after
// their opening before the load starts: 200 ms for every SNI datapath
// (the same for all), then, for xlb-splice, until `xlb stats --json`
// counts them spliced (at most 3 s more). Each xlb-splice record says how many of its test's
// connections were spliced and why the others stayed copied (Record.Splice,
// the table's note), so a figure measured by copy cannot pass for a
// spliced one. The connection-rate test's short connections send their
// opening with their request and close at once: they are never spliced
// (xlb counts them closed_first), and measure the proxy's accept, route
// and connect.
//
// # Lab
//
// One bridge joins a client (MTU 1500), the balancer "lb" and two
// backends (MTU 1600, room for IPIP). The backends hold xlb's VIP on lo and
// run `xlb decap attach`, so xlb's IPIP packets are decapsulated and the
// replies go straight back to the client (direct server return). The
// proxies listen on a second address on the balancer's own lo and connect
// to the backends' own addresses; the backends' servers listen on 0.0.0.0
// and serve both. The balancer's bridge port runs a pass-all XDP program
// so native mode's XDP_TX frames are received.
//
// Every backend runs two in-process Go servers: a sink that discards what
// it reads and counts the bytes (throughput), and a request/response
// server answering each 64-byte request with 64 bytes (connection rate and
// latency); and both again behind the SNI opening, on the SNI ports.
//
// # Tests
//
// Each datapath is started in the balancer's namespace (xlb run -c FILE,
// haproxy -f FILE -db, nginx -c FILE -g 'daemon off;'), probed until a
// request goes through, measured, and stopped with SIGTERM. Each test runs
// Options.Repeat windows of Options.Duration after a short warm-up:
//
//   - stream-1, stream-n: bulk throughput over 1 and Options.Streams
//     connections, as payload the backends received, in Gbit/s.
//   - conn-rate: Options.Clients loops of connect, request, reply, close,
//     in completed connections per second.
//   - rr-lat-*: Options.Rate requests per second, paced open-loop over
//     LatencyConns persistent connections; p50/p99/p999 of the round trip
//     from a log-linear histogram (0.8% resolution), and the rate achieved.
//     A request sent late because an earlier reply was late counts from
//     its intended time (no coordinated omission).
//
// # CPU
//
// Each window records the user+system time of every process in the
// balancer's namespace (/proc/PID/stat, all threads), and the machine's
// softirq and busy time (/proc/stat). On veth the packet work of every
// namespace runs in softirq on the sending CPU, so softirq cannot be split
// between client, balancer and backends: it is reported for the whole
// machine. xlb's native mode, and xlb-splice for spliced connections, do
// all their work there and show almost no process time; the proxies' TCP work is partly in their system calls
// (counted) and partly in softirq (not).
//
// # Lifecycle
//
// Run owns everything it makes: a temporary directory (configs, logs), the
// lab (namespaces named "xlbtcpPID-*") and the balancer processes. The xlb
// binary built from source when Options.XLBBinary is empty is the
// process's one build (lab/xlbbin), which the caller removes at its end. It stops
// and removes them before returning, on error too. It needs root, iproute2
// and, for the proxies, Debian's haproxy, nginx and libnginx-mod-stream;
// a proxy that is not installed is reported as skipped.
package tcpbench
