// Package ecmp builds, on top of package lab, the topology of several
// balancers behind a router that spreads flows over them with ECMP: the
// lab of xlb's BGP tests and demos.
//
// # Topology
//
//	clients (Prefix-cl-cN)          198.18.1.0/24, 2001:db8:1::/64
//	   |  client lab bridge (Prefix-cl-switch), port "router"
//	router eth1 .1                   forwards; BIRD 2 with merge paths
//	router eth0 .1
//	   |  fabric lab bridge (Prefix-switch)     198.18.0.0/24, 2001:db8::/64
//	balancers lbN (.11 up)           BGP speakers, PortXDP on their ports
//	backends bN (.101 up)            VIP and VIP6 on lo
//
// The router is a real BIRD 2 (`bird`, Debian package bird2) running in
// the router's namespace with its configuration, log and control socket
// in a temporary directory (BIRD.Dir); Close kills it by PID. It has a
// passive eBGP session for every balancer over IPv4 and over IPv6
// (ProtocolName), accepts their routes and exports them to the kernel
// with `merge paths on`, so equally good routes from several balancers
// become one multipath route. fib_multipath_hash_policy=1 makes the
// kernel hash flows on their L4 ports, as datacenter routers do, so the
// flows of one client spread over the balancers.
//
// Clients are on a segment of their own and reach the VIPs only through
// the router; the balancers and backends route the client segment via
// the router too.
//
// # Two segments from a one-bridge lab
//
// A lab.Lab has one bridge and gives each host one link. The ECMP lab is
// therefore two labs (Prefix for the fabric, Prefix+"-cl" for the
// clients) and one extra veth that this package makes itself: from a port
// of the client lab's bridge to eth1 in the router's namespace. Deleting
// either lab's namespaces deletes that veth. Cleanup(prefix) removes the
// leftovers of both labs.
//
// New also makes /run/netns a shared mount point first, as `ip netns add`
// does: otherwise an `ip netns add` run by anyone while the lab exists
// mounts the directory over itself, hides the lab's namespace mounts, and
// Close can no longer remove them.
//
// # Reading the router
//
// Nexthops reads the router's kernel route for a prefix over netlink
// inside its namespace (what is installed, not only what BIRD chose), and
// WaitNexthops polls it until the next-hop set is the expected one within
// the caller's deadline. BIRD.Protocols parses `birdc show protocols`
// (session state and since when) and BIRD.Control runs any birdc
// command.
package ecmp
