package datapath

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/capture"
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
	// DropEchoRateLimited: an echo request left unanswered because the
	// worker's ICMP rate limit is spent (see ICMPRate).
	DropEchoRateLimited
	// NumDrops bounds the Drop values (a Drop is an array index).
	NumDrops
)

var dropNames = [...]string{
	DropNoVIP - Drop(packet.NumReasons):           "no_vip",
	DropNoBackend - Drop(packet.NumReasons):       "no_backend",
	DropNoNeighbor - Drop(packet.NumReasons):      "no_neighbor",
	DropTooBig - Drop(packet.NumReasons):          "too_big",
	DropNoHeadroom - Drop(packet.NumReasons):      "no_headroom",
	DropNoSource - Drop(packet.NumReasons):        "no_source",
	DropEchoDisabled - Drop(packet.NumReasons):    "echo_disabled",
	DropEchoRateLimited - Drop(packet.NumReasons): "echo_rate_limited",
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

// Event counts what a worker sent that is not a forwarded client packet,
// what it withheld, and the SYNs it forwarded without tracking them.
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
	// EventICMPRateLimited: an echo reply or frag-needed / packet-too-big
	// the worker did not send because its ICMP rate limit was spent.
	EventICMPRateLimited
	// EventSYNUntracked: a new flow's SYN was forwarded without a flow
	// entry, the worker being past its SYN rate (PlanSpec.SYNRate).
	EventSYNUntracked
	// NumEvents bounds the Event values.
	NumEvents
)

var eventNames = [...]string{
	EventEchoReply:       "echo_reply",
	EventFragNeeded:      "frag_needed_sent",
	EventICMPError:       "icmp_error_forwarded",
	EventICMPRateLimited: "icmp_rate_limited",
	EventSYNUntracked:    "syn_untracked",
}

func (e Event) String() string { return eventNames[e] }

// Forwarder does the per-packet work of one worker: parse, pick, encapsulate.
// It is not safe for concurrent use; each worker has its own.
type Forwarder struct {
	flows  *flowtable.Table[flowtable.Key4]
	flows6 *flowtable.Table[flowtable.Key6]
	now    uint32                  // coarse clock (ms) for the flow tables, set once per batch
	clock  time.Duration           // the same batch clock in ns, for handshake RTTs
	seen   *Plan                   // the plan whose timeouts the flow tables have
	worker int                     // slot in the per-backend counters
	srcMAC [6]byte                 // the interface's MAC
	mtu    int                     // egress MTU: the outer IP packet must fit
	ipID   uint16                  // outer IPv4 ID, per worker
	drops  [NumDrops]atomic.Uint64 // drops are rare: an uncontended atomic add is cheap
	events [NumEvents]atomic.Uint64
	// ICMP token bucket, in billionths of a token so that a refill needs
	// no division; refilled per batch from the batch clock.
	icmpTokens uint64
	icmpLast   time.Duration
	// The SYN flood guard's window: when it started (ms, the flow
	// tables' clock) and the flow entries SYNs created in it.
	synStart, synCount uint32
	// handshakes holds the SYN times of handshakes in flight (see rtt.go).
	handshakes *[handshakeSlots]handshakeSlot
	// What became of the last frame, for a capture: the backend it was
	// sent to (set on every forward: one store) and the last drop reason
	// (set on the drop path only).
	lastBackend *backendState
	lastDrop    Drop
	// The flow count by backend under way (CensusStep): counts so far,
	// the next bucket, and the visitor that adds to census.
	census      map[uint32]uint64
	censusPos   int
	censusVisit func(flowtable.Entry)
}

// drop counts a frame dropped for d.
func (f *Forwarder) drop(d Drop) {
	f.drops[d].Add(1)
	f.lastDrop = d
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
	return &Forwarder{flows: t4, flows6: t6, worker: worker, srcMAC: srcMAC, mtu: mtu, handshakes: new([handshakeSlots]handshakeSlot)}, nil
}

// sweepPerBatch is how many flow table buckets each batch reclaims idle
// entries from: a small, bounded cost per batch that walks the whole table
// over time.
const sweepPerBatch = 8

// BeginBatch starts a batch at now (the worker's monotonic clock, read once
// per batch): it advances the flow tables' clock, reclaims some idle flows,
// and applies p's flow timeouts when p is a plan it has not seen. Call it
// before the batch's Forward calls, with the plan they use.
func (f *Forwarder) BeginBatch(p *Plan, now time.Duration) {
	f.now = uint32(now / time.Millisecond)
	f.clock = max(now, 1) // 0 marks a free handshake slot
	f.flows.Sweep(f.now, sweepPerBatch)
	f.flows6.Sweep(f.now, sweepPerBatch)
	r := p.icmpRate
	if p != f.seen {
		// The plan's timeouts were validated by the control plane; a
		// rejected value keeps the previous one.
		_ = f.flows.SetTimeouts(p.tcpTimeout, p.udpTimeout)
		_ = f.flows6.SetTimeouts(p.tcpTimeout, p.udpTimeout)
		if f.seen == nil {
			f.icmpTokens, f.icmpLast = uint64(r.Burst)*tokenUnit, now // start full
		}
		f.seen = p
	}
	// Past maxRefill the bucket is full whatever the rate: capping the
	// elapsed time keeps the product from overflowing.
	elapsed := min(now-f.icmpLast, maxRefill)
	if elapsed > 0 {
		f.icmpTokens = min(f.icmpTokens+uint64(elapsed)*uint64(r.PerSecond), uint64(r.Burst)*tokenUnit)
		f.icmpLast = now
	}
}

// tokenUnit is one ICMP token: a rate in tokens per second times a time in
// nanoseconds gives billionths of a token.
const tokenUnit = uint64(time.Second)

const maxRefill = 10 * time.Second

// icmpAllowed takes an ICMP token if the plan's limit has one to give.
func (f *Forwarder) icmpAllowed(p *Plan) bool {
	switch {
	case p.icmpRate.PerSecond == 0:
		return true
	case f.icmpTokens >= tokenUnit:
		f.icmpTokens -= tokenUnit
		return true
	}
	f.events[EventICMPRateLimited].Add(1)
	return false
}

// synFull reports whether the plan's SYN rate is spent in this second's
// window, starting a new window when a second has passed.
func (f *Forwarder) synFull(p *Plan) bool {
	if p.synRate == 0 {
		return false
	}
	if f.now-f.synStart >= 1000 {
		f.synStart, f.synCount = f.now, 0
	}
	return f.synCount >= p.synRate
}

// forgetBackend clears the backend the last Forward chose, so that verdict
// tells an answered frame (no backend) from a forwarded one. A capturing
// worker calls it before each Forward; Forward itself does not, to keep the
// store off the path of every frame.
func (f *Forwarder) forgetBackend() { f.lastBackend = nil }

// verdict is what became of the frame Forward just took (ok is what it
// returned), for a capture. The caller calls forgetBackend before Forward.
func (f *Forwarder) verdict(ok bool) capture.Verdict {
	switch {
	case !ok:
		return capture.Verdict{Kind: capture.Dropped, Drop: uint8(f.lastDrop)}
	case f.lastBackend == nil:
		return capture.Verdict{Kind: capture.Answered}
	}
	be := f.lastBackend
	v := capture.Verdict{Kind: capture.Forwarded, V4: !be.v6, Backend: be.addr6}
	if !be.v6 {
		copy(v.Backend[:], be.addr[:])
	}
	return v
}

// Drops is how many frames this forwarder dropped for reason d.
func (f *Forwarder) Drops(d Drop) uint64 { return f.drops[d].Load() }

// Events is how many frames of kind ev this forwarder sent.
func (f *Forwarder) Events(ev Event) uint64 { return f.events[ev].Load() }

// FlowStats sums the counters of the IPv4 and IPv6 flow tables. Only the
// forwarder's own goroutine may call it.
func (f *Forwarder) FlowStats() flowtable.Stats {
	s4, s6 := f.flows.Stats(), f.flows6.Stats()
	return flowtable.Stats{
		Hits: s4.Hits + s6.Hits, Misses: s4.Misses + s6.Misses, Inserts: s4.Inserts + s6.Inserts,
		Evictions: s4.Evictions + s6.Evictions, Expired: s4.Expired + s6.Expired,
		Entries: s4.Entries + s6.Entries, Capacity: s4.Capacity + s6.Capacity,
	}
}

// CensusStep walks up to n more buckets of the flow tables (IPv4, then
// IPv6) for a count of live flows by backend ID, and returns the counts
// once the walk is complete (nil before); restart begins a new walk. A walk
// costs about 3 ns per slot (flowtable's BenchmarkCensus), so a worker
// takes it in steps between batches. Only the forwarder's own goroutine may
// call it.
func (f *Forwarder) CensusStep(n int, restart bool) map[uint32]uint64 {
	if restart || f.census == nil {
		f.census, f.censusPos = map[uint32]uint64{}, 0
		f.censusVisit = func(e flowtable.Entry) { f.census[e.Backend]++ }
	}
	b4, total := f.flows.Buckets(), f.flows.Buckets()+f.flows6.Buckets()
	for n > 0 && f.censusPos < total {
		var next int
		if f.censusPos < b4 {
			next = f.flows.Census(f.now, f.censusPos, n, f.censusVisit)
		} else {
			next = b4 + f.flows6.Census(f.now, f.censusPos-b4, n, f.censusVisit)
		}
		n -= next - f.censusPos
		f.censusPos = next
	}
	if f.censusPos < total {
		return nil
	}
	out := f.census
	f.census = nil
	return out
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
		f.drop(Drop(r))
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
		f.drop(DropNoVIP)
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
		f.drop(DropNoBackend)
		return 0, 0, false
	}
	if !be.resolved {
		f.drop(DropNoNeighbor)
		return 0, 0, false
	}
	newOff, newLen, ok, overhead := f.encap(p, v, be, buf, off, n, &fl, h)
	if overhead < 0 {
		return 0, 0, false // counted by encap
	}
	if !ok {
		f.drop(DropTooBig)
		// Tell the client, so its path-MTU discovery shrinks the packets
		// (IPv4 only when DF forbids fragmenting; IPv6 never fragments in
		// flight). ICMP errors themselves never get one.
		if fl.ICMP == packet.ICMPNone && (fl.Family == 6 || fl.DF) && f.icmpAllowed(p) {
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
	f.lastBackend = be
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
	case v.forward == ForwardDSR:
		newOff, newLen, ok = packet.RewriteDSR(buf, off, n, fl, f.srcMAC, be.mac)
		return newOff, newLen, ok, 0
	case !be.v6 && p.src == [4]byte{}, be.v6 && p.src6 == [16]byte{}:
		f.drop(DropNoSource)
		return 0, 0, false, -1
	}
	need := packet.IPIPOverhead
	switch {
	case v.forward == ForwardGUE && be.v6:
		need = packet.GUE6Overhead
	case v.forward == ForwardGUE:
		need = packet.GUE4Overhead
	case be.v6:
		need = packet.IPIP6Overhead
	}
	if off < need {
		f.drop(DropNoHeadroom)
		return 0, 0, false, -1
	}
	switch {
	case v.forward == ForwardGUE && be.v6:
		newOff, newLen, ok = packet.EncapGUE6(buf, off, n, fl, p.src6, be.addr6, f.srcMAC, be.mac, h, v.guePort, maxLen)
	case v.forward == ForwardGUE:
		f.ipID++
		newOff, newLen, ok = packet.EncapGUE4(buf, off, n, fl, p.src, be.addr, f.srcMAC, be.mac, f.ipID, h, v.guePort, maxLen)
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
		f.drop(DropNoVIP)
		return 0, 0, false
	case !p.vips[vi].icmpEcho:
		f.drop(DropEchoDisabled)
		return 0, 0, false
	case !f.icmpAllowed(p):
		f.drop(DropEchoRateLimited)
		return 0, 0, false
	}
	if newOff, newLen, ok = packet.EchoReply(buf, off, n, fl); !ok {
		f.drop(Drop(packet.UnsupportedICMP))
		return 0, 0, false
	}
	f.events[EventEchoReply].Add(1)
	return newOff, newLen, true
}

// pick4 and pick6 return the backend of the packet's flow: the tracked one
// while it is still in the plan and up (even if drained or its weight
// changed), else a fresh Maglev decision, which is then tracked. A TCP SYN
// always takes a fresh decision, so a reused 5-tuple is not pinned to a
// stale choice. ICMP errors look the flow up but never create one, and
// neither does a new flow's SYN past the plan's SYN rate (its next packet
// does).
func pick4(f *Forwarder, p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	k := flowtable.Key4{Src: fl.Src, Dst: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
	return pick(f, f.flows, &k, p, v, fl, pkt, h)
}

func pick6(f *Forwarder, p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	k := flowtable.Key6{Src: fl.Src6, Dst: fl.Dst6, Ports: fl.Ports, Proto: fl.Proto}
	return pick(f, f.flows6, &k, p, v, fl, pkt, h)
}

func pick[K flowtable.Key](f *Forwarder, t *flowtable.Table[K], k *K, p *Plan, v *vipState, fl *packet.Flow, pkt []byte, h uint32) *backendState {
	// SYN set, ACK clear; Parse guarantees the whole TCP header is there.
	syn := fl.ICMP == packet.ICMPNone && fl.Proto == 6 && pkt[fl.L4Off+13]&0x12 == 0x02
	if !syn {
		// An entry whose VIP ID carries handshakePending fails the first
		// compare: only the first packet after a SYN takes the second.
		if e, ok := t.Lookup(h, k, f.now); ok && (e.VIP == v.id || e.VIP == v.id|handshakePending) {
			if x := IDIndex(e.Backend); int(x) < len(p.byID) {
				if be := p.byID[x]; be != nil && be.id == e.Backend {
					if e.VIP != v.id && fl.ICMP == packet.ICMPNone {
						f.handshakeDone(h, be, pkt[fl.L4Off+13])
						t.Upsert(h, k, f.now, flowtable.Entry{Backend: be.id, VIP: v.id})
					}
					return be
				}
			}
		}
	}
	bi := v.table.Lookup(h)
	if bi < 0 {
		return nil
	}
	be := &v.backends[bi]
	switch {
	case fl.ICMP != packet.ICMPNone:
	case !syn:
		t.Upsert(h, k, f.now, flowtable.Entry{Backend: be.id, VIP: v.id})
	case f.synFull(p):
		// Past the SYN rate a SYN rewrites its flow's entry, but makes
		// none.
		if !t.Update(h, k, f.now, flowtable.Entry{Backend: be.id, VIP: v.id | handshakePending}) {
			f.events[EventSYNUntracked].Add(1)
			return be
		}
		f.synSeen(h, be.id)
	default:
		if t.Upsert(h, k, f.now, flowtable.Entry{Backend: be.id, VIP: v.id | handshakePending}) {
			f.synCount++
		}
		f.synSeen(h, be.id)
	}
	return be
}
