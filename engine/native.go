package engine

import (
	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/hash"
)

// Native mode runs the same plan in the kernel: the lb XDP program does per
// packet what the Go workers do (VIP match, flow hash, flow table, Maglev
// pick, every forward mode, echo, ICMP errors, frag-needed, the fragment
// policy). Its maps are written from the same plan spec the Go workers read
// (same tables, same backend IDs with their generations), so a flow gets the
// same backend in both modes, and reloads, drains and health changes apply
// the same way.

// loadNative loads the lb program, its maps sized for cfg: every VIP index
// a table of datapath.table_size slots, the VIPs of cfg at their own sizes,
// and room for the largest table twice (a table that changes size is written
// next to the old one before the VIP switches to it).
func (e *Engine) loadNative(cfg *config.Config) error {
	dp := cfg.Datapath
	o := bpf.LBOptions{
		FlowTableSize: int(dp.FlowTableSize),
		TableSize:     dp.TableSize,
		MaxVIPs:       max(bpf.DefaultLBMaxVIPs, len(cfg.VIPs)),
	}
	o.MaglevSlots = max((o.MaxVIPs+1)*int(dp.TableSize), maglevSlots(cfg)+(o.MaxVIPs-len(cfg.VIPs))*int(dp.TableSize))
	lb, err := bpf.LoadLB(o)
	if err != nil {
		return err
	}
	e.lb = lb
	e.progID, err = programID(lb.Program())
	return err
}

// maglevSlots is how many maglev map slots cfg's tables need at once: all of
// them, and the largest a second time for a table being resized.
func maglevSlots(cfg *config.Config) int {
	n, most := 0, 0
	for _, v := range cfg.VIPs {
		n += int(v.TableSize)
		most = max(most, int(v.TableSize))
	}
	return n + most
}

// startNative fills the lb program's maps and settings and attaches it.
func (e *Engine) startNative() error {
	st := e.cur
	dp := st.cfg.Datapath
	if err := e.setNativeSettings(dp); err != nil {
		return err
	}
	if err := e.syncLB(st); err != nil {
		return err
	}
	if err := e.fwStart(e.lb.Firewall(), st.cfg); err != nil {
		return err
	}
	var err error
	if e.mode, err = e.lb.Attach(e.ifindex, dp.XDPMode); err != nil {
		return err
	}
	e.log.Info("native XDP load balancer attached", "interface", e.ifname, "xdp_mode", e.mode, "source", dp.Source, "source6", dp.Source6,
		"mtu", e.mtu, "flow_table", dp.FlowTableSize, "flow_tcp_timeout", dp.FlowTCPTimeout, "flow_udp_timeout", dp.FlowUDPTimeout,
		"icmp_rate_limit_per_cpu", dp.ICMPRateLimit, "icmp_rate_burst", dp.ICMPRateBurst, "flow_syn_rate_per_cpu", dp.FlowSYNRate)
	return nil
}

// setNativeSettings writes the outer sources, the MTU, the flow idle
// timeouts, the ICMP rate limit and the SYN flood guard of dp into the lb
// program.
func (e *Engine) setNativeSettings(dp config.Datapath) error {
	if err := e.lb.SetSource(source4(dp), e.srcMAC, e.mtu); err != nil {
		return err
	}
	if err := e.lb.SetSource6(source6(dp)); err != nil {
		return err
	}
	if err := e.lb.SetTimeouts(dp.FlowTCPTimeout, dp.FlowUDPTimeout); err != nil {
		return err
	}
	if err := e.lb.SetICMPRate(dp.ICMPRateLimit, dp.ICMPRateBurst); err != nil {
		return err
	}
	return e.lb.SetSYNRate(dp.FlowSYNRate)
}

// source4 and source6 are the outer sources of dp as the lb program takes
// them: the zero address when there is none (frames for that family's
// backends are then dropped as no_source, as the Go worker does).
func source4(dp config.Datapath) (a [4]byte) {
	if dp.Source.Is4() {
		a = dp.Source.As4()
	}
	return a
}

func source6(dp config.Datapath) (a [16]byte) {
	if dp.Source6.Is6() {
		a = dp.Source6.As16()
	}
	return a
}

// checkCapacity checks that cfg fits what was sized at start: in native
// mode, the lb program's VIP indexes and its maglev map. (Backend IDs are
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
	if n := maglevSlots(cfg); n > o.MaglevSlots {
		return cfg.Errorf("vip", "the VIPs' Maglev tables need %d slots (all tables plus the largest once more), the native program was loaded with %d: restart xlb to grow it", n, o.MaglevSlots)
	}
	return nil
}

// syncLB writes st's spec into the lb program's maps: backends first (new
// IDs must exist before a table names them; an index that is free or down
// gets the zero entry, so its tracked flows pick again), then each VIP's
// table, then the VIPs. The program keys backends by ID index and checks
// the generation a flow entry holds against the index's current one.
func (e *Engine) syncLB(st *state) error {
	backends := make([]bpf.LBBackend, st.ids.indexes())
	for i, v := range st.spec.VIPs {
		for j, b := range v.Backends {
			if !b.Down {
				local := st.cfg.VIPs[i].Backends[j].Local // the spec follows the config's order
				backends[datapath.IDIndex(b.ID)] = bpf.LBBackend{Addr: b.Addr, MAC: b.MAC, Resolved: b.Resolved, Local: local, Generation: uint16(b.ID >> datapath.IDIndexBits)}
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
				slots[j] = v.Backends[bi].ID
			}
		}
		if err := e.lb.SetTable(uint32(i), slots); err != nil {
			return err
		}
	}
	return e.lb.SetVIPs(vipEntries(st.cfg))
}
