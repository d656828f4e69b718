package datapath

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/datapath/packet"
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
	worker int                     // slot in the per-backend counters
	src    [4]byte                 // outer source address
	srcMAC [6]byte                 // the interface's MAC
	mtu    int                     // egress MTU: the outer IP packet must fit
	ipID   uint16                  // outer IPv4 ID, per worker
	drops  [numDrops]atomic.Uint64 // drops are rare: an uncontended atomic add is cheap
}

// NewForwarder returns the per-packet state for worker number worker.
func NewForwarder(worker int, srcMAC [6]byte, mtu int) *Forwarder {
	return &Forwarder{worker: worker, srcMAC: srcMAC, mtu: mtu}
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
	bi := v.table.Lookup(hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto))
	if bi < 0 {
		f.drops[DropNoBackend].Add(1)
		return 0, 0, false
	}
	be := &v.backends[bi]
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
