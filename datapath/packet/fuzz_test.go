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

// checkFlow checks the invariants of a frame ParseIPv4 accepted: every
// offset is inside the frame, and every field is what the bytes there say.
func checkFlow(t *testing.T, frame []byte, f *Flow) {
	t.Helper()
	l3, l4, end := int(f.L3Off), int(f.L4Off), int(f.L3Off)+int(f.IPLen)
	if l3 != 14 && l3 != 18 {
		t.Fatalf("L3Off %d", l3)
	}
	ihl := l4 - l3
	if ihl < 20 || ihl > 60 || ihl%4 != 0 || ihl != int(frame[l3]&0x0f)*4 || frame[l3]>>4 != 4 {
		t.Fatalf("L4Off %d with L3Off %d, version/IHL byte %#02x", l4, l3, frame[l3])
	}
	need := 20
	if f.Proto == protoUDP {
		need = 8
	} else if f.Proto != protoTCP {
		t.Fatalf("Proto %d", f.Proto)
	}
	if end > len(frame) || l4+need > end || int(binary.BigEndian.Uint16(frame[l3+2:])) != int(f.IPLen) {
		t.Fatalf("IPLen %d, L4Off %d, frame %d bytes", f.IPLen, l4, len(frame))
	}
	if frame[l3+9] != f.Proto || frame[l3+1] != f.TOS || f.DF != (frame[l3+6]&0x40 != 0) ||
		f.Src != le32(frame[l3+12:]) || f.Dst != le32(frame[l3+16:]) ||
		f.Ports != le32(frame[l4:]) || f.DstPort != binary.BigEndian.Uint16(frame[l4+2:]) {
		t.Fatalf("flow %+v disagrees with frame %x", f, frame)
	}
	if binary.BigEndian.Uint16(frame[l3+6:])&0x3fff != 0 {
		t.Fatalf("fragment accepted: %x", frame)
	}
}

func FuzzParseIPv4(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fl Flow
		r := ParseIPv4(frame, &fl)
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			return
		}
		checkFlow(t, frame, &fl)
		// Bytes after the frame (padding) change nothing.
		var again Flow
		if r := ParseIPv4(append(frame[:len(frame):len(frame)], 0xaa, 0xbb), &again); r != OK || again != fl {
			t.Fatalf("with two more bytes: %v %+v, was %+v", r, again, fl)
		}
	})
}

func FuzzEncapIPIP(f *testing.F) {
	for i, s := range fuzzSeeds(f) {
		f.Add(s, uint8(20+i%3), uint16(1518), uint16(i), uint16(14), uint16(len(s)))
	}
	f.Fuzz(func(t *testing.T, frame []byte, headroom uint8, maxLen, id, l3, ipLen uint16) {
		var fl Flow
		parsed := ParseIPv4(frame, &fl) == OK
		if !parsed {
			// Exercise the argument checks with whatever Flow the fuzzer makes.
			fl = Flow{L3Off: l3, IPLen: ipLen}
		}
		buf := place(frame, int(headroom), 3)
		orig := append([]byte(nil), buf...)
		off, n := int(headroom), len(frame)
		newOff, newLen, ok := EncapIPIP(buf, off, n, &fl, lbIP, backendIP, lbMACArr, nextMAC, id, int(maxLen))
		if !ok {
			if !bytes.Equal(buf, orig) {
				t.Fatal("refused but wrote to buf")
			}
			return
		}
		if off < 20 || newLen > int(maxLen) || newOff != off-20 {
			t.Fatalf("accepted headroom %d maxLen %d: %d, %d", off, maxLen, newOff, newLen)
		}
		if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
			t.Fatal("wrote outside the new frame")
		}
		if !parsed {
			return
		}
		l := int(fl.L3Off)
		if newLen != l+20+int(fl.IPLen) || (l+int(fl.IPLen) == n && newLen != n+20) {
			t.Fatalf("newLen %d for n %d, flow %+v", newLen, n, fl)
		}
		out := buf[newOff : newOff+newLen]
		ip := out[l : l+20]
		if !bytes.Equal(out[0:6], nextMAC[:]) || !bytes.Equal(out[6:12], lbMACArr[:]) ||
			binary.BigEndian.Uint16(out[l-2:]) != etherTypeIPv4 || !bytes.Equal(out[12:l-2], frame[12:l-2]) {
			t.Fatalf("L2 header %x from %x", out[:l], frame[:l])
		}
		if ip[0] != 0x45 || ip[1] != fl.TOS || int(binary.BigEndian.Uint16(ip[2:])) != int(fl.IPLen)+20 ||
			binary.BigEndian.Uint16(ip[4:]) != id || (ip[6]&0x40 != 0) != fl.DF || ip[6]&0xbf != 0 || ip[7] != 0 ||
			ip[8] != 64 || ip[9] != protoIPIP || !bytes.Equal(ip[12:16], lbIP[:]) || !bytes.Equal(ip[16:20], backendIP[:]) ||
			Checksum(ip) != 0 {
			t.Fatalf("outer header %x", ip)
		}
		if !bytes.Equal(out[l+20:], frame[l:l+int(fl.IPLen)]) {
			t.Fatal("inner packet changed")
		}
	})
}
