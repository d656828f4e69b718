package ecmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/lab"
)

// Spec describes an ECMP lab. Zero values take the defaults noted.
type Spec struct {
	// Prefix starts every namespace name, as lab.Spec.Prefix;
	// lab.Cleanup(Prefix) removes what a crashed run left.
	Prefix string
	// Balancers, Backends and Clients are host counts: 1 to 50 balancers
	// (default 3), 0 to 50 backends and clients (default 1 each).
	Balancers, Backends, Clients int
	// RouterASN and BalancerASN are the ASes of the router and of every
	// balancer (default 65000 and 65001): the balancers announce the same
	// AS path, which BIRD needs to merge their routes into one multipath.
	RouterASN, BalancerASN uint32
	// HoldTime is the router's proposed hold time; the session uses the
	// smaller of both sides. Zero means 3s, BIRD's (and RFC 4271's) least,
	// so a test sees a silent balancer removed in a few seconds.
	HoldTime time.Duration
	// VIPOnBalancers puts VIP and VIP6 on every balancer's lo as well, so
	// the balancer hosts themselves answer for the VIPs: a test can then
	// see how the router spreads flows without running the datapath.
	VIPOnBalancers bool
	// Password, if set, is the TCP MD5 password (RFC 2385) of every
	// session: at most 80 bytes, no quote, backslash or newline.
	Password string
}

// Fixed addresses of the topology (see the package documentation).
var (
	FabricNet  = netip.MustParsePrefix("198.18.0.0/24")
	FabricNet6 = netip.MustParsePrefix("2001:db8::/64")
	// ClientNet and ClientNet6 hold the clients' links to the router: a
	// /30 and a /64 each.
	ClientNet  = netip.MustParsePrefix("198.18.1.0/24")
	ClientNet6 = netip.MustParsePrefix("2001:db8:1::/48")
	// VIP and VIP6 are on every backend's lo: the addresses the balancers
	// announce.
	VIP  = netip.MustParseAddr("198.18.2.1")
	VIP6 = netip.MustParseAddr("2001:db8:2::1")
)

// Host numbering on the fabric: .1 is the router, balancers from .11,
// backends from .101.
const (
	routerHost   = 1
	balancerBase = 11
	backendBase  = 101
	maxHosts     = 50
)

// hostAddr is host number n of net (n < 256).
func hostAddr(net netip.Prefix, n int) netip.Prefix {
	a := net.Addr().As16()
	if net.Addr().Is4() {
		b := net.Addr().As4()
		b[3] = byte(n)
		return netip.PrefixFrom(netip.AddrFrom4(b), net.Bits())
	}
	a[15] = byte(n)
	return netip.PrefixFrom(netip.AddrFrom16(a), net.Bits())
}

// clientLink is client i's link to the router: the router's end (the
// client's gateway) and the client's end, a /30 and a /64 each.
func clientLink(i int) (router, client [2]netip.Prefix) {
	b := ClientNet.Addr().As4()
	b[3] = byte(4 * i)
	a6 := ClientNet6.Addr().As16()
	a6[6], a6[7] = byte(i>>8), byte(i)
	at := func(n byte) [2]netip.Prefix {
		v4, v6 := b, a6
		v4[3] += n
		v6[15] = n
		return [2]netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(v4), 30), netip.PrefixFrom(netip.AddrFrom16(v6), 64)}
	}
	return at(1), at(2)
}

// Lab is a built ECMP topology with its router daemon running.
type Lab struct {
	// Base is the lab: the router, the balancers and the backends on its
	// switch, each client on a link of its own to the router.
	Base        *lab.Lab
	Router      *lab.Host
	Balancers   []*lab.Host
	Backends    []*lab.Host
	ClientHosts []*lab.Host
	// RouterAddr and RouterAddr6 are the router's fabric addresses, the
	// balancers' BGP peer.
	RouterAddr, RouterAddr6 netip.Addr
	RouterASN, BalancerASN  uint32
	// BIRD is the routing daemon on the router.
	BIRD *BIRD
}

func (s Spec) withDefaults() (Spec, error) {
	if s.Balancers == 0 {
		s.Balancers = 3
	}
	if s.Backends == 0 {
		s.Backends = 1
	}
	if s.Clients == 0 {
		s.Clients = 1
	}
	if s.RouterASN == 0 {
		s.RouterASN = 65000
	}
	if s.BalancerASN == 0 {
		s.BalancerASN = 65001
	}
	if s.HoldTime == 0 {
		s.HoldTime = 3 * time.Second
	}
	for _, n := range []int{s.Balancers, s.Backends, s.Clients} {
		if n < 1 || n > maxHosts {
			return s, fmt.Errorf("%w: ecmp: want 1 to %d balancers, backends and clients", lab.ErrInvalidSpec, maxHosts)
		}
	}
	if len(s.Password) > 80 || strings.ContainsAny(s.Password, "\"\\\n") {
		return s, fmt.Errorf("%w: ecmp: password: at most 80 bytes without quotes, backslashes or newlines", lab.ErrInvalidSpec)
	}
	if s.HoldTime < 3*time.Second || s.HoldTime%time.Second != 0 {
		return s, fmt.Errorf("%w: ecmp: hold time %v: want whole seconds, at least 3s", lab.ErrInvalidSpec, s.HoldTime)
	}
	return s, nil
}

// New builds the lab and starts BIRD on the router. On error it removes
// everything it made.
func New(spec Spec) (*Lab, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	router := lab.HostSpec{
		Name: "router", Addr: hostAddr(FabricNet, routerHost), Addr6: hostAddr(FabricNet6, routerHost), MTU: 1600,
		Sysctls: map[string]string{
			"net.ipv4.ip_forward":                "1",
			"net.ipv6.conf.all.forwarding":       "1",
			"net.ipv4.fib_multipath_hash_policy": "1", // L4: spread flows, not host pairs
			"net.ipv6.fib_multipath_hash_policy": "1",
		},
	}
	base := lab.Spec{Prefix: spec.Prefix, Hosts: []lab.HostSpec{router}}
	for i := range spec.Balancers {
		base.Hosts = append(base.Hosts, lab.HostSpec{
			Name: fmt.Sprintf("lb%d", i+1), MTU: 1600, PortXDP: true,
			Addr: hostAddr(FabricNet, balancerBase+i), Addr6: hostAddr(FabricNet6, balancerBase+i),
			// Replies to clients go through the router.
			Routes: []lab.Route{
				{Dst: ClientNet, Via: router.Addr.Addr()},
				{Dst: ClientNet6, Via: router.Addr6.Addr()},
			},
		})
		if spec.VIPOnBalancers {
			base.Hosts[len(base.Hosts)-1].LoAddrs = []netip.Prefix{netip.PrefixFrom(VIP, 32), netip.PrefixFrom(VIP6, 128)}
		}
	}
	for i := range spec.Backends {
		base.Hosts = append(base.Hosts, lab.HostSpec{
			Name: fmt.Sprintf("b%d", i+1), MTU: 1600,
			Addr: hostAddr(FabricNet, backendBase+i), Addr6: hostAddr(FabricNet6, backendBase+i),
			LoAddrs: []netip.Prefix{netip.PrefixFrom(VIP, 32), netip.PrefixFrom(VIP6, 128)},
			Routes: []lab.Route{
				{Dst: ClientNet, Via: router.Addr.Addr()},
				{Dst: ClientNet6, Via: router.Addr6.Addr()},
			},
		})
	}
	// Clients are off the switch, each on a link of its own to the
	// router, so whatever they send to a VIP is routed by the router.
	for i := range spec.Clients {
		name := fmt.Sprintf("c%d", i+1)
		gw, addrs := clientLink(i)
		base.Hosts = append(base.Hosts, lab.HostSpec{Name: name, NoSwitch: true})
		base.Pairs = append(base.Pairs, lab.PairSpec{
			A: lab.EndSpec{Host: "router", Name: name, Addrs: gw[:]},
			B: lab.EndSpec{Host: name, Name: lab.HostLink, Addrs: addrs[:], Routes: []lab.Route{
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gw[0].Addr()},
				{Dst: netip.MustParsePrefix("::/0"), Via: gw[1].Addr()},
			}},
		})
	}
	l := &Lab{RouterASN: spec.RouterASN, BalancerASN: spec.BalancerASN}
	if l.Base, err = lab.New(base); err != nil {
		return nil, err
	}
	hosts := l.Base.HostList() // router, balancers, backends, clients
	l.Router = hosts[0]
	l.RouterAddr, l.RouterAddr6 = l.Router.Addr, l.Router.Addr6
	l.Balancers = hosts[1 : 1+spec.Balancers]
	l.Backends = hosts[1+spec.Balancers : 1+spec.Balancers+spec.Backends]
	l.ClientHosts = hosts[1+spec.Balancers+spec.Backends:]
	if l.BIRD, err = startBIRD(l.Router, birdConfig(spec, l)); err != nil {
		return nil, errors.Join(err, l.Base.Close())
	}
	return l, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Close stops BIRD, then removes the lab. It is idempotent.
func (l *Lab) Close() error {
	return errors.Join(l.BIRD.Close(), l.Base.Close())
}

// Nexthops returns the gateways of the router's kernel route for exactly
// prefix in its main table, sorted: several for a multipath route, none
// when there is no route.
func (l *Lab) Nexthops(prefix netip.Prefix) ([]netip.Addr, error) {
	h, err := netns.GetFromName(l.Router.NS)
	if err != nil {
		return nil, fmt.Errorf("ecmp: open %s: %w", l.Router.NS, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("ecmp: netlink in %s: %w", l.Router.NS, err)
	}
	defer nl.Close()
	family := netlink.FAMILY_V4
	if prefix.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	routes, err := nl.RouteListFiltered(family, &netlink.Route{Dst: prefixNet(prefix), Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("ecmp: routes for %s: %w", prefix, err)
	}
	var out []netip.Addr
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	for _, r := range routes {
		add(r.Gw)
		for _, nh := range r.MultiPath {
			add(nh.Gw)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// WaitNexthops polls the router's route for prefix every 100ms until its
// gateways are exactly want (in any order; empty: no route), or ctx ends,
// which is an error naming what the route had last.
func (l *Lab) WaitNexthops(ctx context.Context, prefix netip.Prefix, want ...netip.Addr) error {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := l.Nexthops(prefix)
		if err != nil {
			return err
		}
		if slices.Equal(got, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ecmp: route %s: next hops %v, want %v: %w", prefix, got, want, ctx.Err())
		case <-tick.C:
		}
	}
}
