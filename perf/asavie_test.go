package perf

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/bpf/labprogs"
)

var (
	testLBMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	testSinkMAC = [6]byte{0x02, 0, 0, 0, 0, 0x03}
)

// frameAt builds a generator frame to dst:port inside a 2048-byte UMEM-like
// frame at offset 256, as AF_XDP delivers it.
func frameAt(t *testing.T, dst netip.Addr, proto uint8, size int) (buf []byte, off, n int) {
	t.Helper()
	f, err := labprogs.BuildTemplate(labprogs.TemplateSpec{
		DstMAC: testLBMAC, SrcMAC: [6]byte{0x02, 0, 0, 0, 0, 1}, Src: flowSource, Dst: dst,
		DstPort: vipPort, Proto: proto, Size: size,
	})
	if err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, asavieFrameSize)
	copy(buf[256:], f)
	return buf, 256, len(f)
}

func TestBaselineForward(t *testing.T) {
	fwd, err := newBaselineForwarder(testLBMAC, testSinkMAC, fabricMTU, 4)
	if err != nil {
		t.Fatal(err)
	}
	all := backends(4)
	for _, tc := range []struct {
		name  string
		dst   netip.Addr
		proto uint8
		size  int
		ok    bool
	}{
		{"udp-64", vip, 17, 64, true},
		{"tcp-1500", vip, 6, 1500, true},
		{"not-the-vip", sinkAddr.Addr(), 17, 64, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf, off, n := frameAt(t, tc.dst, tc.proto, tc.size)
			inner := slices.Clone(buf[off+14 : off+n])
			newOff, newLen, ok := fwd.forward(buf, off, n)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			out := buf[newOff : newOff+newLen]
			if newOff != off-20 || newLen != n+20 {
				t.Fatalf("new frame at %d+%d, want %d+%d", newOff, newLen, off-20, n+20)
			}
			if [6]byte(out[0:6]) != testSinkMAC || [6]byte(out[6:12]) != testLBMAC {
				t.Errorf("MACs %x -> %x", out[6:12], out[0:6])
			}
			if out[14+9] != 4 {
				t.Errorf("outer protocol %d, want 4 (IPIP)", out[14+9])
			}
			dst := netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
			if !slices.Contains(all, dst) {
				t.Errorf("outer destination %s is not a backend", dst)
			}
			if got := binary.BigEndian.Uint16(out[14+2:]); int(got) != n-14+20 {
				t.Errorf("outer total length %d, want %d", got, n-14+20)
			}
			if string(out[34:]) != string(inner) {
				t.Errorf("inner packet changed")
			}
		})
	}
}

func TestBaselineForwardAllocs(t *testing.T) {
	fwd, err := newBaselineForwarder(testLBMAC, testSinkMAC, fabricMTU, 4)
	if err != nil {
		t.Fatal(err)
	}
	buf, off, n := frameAt(t, vip, 17, 64)
	orig := slices.Clone(buf)
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, orig)
		if _, _, ok := fwd.forward(buf, off, n); !ok {
			t.Fatal("not forwarded")
		}
	})
	if allocs != 0 {
		t.Errorf("forward allocates %v times per packet, want 0", allocs)
	}
}
