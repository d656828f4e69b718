package engine

import (
	"fmt"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/hash"
)

// Native mode runs the same plan in the kernel: the lb XDP program does the
// VIP match, the flow hash, the Maglev lookup and the IPIP encapsulation
// with XDP_TX. Its maps are written from the same plan spec the Go workers
// read (same tables, same backend ID indexes), so a flow gets the same
// backend in both modes, and reloads, drains and health changes apply the
// same way.

// loadNative loads the lb program, its maps sized for cfg.
func (e *Engine) loadNative(cfg *config.Config) error {
	dp := cfg.Datapath
	lb, err := bpf.LoadLB(bpf.LBOptions{
		FlowTableSize: int(dp.FlowTableSize),
		TableSize:     dp.TableSize,
		MaxVIPs:       max(bpf.DefaultLBMaxVIPs, len(cfg.VIPs)),
	})
	if err != nil {
		return err
	}
	e.lb = lb
	e.progID, err = programID(lb.Program())
	return err
}

// startNative fills the lb program's maps and attaches it.
func (e *Engine) startNative() error {
	st := e.cur
	dp := st.cfg.Datapath
	if err := e.lb.SetSource(dp.Source.As4(), e.srcMAC, e.mtu); err != nil {
		return err
	}
	if err := e.syncLB(st); err != nil {
		return err
	}
	var err error
	if e.mode, err = e.lb.Attach(e.ifindex, dp.XDPMode); err != nil {
		return err
	}
	e.log.Info("native XDP load balancer attached", "interface", e.ifname, "xdp_mode", e.mode, "source", dp.Source, "mtu", e.mtu, "flow_table", dp.FlowTableSize)
	return nil
}

// checkCapacity checks that cfg fits what was sized at start: in native
// mode, the lb program's VIP count and Maglev table size. (Backend IDs are
// checked when they are assigned.) It is the engine's side of the config
// capacity limits: what only the loaded maps know.
func (e *Engine) checkCapacity(cfg *config.Config) error {
	if e.lb == nil {
		return nil
	}
	o := e.lb.Options()
	if len(cfg.VIPs) > o.MaxVIPs {
		return cfg.Errorf("vip", "%d VIPs, the native program was loaded for %d: restart xlb to grow it", len(cfg.VIPs), o.MaxVIPs)
	}
	for i, v := range cfg.VIPs {
		if v.TableSize != o.TableSize {
			return cfg.Errorf(fmt.Sprintf("vip[%d].table_size", i), "maglev table size %d, the native program was loaded with %d slots per VIP: restart xlb to change it", v.TableSize, o.TableSize)
		}
	}
	return nil
}

// syncLB writes st's spec into the lb program's maps: backends first (new
// IDs must exist before a table names them; an index that is free or down
// gets the zero entry, so its tracked flows pick again), then each VIP's
// table, then the VIPs. The program keys backends by ID index.
func (e *Engine) syncLB(st *state) error {
	backends := make([]bpf.LBBackend, st.ids.indexes())
	for _, v := range st.spec.VIPs {
		for _, b := range v.Backends {
			if !b.Down {
				backends[datapath.IDIndex(b.ID)] = bpf.LBBackend{Addr: b.Addr, MAC: b.MAC, Resolved: b.Resolved}
			}
		}
	}
	if err := e.lb.SetBackends(backends); err != nil {
		return err
	}
	for i, v := range st.spec.VIPs {
		slots := make([]uint32, v.Table.Size())
		for j, bi := range v.Table.Slots() {
			slots[j] = hash.EmptySlot
			if bi != hash.EmptySlot {
				slots[j] = datapath.IDIndex(v.Backends[bi].ID)
			}
		}
		if err := e.lb.SetTable(uint32(i), slots); err != nil {
			return err
		}
	}
	return e.lb.SetVIPs(vipEntries(st.cfg))
}
