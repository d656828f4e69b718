// Package lab builds labs of Linux network namespaces for xlb's
// integration tests, its demo and its perf lab.
//
// # Topology
//
// A lab is one "switch" namespace holding a bridge (BridgeLink) and one
// namespace per host. Each host has a single veth, HostLink ("eth0"), whose
// peer is a port of the bridge named after the host. Hosts get an IPv4
// address (and optionally IPv6), a fixed MAC 02:00:00:00:HI:LO derived from
// their index so captures read easily, their own MTU (the bridge and its
// ports carry the largest), lo up, extra lo addresses (a VIP on each
// backend) and routes (a client's route to the VIP via the balancer).
//
// Spec.Pairs add veth pairs straight between two hosts, or between two
// interfaces of one host, named as the spec says, with their own fixed
// MACs (02:00:01:...), MTU, queue count, addresses and routes: a path
// without the bridge, such as the perf lab's balancer-to-sink link. A
// NoSwitch host has no eth0 and is reached only through its pairs; a lab
// of NoSwitch hosts only has no switch namespace at all, so two hosts and
// one pair is the smallest lab.
//
// Every namespace is a named one, "PREFIX-switch" and "PREFIX-HOST",
// bind-mounted under /run/netns, so `ip netns exec PREFIX-lb xlb run ...`
// and tcpdump work on a running lab. Links exist only inside these
// namespaces; nothing is ever created in, or changed in, the namespace of
// the process that builds the lab.
//
// # Defaults that matter for XDP
//
// TX checksum offload is off on every host's eth0 and pair end (the
// SIOCETHTOOL ioctl, no ethtool needed): veth otherwise passes TCP/UDP
// checksums on partial, and a frame forwarded by XDP or AF_XDP then
// arrives with a wrong checksum and is dropped by the receiver. Turning it off also turns TSO
// off; software GSO then writes full checksums. rp_filter is 0 in every
// host, and hosts with lo addresses get arp_ignore=1/arp_announce=2 so a
// VIP on several backends' lo is never answered for by ARP.
// HostSpec.PortXDP attaches a pass-all XDP program (two instructions, no
// compiler needed) to a host's bridge port: without one, a veth drops what
// its peer transmits with XDP_TX or XDP_REDIRECT, so the balancer's host
// needs it in native mode.
//
// VLAN tags: veth and the bridge carry an 802.1Q tag out of band (in skb
// metadata), so by default XDP on a host sees tagged frames untagged.
// HostSpec.InlineVLAN keeps the tag in the frames forwarded to that host,
// as a real trunk port does; set it on the balancer to test its VLAN
// parsing. A tagged frame shorter than 20 bytes never crosses the bridge:
// the switch's kernel drops it while moving the tag out of band.
//
// # Lifecycle
//
// New builds everything or, on error, removes what it made. Close deletes
// the lab's namespaces, which deletes the bridge and veths; it is
// idempotent and touches nothing it did not make. A test builds its lab
// with labtest.New, which gates it on root, registers Close with
// t.Cleanup and checks that nothing is left. A process that crashed leaves its
// namespaces behind: Cleanup(prefix) removes them, and New reports such a
// clash as ErrExists rather than reusing or deleting what it did not make.
//
// Sockets belong to the namespace they were created in. Host.Listen,
// ListenPacket and Dial create theirs inside the host's namespace (on a
// locked OS thread, see Host.Do) and the caller closes them; a socket or a
// process (Host.Command) still alive keeps its namespace alive after Close,
// unnamed, until it ends, so close and wait for those first.
//
// BalancerSpec is the one topology xlb is demonstrated, tested and
// benchmarked with real TCP in: a client, the balancer and backends
// holding the VIP on lo, at fixed addresses (BalancerLB, BalancerClient,
// BalancerBackend); Host.Run runs a setup step such as `xlb decap attach`
// in a host. Two subpackages serve the tests and the perf lab: labtest
// builds a lab per test (root gate, unique prefix, cleanup and leftover
// check), and xlbbin builds the xlb binary a lab runs once per process.
//
// ServeHTTP and HTTPClient are the shared HTTP pieces of the demo and the
// integration tests: a backend that names itself and counts requests and
// connections, and a client whose every request is a new connection.
// Backend.Close is the caller's job.
package lab
