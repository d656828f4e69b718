package config

import (
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
//   - a zero Source becomes the interface's first IPv4 address.
//
// Errors are *Error values naming the key, like Parse's. CheckHost changes c
// only when it succeeds.
func (c *Config) CheckHost() error {
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

	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return c.Errorf("datapath.cpus", "read CPU affinity: %v", err)
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

	if !dp.Source.IsValid() {
		src, err := firstIPv4(ifc)
		if err != nil {
			return c.Errorf("datapath.source", "%v; set source", err)
		}
		dp.Source = src
	}
	c.Datapath = dp
	return nil
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

func firstIPv4(ifc *net.Interface) (netip.Addr, error) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address", ifc.Name)
}
