package lab

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lab is a built topology. Its namespaces exist until Close.
type Lab struct {
	// Prefix is the Spec's prefix, which every namespace name starts with.
	Prefix string
	// Switch is the namespace holding the bridge: its Link is BridgeLink
	// and it has no address. Use it to capture on the bridge or a port.
	// It is nil when every host is NoSwitch.
	Switch *Host
	// Hosts by name.
	Hosts map[string]*Host
	// Pairs are the Spec's Pairs, in its order.
	Pairs []Pair

	mu      sync.Mutex
	closed  bool
	created []*Host // namespaces this lab made, switch first
}

// Pair is a built PairSpec.
type Pair struct{ A, B End }

// End is one interface of a host: an end of a Pair, or a host's eth0
// (Host.End).
type End struct {
	Host *Host
	// Name of the interface in Host's namespace.
	Name    string
	Ifindex int
	MAC     [6]byte
	MTU     int
}

// New builds the lab described by spec: the switch namespace with its
// bridge, then each host's namespace, veth, addresses, routes, sysctls and
// offloads, then the pairs. Nothing is touched in the caller's namespace. On error it
// tears down whatever it made and leaves namespaces it did not make, such
// as an existing one with a clashing name (ErrExists), alone.
func New(spec Spec) (*Lab, error) {
	spec, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	l := &Lab{Prefix: spec.Prefix, Hosts: make(map[string]*Host, len(spec.Hosts))}
	if err := l.build(spec); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// makeNS creates the named namespace PREFIX-name and records it for Close.
func (l *Lab) makeNS(name string) (*Host, error) {
	ns := nsName(l.Prefix, name)
	handle, err := createNamed(ns)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: name, NS: ns, handle: handle}
	l.created = append(l.created, h)
	return h, nil
}

func (l *Lab) build(spec Spec) error {
	var sw *Host
	var swnl *netlink.Handle
	var brLink netlink.Link
	if spec.BridgeMTU > 0 { // normalized: some host is on the switch
		var err error
		if sw, swnl, brLink, err = l.buildSwitch(spec.BridgeMTU); err != nil {
			return err
		}
		defer swnl.Close()
	}
	for i, hs := range spec.Hosts {
		h, err := l.makeNS(hs.Name)
		if err != nil {
			return err
		}
		l.Hosts[hs.Name] = h
		if err := buildHost(h, i, hs, spec.Pairs, sw, swnl, brLink, spec.BridgeMTU); err != nil {
			return fmt.Errorf("lab: host %s: %w", hs.Name, err)
		}
	}
	for i, ps := range spec.Pairs {
		p, err := l.buildPair(i, ps)
		if err != nil {
			return fmt.Errorf("lab: pair %s:%s - %s:%s: %w", ps.A.Host, ps.A.Name, ps.B.Host, ps.B.Name, err)
		}
		l.Pairs = append(l.Pairs, p)
	}
	return nil
}

// buildSwitch makes the switch namespace and its bridge, and returns a
// netlink handle in it for the hosts' ports, which the caller closes.
func (l *Lab) buildSwitch(bridgeMTU int) (_ *Host, _ *netlink.Handle, _ netlink.Link, err error) {
	sw, err := l.makeNS(switchName)
	if err != nil {
		return nil, nil, nil, err
	}
	sw.Link, sw.MTU = BridgeLink, bridgeMTU
	l.Switch = sw
	// Bridge ports carry no addresses; without IPv6 they stay silent.
	if err := sw.Sysctl("net.ipv6.conf.default.disable_ipv6", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, err
	}
	// A lab switch is plain L2. With br_netfilter loaded (as on hosts that
	// run containers) bridged IP frames would go through the firewall's
	// header checks, which silently drop exactly the malformed frames the
	// tests replay at the balancer.
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
		if err := sw.Sysctl(k, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, err
		}
	}
	swnl, err := netlink.NewHandleAt(sw.handle)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("lab: netlink in %s: %w", sw.NS, err)
	}
	defer func() {
		if err != nil {
			swnl.Close()
		}
	}()
	if err := linkUp(swnl, "lo"); err != nil {
		return nil, nil, nil, fmt.Errorf("lab: %s: %w", sw.NS, err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeLink, MTU: bridgeMTU}}
	if err := swnl.LinkAdd(br); err != nil {
		return nil, nil, nil, fmt.Errorf("lab: %s: add bridge %s: %w", sw.NS, BridgeLink, err)
	}
	brLink, err := swnl.LinkByName(BridgeLink)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("lab: %s: %w", sw.NS, err)
	}
	sw.Ifindex = brLink.Attrs().Index
	copy(sw.MAC[:], brLink.Attrs().HardwareAddr)
	if err := swnl.LinkSetUp(brLink); err != nil {
		return nil, nil, nil, fmt.Errorf("lab: %s: set %s up: %w", sw.NS, BridgeLink, err)
	}
	return sw, swnl, brLink, nil
}

// buildHost sets up host h: sysctls first, so that eth0 is born with the
// namespace's defaults, then lo, then, for a host on the switch, the veth
// pair created from the switch side with its peer born inside h, then
// addresses, routes and offloads. pairs are the spec's, for IPv6.
func buildHost(h *Host, index int, hs HostSpec, pairs []PairSpec, sw *Host, swnl *netlink.Handle, br netlink.Link, bridgeMTU int) error {
	h.LoAddrs = slices.Clone(hs.LoAddrs)
	if err := h.setDefaultSysctls(hs, wantsIPv6(hs, pairs)); err != nil {
		return err
	}
	nl, err := netlink.NewHandleAt(h.handle)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", h.NS, err)
	}
	defer nl.Close()
	if err := linkUp(nl, "lo"); err != nil {
		return err
	}
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return err
	}
	for _, a := range hs.LoAddrs {
		if err := addAddr(nl, lo, a); err != nil {
			return err
		}
	}
	if hs.NoSwitch {
		return nil
	}
	h.Link, h.Port, h.MTU, h.MAC = HostLink, hs.Name, hs.MTU, hostMAC(index)
	h.Addr, h.Addr6 = hs.Addr.Addr(), hs.Addr6.Addr()
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: h.Port, MTU: bridgeMTU},
		PeerName:         HostLink,
		PeerMTU:          uint32(hs.MTU),
		PeerHardwareAddr: net.HardwareAddr(h.MAC[:]),
		PeerNamespace:    netlink.NsFd(h.handle),
	}
	if err := swnl.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", h.Port, HostLink, err)
	}
	port, err := swnl.LinkByName(h.Port)
	if err != nil {
		return err
	}
	if err := swnl.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("enslave %s to %s: %w", h.Port, BridgeLink, err)
	}
	if err := swnl.LinkSetUp(port); err != nil {
		return fmt.Errorf("set %s up: %w", h.Port, err)
	}
	if hs.PortXDP {
		if err := sw.attachPassXDP(port.Attrs().Index); err != nil {
			return err
		}
	}
	if hs.InlineVLAN {
		if err := sw.disableTxVLAN(h.Port); err != nil {
			return err
		}
	}

	addrs := []netip.Prefix{hs.Addr}
	if hs.Addr6.IsValid() {
		addrs = append(addrs, hs.Addr6)
	}
	h.Ifindex, err = h.configure(nl, HostLink, addrs, hs.Routes, hs.KeepChecksumOffload)
	return err
}

// wantsIPv6 reports whether host hs has an IPv6 address on any interface.
func wantsIPv6(hs HostSpec, pairs []PairSpec) bool {
	if hs.Addr6.IsValid() {
		return true
	}
	for _, p := range pairs {
		for _, e := range []EndSpec{p.A, p.B} {
			if e.Host == hs.Name && slices.ContainsFunc(e.Addrs, func(a netip.Prefix) bool { return a.Addr().Is6() }) {
				return true
			}
		}
	}
	return false
}

// configure gives the interface name of h (made by the caller) its
// addresses, sets it up, adds its routes and turns TX checksum offload off
// unless keepCsum, and returns its ifindex.
func (h *Host) configure(nl *netlink.Handle, name string, addrs []netip.Prefix, routes []Route, keepCsum bool) (int, error) {
	link, err := nl.LinkByName(name)
	if err != nil {
		return 0, err
	}
	for _, a := range addrs {
		if err := addAddr(nl, link, a); err != nil {
			return 0, err
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		return 0, fmt.Errorf("set %s up: %w", name, err)
	}
	for _, r := range routes {
		route := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       prefixNet(r.Dst),
			Gw:        net.IP(r.Via.AsSlice()),
		}
		if err := nl.RouteAdd(route); err != nil {
			return 0, fmt.Errorf("add route %s via %s dev %s: %w", r.Dst, r.Via, name, err)
		}
	}
	if !keepCsum {
		if err := h.disableTxChecksum(name); err != nil {
			return 0, err
		}
	}
	return link.Attrs().Index, nil
}

// buildPair creates the veth pair from A's namespace with its B end born
// in B's (or beside A in the same host), then configures both ends.
func (l *Lab) buildPair(index int, ps PairSpec) (Pair, error) {
	p := Pair{
		A: End{Host: l.Hosts[ps.A.Host], Name: ps.A.Name, MAC: pairMAC(index, 1), MTU: ps.MTU},
		B: End{Host: l.Hosts[ps.B.Host], Name: ps.B.Name, MAC: pairMAC(index, 2), MTU: ps.MTU},
	}
	nlA, err := netlink.NewHandleAt(p.A.Host.handle)
	if err != nil {
		return Pair{}, fmt.Errorf("netlink in %s: %w", p.A.Host.NS, err)
	}
	defer nlA.Close()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: p.A.Name, MTU: ps.MTU, HardwareAddr: net.HardwareAddr(p.A.MAC[:]),
			NumTxQueues: ps.Queues, NumRxQueues: ps.Queues},
		PeerName:         p.B.Name,
		PeerMTU:          uint32(ps.MTU),
		PeerHardwareAddr: net.HardwareAddr(p.B.MAC[:]),
		PeerNumTxQueues:  uint32(ps.Queues),
		PeerNumRxQueues:  uint32(ps.Queues),
	}
	if p.B.Host != p.A.Host {
		veth.PeerNamespace = netlink.NsFd(p.B.Host.handle)
	}
	if err := nlA.LinkAdd(veth); err != nil {
		return Pair{}, fmt.Errorf("add veth: %w", err)
	}
	if p.A.Ifindex, err = p.A.Host.configure(nlA, p.A.Name, ps.A.Addrs, ps.A.Routes, ps.KeepChecksumOffload); err != nil {
		return Pair{}, err
	}
	nlB := nlA
	if p.B.Host != p.A.Host {
		if nlB, err = netlink.NewHandleAt(p.B.Host.handle); err != nil {
			return Pair{}, fmt.Errorf("netlink in %s: %w", p.B.Host.NS, err)
		}
		defer nlB.Close()
	}
	if p.B.Ifindex, err = p.B.Host.configure(nlB, p.B.Name, ps.B.Addrs, ps.B.Routes, ps.KeepChecksumOffload); err != nil {
		return Pair{}, err
	}
	return p, nil
}

// setDefaultSysctls writes the lab's per-host defaults, then the spec's.
// ipv6 says whether the host has an IPv6 address anywhere.
//   - rp_filter 0 (all and default, so also eth0 and tunnel devices made
//     later): decapsulated packets arrive on a tunnel device from sources
//     routed via eth0, which strict reverse-path filtering drops, and new
//     namespaces may inherit a distribution's rp_filter=2 from the host.
//   - without an IPv6 address, IPv6 off on links made from now on (eth0,
//     pair ends).
//   - with LoAddrs, arp_ignore=1 and arp_announce=2: only answer ARP for
//     addresses on the asking interface, and never announce a lo address,
//     so every backend can hold the VIP without stealing it.
func (h *Host) setDefaultSysctls(hs HostSpec, ipv6 bool) error {
	set := [][2]string{
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	}
	if len(hs.LoAddrs) > 0 {
		set = append(set,
			[2]string{"net.ipv4.conf.all.arp_ignore", "1"},
			[2]string{"net.ipv4.conf.all.arp_announce", "2"},
		)
	}
	for _, k := range slices.Sorted(maps.Keys(hs.Sysctls)) {
		set = append(set, [2]string{k, hs.Sysctls[k]})
	}
	return h.Do(func() error {
		if !ipv6 {
			err := writeSysctl("net.ipv6.conf.default.disable_ipv6", "1")
			if err != nil && !errors.Is(err, os.ErrNotExist) { // kernel without IPv6
				return err
			}
		}
		// Devices that exist already (tunl0 if ipip is loaded) keep
		// their own rp_filter; the effective value is the max with all.
		devs, _ := filepath.Glob("/proc/sys/net/ipv4/conf/*/rp_filter")
		for _, d := range devs {
			if err := os.WriteFile(d, []byte("0"), 0); err != nil {
				return fmt.Errorf("lab: sysctl %s: %w", d, err)
			}
		}
		for _, kv := range set {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

func linkUp(nl *netlink.Handle, name string) error {
	link, err := nl.LinkByName(name)
	if err != nil {
		return err
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// addAddr adds p to link; IPv6 addresses skip duplicate address detection
// so they are usable at once rather than after a second or two.
func addAddr(nl *netlink.Handle, link netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := nl.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, link.Attrs().Name, err)
	}
	return nil
}

// prefixNet converts for netlink, keeping the host bits of p.
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Close deletes every namespace the lab made, which deletes the bridge and
// veths with them, and closes its handles on them. It never touches
// anything else, and a second call does nothing. Processes still running
// inside (from Command) and sockets still open (from Listen, Dial) keep
// their namespace alive, unnamed, until they end: stop them first.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for _, h := range slices.Backward(l.created) {
		h.close()
		errs = append(errs, deleteNamed(h.NS))
	}
	return errors.Join(errs...)
}

// HostList returns the hosts in the order of the spec.
func (l *Lab) HostList() []*Host {
	var out []*Host
	for _, h := range l.created {
		if h != l.Switch {
			out = append(out, h)
		}
	}
	return out
}
