package splice

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/bpf"
)

// Entry is one direction's splice map entry: the packet's 4-tuple as it
// arrives and what the program does with it.
type Entry struct {
	Key bpf.SpliceKey
	Dir bpf.SpliceDir
}

// maxWscale is the largest window shift TCP allows (RFC 7323 section 2.3).
const maxWscale = 14

// ttlDiff is the IPv4 header checksum's change for TTL - 1: the word
// (TTL << 8 | protocol) loses 0x100, and ~m + (m - 0x100) = 0xffff - 0x100
// in ones'-complement arithmetic, whatever m.
const ttlDiff = 0xfeff

// Plan computes both directions' entries of p for pair slot s, indexed by
// Direction. It fails with ErrFamilyMismatch or ErrOptionsMismatch for a
// pair that must stay proxied, and with a plain error for invalid input.
func Plan(p Pair, s Slot) ([2]Entry, error) {
	c, b := p.Client, p.Backend
	var family uint8
	for _, ap := range []netip.AddrPort{c.Local, c.Remote, b.Local, b.Remote} {
		a := ap.Addr().Unmap()
		if !ap.IsValid() || a.IsUnspecified() || ap.Port() == 0 {
			return [2]Entry{}, fmt.Errorf("splice: invalid address %v", ap)
		}
		f := uint8(6)
		if a.Is4() {
			f = 4
		}
		if family != 0 && f != family {
			return [2]Entry{}, fmt.Errorf("%w: %v, %v, %v, %v", ErrFamilyMismatch, c.Local, c.Remote, b.Local, b.Remote)
		}
		family = f
	}
	if c.Timestamps != b.Timestamps {
		return [2]Entry{}, fmt.Errorf("%w: timestamps on the client connection %v, on the backend connection %v",
			ErrOptionsMismatch, c.Timestamps, b.Timestamps)
	}
	for _, w := range []uint8{c.SndWscale, c.RcvWscale, b.SndWscale, b.RcvWscale} {
		if w > maxWscale {
			return [2]Entry{}, fmt.Errorf("splice: window scale %d above %d", w, maxWscale)
		}
	}
	for _, h := range []Hop{p.ToClient, p.ToBackend} {
		if h.Ifindex <= 0 {
			return [2]Entry{}, fmt.Errorf("splice: invalid hop interface index %d", h.Ifindex)
		}
	}
	var e [2]Entry
	e[ClientToBackend] = entry(family, c, b, p.ToBackend, ClientToBackend, s)
	e[BackendToClient] = entry(family, b, c, p.ToClient, BackendToClient, s)
	return e, nil
}

// entry is the direction whose packets arrive on connection in and leave
// on connection out.
func entry(family uint8, in, out Side, hop Hop, d Direction, s Slot) Entry {
	k := bpf.SpliceKey{Family: family, Saddr: addr(in.Remote), Daddr: addr(in.Local)}
	binary.BigEndian.PutUint16(k.Sport[:], in.Remote.Port())
	binary.BigEndian.PutUint16(k.Dport[:], in.Local.Port())
	v := bpf.SpliceDir{
		Saddr:   addr(out.Local),
		Daddr:   addr(out.Remote),
		Dmac:    hop.Dst,
		Smac:    hop.Src,
		Ifindex: uint32(hop.Ifindex),
		// What the sender says in in's sequence space, the receiver
		// must read in out's: in's peer sent up to in.RcvNxt, which is
		// out.SndNxt toward out's peer.
		SeqDelta:  out.SndNxt - in.RcvNxt,
		AckDelta:  out.RcvNxt - in.SndNxt,
		WscaleIn:  in.SndWscale,
		WscaleOut: out.RcvWscale,
		Dir:       uint8(d),
		// The receiver last saw at most out's clock; the other
		// direction sends from in's clock + 1 on.
		TSBase:    out.TSClock + 1,
		TSecrBase: in.TSClock + 1,
		Pair:      uint32(s),
	}
	binary.BigEndian.PutUint16(v.Sport[:], out.Local.Port())
	binary.BigEndian.PutUint16(v.Dport[:], out.Remote.Port())
	if out.SACK {
		v.Flags |= bpf.SpliceSACKXlate
	} else {
		v.Flags |= bpf.SpliceSACKStrip
	}
	if in.Timestamps && out.Timestamps {
		v.Flags |= bpf.SpliceTSXlate
	}
	addrs := csumDiff(0, k.Saddr[:], v.Saddr[:])
	addrs = csumDiff(addrs, k.Daddr[:], v.Daddr[:])
	v.L4CsumDiff = csumDiff(addrs, k.Sport[:], v.Sport[:])
	v.L4CsumDiff = csumDiff(v.L4CsumDiff, k.Dport[:], v.Dport[:])
	if family == 4 {
		v.IPCsumDiff = fold16(addrs + ttlDiff)
	}
	return Entry{Key: k, Dir: v}
}

func addr(ap netip.AddrPort) [16]byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		var b [16]byte
		v4 := a.As4()
		copy(b[:], v4[:])
		return b
	}
	return a.As16()
}

// csumDiff adds to acc, folded to 16 bits, the ones'-complement change of
// the big-endian 16-bit words of old becoming new (RFC 1624: ~m + m' for
// each word); len(old) == len(new), even.
func csumDiff(acc uint32, old, new []byte) uint32 {
	for i := 0; i < len(old); i += 2 {
		acc += uint32(^binary.BigEndian.Uint16(old[i:])) + uint32(binary.BigEndian.Uint16(new[i:]))
		acc = fold16(acc)
	}
	return acc
}

// fold16 folds a ones'-complement sum to 16 bits (end-around carry).
func fold16(s uint32) uint32 {
	s = (s >> 16) + (s & 0xffff)
	return (s >> 16) + (s & 0xffff)
}
