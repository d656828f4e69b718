package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/hash"
)

// Plan is the immutable forwarding state the workers read per packet. It is
// built by the control side and published whole through an atomic.Pointer.
type Plan struct {
	vips  []vipState
	index vipIndex
	src   [4]byte // outer source addresses (reloadable, so they live here)
	src6  [16]byte
	// byID maps a backend's stable ID (what the flow tables store) to its
	// state in this plan; nil means the backend is gone or down, and a
	// tracked flow on it takes a fresh Maglev decision.
	byID []*backendState
	// Flow idle timeouts: reloadable, applied by each worker to its own
	// flow table when it first sees this plan.
	tcpTimeout, udpTimeout time.Duration
}

type vipState struct {
	cfg      config.VIP
	id       uint32
	table    *hash.Table
	backends []backendState
}

type backendState struct {
	id       uint32
	addr     [4]byte  // IPv4 backend
	addr6    [16]byte // IPv6 backend
	v6       bool
	mac      [6]byte
	resolved bool // mac is known; otherwise the packet is dropped as no_neighbor
	counters *BackendCounters
}

// BackendCounters holds one backend's packet and byte counters, one padded
// slot per worker so that workers on different CPUs never share a cache line.
// The same object is carried from plan to plan while the backend stays, so a
// new plan does not reset what `xlb stats` shows.
type BackendCounters struct {
	slots []backendSlot
}

type backendSlot struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [48]byte
}

func newBackendCounters(workers int) *BackendCounters {
	return &BackendCounters{slots: make([]backendSlot, workers)}
}

// Totals sums the counters over every worker.
func (c *BackendCounters) Totals() (packets, bytes uint64) {
	for i := range c.slots {
		packets += c.slots[i].packets.Load()
		bytes += c.slots[i].bytes.Load()
	}
	return packets, bytes
}

// planInput is what a plan is built from: the config, its Maglev tables (built
// once per config and reused when only next hops change), the next hops known
// so far and the counters to keep.
type planInput struct {
	cfg      *config.Config
	tables   []*hash.Table
	nexthops map[netip.Addr][6]byte
	counters map[backendKey]*BackendCounters
	ids      *idAllocator
	down     map[backendKey]bool // health checks say down
	workers  int
}

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

// backendKey names a backend of a VIP across reloads, so that its counters
// (and later its tracked flows) survive a change of file order or weights.
type backendKey struct {
	vip     vipID
	backend netip.Addr
}

// buildTables builds one Maglev table per VIP. This is the expensive part of
// a plan (milliseconds per VIP) and runs off the datapath. Backends that
// health checks hold down get no slots, like drained ones.
func buildTables(cfg *config.Config, down map[backendKey]bool) ([]*hash.Table, error) {
	tables := make([]*hash.Table, len(cfg.VIPs))
	for i, v := range cfg.VIPs {
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
			return nil, fmt.Errorf("datapath: maglev table for vip %s: %w", vipName(v), err)
		}
		tables[i] = t
	}
	return tables, nil
}

func buildPlan(in planInput) (*Plan, error) {
	p := &Plan{vips: make([]vipState, len(in.cfg.VIPs)), tcpTimeout: in.cfg.Datapath.FlowTCPTimeout, udpTimeout: in.cfg.Datapath.FlowUDPTimeout}
	// Unset for xlb lookup, which sends nothing.
	if src := in.cfg.Datapath.Source; src.Is4() {
		p.src = src.As4()
	}
	if src := in.cfg.Datapath.Source6; src.Is6() {
		p.src6 = src.As16()
	}
	for i, v := range in.cfg.VIPs {
		vs := vipState{cfg: v, id: in.ids.vip(idOf(v)), table: in.tables[i], backends: make([]backendState, len(v.Backends))}
		for j, b := range v.Backends {
			key := backendKey{vip: idOf(v), backend: b.Address}
			c := in.counters[key]
			if c == nil {
				c = newBackendCounters(in.workers)
				in.counters[key] = c
			}
			bs := backendState{id: in.ids.backend(key), counters: c}
			if b.Address.Is4() {
				bs.addr = b.Address.As4()
			} else {
				bs.addr6, bs.v6 = b.Address.As16(), true
			}
			if b.HasMAC {
				bs.mac, bs.resolved = b.MAC, true
			} else if mac, ok := in.nexthops[b.Address]; ok {
				bs.mac, bs.resolved = mac, true
			}
			vs.backends[j] = bs
		}
		p.vips[i] = vs
	}
	p.byID = make([]*backendState, in.ids.next)
	for i := range p.vips {
		v := &p.vips[i]
		for j := range v.backends {
			if b := &v.backends[j]; !in.down[backendKey{idOf(v.cfg), v.cfg.Backends[j].Address}] {
				p.byID[b.id] = b
			}
		}
	}
	idx, err := newVIPIndex(in.cfg.VIPs)
	if err != nil {
		return nil, err
	}
	p.index = idx
	return p, nil
}

func vipName(v config.VIP) string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(v.Address, v.Port), v.Protocol)
}

// vipKey is what the VIP index matches: the destination address as it sits
// in the packet, the port and the protocol, packed in three words so that a
// compare is three integer compares (the index sits on every packet's
// path). Protocol 0 with port 0 is an address marker: the first VIP on that
// address, for echo requests, which have no port.
type vipKey struct {
	lo, hi uint64 // IPv4: lo holds the address loaded little-endian; IPv6: both halves
	meta   uint32 // port | proto<<16 | family<<24
}

func vipKey4(dst uint32, port uint16, proto uint8) vipKey {
	return vipKey{lo: uint64(dst), meta: uint32(port) | uint32(proto)<<16 | 4<<24}
}

func vipKey6(dst *[16]byte, port uint16, proto uint8) vipKey {
	return vipKey{
		lo:   binary.LittleEndian.Uint64(dst[:8]),
		hi:   binary.LittleEndian.Uint64(dst[8:]),
		meta: uint32(port) | uint32(proto)<<16 | 6<<24,
	}
}

func keyOf(v config.VIP) vipKey {
	if v.Address.Is4() {
		a := v.Address.As4()
		return vipKey4(binary.LittleEndian.Uint32(a[:]), v.Port, uint8(v.Protocol))
	}
	a := v.Address.As16()
	return vipKey6(&a, v.Port, uint8(v.Protocol))
}

func (k vipKey) port() uint16 { return uint16(k.meta) }

// anyPort is k for the every-port VIP of its address and protocol.
func (k vipKey) anyPort() vipKey { k.meta &^= 0xffff; return k }

// marker is the address marker of k's address.
func (k vipKey) marker() vipKey { k.meta &= 0xff << 24; return k }

func (k *vipKey) hash() uint32 {
	x := k.lo ^ k.hi*0x9e3779b97f4a7c15 ^ uint64(k.meta)<<29
	return uint32(x * 0xbf58476d1ce4e5b9 >> 32)
}

// vipIndex maps a vipKey to a VIP's position in the plan. It is a small
// open-addressing table over a fixed array: a lookup is a multiply, a mask
// and one or two compares, with no Go map on the hot path.
type vipIndex struct {
	slots []vipSlot
	mask  uint32
}

type vipSlot struct {
	key  vipKey
	used bool
	vip  int32
}

func newVIPIndex(vips []config.VIP) (vipIndex, error) {
	size := uint32(8)
	for size < uint32(len(vips))*8 {
		size <<= 1
	}
	x := vipIndex{slots: make([]vipSlot, size), mask: size - 1}
	for i, v := range vips {
		k := keyOf(v)
		if !x.insert(k, int32(i)) {
			return vipIndex{}, fmt.Errorf("datapath: duplicate vip %s", vipName(v))
		}
		x.insert(k.marker(), int32(i)) // the first VIP on an address keeps the marker
	}
	return x, nil
}

func (x *vipIndex) insert(k vipKey, vip int32) bool {
	j := k.hash() & x.mask
	for x.slots[j].used {
		if x.slots[j].key == k {
			return false
		}
		j = (j + 1) & x.mask
	}
	x.slots[j] = vipSlot{key: k, used: true, vip: vip}
	return true
}

// lookup finds the VIP for an exact port, then for the every-port entry.
func (x *vipIndex) lookup(k vipKey) int32 {
	if v := x.find(k); v >= 0 || k.port() == 0 {
		return v
	}
	return x.find(k.anyPort())
}

// lookupAddr finds the first VIP on an address, whatever its port.
func (x *vipIndex) lookupAddr(k vipKey) int32 {
	return x.find(k.marker())
}

func (x *vipIndex) find(k vipKey) int32 {
	j := k.hash() & x.mask
	for range x.slots {
		s := &x.slots[j]
		if !s.used {
			return -1
		}
		if s.key == k {
			return s.vip
		}
		j = (j + 1) & x.mask
	}
	return -1
}
