package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// errNotRouted says the kernel routes a backend out of another interface: the
// datapath only transmits on the queue the packet came in on.
var errNotRouted = errors.New("not routed via the datapath interface")

// usableNeigh are the neighbour states whose link-layer address the kernel
// itself would use to send.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// nextHop asks the kernel's routing table which neighbour a packet to dst
// leaves through, and its neighbour table for that neighbour's MAC. When the
// MAC is not known yet it asks the kernel to resolve it (NTF_USE, as if
// traffic used the entry) and reports ok=false; the caller tries again later.
func nextHop(ifindex int, dst netip.Addr) (mac [6]byte, ok bool, err error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return mac, false, fmt.Errorf("engine: route to backend %s: %w", dst, err)
	}
	if len(routes) == 0 {
		return mac, false, fmt.Errorf("engine: no route to backend %s", dst)
	}
	r := routes[0]
	if r.LinkIndex != ifindex {
		return mac, false, fmt.Errorf("engine: backend %s: %w (interface index %d, want %d)", dst, errNotRouted, r.LinkIndex, ifindex)
	}
	hop := dst
	if gw, ok := netip.AddrFromSlice(r.Gw); ok && !gw.IsUnspecified() {
		hop = gw.Unmap()
	}
	// IPv6 neighbours (NDP) and IPv4 ones (ARP) live in the same way in
	// their family's table.
	family := netlink.FAMILY_V4
	if hop.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(ifindex, family)
	if err != nil {
		return mac, false, fmt.Errorf("engine: neighbours of interface %d: %w", ifindex, err)
	}
	for _, n := range neighs {
		a, _ := netip.AddrFromSlice(n.IP)
		if a.Unmap() != hop || n.State&usableNeigh == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		copy(mac[:], n.HardwareAddr)
		return mac, true, nil
	}
	err = netlink.NeighSet(&netlink.Neigh{
		LinkIndex: ifindex,
		Family:    family,
		IP:        net.IP(hop.AsSlice()),
		State:     netlink.NUD_NONE,
		Flags:     netlink.NTF_USE,
	})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return mac, false, fmt.Errorf("engine: ask the kernel to resolve %s: %w", hop, err)
	}
	return mac, false, nil
}
