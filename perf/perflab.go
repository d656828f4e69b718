package perf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/lab"
)

// The lab's addressing, all in 198.18.0.0/15.
var (
	vip        = netip.MustParseAddr("198.18.100.1")
	lbAddr     = netip.MustParsePrefix("198.18.0.1/24")
	genAddr    = netip.MustParsePrefix("198.18.0.2/24")
	sinkAddr   = netip.MustParsePrefix("198.18.0.20/24")
	flowSource = netip.MustParseAddr("198.18.1.1") // first flow's source; the flows use up to 64 addresses from it
)

const (
	vipPort = 80
	// The generator keeps a 1500-byte MTU; the balancer and the sink carry
	// 1600 so that a full-size frame still fits after the 20-byte IPIP
	// header, as deployments raise the MTU towards their backends.
	genMTU    = 1500
	fabricMTU = 1600
)

// Topologies for Options.Topology.
const (
	// TopologyBridge: gen, lb and sink each have a veth to one bridge, as
	// a balancer between clients and backends on one segment. Every
	// forwarded frame crosses the bridge twice, as an skb.
	TopologyBridge = "bridge"
	// TopologyDirect: one veth pair between lb and sink; the generator
	// sends from the sink's end, so frames reach lb directly and lb's
	// output comes straight back to the sink. No bridge, no skb on the
	// generator's side: closer to what a datapath costs by itself.
	TopologyDirect = "direct"
)

// directLink is the name of both ends of the direct veth pair.
const directLink = "xd0"

// perfLab is the lab every datapath is measured in: namespaces gen, lb and
// sink on one bridge, plus, in the direct topology, a veth pair between lb
// and sink. gen transmits toward lb's MAC and the VIP; whatever lb
// forwards goes to the sink's MAC, where an XDP program counts and drops
// it. Bridge forwarding entries are static, so no frame is ever flooded
// (a flooded generator frame would reach the sink without the balancer).
type perfLab struct {
	*lab.Lab
	topology string
	// The interfaces in the measured path: each host's eth0, or, in the
	// direct topology, the pair's ends, with gen the sink's end.
	gen, lb, sink lab.End
	dir           string // xlb configs and control sockets

	counter  *labprogs.Sink
	sinkLink link.Link

	// The balancer's bridge port gets a pass-all program while a datapath
	// that transmits with XDP_TX runs: a veth drops XDP_TX frames unless
	// its peer runs XDP. It is off otherwise, because it would make the
	// port copy every skb the AF_XDP datapaths send into a page first.
	pass     *ebpf.Program
	portLink link.Link
}

// newPerfLab builds the lab; queues (1 unless direct) is the number of
// queues of each end of the direct pair.
func newPerfLab(prefix, topology string, queues int) (_ *perfLab, err error) {
	if err := lab.Cleanup(prefix); err != nil {
		return nil, err
	}
	spec := lab.Spec{Prefix: prefix, Hosts: []lab.HostSpec{
		// PortXDP: the generator's frames are XDP transmissions (live
		// frames), which its bridge port must run XDP to accept.
		{Name: "gen", Addr: genAddr, MTU: genMTU, PortXDP: true},
		{Name: "lb", Addr: lbAddr, MTU: fabricMTU},
		{Name: "sink", Addr: sinkAddr, MTU: fabricMTU},
	}}
	if topology == TopologyDirect {
		// Offloads as the kernel makes a veth: the measured path is
		// XDP and AF_XDP frames, which carry full checksums.
		spec.Pairs = []lab.PairSpec{{
			A: lab.EndSpec{Host: "lb", Name: directLink}, B: lab.EndSpec{Host: "sink", Name: directLink},
			MTU: fabricMTU, Queues: queues, KeepChecksumOffload: true,
		}}
	}
	l, err := lab.New(spec)
	if err != nil {
		return nil, err
	}
	p := &perfLab{Lab: l, topology: topology, gen: l.Hosts["gen"].End(), lb: l.Hosts["lb"].End(), sink: l.Hosts["sink"].End()}
	if topology == TopologyDirect {
		p.lb, p.sink = l.Pairs[0].A, l.Pairs[0].B
		p.gen = p.sink
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	if p.dir, err = os.MkdirTemp("", "xlbperf"); err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	for _, name := range []string{"gen", "lb", "sink"} {
		if err := p.staticFDB(l.Hosts[name]); err != nil {
			return nil, err
		}
	}
	if p.counter, err = labprogs.LoadSink(p.lb.MAC); err != nil {
		return nil, err
	}
	if p.sinkLink, err = attach(p.sink.Host, p.counter.Program(), p.sink.Ifindex); err != nil {
		return nil, err
	}
	if p.pass, err = labprogs.LoadPass(); err != nil {
		return nil, err
	}
	return p, nil
}

// staticFDB pins h's MAC to its bridge port (`bridge fdb add MAC dev PORT
// master static`), so the bridge never floods frames for it.
func (p *perfLab) staticFDB(h *lab.Host) error {
	return p.Switch.Do(func() error {
		port, err := netlink.LinkByName(h.Port)
		if err != nil {
			return fmt.Errorf("perf: bridge port %s: %w", h.Port, err)
		}
		err = netlink.NeighAdd(&netlink.Neigh{
			LinkIndex:    port.Attrs().Index,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_MASTER,
			State:        netlink.NUD_NOARP,
			HardwareAddr: net.HardwareAddr(h.MAC[:]),
		})
		if err != nil {
			return fmt.Errorf("perf: static fdb entry for %s on %s: %w", net.HardwareAddr(h.MAC[:]), h.Port, err)
		}
		return nil
	})
}

// attach attaches prog in native mode to the interface ifindex of h's
// namespace, with a bpf_link (gone when closed or when the process dies).
func attach(h *lab.Host, prog *ebpf.Program, ifindex int) (link.Link, error) {
	var l link.Link
	err := h.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("perf: attach %s to ifindex %d in %s: %w", prog, ifindex, h.NS, err)
	}
	return l, nil
}

// setPortXDP attaches (on) or detaches the pass-all program on the
// balancer's bridge port. The direct topology has no port in the path (the
// sink's counting program receives lb's XDP_TX frames).
func (p *perfLab) setPortXDP(on bool) error {
	if p.topology == TopologyDirect {
		return nil
	}
	if !on {
		if p.portLink == nil {
			return nil
		}
		err := p.portLink.Close()
		p.portLink = nil
		if err != nil {
			return fmt.Errorf("perf: detach from bridge port %s: %w", p.lb.Host.Port, err)
		}
		return nil
	}
	if p.portLink != nil {
		return nil
	}
	var idx int
	err := p.Switch.Do(func() error {
		port, err := netlink.LinkByName(p.lb.Host.Port)
		if err != nil {
			return err
		}
		idx = port.Attrs().Index
		return nil
	})
	if err != nil {
		return fmt.Errorf("perf: bridge port %s: %w", p.lb.Host.Port, err)
	}
	p.portLink, err = attach(p.Switch, p.pass, idx)
	return err
}

// backends returns n backend addresses from the sink's own, consecutive:
// all reach the sink, whose MAC the configs give as their next hop.
func backends(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := sinkAddr.Addr()
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// Close detaches and unloads the lab's programs and deletes its
// namespaces and files. It is safe after a partial newPerfLab.
func (p *perfLab) Close() error {
	errs := []error{p.setPortXDP(false)}
	if p.sinkLink != nil {
		errs = append(errs, p.sinkLink.Close())
	}
	if p.counter != nil {
		errs = append(errs, p.counter.Close())
	}
	if p.pass != nil {
		errs = append(errs, p.pass.Close())
	}
	if p.dir != "" {
		errs = append(errs, os.RemoveAll(p.dir))
	}
	errs = append(errs, p.Lab.Close())
	return errors.Join(errs...)
}
