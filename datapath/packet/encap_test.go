package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const testHeadroom = 256 // as the UMEM is registered by ring/

// place copies frame into a fresh UMEM-like buffer after headroom bytes,
// with tail spare bytes after it, all filled with a marker so stray writes
// show up.
func place(frame []byte, headroom, tail int) []byte {
	buf := bytes.Repeat([]byte{0xee}, headroom+len(frame)+tail)
	copy(buf[headroom:], frame)
	return buf
}

func TestEncapIPIP(t *testing.T) {
	for _, c := range []struct {
		description string
		s           spec
	}{
		{"tcp", spec{payload: 32}},
		{"tcp syn", spec{}},
		{"udp with ethernet padding", spec{proto: "udp"}},
		{"udp", spec{proto: "udp", payload: 1000}},
		{"tos and df", spec{tos: 0x2e<<2 | 2, df: true, payload: 10}},
		{"802.1Q", spec{vlan: true, payload: 32}},
		{"802.1Q udp with padding and df", spec{vlan: true, proto: "udp", df: true}},
		{"options", spec{optWords: 10, payload: 32}},
		{"802.1Q and options", spec{vlan: true, optWords: 3, proto: "udp", payload: 5}},
	} {
		t.Run(c.description, func(t *testing.T) {
			frame := build(t, c.s)
			var f Flow
			if r := Parse(frame, &f); r != OK {
				t.Fatalf("ParseIPv4: %v", r)
			}
			buf := place(frame, testHeadroom, 16)
			orig := append([]byte(nil), buf...)
			const id = 0xbeef
			newOff, newLen, ok := EncapIPIP(buf, testHeadroom, len(frame), &f, lbIP, backendIP, lbMACArr, nextMAC, id, 1514+4)
			if !ok {
				t.Fatal("EncapIPIP: not ok")
			}
			l3 := int(f.L3Off)
			if newOff != testHeadroom-20 || newLen != l3+20+int(f.IPLen) {
				t.Fatalf("EncapIPIP = %d, %d; want %d, %d", newOff, newLen, testHeadroom-20, l3+20+int(f.IPLen))
			}
			if f.IPLen == uint16(len(frame)-l3) && newLen != len(frame)+20 {
				t.Errorf("unpadded frame: newLen %d, want n+20 = %d", newLen, len(frame)+20)
			}
			// Nothing outside the new frame and the old frame's padding changed.
			if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
				t.Error("EncapIPIP wrote outside the new frame")
			}
			out := buf[newOff : newOff+newLen]
			checkEncap(t, out, frame, &f, id)
		})
	}
}

// checkEncap decodes out with gopacket and checks it is frame (parsed as
// f) encapsulated from lbIP/lbMAC to backendIP/nextMAC.
func checkEncap(t *testing.T, out, frame []byte, f *Flow, id uint16) {
	t.Helper()
	l3 := int(f.L3Off)
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode the output: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.DstMAC, nextMAC[:]) || !bytes.Equal(eth.SrcMAC, lbMACArr[:]) {
		t.Errorf("MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	// A VLAN tag is kept byte for byte: TPID, priority, DEI and VLAN id.
	if l3 == 18 {
		if !bytes.Equal(out[12:16], frame[12:16]) {
			t.Errorf("VLAN tag %x, want %x", out[12:16], frame[12:16])
		}
		dq, _ := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		if dq == nil || dq.VLANIdentifier != 100 || dq.Priority != 5 || dq.Type != layers.EthernetTypeIPv4 {
			t.Errorf("802.1Q layer %+v", dq)
		}
	} else if eth.EthernetType != layers.EthernetTypeIPv4 {
		t.Errorf("EtherType %v", eth.EthernetType)
	}

	var inner *layers.IPv4
	var outer *layers.IPv4
	for _, l := range p.Layers() {
		if ip, ok := l.(*layers.IPv4); ok {
			if outer == nil {
				outer = ip
			} else {
				inner = ip
			}
		}
	}
	if outer == nil || inner == nil {
		t.Fatalf("want two IPv4 layers, got %v", p)
	}
	if outer.Version != 4 || outer.IHL != 5 || outer.TOS != f.TOS || int(outer.Length) != int(f.IPLen)+20 ||
		outer.Id != id || outer.FragOffset != 0 || outer.TTL != 64 || outer.Protocol != layers.IPProtocolIPv4 ||
		!outer.SrcIP.Equal(lbIP[:]) || !outer.DstIP.Equal(backendIP[:]) {
		t.Errorf("outer header %+v", outer)
	}
	wantFlags := layers.IPv4Flag(0)
	if f.DF {
		wantFlags = layers.IPv4DontFragment
	}
	if outer.Flags != wantFlags {
		t.Errorf("outer flags %v, want %v", outer.Flags, wantFlags)
	}
	// The checksum as gopacket computes it for the same header.
	sb := gopacket.NewSerializeBuffer()
	if err := outer.SerializeTo(sb, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.Uint16(sb.Bytes()[10:12]); outer.Checksum != want {
		t.Errorf("outer checksum %#04x, gopacket computes %#04x", outer.Checksum, want)
	}
	if Checksum(out[l3:l3+20]) != 0 {
		t.Error("outer header does not verify")
	}
	if !bytes.Equal(out[l3+20:], frame[l3:l3+int(f.IPLen)]) {
		t.Error("inner packet is not the original IP packet byte for byte")
	}
}

func TestEncapIPIPRefuses(t *testing.T) {
	frame := build(t, spec{vlan: true, payload: 1500 - 40})
	var f Flow
	if r := Parse(frame, &f); r != OK {
		t.Fatalf("ParseIPv4: %v", r)
	}
	n := len(frame) // 1518: a full-size packet on a 1500-byte MTU, tagged
	bad := func(g func(*Flow)) *Flow { c := f; g(&c); return &c }
	for _, c := range []struct {
		description string
		headroom    int
		n           int
		f           *Flow
		maxLen      int
		ok          bool
	}{
		{"enough headroom, mtu 1520", 20, n, &f, 1520 + 18, true},
		{"headroom 19", 19, n, &f, 1520 + 18, false},
		{"headroom 0", 0, n, &f, 1520 + 18, false},
		{"too big for mtu 1500", 256, n, &f, 1500 + 18, false},
		{"one byte too big", 256, n, &f, n + 19, false},
		{"exactly fits", 256, n, &f, n + 20, true},
		{"n beyond buffer", 256, n + 1, &f, 9000, false},
		{"negative n", 256, -1, &f, 9000, false},
		{"ip length beyond n", 256, n - 1, &f, 9000, false},
		{"l3 offset 0", 256, n, bad(func(f *Flow) { f.L3Off = 0 }), 9000, false},
		{"l3 offset 16", 256, n, bad(func(f *Flow) { f.L3Off = 16 }), 9000, false},
		{"ip length 19", 256, n, bad(func(f *Flow) { f.IPLen = 19 }), 9000, false},
		{"ip length 65535", 256, n, bad(func(f *Flow) { f.IPLen = 65535 }), 1 << 20, false},
	} {
		t.Run(c.description, func(t *testing.T) {
			buf := place(frame, c.headroom, 0)
			orig := append([]byte(nil), buf...)
			newOff, newLen, ok := EncapIPIP(buf, c.headroom, c.n, c.f, lbIP, backendIP, lbMACArr, nextMAC, 7, c.maxLen)
			if ok != c.ok {
				t.Fatalf("EncapIPIP ok = %v, want %v", ok, c.ok)
			}
			if ok {
				checkEncap(t, buf[newOff:newOff+newLen], frame, c.f, 7)
				return
			}
			if newOff != 0 || newLen != 0 {
				t.Errorf("refused but returned %d, %d", newOff, newLen)
			}
			if !bytes.Equal(buf, orig) {
				t.Error("refused but wrote to buf")
			}
		})
	}
}

// Sinks keep the compiler from dropping the measured work.
var (
	sinkFlow   Flow
	sinkReason Reason
	sinkInt    int
	sinkStr    string
)

func TestNoAllocs(t *testing.T) {
	frame := build(t, spec{vlan: true, optWords: 2, payload: 32})
	buf := place(frame, testHeadroom, 0)
	if a := testing.AllocsPerRun(1000, func() {
		sinkReason = Parse(frame, &sinkFlow)
	}); a != 0 {
		t.Errorf("ParseIPv4: %v allocs per run", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		copy(buf[testHeadroom:], frame)
		var f Flow
		Parse(buf[testHeadroom:], &f)
		off, n, _ := EncapIPIP(buf, testHeadroom, len(frame), &f, lbIP, backendIP, lbMACArr, nextMAC, 1, 1518)
		sinkInt += off + n
	}); a != 0 {
		t.Errorf("ParseIPv4+EncapIPIP: %v allocs per run", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		sinkStr = (sinkReason + Fragment).String()
	}); a != 0 {
		t.Errorf("Reason.String: %v allocs per run", a)
	}
}
