package engine

import (
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/hash"
)

// vipID is a VIP's identity across reloads: its position in the file may
// change, its (address, port, protocol) may not without it being another VIP.
type vipID struct {
	addr  netip.Addr
	port  uint16
	proto config.Protocol
}

func idOf(v config.VIP) vipID { return vipID{v.Address, v.Port, v.Protocol} }

func (k vipID) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.addr, k.port), k.proto)
}

// backendKey names a backend of a VIP across reloads, so that its counters
// (and its tracked flows) survive a change of file order or weights.
type backendKey struct {
	vip     vipID
	backend netip.Addr
}

// buildTable builds v's Maglev table. This is the expensive part of a plan
// (milliseconds per VIP) and runs off the datapath. Backends that health
// checks hold down get no slots, like drained ones.
func buildTable(v config.VIP, down map[backendKey]bool) (*hash.Table, error) {
	t, err := config.BuildTable(v.Backends, v.TableSize, func(b config.Backend) bool { return down[backendKey{idOf(v), b.Address}] })
	if err != nil {
		return nil, fmt.Errorf("engine: maglev table for vip %s: %w", v, err)
	}
	return t, nil
}

// buildTables builds one Maglev table per VIP of cfg.
func buildTables(cfg *config.Config, down map[backendKey]bool) ([]*hash.Table, error) {
	tables := make([]*hash.Table, len(cfg.VIPs))
	for i, v := range cfg.VIPs {
		t, err := buildTable(v, down)
		if err != nil {
			return nil, err
		}
		tables[i] = t
	}
	return tables, nil
}

// specInput is what a plan is built from: the config, its Maglev tables
// (built once per config and reused when only next hops or one VIP's
// health change), the next hops known so far and the counters to keep.
type specInput struct {
	cfg      *config.Config
	tables   []*hash.Table
	nexthops map[netip.Addr][6]byte
	counters map[backendKey]*datapath.BackendCounters // every backend of cfg has one
	ids      *ids                                     // every VIP and backend of cfg has one
	down     map[backendKey]bool                      // health checks say down
}

var forwards = map[config.Forward]datapath.Forward{config.IPIP: datapath.ForwardIPIP, config.GUE: datapath.ForwardGUE, config.DSR: datapath.ForwardDSR}

// planSpec turns the config into what the hot path needs.
func planSpec(in specInput) datapath.PlanSpec {
	dp := in.cfg.Datapath
	s := datapath.PlanSpec{
		Source: dp.Source, Source6: dp.Source6, TCPTimeout: dp.FlowTCPTimeout, UDPTimeout: dp.FlowUDPTimeout,
		ICMPRate: datapath.ICMPRate{PerSecond: dp.ICMPRateLimit, Burst: dp.ICMPRateBurst}, SYNRate: dp.FlowSYNRate,
		VIPs: make([]datapath.VIPSpec, len(in.cfg.VIPs)),
	}
	for i, v := range in.cfg.VIPs {
		vs := datapath.VIPSpec{
			Addr: v.Address, Port: v.Port, Proto: uint8(v.Protocol), Forward: forwards[v.Forward], GUEPort: v.GUEPort,
			ICMPEcho: v.ICMPEcho, ID: in.ids.vips[idOf(v)], Table: in.tables[i], Backends: make([]datapath.BackendSpec, len(v.Backends)),
		}
		for j, b := range v.Backends {
			key := backendKey{vip: idOf(v), backend: b.Address}
			bs := datapath.BackendSpec{ID: in.ids.backends[key], Addr: b.Address, Down: in.down[key], Counters: in.counters[key]}
			if b.HasMAC {
				bs.MAC, bs.Resolved = b.MAC, true
			} else if mac, ok := in.nexthops[b.Address]; ok {
				bs.MAC, bs.Resolved = mac, true
			}
			vs.Backends[j] = bs
		}
		s.VIPs[i] = vs
	}
	return s
}

// keepCounters returns the counters of cfg's backends: those already in
// old, new ones for the rest (for workers workers).
func keepCounters(old map[backendKey]*datapath.BackendCounters, cfg *config.Config, workers int) map[backendKey]*datapath.BackendCounters {
	out := map[backendKey]*datapath.BackendCounters{}
	for _, v := range cfg.VIPs {
		for _, b := range v.Backends {
			k := backendKey{idOf(v), b.Address}
			if out[k] = old[k]; out[k] == nil {
				out[k] = datapath.NewBackendCounters(workers)
			}
		}
	}
	return out
}
