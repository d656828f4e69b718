package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// fuzzSeeds are the fixture frames, valid and malformed, as fuzzing seeds.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, c := range parseCases(f) {
		seeds = append(seeds, c.frame)
	}
	return seeds
}

// checkFlow checks the invariants of a frame Parse accepted: every offset
// is inside the frame, and every field is what the bytes there say.
func checkFlow(t *testing.T, frame []byte, f *Flow) {
	t.Helper()
	l3, l4, end := int(f.L3Off), int(f.L4Off), int(f.L3Off)+int(f.IPLen)
	if l3 != 14 && l3 != 18 {
		t.Fatalf("L3Off %d", l3)
	}
	if end > len(frame) {
		t.Fatalf("IPLen %d past the frame's %d bytes", f.IPLen, len(frame))
	}
	et := binary.BigEndian.Uint16(frame[l3-2:])
	ip := frame[l3:end]
	var proto uint8 // the upper layer's protocol number in the packet
	switch f.Family {
	case 4:
		ihl := l4 - l3
		if et != etherTypeIPv4 || ihl < 20 || ihl > 60 || ihl%4 != 0 || ihl != int(ip[0]&0x0f)*4 || ip[0]>>4 != 4 ||
			int(binary.BigEndian.Uint16(ip[2:])) != int(f.IPLen) {
			t.Fatalf("L4Off %d with L3Off %d, EtherType %#x, version/IHL byte %#02x, IPLen %d", l4, l3, et, ip[0], f.IPLen)
		}
		if ip[1] != f.TOS || ip[8] != f.HopLimit || f.DF != (ip[6]&0x40 != 0) || f.FlowLabel != 0 || f.Src6 != [16]byte{} || f.Dst6 != [16]byte{} {
			t.Fatalf("flow %+v disagrees with header %x", f, ip[:ihl])
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			t.Fatalf("fragment accepted: %x", frame)
		}
		proto = ip[9]
		if f.ICMP != ICMPError && (f.Src != le32(ip[12:]) || f.Dst != le32(ip[16:])) {
			t.Fatalf("flow %+v disagrees with header %x", f, ip[:ihl])
		}
	case 6:
		if et != etherTypeIPv6 || ip[0]>>4 != 6 || l4 < l3+40 || (l4-l3)%8 != 0 || int(f.IPLen) != 40+int(binary.BigEndian.Uint16(ip[4:])) {
			t.Fatalf("L4Off %d with L3Off %d, EtherType %#x, IPv6 header %x", l4, l3, et, ip[:40])
		}
		w0 := binary.BigEndian.Uint32(ip)
		if uint8(w0>>20) != f.TOS || w0&0xfffff != f.FlowLabel || ip[7] != f.HopLimit || !f.DF || f.Src != 0 || f.Dst != 0 {
			t.Fatalf("flow %+v disagrees with header %x", f, ip[:40])
		}
		// Walk the extension headers to L4Off: each names the next.
		proto = ip[6]
		at, n := l3+40, 0
		for ; at < l4 && n <= MaxExtHeaders; n++ {
			proto = frame[at]
			at += (int(frame[at+1]) + 1) * 8
		}
		if at != l4 || n > MaxExtHeaders {
			t.Fatalf("L4Off %d, extension headers end at %d after %d", l4, at, n)
		}
		if f.ICMP != ICMPError && (f.Src6 != [16]byte(ip[8:24]) || f.Dst6 != [16]byte(ip[24:40])) {
			t.Fatalf("flow %+v disagrees with header %x", f, ip[:40])
		}
	default:
		t.Fatalf("family %d", f.Family)
	}
	rest := frame[l4:end]
	switch f.ICMP {
	case ICMPNone:
		need := 20
		if f.Proto == protoUDP {
			need = 8
		} else if f.Proto != protoTCP {
			t.Fatalf("Proto %d", f.Proto)
		}
		if proto != f.Proto || len(rest) < need || f.Ports != le32(rest) || f.DstPort != binary.BigEndian.Uint16(rest[2:]) ||
			f.InnerOff != 0 || f.ICMPType != 0 || f.ICMPCode != 0 {
			t.Fatalf("flow %+v disagrees with frame %x", f, frame)
		}
	case ICMPEchoRequest:
		if (proto != protoICMP && proto != protoICMPv6) || f.Proto != proto || len(rest) < 8 || rest[0] != f.ICMPType || rest[1] != f.ICMPCode ||
			(rest[0] != icmpEchoRequest && rest[0] != icmp6EchoRequest) || f.Ports != 0 || f.DstPort != 0 || f.InnerOff != 0 {
			t.Fatalf("echo request %+v disagrees with frame %x", f, frame)
		}
	case ICMPError:
		if (proto != protoICMP && proto != protoICMPv6) || len(rest) < 8+28 || rest[0] != f.ICMPType || rest[1] != f.ICMPCode ||
			int(f.InnerOff) != l4+8 || (f.Proto != protoTCP && f.Proto != protoUDP) {
			t.Fatalf("error %+v disagrees with frame %x", f, frame)
		}
		q := frame[f.InnerOff:end]
		if f.Family == 4 {
			ihl := int(q[0]&0x0f) * 4
			if q[0]>>4 != 4 || len(q) < ihl+8 || q[9] != f.Proto || f.Src != le32(q[16:]) || f.Dst != le32(q[12:]) ||
				f.DstPort != binary.BigEndian.Uint16(q[ihl:]) || f.Ports != le32([]byte{q[ihl+2], q[ihl+3], q[ihl], q[ihl+1]}) {
				t.Fatalf("error %+v disagrees with quote %x", f, q)
			}
		} else if q[0]>>4 != 6 || len(q) < 48 || f.Src6 != [16]byte(q[24:40]) || f.Dst6 != [16]byte(q[8:24]) {
			t.Fatalf("error %+v disagrees with quote %x", f, q)
		}
	default:
		t.Fatalf("ICMP kind %d", f.ICMP)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fl Flow
		r := Parse(frame, &fl)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			return
		}
		checkFlow(t, frame, &fl)
		// Bytes after the frame (padding) change nothing.
		var again Flow
		if r := Parse(append(frame[:len(frame):len(frame)], 0xaa, 0xbb), &again); r != OK || again != fl {
			t.Fatalf("with two more bytes: %v %+v, was %+v", r, again, fl)
		}
	})
}

// FuzzEncap runs one forwarding mode (mode % 5: the encapModes, then
// RewriteDSR) on a frame in a buffer with headroom bytes in front. When
// Parse refuses the frame, the Flow is made up from the arguments, to
// exercise the argument checks.
func FuzzEncap(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(s, uint8(i), uint8(20+i%40), uint16(1518), uint16(14), uint16(len(s)), uint8(4))
	}
	f.Fuzz(func(t *testing.T, frame []byte, mode, headroom uint8, maxLen, l3, ipLen uint16, family uint8) {
		var fl Flow
		parsed := Parse(frame, &fl) == OK
		if !parsed {
			fl = Flow{L3Off: l3, IPLen: ipLen, Family: family}
		}
		buf := place(frame, int(headroom), 3)
		orig := append([]byte(nil), buf...)
		off, n := int(headroom), len(frame)
		if int(mode)%5 == len(encapModes) {
			newOff, newLen, ok := RewriteDSR(buf, off, n, &fl, lbMACArr, nextMAC)
			if !ok {
				if !bytes.Equal(buf, orig) {
					t.Fatal("refused but wrote to buf")
				}
				return
			}
			if newOff != off || newLen != n || !bytes.Equal(buf[off+12:], orig[off+12:]) || !bytes.Equal(buf[:off], orig[:off]) ||
				!bytes.Equal(buf[off:off+6], nextMAC[:]) || !bytes.Equal(buf[off+6:off+12], lbMACArr[:]) {
				t.Fatalf("RewriteDSR changed more than the MACs: %d, %d", newOff, newLen)
			}
			return
		}
		m := &encapModes[int(mode)%5]
		newOff, newLen, ok := m.run(buf, off, n, &fl, int(maxLen))
		if !ok {
			if !bytes.Equal(buf, orig) {
				t.Fatal("refused but wrote to buf")
			}
			return
		}
		if off < m.overhead || newLen > int(maxLen) || newOff != off-m.overhead {
			t.Fatalf("%s accepted headroom %d maxLen %d: %d, %d", m.name, off, maxLen, newOff, newLen)
		}
		if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
			t.Fatal("wrote outside the new frame")
		}
		if !parsed {
			if fl.Family != 4 && fl.Family != 6 {
				t.Fatalf("accepted family %d", fl.Family)
			}
			return
		}
		l := int(fl.L3Off)
		if newLen != l+m.overhead+int(fl.IPLen) || (l+int(fl.IPLen) == n && newLen != n+m.overhead) {
			t.Fatalf("newLen %d for n %d, flow %+v", newLen, n, fl)
		}
		out := buf[newOff : newOff+newLen]
		et := uint16(etherTypeIPv4)
		if m.name == "ipip6" || m.name == "gue6" {
			et = etherTypeIPv6
		}
		if !bytes.Equal(out[0:6], nextMAC[:]) || !bytes.Equal(out[6:12], lbMACArr[:]) ||
			binary.BigEndian.Uint16(out[l-2:]) != et || !bytes.Equal(out[12:l-2], frame[12:l-2]) {
			t.Fatalf("L2 header %x from %x", out[:l], frame[:l])
		}
		ip := out[l : l+m.overhead]
		inner := out[l+m.overhead:]
		if !bytes.Equal(inner, frame[l:l+int(fl.IPLen)]) {
			t.Fatal("inner packet changed")
		}
		checkOuterBytes(t, m.name, ip, inner, &fl)
	})
}

// checkOuterBytes checks the outer headers hdr an encapsulation wrote in
// front of inner, byte by byte, with the reference checksum.
func checkOuterBytes(t *testing.T, mode string, hdr, inner []byte, f *Flow) {
	t.Helper()
	proto := uint8(protoIPIP)
	if f.Family == 6 {
		proto = protoIPv6
	}
	next, udp := proto, []byte(nil)
	if mode == "gue4" || mode == "gue6" {
		next = protoUDP
	}
	switch mode {
	case "ipip", "gue4":
		ip := hdr[:20]
		if ip[0] != 0x45 || ip[1] != f.TOS || int(binary.BigEndian.Uint16(ip[2:])) != len(hdr)+len(inner) ||
			binary.BigEndian.Uint16(ip[4:]) != testID || (ip[6]&0x40 != 0) != f.DF || ip[6]&0xbf != 0 || ip[7] != 0 ||
			ip[8] != 64 || ip[9] != next || !bytes.Equal(ip[12:16], lbIP[:]) || !bytes.Equal(ip[16:20], backendIP[:]) ||
			refChecksum(ip) != 0 {
			t.Fatalf("outer header %x", ip)
		}
		udp = hdr[20:]
	default:
		ip := hdr[:40]
		if binary.BigEndian.Uint32(ip) != 6<<28|uint32(f.TOS)<<20|testFlowHash&0xfffff ||
			int(binary.BigEndian.Uint16(ip[4:])) != len(hdr)-40+len(inner) || ip[6] != next || ip[7] != 64 ||
			!bytes.Equal(ip[8:24], lbIP6[:]) || !bytes.Equal(ip[24:40], backendIP6[:]) {
			t.Fatalf("outer header %x", ip)
		}
		udp = hdr[40:]
	}
	if next != protoUDP {
		return
	}
	if binary.BigEndian.Uint16(udp[0:]) < GUEPortBase || binary.BigEndian.Uint16(udp[2:]) != testGUEPort ||
		int(binary.BigEndian.Uint16(udp[4:])) != len(udp)+len(inner) || !bytes.Equal(udp[8:12], []byte{0, proto, 0, 0}) {
		t.Fatalf("UDP and GUE headers %x", udp)
	}
	csum := binary.BigEndian.Uint16(udp[6:])
	if mode == "gue4" {
		if csum != 0 {
			t.Fatalf("UDP checksum over IPv4 %#04x", csum)
		}
		return
	}
	// The reference checksum over pseudo-header, UDP and GUE headers and
	// inner packet, written out in full.
	var ph []byte
	ph = append(ph, hdr[8:40]...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(udp)+len(inner)))
	ph = append(ph, 0, 0, 0, protoUDP)
	ph = append(ph, udp...)
	ph = append(ph, inner...)
	if csum == 0 || refChecksum(ph) != 0 {
		t.Fatalf("UDP checksum %#04x does not verify", csum)
	}
}

func FuzzEchoReply(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(s, uint8(i))
	}
	f.Fuzz(func(t *testing.T, frame []byte, headroom uint8) {
		var fl Flow
		if Parse(frame, &fl) != OK {
			return
		}
		buf := place(frame, int(headroom), 3)
		orig := append([]byte(nil), buf...)
		off, n := int(headroom), len(frame)
		newOff, newLen, ok := EchoReply(buf, off, n, &fl)
		if !ok {
			if fl.ICMP == ICMPEchoRequest && int(fl.L4Off-fl.L3Off) == 20+20*btoi(fl.Family == 6) {
				t.Fatalf("refused an echo request without options: %+v", fl)
			}
			if !bytes.Equal(buf, orig) {
				t.Fatal("refused but wrote to buf")
			}
			return
		}
		l3, l4, end := int(fl.L3Off), int(fl.L4Off), int(fl.L3Off)+int(fl.IPLen)
		if fl.ICMP != ICMPEchoRequest || newOff != off || newLen != end {
			t.Fatalf("EchoReply = %d, %d for %+v", newOff, newLen, fl)
		}
		if !bytes.Equal(buf[:off], orig[:off]) || !bytes.Equal(buf[off+end:], orig[off+end:]) {
			t.Fatal("wrote outside the reply")
		}
		out, in := buf[off:off+end], frame[:end]
		if !bytes.Equal(out[0:6], in[6:12]) || !bytes.Equal(out[6:12], in[0:6]) || !bytes.Equal(out[12:l3], in[12:l3]) {
			t.Fatalf("L2 header %x from %x", out[:l3], in[:l3])
		}
		ip, inIP := out[l3:l4], in[l3:l4]
		if fl.Family == 4 {
			if !bytes.Equal(ip[12:16], inIP[16:20]) || !bytes.Equal(ip[16:20], inIP[12:16]) || ip[8] != 64 ||
				!bytes.Equal(ip[:8], inIP[:8]) || ip[9] != inIP[9] || refChecksum(ip) != 0 || out[l4] != icmpEchoReply {
				t.Fatalf("IPv4 header %x from %x", ip, inIP)
			}
		} else if !bytes.Equal(ip[8:24], inIP[24:40]) || !bytes.Equal(ip[24:40], inIP[8:24]) || ip[7] != 64 ||
			!bytes.Equal(ip[:7], inIP[:7]) || out[l4] != icmp6EchoReply {
			t.Fatalf("IPv6 header %x from %x", ip, inIP)
		}
		if refChecksum(out[l4:]) != refChecksum(in[l4:]) || !bytes.Equal(out[l4+4:], in[l4+4:]) || out[l4+1] != in[l4+1] {
			t.Fatalf("ICMP message %x from %x", out[l4:], in[l4:])
		}
	})
}

func FuzzFragNeeded(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(s, uint8(i*7), uint8(i*13), uint16(1280+i))
	}
	f.Fuzz(func(t *testing.T, frame []byte, headroom, tail uint8, mtu uint16) {
		var fl Flow
		if Parse(frame, &fl) != OK {
			return
		}
		buf := place(frame, int(headroom), int(tail))
		orig := append([]byte(nil), buf...)
		off, n := int(headroom), len(frame)
		newOff, newLen, ok := FragNeeded(buf, off, n, &fl, int(mtu))
		overhead, limit, minMTU := 28, 576, 68
		if fl.Family == 6 {
			overhead, limit, minMTU = 48, 1280, 1280
		}
		l3 := int(fl.L3Off)
		q := min(int(fl.IPLen), limit-overhead)
		if !ok {
			room := off >= overhead || off+l3+overhead+q <= len(buf)
			if fl.ICMP != ICMPError && int(mtu) >= minMTU && room {
				t.Fatalf("refused mtu %d, headroom %d, tail %d: %+v", mtu, headroom, tail, fl)
			}
			if !bytes.Equal(buf, orig) {
				t.Fatal("refused but wrote to buf")
			}
			return
		}
		if fl.ICMP == ICMPError || int(mtu) < minMTU || newLen != l3+overhead+q ||
			(off >= overhead && newOff != off-overhead) || (off < overhead && newOff != off) {
			t.Fatalf("FragNeeded = %d, %d for mtu %d, headroom %d, %+v", newOff, newLen, mtu, headroom, fl)
		}
		if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
			t.Fatal("wrote outside the new frame")
		}
		out := buf[newOff : newOff+newLen]
		if !bytes.Equal(out[0:6], frame[6:12]) || !bytes.Equal(out[6:12], frame[0:6]) || !bytes.Equal(out[12:l3-2], frame[12:l3-2]) ||
			!bytes.Equal(out[l3+overhead:], frame[l3:l3+q]) {
			t.Fatalf("L2 header or quote wrong: %x from %x", out, frame)
		}
		ip, msg := out[l3:l3+overhead-8], out[l3+overhead-8:]
		if fl.Family == 4 {
			if ip[0] != 0x45 || int(binary.BigEndian.Uint16(ip[2:])) != overhead+q || ip[9] != protoICMP || refChecksum(ip) != 0 ||
				!bytes.Equal(ip[12:16], frame[l3+16:l3+20]) || !bytes.Equal(ip[16:20], frame[l3+12:l3+16]) ||
				msg[0] != 3 || msg[1] != 4 || binary.BigEndian.Uint32(msg[4:]) != uint32(mtu) || refChecksum(msg) != 0 {
				t.Fatalf("ICMP error %x", out[l3:l3+overhead])
			}
		} else {
			ph := append(append(append([]byte(nil), ip[8:40]...), binary.BigEndian.AppendUint32(nil, uint32(len(msg)))...), 0, 0, 0, protoICMPv6)
			if ip[0]>>4 != 6 || int(binary.BigEndian.Uint16(ip[4:])) != 8+q || ip[6] != protoICMPv6 ||
				!bytes.Equal(ip[8:24], frame[l3+24:l3+40]) || !bytes.Equal(ip[24:40], frame[l3+8:l3+24]) ||
				msg[0] != 2 || msg[1] != 0 || binary.BigEndian.Uint32(msg[4:]) != uint32(mtu) || refChecksum(append(ph, msg...)) != 0 {
				t.Fatalf("ICMPv6 error %x", out[l3:l3+overhead])
			}
		}
		// Parsed, the error is about the packet: its flow turned around.
		var e Flow
		r := Parse(out, &e)
		if fl.ICMP == ICMPNone && (r != OK || e.ICMP != ICMPError || e.Src != fl.Dst || e.Dst != fl.Src || e.Src6 != fl.Dst6 || e.Dst6 != fl.Src6) {
			t.Fatalf("the error parses as %v, %+v, for %+v", r, e, fl)
		}
	})
}
