package engine

import (
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/hash"
)

// idAllocator hands out the stable IDs that flow tables store. An ID is
// never reused in the life of the process, so a tracked flow can never land
// on a different backend that took over its number.
type idAllocator struct {
	vips     map[vipID]uint32
	backends map[backendKey]uint32
	next     uint32
}

func newIDAllocator() *idAllocator {
	return &idAllocator{vips: map[vipID]uint32{}, backends: map[backendKey]uint32{}}
}

func (a *idAllocator) vip(k vipID) uint32 {
	id, ok := a.vips[k]
	if !ok {
		id = a.next
		a.next++
		a.vips[k] = id
	}
	return id
}

func (a *idAllocator) backend(k backendKey) uint32 {
	id, ok := a.backends[k]
	if !ok {
		id = a.next
		a.next++
		a.backends[k] = id
	}
	return id
}

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
	bs := make([]hash.Backend, len(v.Backends))
	for j, b := range v.Backends {
		w := b.EffectiveWeight()
		if down[backendKey{idOf(v), b.Address}] {
			w = 0
		}
		bs[j] = hash.Backend{Addr: b.Address, Weight: w}
	}
	t, err := hash.Build(bs, v.TableSize)
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
	counters map[backendKey]*datapath.BackendCounters
	ids      *idAllocator
	down     map[backendKey]bool // health checks say down
	workers  int
}

var forwards = map[config.Forward]datapath.Forward{config.IPIP: datapath.ForwardIPIP, config.GUE: datapath.ForwardGUE, config.DSR: datapath.ForwardDSR}

// planSpec turns the config into what the hot path needs. New backends get
// IDs and counters here.
func planSpec(in specInput) datapath.PlanSpec {
	dp := in.cfg.Datapath
	s := datapath.PlanSpec{Source: dp.Source, Source6: dp.Source6, TCPTimeout: dp.FlowTCPTimeout, UDPTimeout: dp.FlowUDPTimeout, VIPs: make([]datapath.VIPSpec, len(in.cfg.VIPs))}
	for i, v := range in.cfg.VIPs {
		vs := datapath.VIPSpec{
			Addr: v.Address, Port: v.Port, Proto: uint8(v.Protocol), Forward: forwards[v.Forward], GUEPort: v.GUEPort,
			ICMPEcho: v.ICMPEcho,
			ID:       in.ids.vip(idOf(v)), Table: in.tables[i], Backends: make([]datapath.BackendSpec, len(v.Backends)),
		}
		for j, b := range v.Backends {
			key := backendKey{vip: idOf(v), backend: b.Address}
			c := in.counters[key]
			if c == nil {
				c = datapath.NewBackendCounters(in.workers)
				in.counters[key] = c
			}
			bs := datapath.BackendSpec{ID: in.ids.backend(key), Addr: b.Address, Down: in.down[key], Counters: c}
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
