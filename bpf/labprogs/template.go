package labprogs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/datapath/packet"
)

// TCP flags for TemplateSpec.TCPFlags.
const (
	TCPSyn = 0x02
	TCPAck = 0x10
)

// Template frame sizes.
const (
	// MinFrame is the smallest Ethernet frame on a wire without its FCS;
	// shorter frames are padded up to it.
	MinFrame = 60
	// MaxFrame keeps a frame and its IPIP header within what native XDP on
	// a veth handles without multi-buffer (a page less the XDP headroom).
	MaxFrame = 3000
)

// TemplateSpec describes a generator template frame.
type TemplateSpec struct {
	DstMAC, SrcMAC [6]byte
	// Src is the first flow's source address, Dst the destination (the
	// VIP); both IPv4.
	Src, Dst netip.Addr
	DstPort  uint16
	// Proto is 6 (TCP) or 17 (UDP).
	Proto uint8
	// TCPFlags of a TCP template (TCPSyn, TCPAck, ...).
	TCPFlags uint8
	// Size is the whole Ethernet frame without FCS, MinFrame to MaxFrame;
	// the bytes past the headers are payload (zeros), so that the IP
	// total length covers the frame, as the generator requires.
	Size int
}

// BuildTemplate returns the frame ts describes, with valid checksums for
// the first flow (source port PortBase).
func BuildTemplate(ts TemplateSpec) ([]byte, error) {
	hdr := l4Off + udpLen
	if ts.Proto == protoTCP {
		hdr = l4Off + tcpLen
	} else if ts.Proto != protoUDP {
		return nil, fmt.Errorf("%w: template: IP protocol %d: want TCP (6) or UDP (17)", ErrInvalid, ts.Proto)
	}
	if ts.Size < max(MinFrame, hdr) || ts.Size > MaxFrame {
		return nil, fmt.Errorf("%w: template: frame size %d: want %d to %d", ErrInvalid, ts.Size, max(MinFrame, hdr), MaxFrame)
	}
	if !ts.Src.Is4() || !ts.Dst.Is4() {
		return nil, fmt.Errorf("%w: template: addresses %s -> %s: want IPv4", ErrInvalid, ts.Src, ts.Dst)
	}
	f := make([]byte, ts.Size)
	copy(f[0:6], ts.DstMAC[:])
	copy(f[6:12], ts.SrcMAC[:])
	binary.BigEndian.PutUint16(f[12:14], etherIPv4)

	ip := f[ethLen:l4Off]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(ts.Size-ethLen))
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8] = 64                                  // TTL
	ip[9] = ts.Proto
	src, dst := ts.Src.As4(), ts.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], packet.Checksum(ip))

	seg := f[l4Off:]
	binary.BigEndian.PutUint16(seg[0:2], PortBase)
	binary.BigEndian.PutUint16(seg[2:4], ts.DstPort)
	checkOff := 6
	if ts.Proto == protoUDP {
		binary.BigEndian.PutUint16(seg[4:6], uint16(len(seg)))
	} else {
		checkOff = 16
		binary.BigEndian.PutUint32(seg[4:8], 1) // sequence number
		if ts.TCPFlags&TCPAck != 0 {
			binary.BigEndian.PutUint32(seg[8:12], 1)
		}
		seg[12] = 5 << 4 // data offset: 20 bytes, no options
		seg[13] = ts.TCPFlags
		binary.BigEndian.PutUint16(seg[14:16], 65535) // window
	}
	var pseudo [12]byte
	copy(pseudo[0:4], src[:])
	copy(pseudo[4:8], dst[:])
	pseudo[9] = ts.Proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	c := packet.Checksum(append(pseudo[:], seg...))
	if c == 0 && ts.Proto == protoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[checkOff:], c)
	return f, nil
}
