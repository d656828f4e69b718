package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/hash"
)

// Forward is how a VIP's packets reach their backend.
type Forward uint8

const (
	// ForwardIPIP encapsulates in IP-in-IP (IPv4 or IPv6 outer header by
	// the backend's family).
	ForwardIPIP Forward = iota
	// ForwardGUE encapsulates in UDP (Generic UDP Encapsulation).
	ForwardGUE
	// ForwardDSR rewrites only the Ethernet header: the backend holds the
	// VIP address itself.
	ForwardDSR
)

// PlanSpec is everything the hot path needs, as the control plane hands it
// over: outer sources, flow timeouts and, per VIP, its match key, forwarding
// method, flags, Maglev table and backends.
type PlanSpec struct {
	// Source and Source6 are the outer source addresses for IPv4 and IPv6
	// backends; unset, packets to that family count no_source drops.
	Source, Source6 netip.Addr
	// Flow idle timeouts, applied by each worker to its own flow tables
	// when it first sees the plan (see Forwarder.BeginBatch).
	TCPTimeout, UDPTimeout time.Duration
	// ICMPRate limits the ICMP messages each worker originates (echo
	// replies, frag-needed and packet-too-big).
	ICMPRate ICMPRate
	// SYNRate is the SYN flood guard: at most this many SYNs a second,
	// per worker, create flow entries; past it, a SYN of a flow the
	// worker does not track is forwarded by its Maglev pick without an
	// entry (event syn_untracked), and the flow's first other packet
	// makes one. 0 means no limit. As the native program's (syn_guard in
	// bpf/lb.c, which says why).
	SYNRate uint32
	VIPs    []VIPSpec
}

// ICMPRate is a token bucket: PerSecond tokens a second, at most Burst
// saved up; each message the worker originates takes one. PerSecond 0
// means no limit. Like the kernel's icmp_ratelimit, it keeps the balancer
// from being turned into a reflector of pings or too-big errors.
type ICMPRate struct {
	PerSecond, Burst uint32
}

// VIPSpec is one VIP as the hot path sees it.
type VIPSpec struct {
	Addr    netip.Addr
	Port    uint16 // 0: every port of Addr
	Proto   uint8  // IP protocol number
	Forward Forward
	GUEPort uint16 // outer UDP destination port when Forward is ForwardGUE
	// ICMPEcho: answer echo requests to the VIP's address (the first VIP on
	// an address decides).
	ICMPEcho bool
	// ID is the VIP's stable ID, stored in the flow tables: a tracked flow is
	// trusted only while its entry names the same VIP ID.
	ID uint32
	// Table maps a flow hash to an index into Backends.
	Table    *hash.Table
	Backends []BackendSpec
}

// BackendSpec is one backend of a VIP.
type BackendSpec struct {
	// ID is the backend's stable ID, stored in the flow tables: a tracked
	// flow stays on the backend with that ID while a plan has it up. Its
	// low IDIndexBits bits are an index, unique within a plan; the rest is
	// a generation that the control plane bumps when it gives the index to
	// another backend, so a flow still carrying the old ID re-picks.
	ID   uint32
	Addr netip.Addr
	// MAC is the next hop's address when Resolved; unresolved backends
	// count no_neighbor drops.
	MAC      [6]byte
	Resolved bool
	// Down: health checks hold it down. Its table has no slots for it (the
	// control plane built it so) and its tracked flows take a fresh
	// decision.
	Down bool
	// Counters is carried from plan to plan while the backend stays, so a
	// new plan does not reset them. Required.
	Counters *BackendCounters
}

// IDIndexBits is how many low bits of a backend ID index the plan's
// backends; the high bits are the index's generation.
const IDIndexBits = 16

// IDIndex is the index part of a backend ID.
func IDIndex(id uint32) uint32 { return id & (1<<IDIndexBits - 1) }

// Plan is the immutable forwarding state the workers read per packet. The
// control plane builds it with NewPlan and publishes it whole through an
// atomic.Pointer.
type Plan struct {
	vips  []vipState
	index vipIndex
	src   [4]byte // outer source addresses (reloadable, so they live here)
	src6  [16]byte
	// byID maps a backend ID's index to its state in this plan; nil, or a
	// backend whose full ID differs from the one a flow stored, means the
	// flow's backend is gone or down, and it takes a fresh Maglev decision.
	byID                   []*backendState
	tcpTimeout, udpTimeout time.Duration
	icmpRate               ICMPRate
	synRate                uint32
}

type vipState struct {
	id       uint32
	forward  Forward
	guePort  uint16
	icmpEcho bool
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

// NewPlan builds the plan for s. It copies what it needs: s may be reused.
func NewPlan(s PlanSpec) (*Plan, error) {
	p := &Plan{vips: make([]vipState, len(s.VIPs)), tcpTimeout: s.TCPTimeout, udpTimeout: s.UDPTimeout, icmpRate: s.ICMPRate, synRate: s.SYNRate}
	if s.Source.Is4() {
		p.src = s.Source.As4()
	}
	if s.Source6.Is6() {
		p.src6 = s.Source6.As16()
	}
	var indexes uint32
	for i, v := range s.VIPs {
		if v.Table == nil {
			return nil, fmt.Errorf("datapath: vip %s has no table", vipName(v))
		}
		vs := vipState{id: v.ID, forward: v.Forward, guePort: v.GUEPort, icmpEcho: v.ICMPEcho, table: v.Table, backends: make([]backendState, len(v.Backends))}
		for j, b := range v.Backends {
			if b.Counters == nil {
				return nil, fmt.Errorf("datapath: vip %s backend %s has no counters", vipName(v), b.Addr)
			}
			bs := backendState{id: b.ID, counters: b.Counters, mac: b.MAC, resolved: b.Resolved}
			if b.Addr.Is4() {
				bs.addr = b.Addr.As4()
			} else {
				bs.addr6, bs.v6 = b.Addr.As16(), true
			}
			vs.backends[j] = bs
			indexes = max(indexes, IDIndex(b.ID)+1)
		}
		p.vips[i] = vs
	}
	p.byID = make([]*backendState, indexes)
	taken := make([]bool, indexes)
	for i, v := range s.VIPs {
		for j, b := range v.Backends {
			x := IDIndex(b.ID)
			if taken[x] {
				return nil, fmt.Errorf("datapath: vip %s backend %s: ID index %d used twice", vipName(v), b.Addr, x)
			}
			taken[x] = true
			if !b.Down {
				p.byID[x] = &p.vips[i].backends[j]
			}
		}
	}
	idx, err := newVIPIndex(s.VIPs)
	if err != nil {
		return nil, err
	}
	p.index = idx
	return p, nil
}

// BackendCounters holds one backend's packet and byte counters, one padded
// slot per worker so that workers on different CPUs never share a cache line.
type BackendCounters struct {
	slots []backendSlot
	rtt   []rttSlot // handshake RTT histograms, one per worker
}

type backendSlot struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [48]byte
}

// NewBackendCounters returns counters for a plan served by workers workers
// (Forwarder number i writes slot i).
func NewBackendCounters(workers int) *BackendCounters {
	return &BackendCounters{slots: make([]backendSlot, workers), rtt: make([]rttSlot, workers)}
}

// Totals sums the counters over every worker.
func (c *BackendCounters) Totals() (packets, bytes uint64) {
	for i := range c.slots {
		packets += c.slots[i].packets.Load()
		bytes += c.slots[i].bytes.Load()
	}
	return packets, bytes
}

// ErrNoVIP: the flow's destination is not a VIP of the plan.
var ErrNoVIP = errors.New("not a VIP")

// ErrNoBackend: the VIP's table is empty (every backend drained or down).
var ErrNoBackend = errors.New("no backend with a weight")

// Lookup answers which VIP (index into PlanSpec.VIPs) and backend (index
// into its Backends) a new flow from src to dst gets: the same VIP match,
// flow hash and Maglev lookup as Forward, without a packet.
func (p *Plan) Lookup(proto uint8, src, dst netip.AddrPort) (vip, backend int, err error) {
	h, ok := hash.FlowOf(proto, src, dst)
	if !ok {
		return -1, -1, fmt.Errorf("datapath: lookup %s -> %s: mixed address families", src, dst)
	}
	d := dst.Addr().Unmap()
	var k vipKey
	if d.Is4() {
		da := d.As4()
		k = vipKey4(binary.LittleEndian.Uint32(da[:]), dst.Port(), proto)
	} else {
		da := d.As16()
		k = vipKey6(&da, dst.Port(), proto)
	}
	vi := p.index.lookup(k)
	if vi < 0 {
		return -1, -1, fmt.Errorf("datapath: lookup %s proto %d: %w", dst, proto, ErrNoVIP)
	}
	bi := p.vips[vi].table.Lookup(h)
	if bi < 0 {
		return int(vi), -1, fmt.Errorf("datapath: lookup %s proto %d: %w", dst, proto, ErrNoBackend)
	}
	return int(vi), int(bi), nil
}

func vipName(v VIPSpec) string {
	return fmt.Sprintf("%s/%d", netip.AddrPortFrom(v.Addr, v.Port), v.Proto)
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

func keyOf(v VIPSpec) vipKey {
	if v.Addr.Is4() {
		a := v.Addr.As4()
		return vipKey4(binary.LittleEndian.Uint32(a[:]), v.Port, v.Proto)
	}
	a := v.Addr.As16()
	return vipKey6(&a, v.Port, v.Proto)
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

func newVIPIndex(vips []VIPSpec) (vipIndex, error) {
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
