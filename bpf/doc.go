// Package bpf holds xlb's XDP programs (steer and lb on the balancer,
// decap on backends) and the Go code that loads, configures and attaches
// them.
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
// counted in both NoSocket and Passed. Seen = Redirected + Passed + Malformed.
//
// Lifecycle: LoadSteer loads the objects; Attach attaches them to one
// interface with a bpf_link, which the kernel detaches by itself when the
// process exits (a dead xlb must not keep steering traffic into sockets
// nobody reads); Close detaches and closes everything and is idempotent.
// The AF_XDP sockets given to SetSocket stay owned by their caller: the
// xsks map holds its own reference until ClearSocket or Close.
//
// # decap (backend side)
//
// decap.c is for backends whose kernel has no tunnel modules. It strips the
// outer header of every IP-in-IP packet arriving on the interface: IPIP
// (IPv4 in IPv4) and 6in4 (IPv6 in IPv4, protocol 41), 4in6 and 6in6 (outer
// IPv6 whose next header is 4 or 41), and GUE: outer IPv4 or IPv6, UDP to
// the configured port (DecapOptions.GUEPort, DefaultGUEPort for AttachDecap,
// 0 disables it), then a GUE variant 0 header (optional fields skipped, its
// protocol 4 or 41; control messages are passed) or variant 1 (the inner
// packet right after UDP). It does so whatever the outer destination,
// keeps the Ethernet header and VLAN tag, and passes the inner packet to the
// stack. Outer IPv4 fragments and outer IPv6 extension headers are left to
// the stack, and everything else is passed untouched. Attach it only on the
// interface facing the balancer. Counters are per kind (DecapCounters).
//
// AttachDecap and AttachDecapWith attach it through netlink rather than a
// bpf_link, so the attachment outlives the process (`xlb decap attach`
// exits; the backend keeps decapsulating) until DetachDecap. The attached program is recognised as
// xlb's by its kernel name, xlb_decap; any other XDP program on the interface
// is left alone (ErrForeignProgram). These functions work in the calling
// thread's network namespace.
//
// # lb (native mode)
//
// lb.c does the whole balancer job in the kernel, for IPv4 VIPs with IPIP
// encapsulation, so the perf lab can compare it with the AF_XDP datapath
// doing the same work. It parses as steer does (one VLAN tag at most), then
// applies the Go worker's checks in the Go worker's order (packet.ParseIPv4):
// a frame that is not for a VIP address (vips map, with steer's key layout
// and address markers) is passed to the kernel; a frame to a VIP address that
// cannot be forwarded is dropped and counted under the Go worker's reason
// name (bad_ip_version, bad_ip_length, fragment, unsupported_protocol,
// truncated_l4, no_vip, no_backend, no_neighbor, too_big, no_headroom);
// truncated L2/L3 headers are Malformed and passed, as in steer.
//
// A forwarded frame's backend comes from the flow table (an LRU hash of
// 5-tuples, LBOptions.FlowTableSize entries) or, for a new flow and for
// every TCP SYN without ACK (a new connection never sticks to the backend of
// an old one with the same 5-tuple), from the VIP's Maglev table: slot
// (h*M)>>32 of maglev[VIPEntry.ID*M ...], h = hash.Flow4 computed bit for
// bit the same. The slots hold backend ids, indexes into SetBackends' slice;
// a flow pinned to a freed id picks again. The frame is rewritten exactly as
// packet.EncapIPIP does (TOS and DF copied, TTL 64, ID from a per-CPU
// counter, Ethernet padding dropped, VLAN tag kept), from the interface's
// MAC to the backend's next hop, and sent back out with XDP_TX. The tests
// check every forwarded frame against the Go worker's, byte for byte.
//
// Lifecycle: LoadLB loads (sizing the maps from LBOptions); SetVIPs,
// SetBackends, SetTable and SetSource fill the maps (SetSource before
// Attach); Attach uses a bpf_link as Steer does; Close detaches and releases
// everything. SetTable writes the slots in place through the map's memory,
// each slot atomically but not the table as a whole: new flows may see a
// mix of the old and new tables for a few microseconds, established ones
// keep their backend. The program is not multi-buffer aware: the interface MTU must let
// a frame fit one page (about 3.5 KB), as for any XDP_TX on veth.
//
// # Generated code
//
// steer_bpfel.go/.o, decap_bpfel.go/.o and lb_bpfel.go/.o are generated by bpf2go (see
// gen.go) and committed, so building needs no clang. Regenerating with the
// same clang gives byte-identical files wherever the repository lives.
package bpf
