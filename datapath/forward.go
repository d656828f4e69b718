package datapath

import (
	"fmt"
	"sync/atomic"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/hash"
)

// Drop names why the datapath did not forward a frame. The first values are
// the parser's reasons (packet.Reason) one to one; the rest are decisions of
// the forwarding step.
type Drop uint8

const (
	// DropNoVIP: the frame reached the worker (steered by VIP address) but
	// no VIP matches its destination port and protocol.
	DropNoVIP Drop = Drop(packet.NumReasons) + iota
	// DropNoBackend: the VIP's Maglev table is empty (every backend drained).
	DropNoBackend
	// DropNoNeighbor: the backend's next-hop MAC is not resolved yet.
	DropNoNeighbor
	// DropTooBig: the encapsulated frame would exceed the egress MTU.
	DropTooBig
	// DropNoHeadroom: the frame has no room in front of it for the header.
	DropNoHeadroom
	numDrops
)

var dropNames = [...]string{
	DropNoVIP - Drop(packet.NumReasons):      "no_vip",
	DropNoBackend - Drop(packet.NumReasons):  "no_backend",
	DropNoNeighbor - Drop(packet.NumReasons): "no_neighbor",
	DropTooBig - Drop(packet.NumReasons):     "too_big",
	DropNoHeadroom - Drop(packet.NumReasons): "no_headroom",
}

// String is the stable snake_case name shown by `xlb stats`.
func (d Drop) String() string {
	if d < Drop(packet.NumReasons) {
		return packet.Reason(d).String()
	}
	if i := int(d - Drop(packet.NumReasons)); i < len(dropNames) {
		return dropNames[i]
	}
	return "unknown"
}

// Forwarder does the per-packet work of one worker: parse, pick, encapsulate.
// It is not safe for concurrent use; each worker has its own.
type Forwarder struct {
	flows  *flowtable.Table[flowtable.Key4]
	now    uint32                  // coarse clock (ms) for the flow table, set once per batch
	worker int                     // slot in the per-backend counters
	srcMAC [6]byte                 // the interface's MAC
	mtu    int                     // egress MTU: the outer IP packet must fit
	ipID   uint16                  // outer IPv4 ID, per worker
	drops  [numDrops]atomic.Uint64 // drops are rare: an uncontended atomic add is cheap
}

// NewForwarder returns the per-packet state for worker number worker, with
// its own flow table.
func NewForwarder(worker int, srcMAC [6]byte, mtu int, flows flowtable.Config) (*Forwarder, error) {
	t, err := flowtable.New[flowtable.Key4](flows)
	if err != nil {
		return nil, fmt.Errorf("datapath: worker %d: %w", worker, err)
	}
	return &Forwarder{flows: t, worker: worker, srcMAC: srcMAC, mtu: mtu}, nil
}

// Forward rewrites the packet buf[off:off+n] in place for the backend that p
// assigns to its flow. buf is the whole frame: buf[:off] is headroom. On
// success it returns the new packet position; otherwise it counts the drop
// and returns ok=false. It never allocates.
func (f *Forwarder) Forward(p *Plan, buf []byte, off, n int) (newOff, newLen int, ok bool) {
	var fl packet.Flow
	if r := packet.ParseIPv4(buf[off:off+n], &fl); r != packet.OK {
		f.drops[r].Add(1)
		return 0, 0, false
	}
	vi := p.index.lookup(fl.Dst, fl.DstPort, fl.Proto)
	if vi < 0 {
		f.drops[DropNoVIP].Add(1)
		return 0, 0, false
	}
	v := &p.vips[vi]
	h := hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto)
	be := f.pick(p, v, &fl, buf[off:off+n], h)
	if be == nil {
		f.drops[DropNoBackend].Add(1)
		return 0, 0, false
	}
	if !be.resolved {
		f.drops[DropNoNeighbor].Add(1)
		return 0, 0, false
	}
	if off < packet.IPIPOverhead {
		f.drops[DropNoHeadroom].Add(1)
		return 0, 0, false
	}
	f.ipID++
	newOff, newLen, ok = packet.EncapIPIP(buf, off, n, &fl, p.src, be.addr, f.srcMAC, be.mac, f.ipID, f.mtu+int(fl.L3Off))
	if !ok {
		f.drops[DropTooBig].Add(1)
		return 0, 0, false
	}
	c := &be.counters.slots[f.worker]
	c.packets.Add(1)
	c.bytes.Add(uint64(n))
	return newOff, newLen, true
}

// pick returns the backend of the packet's flow: the tracked one while it is
// still in the plan and up (even if drained or its weight changed), else a
// fresh Maglev decision, which is then tracked. A TCP SYN always takes a
// fresh decision, so a reused 5-tuple is not pinned to a stale choice.
func (f *Forwarder) pick(p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	k := flowtable.Key4{Src: fl.Src, Dst: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
	// SYN set, ACK clear; Parse guarantees the whole TCP header is there.
	syn := fl.Proto == 6 && pkt[fl.L4Off+13]&0x12 == 0x02
	if !syn {
		if e, ok := f.flows.Lookup(h, &k, f.now); ok && e.VIP == v.id && int(e.Backend) < len(p.byID) {
			if be := p.byID[e.Backend]; be != nil {
				return be
			}
		}
	}
	bi := v.table.Lookup(h)
	if bi < 0 {
		return nil
	}
	be := &v.backends[bi]
	f.flows.Upsert(h, &k, f.now, flowtable.Entry{Backend: be.id, VIP: v.id})
	return be
}
