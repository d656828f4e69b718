package labprogs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Flow layout, as in gen.c: flow f has source address
// src + f/PortsPerAddr and source port PortBase + f%PortsPerAddr.
const (
	PortsPerAddr = 16384
	PortBase     = 1024
	// MaxFlows bounds the flows of one generator: 64 source addresses.
	MaxFlows = 64 * PortsPerAddr
)

// Header offsets of the templates Gen accepts: Ethernet without VLAN,
// IPv4 without options, then TCP or UDP.
const (
	ethLen     = 14
	ipLen      = 20
	udpLen     = 8
	tcpLen     = 20
	protoTCP   = 6
	protoUDP   = 17
	etherIPv4  = 0x0800
	l4Off      = ethLen + ipLen
	ipCheckOff = ethLen + 10
	ipSrcOff   = ethLen + 12
	ipDstOff   = ethLen + 16
)

// xdpMD mirrors struct xdp_md, the context of an XDP test run: data and
// data_meta must be 0 and data_end the length of the data (no metadata),
// egress_ifindex 0.
type xdpMD struct {
	Data, DataEnd, DataMeta uint32
	IngressIfindex          uint32
	RxQueueIndex            uint32
	EgressIfindex           uint32
}

// Gen is the loaded generator: a template frame and the program that
// sends it with new source addresses and ports out of one interface.
type Gen struct {
	template []byte
	ifindex  int
	objs     genObjects
}

// FlowSource returns the source address and port of flow f of a generator
// whose template's source address is src.
func FlowSource(src netip.Addr, f uint32) netip.AddrPort {
	a := binary.BigEndian.Uint32(src.AsSlice()) + f/PortsPerAddr
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return netip.AddrPortFrom(netip.AddrFrom4(b), uint16(PortBase+f%PortsPerAddr))
}

// genHeaderLen mirrors HDR_LEN in gen.c: the bytes of the template the
// program writes back into every frame it sends.
const genHeaderLen = 54

// LoadGen loads the generator for template, an Ethernet frame carrying an
// IPv4 packet without options and a TCP or UDP header, whose IP total
// length covers the rest of the frame; its source address is the first of
// the flows' addresses. flows is 1 to MaxFlows. It will send out of the
// interface ifindex (of the namespace Run is called in). The template is
// copied.
//
// Program returns the program to attach, in generic mode, to an interface
// that receives nothing (such as lo of a namespace that sends nothing
// locally): run on anything but a test run for ifindex it passes the frame
// untouched, and attached it stays registered with the kernel's XDP
// dispatcher, which otherwise every Run re-registers at a cost of tens of
// milliseconds.
func LoadGen(template []byte, flows uint32, ifindex int) (*Gen, error) {
	ipSum, l4Sum, proto, err := templateSums(template)
	if err != nil {
		return nil, err
	}
	if flows == 0 || flows > MaxFlows {
		return nil, fmt.Errorf("%w: %d flows: want 1 to %d", ErrInvalid, flows, MaxFlows)
	}
	if ifindex <= 0 {
		return nil, fmt.Errorf("%w: invalid interface index: %d", ErrInvalid, ifindex)
	}
	g := &Gen{template: append([]byte(nil), template...), ifindex: ifindex}
	spec, err := loadGen()
	err = load("gen", spec, err, map[string]any{
		"ifindex":  uint32(ifindex),
		"flows":    flows,
		"src_base": binary.BigEndian.Uint32(template[ipSrcOff : ipSrcOff+4]),
		"l4_proto": proto,
		"ip_sum":   ipSum,
		"l4_sum":   l4Sum,
		"hdr":      [genHeaderLen]byte(template[:genHeaderLen]),
	}, &g.objs)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// templateSums checks t and returns the constant parts of its checksums,
// as gen.c defines them: 16-bit words loaded little-endian (as the program
// loads them), with the fields the program rewrites counted as zero.
func templateSums(t []byte) (ipSum, l4Sum uint32, proto uint8, err error) {
	bad := func(format string, args ...any) (uint32, uint32, uint8, error) {
		return 0, 0, 0, fmt.Errorf("%w: template: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(t) < l4Off+udpLen {
		return bad("%d bytes is too short", len(t))
	}
	if et := binary.BigEndian.Uint16(t[12:14]); et != etherIPv4 {
		return bad("EtherType %#04x: want IPv4", et)
	}
	if t[ethLen] != 0x45 {
		return bad("IP version/IHL %#02x: want 0x45 (IPv4, no options)", t[ethLen])
	}
	if tot := int(binary.BigEndian.Uint16(t[ethLen+2:])); tot != len(t)-ethLen {
		return bad("IP total length %d: want %d, the rest of the frame", tot, len(t)-ethLen)
	}
	proto = t[ethLen+9]
	checkOff := 0 // checksum offset in the L4 header
	switch proto {
	case protoUDP:
		checkOff = 6
	case protoTCP:
		if len(t) < l4Off+tcpLen {
			return bad("%d bytes is too short for TCP", len(t))
		}
		checkOff = 16
	default:
		return bad("IP protocol %d: want TCP or UDP", proto)
	}

	ip := append([]byte(nil), t[ethLen:l4Off]...)
	clear(ip[10:16]) // check and saddr
	ipSum = sumLE(ip)

	seg := append([]byte(nil), t[l4Off:]...)
	clear(seg[0:2]) // source port
	clear(seg[checkOff : checkOff+2])
	var pseudo [12]byte // saddr stays zero
	copy(pseudo[4:8], t[ipDstOff:ipDstOff+4])
	pseudo[9] = proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	l4Sum = sumLE(pseudo[:]) + sumLE(seg)
	return ipSum, l4Sum, proto, nil
}

// sumLE adds b as little-endian 16-bit words (an odd last byte padded with
// zero), without folding. Below 128 KiB it cannot overflow.
func sumLE(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0])
	}
	return s
}

// Program is the generator's program, to keep attached (see LoadGen).
func (g *Gen) Program() *ebpf.Program { return g.objs.XlbGen }

// Run transmits the template repeat times out of the generator's
// interface, from queue, with the kernel's live-frame test run: each
// repetition runs the program and its XDP_TX sends the frame. The calling
// thread must be in the interface's network namespace (the kernel looks
// the ifindex up there). It blocks until done: at about a million frames
// a second, a repeat of 1<<16 takes tens of milliseconds.
func (g *Gen) Run(queue int, repeat uint32) error {
	ifindex := g.ifindex
	ctx := xdpMD{DataEnd: uint32(len(g.template)), IngressIfindex: uint32(ifindex), RxQueueIndex: uint32(queue)}
	_, err := g.objs.XlbGen.Run(&ebpf.RunOptions{
		Data:    g.template,
		Repeat:  repeat,
		Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Context: ctx,
	})
	if err != nil {
		return fmt.Errorf("labprogs: generate on ifindex %d queue %d: %w", ifindex, queue, err)
	}
	return nil
}

// Sent is how many frames the program has sent (returned XDP_TX for) so
// far, over every CPU. A frame the kernel then fails to transmit (the
// peer's queue full) is still counted here.
func (g *Gen) Sent() (uint64, error) {
	return sumPerCPU(g.objs.Sent, 0, func(t *uint64, v uint64) { *t += v })
}

// Close unloads the program and its map.
func (g *Gen) Close() error { return g.objs.Close() }
