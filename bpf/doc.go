// Package bpf holds xlb's balancer-side XDP programs (steer and lb) and the
// Go code that loads, configures and attaches them. The backends' program,
// decap, is a package of its own (bpf/decap): the balancer never loads it.
//
// # steer (balancer side)
//
// steer.c runs on every frame the balancer's NIC receives. It parses
// Ethernet (at most one 802.1Q/802.1ad tag), IPv4 (honouring IHL) or IPv6
// (skipping up to four hop-by-hop, routing and destination-options extension
// headers), and the TCP/UDP destination port, then looks the destination up
// in the vips map: first (addr, port, proto), then (addr, 0, proto) for a
// VIP that covers every port. A match is redirected into the AF_XDP socket
// bound to the receiving queue (xsks map, index = RX queue); everything else
// is passed to the kernel. Malformed frames (truncated L2/L3 headers, IPv4
// IHL below 5, a truncated IPv6 extension header) are counted and passed,
// never dropped: the kernel drops what it cannot parse, and this program
// must not decide for non-VIP traffic.
//
// The address marker contract: for every VIP address SetVIPs also inserts
// (addr, port 0, proto 0), see AddrKey. Frames to a VIP address whose ports
// cannot be read (non-first IPv4 fragments, any IPv6 fragment header, more
// than four IPv6 extension headers, truncated TCP/UDP headers) or that are
// neither TCP nor UDP match the marker and are redirected too: the Go worker
// re-parses every frame it receives and decides (forward, answer or count a
// drop reason). ICMP and ICMPv6 errors about a VIP's traffic (fragmentation
// needed, packet too big, unreachable, time exceeded) take this path: a
// backend answers with the VIP as source address, so the error quoting that
// answer is addressed to the VIP. The program never looks inside an ICMP
// message; the worker reads the quoted packet to find the flow. Whoever
// writes the vips map by other means must keep the markers.
//
// A VIP frame on a queue without a socket is passed to the kernel and
// counted in both NoSocket and Passed. Seen = Redirected + Passed +
// Malformed + Spliced + SpliceExpired.
//
// Splice (splice.h, managed by package splice): with
// SteerOptions.SpliceTableSize > 0 a TCP frame that matched no VIP, and so
// would go to the kernel, is looked up in the splice map by its 4-tuple.
// A hit is a connection of a pair the SNI proxy handed over: the frame is
// rewritten for the pair's other connection (addresses, ports, MACs,
// TTL/hop limit, seq/ack, window, SACK, timestamps, checksums updated
// incrementally) and leaves with XDP_TX, or bpf_redirect to the entry's
// interface; FIN and RST set the pair's state bits. A hit whose TCP data
// offset is below 5 or past the frame is passed and counted Malformed; one
// with a TTL or hop limit of 1 or less is dropped (SpliceExpired). VIP
// frames never reach the lookup, and with SpliceTableSize 0 the verifier
// removes it (splice_on is a load-time constant), so a balancer without
// splice pays nothing. The option walk runs in a bpf_loop callback, which
// the verifier checks once; inline it was a path per option layout.
//
// Lifecycle: LoadSteer loads the objects; Attach attaches them to one
// interface with a bpf_link, which the kernel detaches by itself when the
// process exits (a dead xlb must not keep steering traffic into sockets
// nobody reads); Close detaches and closes everything and is idempotent.
// The AF_XDP sockets given to SetSocket stay owned by their caller: the
// xsks map holds its own reference until ClearSocket or Close.
//
// # lb (native mode)
//
// lb.c does in the kernel, frame for frame, what the AF_XDP worker does in
// Go (datapath's Forward over package packet), so that native mode is a
// drop-in datapath and the perf lab compares the same work. Parsing is
// packet.Parse's, with its checks in its order: at most one VLAN tag; IPv4
// honouring IHL; IPv6 walking up to four hop-by-hop, routing and
// destination-options headers inside the payload length (a fragment header
// is a fragment, a fifth header too_many_ext_headers); TCP and UDP, ICMP
// and ICMPv6 echo requests, and ICMP errors quoting a TCP or UDP packet. A
// frame that is not for a VIP address (steer's keys and address markers)
// is passed to the kernel, as are truncated L2/L3 headers (Malformed); a
// frame to a VIP address that cannot be forwarded is dropped and counted
// under the Go worker's reason name (LBCounters.Drops). The fragments of an
// address with VIPEntry.PassFragments are passed to the kernel, as steer
// passes them in AF_XDP mode.
//
// The common frame (untagged IPv4 without options, a whole TCP or UDP
// header, no fragment) is parsed inline; the rest by lb_parse, a call. The
// VIP keys sit in two maps: the IPv4 ones in an 8-byte form (vips4, less
// to hash and compare), the IPv6 ones as steer's (vips). Each CPU caches
// its latest IPv4 resolutions (vip_cache), valid for one generation of the
// maps, which SetVIPs moves on once they hold the new set: a frame that
// starts after SetVIPs returns never resolves from the old set.
//
// A forwarded frame's backend comes from the flow tables (LRU hashes of
// 5-tuples, one per family, LBOptions.FlowTableSize entries each) or, for a
// new flow and for every TCP SYN without ACK, from the VIP's Maglev table:
// slot (h*size)>>32 of the table SetTable gave the VIP's index, h =
// hash.Flow4 or hash.Flow6 computed bit for bit the same. Each VIP index
// has its own table size: the tables sit in one maglev map of
// LBOptions.MaglevSlots slots, at the offset and size the index's vip_conf
// entry holds (a table of a new size is written next to the old one and
// switched to with one atomic store). Slots and flow entries hold backend
// IDs: the index into SetBackends' slice in the low 16 bits and a
// generation in the high 16 (LBBackendID). A flow entry is valid while it
// names the VIP it was picked for, the backends map still holds its full ID
// at its index, and it was seen within its protocol's idle timeout
// (SetTimeouts; LBFlowExpiry): otherwise the flow re-picks from the table,
// as the Go worker's flow table does. ICMP errors follow the flow table but
// never make entries.
//
// In front of the flow tables each CPU keeps a small cache of them
// (lbflowcache.h; LBFlowCacheSize entries per family): an established
// frame takes its backend from there, one inlined array access on pages
// the TLB covers, where the LRU hash of a million entries costs a TLB and
// cache miss or two. The tables stay the one authority across CPUs: a
// frame that is not a plain hit (a SYN, an ICMP error, a pending
// handshake, a different VIP, a freed backend, an entry near its timeout)
// takes the table's path; the cache writes the flow's time through once
// per 2^flow_sync jiffies; and a SYN that moves a reused 5-tuple to another
// backend voids every cache (flow_epoch).
//
// Output headers are the Go worker's byte for byte: packet.EncapIPIP (IPIP
// and 6in4, ID from a per-CPU counter), EncapIPIP6 (IP6IP6 and 4in6, flow
// label from the flow hash), EncapGUE4 and EncapGUE6 (source port from the
// flow hash, the IPv6 UDP checksum summed over the whole packet with
// bpf_csum_diff), RewriteDSR (the MACs only), EchoReply for echo requests to
// an address whose first VIP has ICMPEcho, the ICMP error about a VIP flow
// encapsulated whole to the flow's backend, and FragNeeded (frag-needed with
// DF, packet-too-big for IPv6) sent back to the client when the
// encapsulated packet would exceed the MTU. The outer source addresses and
// the MTU come from SetSource and SetSource6 (a backend family without one:
// no_source). Everything leaves with XDP_TX. The tests check every frame the
// program sends against the Go worker's, byte for byte. The echo replies and
// frag-needed it sends take a token from a per-CPU bucket (SetICMPRate; the
// Go worker has one per worker): without one the echo request is dropped as
// echo_rate_limited and a frame too big dropped as too_big unanswered, both
// counted ICMPRateLimited (the worker's event icmp_rate_limited).
//
// Lifecycle: LoadLB loads (sizing the maps from LBOptions); SetBackends,
// SetTable, SetVIPs, SetSource, SetSource6, SetTimeouts and SetICMPRate fill
// the maps (SetSource before Attach); Attach uses a bpf_link as Steer does;
// Close detaches and releases everything. SetTable writes a table of unchanged
// size in place through the map's memory, each slot atomically but not the
// table as a whole: new flows may see a mix of the old and new tables for a
// few microseconds, established ones keep their backend. The program is not
// multi-buffer aware: the interface MTU must let a frame fit one page (about
// 3.5 KB), as for any XDP_TX on veth.
//
// Observability (lbrtt.h, lbcapture.h), the AF_XDP worker's in the kernel:
// a TCP SYN stores its time in the flow entry's spare word, and the flow's
// first ACK adds the gap to its backend's per-CPU handshake RTT histogram
// (BackendCounters' RTTBuckets, datapath's buckets); a flow hit pays one
// compare of that word. StartCapture sets a .bss flag the program loads
// once per frame: while it is set the program tail-calls xlb_lb_capture,
// the same datapath with the frames the filter admits copied, as received
// and as sent, into a BPF ring buffer (LBCapture reads it); a full ring
// loses copies, counted, never frames.
//
// # Firewall (both programs)
//
// firewall.h is included by steer.c and lb.c: once a frame has matched a
// VIP key (addr, port, proto) both call fw_check before anything else is
// spent on it (no redirect, no flow lookup). One LPM trie keyed by the VIP
// key and the source address (IPv4 mapped to ::ffff:0:0/96) gives the most
// specific entry of that VIP: deny drops (XDP_DROP, counted per rule and
// per VIP in per-CPU arrays), allow goes on; a miss allows. An allowed TCP
// SYN without ACK to a VIP with a SYN limit takes a token from its source's
// bucket (a /32 or /64, GCRA in one word updated with compare-and-swap, in
// an LRU hash shared by all CPUs so the limit holds whatever queue a
// connection lands on); without one it is dropped and counted. ICMP,
// fragments and other frames that reach a VIP through its address marker
// are not checked: they carry no ports to name the VIP by, and the worker
// (or lb) decides them as before. Firewall drops are not in Seen's sum of
// the programs' own counters: they are the firewall's (Firewall).
//
// Firewall (Steer.Firewall, LB.Firewall) writes the entries. The trie in
// use is the one element of an array of maps: Set writes the change into
// the standby trie, swaps it in (the kernel waits for every running program
// before an array-of-maps update returns, so no frame reads the old trie
// after it) and writes the same change into the old one. A frame sees the
// rules before or after a change, never a half-written allow list. With
// no entries at all the element is emptied instead (the same wait): the
// programs then skip the trie, so a balancer without firewall rules pays
// one inlined array load per frame for it, not a trie lookup.
//
// # Generated code
//
// steer_bpfel.go/.o and lb_bpfel.go/.o are generated by bpf2go (see
// gen.go) and committed, so building needs no clang. Regenerating with the
// same clang gives byte-identical files wherever the repository lives.
package bpf
