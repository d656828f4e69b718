package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// The balancer lab's addresses, in 198.18.0.0/24. Backends follow from
// 198.18.0.11 (BalancerBackend).
var (
	BalancerLB     = netip.MustParsePrefix("198.18.0.1/24")
	BalancerClient = netip.MustParsePrefix("198.18.0.2/24")
)

// MTUs of the balancer lab: the client keeps 1500; the balancer and the
// backends carry 1600, so that a full-size client packet still fits after
// the 20-byte IPIP header, as deployments raise their backend path MTU.
const (
	ClientMTU = 1500
	FabricMTU = 1600
)

// BalancerBackend is the address of backend i (from 0): 198.18.0.11/24,
// .12, and so on.
func BalancerBackend(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}), 24)
}

// BalancerSpec is the lab xlb runs in for its demo, its integration tests
// and its TCP benchmark, on one switch: Hosts[0] "client", with a route to
// the IPv4 vip via the balancer; Hosts[1] "lb", the balancer, with PortXDP
// (xlb's native mode transmits with XDP_TX, which a veth drops unless its
// peer runs XDP); Hosts[2:] "be1" to "beN", the backends (at most 200),
// each holding vip on lo, where decapsulated traffic arrives. Callers
// adjust the spec (MTUs, routes, sysctls, lo addresses) before New.
func BalancerSpec(prefix string, vip netip.Addr, backends int) Spec {
	vipHost := netip.PrefixFrom(vip, vip.BitLen())
	spec := Spec{Prefix: prefix, Hosts: []HostSpec{
		{Name: "client", Addr: BalancerClient, MTU: ClientMTU, Routes: []Route{{Dst: vipHost, Via: BalancerLB.Addr()}}},
		{Name: "lb", Addr: BalancerLB, MTU: FabricMTU, PortXDP: true},
	}}
	for i := range min(backends, 200) {
		spec.Hosts = append(spec.Hosts, HostSpec{
			Name: fmt.Sprintf("be%d", i+1), Addr: BalancerBackend(i), MTU: FabricMTU, LoAddrs: []netip.Prefix{vipHost},
		})
	}
	return spec
}

// Run runs name inside the host's namespace (Command) to completion and
// returns an error that holds its output if it fails: for setup steps
// such as `xlb decap attach` on a backend.
func (h *Host) Run(ctx context.Context, name string, args ...string) error {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: %s: %s %s: %w: %s", h.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
