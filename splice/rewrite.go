package splice

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/bpf"
)

// Verdict is what the steer program does with a frame of a spliced
// connection, as Rewrite models it.
type Verdict uint8

const (
	// Rewritten: sent out, XDP_TX when the entry's Ifindex is the
	// ingress interface, else XDP_REDIRECT.
	Rewritten Verdict = iota
	// NotSpliced: not a TCP frame the splice lookup sees (not TCP, a
	// fragment, a truncated header), passed unchanged.
	NotSpliced
	// Malformed: the TCP header's data offset is below 5 or past the
	// frame; passed unchanged, counted malformed.
	Malformed
	// Expired: TTL or hop limit 1 or 0; dropped.
	Expired
)

func (v Verdict) String() string {
	switch v {
	case Rewritten:
		return "rewritten"
	case NotSpliced:
		return "not_spliced"
	case Malformed:
		return "malformed"
	}
	return "expired"
}

// TCP option kinds and header flags the rewrite reads.
const (
	optEOL       = 0
	optNOP       = 1
	optSACK      = 5
	optTimestamp = 8
	maxOpts      = 40
	tcpFIN       = 0x01
	tcpRST       = 0x04
	tcpACK       = 0x10
)

// Rewrite is the Go model of the steer program's splice rewrite
// (bpf/splice.h, splice_frame) for a frame that matched entry d: it
// rewrites frame in place and updates the pair state p as the program
// does (state bits, last seq and ack, timestamp offsets; not LastNs).
// The tests hold it to the C program byte for byte; it is not used on
// the packet path.
func Rewrite(frame []byte, d *bpf.SpliceDir, p *bpf.SplicePair) Verdict {
	l3, family, l4, ok := headers(frame)
	if !ok {
		return NotSpliced
	}
	tcp := frame[l4:]
	hlen := int(tcp[12]>>4) * 4
	if hlen < 20 || hlen > len(tcp) {
		return Malformed
	}
	ttl := frame[l3+8] // IPv4 TTL
	if family == 6 {
		ttl = frame[l3+7] // hop limit
	}
	if ttl <= 1 {
		return Expired
	}
	dir := d.Dir & 1
	flags := tcp[13]
	seq, ack := binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:])
	p.LastSeq[dir], p.LastAck[dir] = seq, ack
	if flags&tcpFIN != 0 {
		p.State |= 1 << dir
	}
	if flags&tcpRST != 0 {
		p.State |= bpf.SpliceRST
	}

	copy(frame[0:6], d.Dmac[:])
	copy(frame[6:12], d.Smac[:])
	if family == 4 {
		ip := frame[l3:]
		copy(ip[12:16], d.Saddr[:4])
		copy(ip[16:20], d.Daddr[:4])
		ip[8]--
		binary.BigEndian.PutUint16(ip[10:], update(binary.BigEndian.Uint16(ip[10:]), d.IPCsumDiff))
	} else {
		ip := frame[l3:]
		copy(ip[8:24], d.Saddr[:])
		copy(ip[24:40], d.Daddr[:])
		ip[7]--
	}

	copy(tcp[0:2], d.Sport[:])
	copy(tcp[2:4], d.Dport[:])
	acc := d.L4CsumDiff
	nseq := seq + d.SeqDelta
	acc = csum32(acc, seq, nseq)
	binary.BigEndian.PutUint32(tcp[4:], nseq)
	if flags&tcpACK != 0 {
		nack := ack + d.AckDelta
		acc = csum32(acc, ack, nack)
		binary.BigEndian.PutUint32(tcp[8:], nack)
	}
	if d.WscaleIn != d.WscaleOut {
		w := uint32(binary.BigEndian.Uint16(tcp[14:]))
		nw := min((w<<(d.WscaleIn&15))>>(d.WscaleOut&15), 65535)
		acc = fold16(acc + (^w & 0xffff) + nw)
		binary.BigEndian.PutUint16(tcp[14:], uint16(nw))
	}
	if hlen > 20 {
		acc = fold16(acc + options(tcp[20:hlen], flags&tcpACK != 0, d, p))
	}
	binary.BigEndian.PutUint16(tcp[16:], update(binary.BigEndian.Uint16(tcp[16:]), acc))
	return Rewritten
}

// headers finds what steer.c finds before the splice lookup: the IP
// header (at most one VLAN tag), the family and the TCP header of an
// unfragmented TCP packet (IPv6: after at most four hop-by-hop, routing
// and destination-options headers); ok is false for any other frame.
func headers(f []byte) (l3 int, family uint8, l4 int, ok bool) {
	if len(f) < 14 {
		return 0, 0, 0, false
	}
	etype, l3 := binary.BigEndian.Uint16(f[12:]), 14
	if etype == 0x8100 || etype == 0x88a8 {
		if len(f) < 18 {
			return 0, 0, 0, false
		}
		etype, l3 = binary.BigEndian.Uint16(f[16:]), 18
	}
	switch etype {
	case 0x0800:
		if len(f) < l3+20 {
			return 0, 0, 0, false
		}
		hlen := int(f[l3]&0x0f) * 4
		if hlen < 20 || len(f) < l3+hlen || f[l3+9] != 6 || binary.BigEndian.Uint16(f[l3+6:])&0x3fff != 0 {
			return 0, 0, 0, false
		}
		family, l4 = 4, l3+hlen
	case 0x86dd:
		if len(f) < l3+40 {
			return 0, 0, 0, false
		}
		next := f[l3+6]
		l4 = l3 + 40
		for range 4 {
			if next != 0 && next != 43 && next != 60 {
				break
			}
			if len(f) < l4+2 {
				return 0, 0, 0, false
			}
			next = f[l4]
			l4 += (int(f[l4+1]) + 1) * 8
		}
		if next != 6 {
			return 0, 0, 0, false
		}
		family = 6
	default:
		return 0, 0, 0, false
	}
	if len(f) < l4+20 {
		return 0, 0, 0, false
	}
	return l3, family, l4, true
}

// options rewrites the first SACK and the first timestamp option in opts
// (the TCP header's option bytes) and returns the checksum change.
func options(opts []byte, ackFlag bool, d *bpf.SpliceDir, p *bpf.SplicePair) uint32 {
	if len(opts) > maxOpts {
		return 0
	}
	sack, ts := walk(opts)
	var acc uint32
	if sack >= 0 && d.Flags&(bpf.SpliceSACKXlate|bpf.SpliceSACKStrip) != 0 {
		o := opts[sack:]
		n := int(o[1])
		if n >= 10 && n <= 34 && (n-2)%8 == 0 {
			var ch uint32
			strip := d.Flags&bpf.SpliceSACKStrip != 0
			if strip {
				ch = (^uint32(optSACK<<8|n) & 0xffff) + 0x0101
				o[0], o[1] = optNOP, optNOP
			}
			for j := 0; j < (n-2)/4; j++ {
				e := o[2+4*j:]
				old := binary.BigEndian.Uint32(e)
				nv := old + d.AckDelta
				if strip {
					nv = 0x01010101
				}
				ch = csum32(ch, old, nv)
				binary.BigEndian.PutUint32(e, nv)
			}
			acc = swap16(fold16(ch), sack&1 == 1)
		}
	}
	if ts >= 0 && d.Flags&bpf.SpliceTSXlate != 0 && opts[ts+1] == 10 {
		o := opts[ts:]
		dir := d.Dir & 1
		tsval, tsecr := binary.BigEndian.Uint32(o[2:]), binary.BigEndian.Uint32(o[6:])
		t := p.TSDelta[dir]
		if t&bpf.SpliceTSSet == 0 {
			set := bpf.SpliceTSSet | uint64(d.TSBase-tsval)
			if t == 0 {
				p.TSDelta[dir] = set
				t = set
			}
		}
		nval, necr := tsval+uint32(t), tsecr
		if ackFlag {
			e := p.TSDelta[dir^1]
			if e&bpf.SpliceTSSet != 0 && int32(tsecr-d.TSecrBase) >= 0 {
				necr = tsecr - uint32(e)
			} else {
				necr = 0
			}
		}
		ch := csum32(csum32(0, tsval, nval), tsecr, necr)
		binary.BigEndian.PutUint32(o[2:], nval)
		binary.BigEndian.PutUint32(o[6:], necr)
		acc = fold16(acc + swap16(ch, ts&1 == 1))
	}
	return acc
}

// walk returns the offsets of the first SACK and the first timestamp
// option in opts (-1: none), stopping at EOL or a malformed option.
func walk(opts []byte) (sack, ts int) {
	sack, ts = -1, -1
	for off := 0; off < len(opts); {
		switch opts[off] {
		case optEOL:
			return sack, ts
		case optNOP:
			off++
			continue
		}
		if off+2 > len(opts) {
			return sack, ts
		}
		n := int(opts[off+1])
		if n < 2 || off+n > len(opts) {
			return sack, ts
		}
		if opts[off] == optSACK && sack < 0 {
			sack = off
		}
		if opts[off] == optTimestamp && ts < 0 {
			ts = off
		}
		off += n
	}
	return sack, ts
}

// csum32 adds to acc the change of a 32-bit field from old to new, folded.
func csum32(acc, old, new uint32) uint32 {
	return fold16(acc + (^old >> 16) + (^old & 0xffff) + (new >> 16) + (new & 0xffff))
}

// update is RFC 1624's HC' = ~(~HC + acc), acc the folded sum of the
// changes (~m + m').
func update(hc uint16, acc uint32) uint16 {
	return ^uint16(fold16(uint32(^hc) + acc))
}

// swap16 byte-swaps a folded change summed as if at an even offset when
// the field is at an odd one (RFC 1071's byte order independence).
func swap16(s uint32, odd bool) uint32 {
	if odd {
		return (s&0xff)<<8 | s>>8
	}
	return s
}
