// Package ecmp builds, on top of package lab, the topology of several
// balancers behind a router that spreads flows over them with ECMP: the
// lab of xlb's BGP tests and demos.
//
// # Topology
//
//	clients cN (no switch port)      each on its own link to the router:
//	   |  veth pair router:cN/cN:eth0   198.18.1.4N/30, 2001:db8:1:N::/64
//	router .1                         forwards; BIRD 2 with merge paths
//	   |  eth0, lab switch            198.18.0.0/24, 2001:db8::/64
//	balancers lbN (.11 up)            BGP speakers, PortXDP on their ports
//	backends bN (.101 up)             VIP and VIP6 on lo
//
// It is one lab.Lab: the router, balancers and backends on its switch,
// and the clients as NoSwitch hosts joined to the router by lab.PairSpec
// links, so everything a client sends to a VIP is routed by the router.
// The balancers and backends route the client networks (ClientNet,
// ClientNet6) via the router.
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
