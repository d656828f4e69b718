package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Spec describes a whole lab: one switch namespace holding a bridge and one
// namespace per host, each host wired to the bridge by a veth pair, and
// Pairs, veths that join hosts directly.
type Spec struct {
	// Prefix starts the name of every namespace the lab makes
	// ("PREFIX-switch", "PREFIX-HOST"). Tests use something unique such as
	// "xlbt<pid>" so parallel runs and leftovers never collide.
	Prefix string
	// Hosts in index order; the index picks each host's MAC address.
	Hosts []HostSpec
	// BridgeMTU is the MTU of the bridge and of every bridge port. Zero
	// means the largest host MTU; a smaller value is rejected, since a veth
	// drops frames larger than its receiving end's MTU.
	BridgeMTU int
	// Pairs are veth pairs straight between two hosts (or two interfaces
	// of one host), besides the switch or, for NoSwitch hosts, instead.
	Pairs []PairSpec
}

// HostSpec describes one host namespace and its eth0.
type HostSpec struct {
	// Name is 1 to 15 characters of [A-Za-z0-9_], so it also serves as the
	// bridge port's interface name in the switch namespace.
	Name string
	// Addr is the IPv4 address and on-link prefix of eth0 (198.18.0.10/24).
	Addr netip.Prefix
	// Addr6 is an optional IPv6 address of eth0 (2001:db8::10/64). Without
	// it IPv6 is disabled on eth0, which keeps router solicitations and
	// MLD reports out of captures and out of the balancer's queues.
	Addr6 netip.Prefix
	// MTU of eth0; zero means 1500. A balancer and its backends need 20
	// more than the clients to carry IPIP (e.g. client 1500, others 1600).
	MTU int
	// LoAddrs are extra addresses on lo, such as a VIP (/32 or /128) on a
	// backend that receives decapsulated traffic. A host with LoAddrs gets
	// arp_ignore=1 and arp_announce=2 so it never answers ARP for them.
	LoAddrs []netip.Prefix
	// Routes are added through eth0, e.g. a client's route to a VIP via
	// the balancer's address.
	Routes []Route
	// Sysctls are written inside the namespace after the lab's own
	// defaults, in key order. Keys are dotted and must start with "net."
	// (other sysctls are global to the machine, not per namespace).
	Sysctls map[string]string
	// KeepChecksumOffload leaves TX checksum offload on. By default it is
	// turned off: veth otherwise hands TCP/UDP packets on with partial
	// checksums, and once an XDP or AF_XDP program forwards such a frame
	// the receiver finds the checksum wrong and silently drops it.
	KeepChecksumOffload bool
	// PortXDP attaches a pass-all XDP program to the host's bridge port.
	// A veth drops the frames its peer transmits with XDP_TX or
	// XDP_REDIRECT unless the receiving end runs an XDP program: set it on
	// the host that runs the balancer in native XDP mode. AF_XDP's copy-mode
	// transmit sends ordinary packets and does not need it.
	PortXDP bool
	// InlineVLAN turns VLAN TX offload off on the host's bridge port
	// (`ethtool -K PORT txvlan off`), so an 802.1Q tag on a frame the
	// bridge forwards to the host stays inside the frame, where the
	// host's XDP program sees it, as on a real switch's trunk port. By
	// default veth carries the tag out of band (skb metadata), and XDP
	// sees the frame untagged. 802.1ad tags stay out of band either way.
	InlineVLAN bool
	// NoSwitch leaves the host off the switch: no eth0, no bridge port,
	// only the ends of its Pairs. Addr, Addr6, MTU, Routes, PortXDP and
	// InlineVLAN, which describe eth0, must be zero. A lab of NoSwitch
	// hosts only has no switch namespace.
	NoSwitch bool
}

// PairSpec is a veth pair between two hosts of the Spec, or between two
// interfaces of one host (then A.Name and B.Name differ). Each end gets a
// fixed MAC 02:00:01:HI:LO:0E, HI:LO = index in Spec.Pairs + 1 and E = 1
// for A, 2 for B, and, like eth0, TX checksum offload off.
type PairSpec struct {
	A, B EndSpec
	// MTU of both ends; zero means 1500.
	MTU int
	// Queues is the number of receive and of transmit queues of each end;
	// zero means 1. A veth receives what its peer transmits with XDP on
	// the queue of the sending CPU, so more queues take more CPUs' traffic.
	Queues int
	// KeepChecksumOffload as for HostSpec.
	KeepChecksumOffload bool
}

// EndSpec is one end of a PairSpec.
type EndSpec struct {
	// Host is the Name of the host holding this end.
	Host string
	// Name of the interface in the host's namespace, as for host names
	// (1 to 15 characters of [A-Za-z0-9_]); not lo, nor eth0 on a host on
	// the switch.
	Name string
	// Addrs are the interface's addresses with their on-link prefixes,
	// IPv4 or IPv6. A host with an IPv6 address on an end keeps IPv6.
	Addrs []netip.Prefix
	// Routes through the interface.
	Routes []Route
}

// Route is a route through a host's eth0 to Dst via the gateway Via.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// ErrInvalidSpec is wrapped by every error New returns for a bad Spec,
// before anything is created.
var ErrInvalidSpec = errors.New("lab: invalid spec")

// Fixed names inside the lab's namespaces. Links live only inside the lab's
// own namespaces, so they need no prefix to stay apart from anything else.
const (
	// HostLink is the name of every host's veth.
	HostLink = "eth0"
	// BridgeLink is the name of the bridge in the switch namespace.
	BridgeLink = "br0"
	// switchName is the switch namespace's suffix after the prefix.
	switchName = "switch"

	defaultMTU = 1500
	maxPrefix  = 64
	maxQueues  = 256
	ifNameMax  = 15 // IFNAMSIZ less the terminating NUL
)

// reservedHostNames clash with the switch namespace or a link in it.
var reservedHostNames = []string{switchName, BridgeLink, "lo"}

// nsName is the named network namespace of the host (or switch) name.
func nsName(prefix, name string) string { return prefix + "-" + name }

// ownedBy reports whether the named namespace ns is one that a lab with
// this prefix could have made. The remainder after "PREFIX-" must be a
// valid host name (which has no '-') or the switch, so Cleanup("xlb") never
// touches "xlb-demo-client", the leftovers of prefix "xlb-demo".
func ownedBy(prefix, ns string) bool {
	rest, ok := strings.CutPrefix(ns, prefix+"-")
	if !ok {
		return false
	}
	return rest == switchName || checkHostName(rest) == nil
}

// hostMAC is the locally administered unicast MAC of the host at index i:
// 02:00:00:00:HI:LO with HI:LO = i+1, so captures read as "host 1, 2, ...".
func hostMAC(i int) [6]byte {
	n := i + 1
	return [6]byte{0x02, 0, 0, 0, byte(n >> 8), byte(n)}
}

func checkPrefix(p string) error {
	if p == "" || len(p) > maxPrefix {
		return fmt.Errorf("%w: prefix %q must be 1 to %d characters", ErrInvalidSpec, p, maxPrefix)
	}
	if p[0] == '-' || p[0] == '.' {
		return fmt.Errorf("%w: prefix %q must not start with '-' or '.'", ErrInvalidSpec, p)
	}
	for _, c := range p {
		if !isNameChar(c) && c != '-' && c != '.' {
			return fmt.Errorf("%w: prefix %q: character %q not in [A-Za-z0-9_.-]", ErrInvalidSpec, p, c)
		}
	}
	return nil
}

func checkHostName(n string) error {
	return checkName("host name", n, reservedHostNames)
}

// checkName checks an interface or host name: what is a name of 1 to 15
// characters of [A-Za-z0-9_], not one of reserved.
func checkName(what, n string, reserved []string) error {
	if n == "" || len(n) > ifNameMax {
		return fmt.Errorf("%w: %s %q must be 1 to %d characters", ErrInvalidSpec, what, n, ifNameMax)
	}
	for _, c := range n {
		if !isNameChar(c) {
			return fmt.Errorf("%w: %s %q: character %q not in [A-Za-z0-9_]", ErrInvalidSpec, what, n, c)
		}
	}
	if slices.Contains(reserved, n) {
		return fmt.Errorf("%w: %s %q is reserved", ErrInvalidSpec, what, n)
	}
	return nil
}

// pairMAC is the MAC of end (1 for A, 2 for B) of the pair at index i.
func pairMAC(i int, end byte) [6]byte {
	n := i + 1
	return [6]byte{0x02, 0, 0x01, byte(n >> 8), byte(n), end}
}

func isNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// checkSysctlKey accepts dotted keys under net. only: those are per network
// namespace, every other sysctl would change the whole machine.
func checkSysctlKey(key string) error {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "/") || strings.Contains(key, "..") || strings.HasSuffix(key, ".") {
		return fmt.Errorf("lab: sysctl %q: want a dotted key under net. such as net.ipv4.conf.all.rp_filter", key)
	}
	return nil
}

// normalize validates spec and returns a copy with defaults filled in.
func (spec Spec) normalize() (Spec, error) {
	if err := checkPrefix(spec.Prefix); err != nil {
		return Spec{}, err
	}
	if len(spec.Hosts) == 0 {
		return Spec{}, fmt.Errorf("%w: no hosts", ErrInvalidSpec)
	}
	if len(spec.Hosts) > 0xfffe {
		return Spec{}, fmt.Errorf("%w: %d hosts, at most %d", ErrInvalidSpec, len(spec.Hosts), 0xfffe)
	}
	out := spec
	out.Hosts = make([]HostSpec, len(spec.Hosts))
	names := make(map[string]bool, len(spec.Hosts))
	addrs := addrOwners{}
	maxMTU := 0
	for i, h := range spec.Hosts {
		if err := h.check(); err != nil {
			return Spec{}, err
		}
		if names[h.Name] {
			return Spec{}, fmt.Errorf("%w: host name %q used twice", ErrInvalidSpec, h.Name)
		}
		names[h.Name] = true
		if err := addrs.add(h.Name, h.Addr, h.Addr6); err != nil {
			return Spec{}, err
		}
		if h.NoSwitch {
			out.Hosts[i] = h
			continue
		}
		if h.MTU == 0 {
			h.MTU = defaultMTU
		}
		maxMTU = max(maxMTU, h.MTU)
		out.Hosts[i] = h
	}
	out.Pairs = make([]PairSpec, len(spec.Pairs))
	ifnames := map[[2]string]bool{}
	for i, p := range spec.Pairs {
		if p.MTU == 0 {
			p.MTU = defaultMTU
		}
		if p.Queues == 0 {
			p.Queues = 1
		}
		if err := p.check(out.Hosts, ifnames, addrs); err != nil {
			return Spec{}, fmt.Errorf("%w (pair %d)", err, i)
		}
		out.Pairs[i] = p
	}
	switch {
	case maxMTU == 0: // no host on the switch
		if spec.BridgeMTU != 0 {
			return Spec{}, fmt.Errorf("%w: bridge MTU %d without a host on the switch", ErrInvalidSpec, spec.BridgeMTU)
		}
	case spec.BridgeMTU == 0:
		out.BridgeMTU = maxMTU
	case spec.BridgeMTU < maxMTU:
		return Spec{}, fmt.Errorf("%w: bridge MTU %d below the largest host MTU %d", ErrInvalidSpec, spec.BridgeMTU, maxMTU)
	case spec.BridgeMTU > 65535:
		return Spec{}, fmt.Errorf("%w: bridge MTU %d above 65535", ErrInvalidSpec, spec.BridgeMTU)
	}
	return out, nil
}

// addrOwners maps each address of a spec to the host that has it.
type addrOwners map[netip.Addr]string

// add records host's addresses, failing on one another host has.
func (o addrOwners) add(host string, addrs ...netip.Prefix) error {
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		if other, dup := o[a.Addr()]; dup && other != host {
			return fmt.Errorf("%w: hosts %q and %q share address %s", ErrInvalidSpec, other, host, a.Addr())
		}
		o[a.Addr()] = host
	}
	return nil
}

func (h HostSpec) check() error {
	if err := checkHostName(h.Name); err != nil {
		return err
	}
	if h.NoSwitch {
		if h.Addr.IsValid() || h.Addr6.IsValid() || h.MTU != 0 || len(h.Routes) > 0 || h.PortXDP || h.InlineVLAN {
			return fmt.Errorf("%w: host %q: NoSwitch with Addr, Addr6, MTU, Routes, PortXDP or InlineVLAN, which are eth0's; put addresses and routes on its pairs' ends", ErrInvalidSpec, h.Name)
		}
		return h.checkLo()
	}
	if !h.Addr.IsValid() || !h.Addr.Addr().Is4() || h.Addr.Bits() < 1 || h.Addr.Bits() > 31 {
		return fmt.Errorf("%w: host %q: address %s: want an IPv4 address with a /1 to /31 prefix", ErrInvalidSpec, h.Name, h.Addr)
	}
	if h.Addr6.IsValid() && (!h.Addr6.Addr().Is6() || h.Addr6.Addr().Is4In6() || h.Addr6.Bits() < 1 || h.Addr6.Bits() > 127) {
		return fmt.Errorf("%w: host %q: address %s: want an IPv6 address with a /1 to /127 prefix", ErrInvalidSpec, h.Name, h.Addr6)
	}
	minMTU := 68
	if h.Addr6.IsValid() {
		minMTU = 1280
	}
	if h.MTU != 0 && (h.MTU < minMTU || h.MTU > 65535) {
		return fmt.Errorf("%w: host %q: MTU %d not in [%d, 65535]", ErrInvalidSpec, h.Name, h.MTU, minMTU)
	}
	if err := checkRoutes(h.Name, h.Routes, h.Addr6.IsValid()); err != nil {
		return err
	}
	return h.checkLo()
}

// checkLo checks what every host may have: lo addresses and sysctls.
func (h HostSpec) checkLo() error {
	for _, a := range h.LoAddrs {
		if !a.IsValid() || a.Addr().Is4In6() {
			return fmt.Errorf("%w: host %q: lo address %s invalid", ErrInvalidSpec, h.Name, a)
		}
	}
	for k := range h.Sysctls {
		if err := checkSysctlKey(k); err != nil {
			return fmt.Errorf("%w: host %q: %w", ErrInvalidSpec, h.Name, err)
		}
	}
	return nil
}

// checkRoutes checks host's routes through one interface; has6 says
// whether the interface has an IPv6 address for IPv6 gateways.
func checkRoutes(host string, routes []Route, has6 bool) error {
	for _, r := range routes {
		if !r.Dst.IsValid() || !r.Via.IsValid() || r.Dst.Addr().Is4() != r.Via.Is4() {
			return fmt.Errorf("%w: host %q: route %s via %s: want a prefix and a gateway of one family", ErrInvalidSpec, host, r.Dst, r.Via)
		}
		if r.Via.Is6() && !has6 {
			return fmt.Errorf("%w: host %q: IPv6 route %s via %s through an interface without an IPv6 address", ErrInvalidSpec, host, r.Dst, r.Via)
		}
	}
	return nil
}

// check validates a pair whose MTU and Queues have their defaults, given
// the normalized hosts; ifnames holds the (host, interface) names taken so
// far, and addrs the addresses.
func (p PairSpec) check(hosts []HostSpec, ifnames map[[2]string]bool, addrs addrOwners) error {
	if p.Queues < 1 || p.Queues > maxQueues {
		return fmt.Errorf("%w: %d queues, want 1 to %d", ErrInvalidSpec, p.Queues, maxQueues)
	}
	has6 := false
	for _, e := range []EndSpec{p.A, p.B} {
		for _, a := range e.Addrs {
			has6 = has6 || a.Addr().Is6()
		}
	}
	minMTU := 68
	if has6 {
		minMTU = 1280
	}
	if p.MTU < minMTU || p.MTU > 65535 {
		return fmt.Errorf("%w: MTU %d not in [%d, 65535]", ErrInvalidSpec, p.MTU, minMTU)
	}
	for _, e := range []EndSpec{p.A, p.B} {
		i := slices.IndexFunc(hosts, func(h HostSpec) bool { return h.Name == e.Host })
		if i < 0 {
			return fmt.Errorf("%w: end %q: no host %q", ErrInvalidSpec, e.Name, e.Host)
		}
		reserved := []string{"lo"}
		if !hosts[i].NoSwitch {
			reserved = append(reserved, HostLink)
		}
		if err := checkName("interface", e.Name, reserved); err != nil {
			return fmt.Errorf("%w (host %q)", err, e.Host)
		}
		key := [2]string{e.Host, e.Name}
		if ifnames[key] {
			return fmt.Errorf("%w: host %q: interface %q used twice", ErrInvalidSpec, e.Host, e.Name)
		}
		ifnames[key] = true
		e6 := false
		for _, a := range e.Addrs {
			if !a.IsValid() || a.Addr().Is4In6() {
				return fmt.Errorf("%w: host %q: %s: address %s invalid", ErrInvalidSpec, e.Host, e.Name, a)
			}
			e6 = e6 || a.Addr().Is6()
		}
		if err := addrs.add(e.Host, e.Addrs...); err != nil {
			return err
		}
		if err := checkRoutes(e.Host, e.Routes, e6); err != nil {
			return err
		}
	}
	return nil
}
