package datapath

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/hash"
)

// Native mode runs the same plan in the kernel: the lb XDP program does the
// VIP match, the flow hash, the Maglev lookup and the IPIP encapsulation
// with XDP_TX. Its maps are written from the same plan the Go workers read
// (same tables, same stable backend IDs), so a flow gets the same backend in
// both modes, and reloads, drains and health changes apply the same way.

// startNative loads the lb program, fills its maps and attaches it.
func (e *Engine) startNative(ifc *net.Interface, srcMAC [6]byte) error {
	dp := e.cfg.Datapath
	lb, err := bpf.LoadLB(bpf.LBOptions{
		FlowTableSize: int(dp.FlowTableSize),
		TableSize:     dp.TableSize,
		MaxVIPs:       max(bpf.DefaultLBMaxVIPs, len(e.cfg.VIPs)),
	})
	if err != nil {
		return err
	}
	e.lb = lb
	if err := lb.SetSource(dp.Source.As4(), srcMAC, ifc.MTU); err != nil {
		return err
	}
	if err := e.publish(); err != nil { // writes the maps
		return err
	}
	if e.mode, err = lb.Attach(ifc.Index, dp.XDPMode); err != nil {
		return err
	}
	e.log.Info("native XDP load balancer attached", "interface", ifc.Name, "xdp_mode", e.mode, "source", dp.Source, "mtu", ifc.MTU, "flow_table", dp.FlowTableSize)
	return nil
}

// syncLB writes plan p into the lb program's maps: backends first (new IDs
// must exist before a table names them; a backend that is gone or down
// gets the zero entry, so its tracked flows pick again), then each VIP's
// table, then the VIPs.
func (e *Engine) syncLB(p *Plan) error {
	if max := e.lb.Options().MaxBackends; len(p.byID) > max {
		return fmt.Errorf("datapath: native mode: %d backend IDs used, the lb program holds %d: restart xlb", len(p.byID), max)
	}
	backends := make([]bpf.LBBackend, len(p.byID))
	for id, b := range p.byID {
		if b != nil {
			backends[id] = bpf.LBBackend{Addr: addrOf(b), MAC: b.mac, Resolved: b.resolved}
		}
	}
	if err := e.lb.SetBackends(backends); err != nil {
		return err
	}
	vips := make([]bpf.VIPEntry, len(p.vips))
	for i := range p.vips {
		v := &p.vips[i]
		slots := make([]uint32, v.table.Size())
		for j, bi := range v.table.Slots() {
			slots[j] = hash.EmptySlot
			if bi != hash.EmptySlot {
				slots[j] = v.backends[bi].id
			}
		}
		if err := e.lb.SetTable(uint32(i), slots); err != nil {
			return err
		}
		vips[i] = bpf.VIPEntry{Key: bpf.NewVIPKey(v.cfg.Address, v.cfg.Port, uint8(v.cfg.Protocol)), ID: uint32(i)}
	}
	return e.lb.SetVIPs(vips)
}

func addrOf(b *backendState) netip.Addr {
	if b.v6 {
		return netip.AddrFrom16(b.addr6)
	}
	return netip.AddrFrom4(b.addr)
}
