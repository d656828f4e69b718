package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CheckHost checks the datapath settings against this network namespace and
// this process, and resolves what the file left to the host:
//
//   - the interface must exist (in the namespace of the calling thread);
//   - every queue must be below the interface's RX queue count; empty
//     Queues become every RX queue;
//   - every CPU must be in the process's affinity mask; empty CPUs become
//     the default mapping, queue q on the (q mod n)th of the n allowed CPUs;
//     CPUs given with Queues left empty must number one per RX queue;
//   - a zero Source becomes the interface's first IPv4 address and a zero
//     Source6 its first global IPv6 address. Either is required only when
//     a VIP encapsulates (ipip, gue) to backends of its family; otherwise
//     it stays zero if the interface has no such address;
//   - every backend of a dsr VIP must be on-link on the interface: the
//     kernel's route to it (RouteGet) has no gateway and leaves through
//     the interface, since DSR rewrites only the destination MAC.
//
// Errors are *Error values naming the key, like Parse's; on-link errors are
// reported for every backend, joined. CheckHost changes c only when it
// succeeds.
func (c *Config) CheckHost() error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return c.Errorf("datapath.cpus", "read CPU affinity: %v", err)
	}
	return c.CheckHostCPUs(set)
}

// CheckHostCPUs is CheckHost against the CPU set allowed instead of the
// calling thread's affinity: a running instance resolves a reloaded file's
// default CPUs against the set it started with, after it has kept its
// other threads off its workers' CPUs.
func (c *Config) CheckHostCPUs(set unix.CPUSet) error {
	dp := c.Datapath
	ifc, err := net.InterfaceByName(dp.Interface)
	if err != nil {
		return c.Errorf("datapath.interface", "no interface %q in this network namespace", dp.Interface)
	}
	nrx, err := rxQueues(ifc)
	if err != nil {
		return c.Errorf("datapath.interface", "%s: count RX queues: %v", dp.Interface, err)
	}
	if len(dp.Queues) == 0 {
		if nrx > MaxQueues && dp.Mode == ModeAFXDP {
			return c.Errorf("datapath.queues", "%s has %d RX queues and the steering program serves queues 0..%d: list the queues to serve", dp.Interface, nrx, MaxQueues-1)
		}
		dp.Queues = make([]int, nrx)
		for i := range dp.Queues {
			dp.Queues[i] = i
		}
	}
	for i, q := range dp.Queues {
		if q >= nrx {
			return c.Errorf(indexKey("datapath.queues", i), "queue %d does not exist: %s has %d RX queues", q, dp.Interface, nrx)
		}
	}

	allowed := cpuList(&set)
	if len(dp.CPUs) == 0 {
		dp.CPUs = make([]int, len(dp.Queues))
		for i, q := range dp.Queues {
			dp.CPUs[i] = allowed[q%len(allowed)]
		}
	}
	if len(dp.CPUs) != len(dp.Queues) {
		return c.Errorf("datapath.cpus", "%d cpus for %d queues (every RX queue of %s): give one CPU per queue", len(dp.CPUs), len(dp.Queues), dp.Interface)
	}
	for i, cpu := range dp.CPUs {
		if !set.IsSet(cpu) {
			return c.Errorf(indexKey("datapath.cpus", i), "CPU %d is not in this process's affinity mask %v", cpu, allowed)
		}
	}

	need4, need6 := c.outerFamilies()
	if !dp.Source.IsValid() {
		src, err := firstAddr(ifc, true)
		if err != nil && need4 != "" {
			return c.Errorf("datapath.source", "%v; set source (%s encapsulates to IPv4 backends)", err, need4)
		}
		dp.Source = src
	}
	if !dp.Source6.IsValid() {
		src, err := firstAddr(ifc, false)
		if err != nil && need6 != "" {
			return c.Errorf("datapath.source6", "%v; set source6 (%s encapsulates to IPv6 backends)", err, need6)
		}
		dp.Source6 = src
	}
	if err := c.checkOnLink(ifc); err != nil {
		return err
	}
	if err := c.checkSpliceLocal(); err != nil {
		return err
	}
	c.Datapath = dp
	return nil
}

// outerFamilies names the first VIP ("vip[2]") that encapsulates to IPv4
// backends and the first that encapsulates to IPv6 ones; "" if none does.
func (c *Config) outerFamilies() (need4, need6 string) {
	for i, v := range c.VIPs {
		if !v.Forward.Encapsulates() || len(v.Backends) == 0 {
			continue
		}
		switch {
		case v.Backends[0].Address.Is4() && need4 == "":
			need4 = indexKey("vip", i)
		case v.Backends[0].Address.Is6() && need6 == "":
			need6 = indexKey("vip", i)
		}
	}
	return need4, need6
}

// checkOnLink asks the kernel for its route to every backend of a dsr VIP:
// DSR hands the frame to the backend's MAC on the interface's own link, so
// a route through a gateway or another interface would deliver it to the
// wrong host, or not at all.
func (c *Config) checkOnLink(ifc *net.Interface) error {
	var errs []error
	for i, v := range c.VIPs {
		if v.Forward != DSR {
			continue
		}
		for j, b := range v.Backends {
			key := indexKey(indexKey("vip", i)+".backend", j) + ".address"
			if b.Local {
				continue // this host: its flows never leave it
			}
			if why := onLink(ifc, b.Address); why != "" {
				errs = append(errs, c.Errorf(key, "%s is not on-link on %s (%s): dsr backends must share the interface's link", b.Address, ifc.Name, why))
			}
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// onLink returns "" if the kernel routes a to ifc directly, else why not.
func onLink(ifc *net.Interface, a netip.Addr) string {
	routes, err := netlink.RouteGet(net.IP(a.AsSlice()))
	if err != nil {
		return fmt.Sprintf("no route: %v", err)
	}
	for _, r := range routes {
		switch {
		case r.LinkIndex != ifc.Index:
			name := strconv.Itoa(r.LinkIndex)
			if l, err := net.InterfaceByIndex(r.LinkIndex); err == nil {
				name = l.Name
			}
			return "the route leaves through " + name
		case r.Gw != nil:
			return "the route goes via the gateway " + r.Gw.String()
		}
	}
	if len(routes) == 0 {
		return "no route"
	}
	return ""
}

// rxQueues counts the interface's RX queues, as AF_XDP's bind checks them
// (real_num_rx_queues): the rx-* entries in sysfs. sysfs shows the network
// namespace it was mounted in, which need not be the calling thread's (a
// test or lab that entered a namespace with setns): when its ifindex does not
// match, the count comes from netlink instead (IFLA_NUM_RX_QUEUES, which for
// a NIC whose channels were reduced is the maximum, not the count in use).
func rxQueues(ifc *net.Interface) (int, error) {
	dir := filepath.Join("/sys/class/net", ifc.Name)
	if b, err := os.ReadFile(filepath.Join(dir, "ifindex")); err == nil {
		if idx, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && idx == ifc.Index {
			ents, err := os.ReadDir(filepath.Join(dir, "queues"))
			if err != nil {
				return 0, err
			}
			n := 0
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "rx-") {
					n++
				}
			}
			return n, nil
		}
	}
	link, err := netlink.LinkByIndex(ifc.Index)
	if err != nil {
		return 0, err
	}
	return link.Attrs().NumRxQueues, nil
}

func cpuList(set *unix.CPUSet) []int {
	var cpus []int
	for cpu := 0; len(cpus) < set.Count() && cpu < 1<<16; cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus
}

// firstAddr returns the interface's first IPv4 address (want4), or its
// first global IPv6 address: link-local ones are no source for a packet
// that may cross a router.
func firstAddr(ifc *net.Interface, want4 bool) (netip.Addr, error) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if want4 && ip.Is4() {
			return ip, nil
		}
		if !want4 && ip.Is6() && ip.IsGlobalUnicast() {
			return ip, nil
		}
	}
	if want4 {
		return netip.Addr{}, fmt.Errorf("%s has no IPv4 address", ifc.Name)
	}
	return netip.Addr{}, fmt.Errorf("%s has no global IPv6 address", ifc.Name)
}
