package engine

import (
	"fmt"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/hash"
)

// Native mode runs the same plan in the kernel: the lb XDP program does the
// VIP match, the flow hash, the Maglev lookup and the IPIP encapsulation
// with XDP_TX. Its maps are written from the same plan spec the Go workers
// read (same tables, same stable backend IDs), so a flow gets the same
// backend in both modes, and reloads, drains and health changes apply the
// same way.

// startNative loads the lb program, fills its maps and attaches it.
func (e *Engine) startNative() error {
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
	if err := lb.SetSource(dp.Source.As4(), e.srcMAC, e.mtu); err != nil {
		return err
	}
	if err := e.publish(); err != nil { // writes the maps
		return err
	}
	if e.mode, err = lb.Attach(e.ifindex, dp.XDPMode); err != nil {
		return err
	}
	e.log.Info("native XDP load balancer attached", "interface", e.ifname, "xdp_mode", e.mode, "source", dp.Source, "mtu", e.mtu, "flow_table", dp.FlowTableSize)
	return nil
}

// syncLB writes plan spec s into the lb program's maps: backends first (new
// IDs must exist before a table names them; a backend that is gone or down
// gets the zero entry, so its tracked flows pick again), then each VIP's
// table, then the VIPs.
func (e *Engine) syncLB(s datapath.PlanSpec) error {
	n := int(e.ids.next)
	if max := e.lb.Options().MaxBackends; n > max {
		return fmt.Errorf("engine: native mode: %d backend IDs used, the lb program holds %d: restart xlb", n, max)
	}
	backends := make([]bpf.LBBackend, n)
	for _, v := range s.VIPs {
		for _, b := range v.Backends {
			if !b.Down {
				backends[b.ID] = bpf.LBBackend{Addr: b.Addr, MAC: b.MAC, Resolved: b.Resolved}
			}
		}
	}
	if err := e.lb.SetBackends(backends); err != nil {
		return err
	}
	vips := make([]bpf.VIPEntry, len(s.VIPs))
	for i, v := range s.VIPs {
		slots := make([]uint32, v.Table.Size())
		for j, bi := range v.Table.Slots() {
			slots[j] = hash.EmptySlot
			if bi != hash.EmptySlot {
				slots[j] = v.Backends[bi].ID
			}
		}
		if err := e.lb.SetTable(uint32(i), slots); err != nil {
			return err
		}
		vips[i] = bpf.VIPEntry{Key: bpf.NewVIPKey(v.Addr, v.Port, v.Proto), ID: uint32(i)}
	}
	return e.lb.SetVIPs(vips)
}
