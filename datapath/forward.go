package datapath

import (
	"fmt"
	"sync/atomic"

	"github.com/xlbproject/xlb/config"
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
	// DropNoBackend: the VIP's Maglev table is empty (every backend drained
	// or down).
	DropNoBackend
	// DropNoNeighbor: the backend's next-hop MAC is not resolved yet.
	DropNoNeighbor
	// DropTooBig: the encapsulated frame would exceed the egress MTU (a
	// frag-needed or packet-too-big goes back to the client when the
	// packet may not be fragmented).
	DropTooBig
	// DropNoHeadroom: the frame has no room in front of it for the header.
	DropNoHeadroom
	// DropNoSource: the backend's family has no outer source address.
	DropNoSource
	// DropEchoDisabled: an echo request to a VIP with icmp_echo = false.
	DropEchoDisabled
	numDrops
)

var dropNames = [...]string{
	DropNoVIP - Drop(packet.NumReasons):        "no_vip",
	DropNoBackend - Drop(packet.NumReasons):    "no_backend",
	DropNoNeighbor - Drop(packet.NumReasons):   "no_neighbor",
	DropTooBig - Drop(packet.NumReasons):       "too_big",
	DropNoHeadroom - Drop(packet.NumReasons):   "no_headroom",
	DropNoSource - Drop(packet.NumReasons):     "no_source",
	DropEchoDisabled - Drop(packet.NumReasons): "echo_disabled",
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

// Event counts what a worker sent that is not a forwarded client packet.
type Event uint8

const (
	// EventEchoReply: the balancer answered an echo request to a VIP.
	EventEchoReply Event = iota
	// EventFragNeeded: the balancer told a client its packet was too big
	// (ICMP frag-needed or ICMPv6 packet-too-big) with the MTU that fits.
	EventFragNeeded
	// EventICMPError: an ICMP error about a VIP flow was sent on to the
	// flow's backend (so path-MTU discovery works for backends).
	EventICMPError
	numEvents
)

var eventNames = [...]string{EventEchoReply: "echo_reply", EventFragNeeded: "frag_needed_sent", EventICMPError: "icmp_error_forwarded"}

func (e Event) String() string { return eventNames[e] }

// Forwarder does the per-packet work of one worker: parse, pick, encapsulate.
// It is not safe for concurrent use; each worker has its own.
type Forwarder struct {
	flows  *flowtable.Table[flowtable.Key4]
	flows6 *flowtable.Table[flowtable.Key6]
	now    uint32                  // coarse clock (ms) for the flow tables, set once per batch
	worker int                     // slot in the per-backend counters
	srcMAC [6]byte                 // the interface's MAC
	mtu    int                     // egress MTU: the outer IP packet must fit
	ipID   uint16                  // outer IPv4 ID, per worker
	drops  [numDrops]atomic.Uint64 // drops are rare: an uncontended atomic add is cheap
	events [numEvents]atomic.Uint64
}

// NewForwarder returns the per-packet state for worker number worker, with
// its own flow table.
func NewForwarder(worker int, srcMAC [6]byte, mtu int, flows flowtable.Config) (*Forwarder, error) {
	t4, err := flowtable.New[flowtable.Key4](flows)
	if err != nil {
		return nil, fmt.Errorf("datapath: worker %d: %w", worker, err)
	}
	// IPv6 flows get a table of their own: one key type for both families
	// would pad every IPv4 entry to the IPv6 size.
	t6, err := flowtable.New[flowtable.Key6](flows)
	if err != nil {
		return nil, fmt.Errorf("datapath: worker %d: %w", worker, err)
	}
	return &Forwarder{flows: t4, flows6: t6, worker: worker, srcMAC: srcMAC, mtu: mtu}, nil
}

// Forward rewrites the packet buf[off:off+n] in place: encapsulated (or
// MAC-rewritten) for the backend that p assigns to its flow, or turned into
// the balancer's own answer (echo reply, frag-needed) to the client. buf is
// the whole frame: buf[:off] is headroom. On success it returns the new
// packet position; otherwise it counts the drop and returns ok=false. It
// never allocates.
func (f *Forwarder) Forward(p *Plan, buf []byte, off, n int) (newOff, newLen int, ok bool) {
	var fl packet.Flow
	pkt := buf[off : off+n]
	if r := packet.Parse(pkt, &fl); r != packet.OK {
		f.drops[r].Add(1)
		return 0, 0, false
	}
	var k vipKey
	if fl.Family == 4 {
		k = vipKey4(fl.Dst, fl.DstPort, fl.Proto)
	} else {
		k = vipKey6(&fl.Dst6, fl.DstPort, fl.Proto)
	}
	if fl.ICMP == packet.ICMPEchoRequest {
		return f.echo(p, buf, off, n, &fl, k)
	}
	vi := p.index.lookup(k)
	if vi < 0 {
		f.drops[DropNoVIP].Add(1)
		return 0, 0, false
	}
	v := &p.vips[vi]
	var h uint32
	var be *backendState
	if fl.Family == 4 {
		h = hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto)
		be = pick4(f, p, v, &fl, pkt, h)
	} else {
		h = hash.Flow6(&fl.Src6, &fl.Dst6, fl.Ports, fl.Proto)
		be = pick6(f, p, v, &fl, pkt, h)
	}
	if be == nil {
		f.drops[DropNoBackend].Add(1)
		return 0, 0, false
	}
	if !be.resolved {
		f.drops[DropNoNeighbor].Add(1)
		return 0, 0, false
	}
	newOff, newLen, ok, overhead := f.encap(p, v, be, buf, off, n, &fl, h)
	if overhead < 0 {
		return 0, 0, false // counted by encap
	}
	if !ok {
		f.drops[DropTooBig].Add(1)
		// Tell the client, so its path-MTU discovery shrinks the packets
		// (IPv4 only when DF forbids fragmenting; IPv6 never fragments in
		// flight). ICMP errors themselves never get one.
		if fl.ICMP == packet.ICMPNone && (fl.Family == 6 || fl.DF) {
			if newOff, newLen, ok = packet.FragNeeded(buf, off, n, &fl, f.mtu-overhead); ok {
				f.events[EventFragNeeded].Add(1)
				return newOff, newLen, true
			}
		}
		return 0, 0, false
	}
	if fl.ICMP == packet.ICMPError {
		f.events[EventICMPError].Add(1)
	}
	c := &be.counters.slots[f.worker]
	c.packets.Add(1)
	c.bytes.Add(uint64(n))
	return newOff, newLen, true
}

// encap writes v's forwarding header for be. overhead is what it adds, or -1
// when the frame was dropped for another reason than its size (counted).
func (f *Forwarder) encap(p *Plan, v *vipState, be *backendState, buf []byte, off, n int, fl *packet.Flow, h uint32) (newOff, newLen int, ok bool, overhead int) {
	maxLen := f.mtu + int(fl.L3Off)
	switch {
	case v.cfg.Forward == config.DSR:
		newOff, newLen, ok = packet.RewriteDSR(buf, off, n, fl, f.srcMAC, be.mac)
		return newOff, newLen, ok, 0
	case !be.v6 && p.src == [4]byte{}, be.v6 && p.src6 == [16]byte{}:
		f.drops[DropNoSource].Add(1)
		return 0, 0, false, -1
	}
	need := packet.IPIPOverhead
	switch {
	case v.cfg.Forward == config.GUE && be.v6:
		need = packet.GUE6Overhead
	case v.cfg.Forward == config.GUE:
		need = packet.GUE4Overhead
	case be.v6:
		need = packet.IPIP6Overhead
	}
	if off < need {
		f.drops[DropNoHeadroom].Add(1)
		return 0, 0, false, -1
	}
	switch {
	case v.cfg.Forward == config.GUE && be.v6:
		newOff, newLen, ok = packet.EncapGUE6(buf, off, n, fl, p.src6, be.addr6, f.srcMAC, be.mac, h, v.cfg.GUEPort, maxLen)
	case v.cfg.Forward == config.GUE:
		f.ipID++
		newOff, newLen, ok = packet.EncapGUE4(buf, off, n, fl, p.src, be.addr, f.srcMAC, be.mac, f.ipID, h, v.cfg.GUEPort, maxLen)
	case be.v6:
		newOff, newLen, ok = packet.EncapIPIP6(buf, off, n, fl, p.src6, be.addr6, f.srcMAC, be.mac, h, maxLen)
	default:
		f.ipID++
		newOff, newLen, ok = packet.EncapIPIP(buf, off, n, fl, p.src, be.addr, f.srcMAC, be.mac, f.ipID, maxLen)
	}
	return newOff, newLen, ok, need
}

// echo answers an echo request to a VIP address in place.
func (f *Forwarder) echo(p *Plan, buf []byte, off, n int, fl *packet.Flow, k vipKey) (newOff, newLen int, ok bool) {
	vi := p.index.lookupAddr(k)
	switch {
	case vi < 0:
		f.drops[DropNoVIP].Add(1)
		return 0, 0, false
	case !p.vips[vi].cfg.ICMPEcho:
		f.drops[DropEchoDisabled].Add(1)
		return 0, 0, false
	}
	if newOff, newLen, ok = packet.EchoReply(buf, off, n, fl); !ok {
		f.drops[packet.UnsupportedICMP].Add(1)
		return 0, 0, false
	}
	f.events[EventEchoReply].Add(1)
	return newOff, newLen, true
}

// pick4 and pick6 return the backend of the packet's flow: the tracked one
// while it is still in the plan and up (even if drained or its weight
// changed), else a fresh Maglev decision, which is then tracked. A TCP SYN
// always takes a fresh decision, so a reused 5-tuple is not pinned to a
// stale choice. ICMP errors look the flow up but never create one.
func pick4(f *Forwarder, p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	k := flowtable.Key4{Src: fl.Src, Dst: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
	return pick(f.flows, &k, f.now, p, v, fl, pkt, h)
}

func pick6(f *Forwarder, p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	k := flowtable.Key6{Src: fl.Src6, Dst: fl.Dst6, Ports: fl.Ports, Proto: fl.Proto}
	return pick(f.flows6, &k, f.now, p, v, fl, pkt, h)
}

func pick[K flowtable.Key](t *flowtable.Table[K], k *K, now uint32, p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	// SYN set, ACK clear; Parse guarantees the whole TCP header is there.
	syn := fl.ICMP == packet.ICMPNone && fl.Proto == 6 && pkt[fl.L4Off+13]&0x12 == 0x02
	if !syn {
		if e, ok := t.Lookup(h, k, now); ok && e.VIP == v.id && int(e.Backend) < len(p.byID) {
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
	if fl.ICMP == packet.ICMPNone {
		t.Upsert(h, k, now, flowtable.Entry{Backend: be.id, VIP: v.id})
	}
	return be
}
