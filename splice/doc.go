// Package splice hands an established pair of TCP connections of the SNI
// proxy (client <-> VIP and LB:lport <-> backend) to the steering XDP
// program, which from then on rewrites every packet of both connections and
// sends it out without either socket seeing it (issue 13 phase 2; the
// design is docs/sni-splice-design.md).
//
// # Model
//
// The proxy reads both sockets in repair mode (a Side each) and chooses how
// frames leave toward each peer (a Hop each). Plan turns that Pair into the
// two directions' entries of the splice map, keyed by the 4-tuple a packet
// arrives with:
//
//   - addresses and ports become the other connection's, MACs the hop's,
//     the TTL or hop limit is decremented;
//   - seq' = seq + seq_delta, ack' = ack + ack_delta (mod 2^32): client to
//     backend seq_delta = SB - RC and ack_delta = RB - SC, backend to client
//     the mirror (S: a socket's snd_nxt, R: its rcv_nxt);
//   - the window is rescaled: w' = min(65535, (w << wscale_in) >> wscale_out);
//   - SACK edges are shifted by ack_delta, or the option is overwritten with
//     NOPs when the receiver did not negotiate SACK;
//   - TSval' = TSval + dv, with dv set by the direction's first packet so
//     that it sends the out socket's clock + 1 (compare-and-swap in the
//     pair's slot); TSecr' = TSecr - dv(other direction), or 0 when it
//     echoes a value from before the splice;
//   - the IPv4 header and TCP checksums are updated incrementally (RFC 1624).
//
// Only the first SACK and the first timestamp option of a segment are
// rewritten (stacks send one of each); malformed options are left as they
// are. A frame whose TCP data offset is below 5 or past the frame is
// passed (the kernel drops it); one with TTL or hop limit 1 or less is
// dropped. Connections of different IP families cannot be spliced (the
// header would change size), nor connections of which only one uses
// timestamps (a peer would see them stop): Plan refuses both, and the pair
// stays proxied. Frames must reach XDP with complete checksums (TX
// checksum offload off on veths): a partial checksum cannot be updated.
//
// FIN and RST are forwarded like any segment and set the pair's state bits,
// which Status reports; the proxy's sweeper removes the pair (Delete).
//
// Rewrite is the Go model of the XDP rewrite, matched byte for byte against
// the C program in the tests; it is not used on the packet path.
//
// # Table
//
// Table manages the maps of one loaded steer program: a pair slot indexes
// the pair's state (splice_pairs) and its per-CPU counters (pair*2 + dir);
// Insert writes both directions with BPF_NOEXIST and leaves nothing behind
// on error; a full table is ErrFull (the pair stays proxied).
package splice
