package packet

import (
	"math/rand/v2"
	"testing"
)

// refChecksum is RFC 1071 written the obvious way, 16 bits at a time.
func refChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func TestChecksum(t *testing.T) {
	// RFC 1071's worked example: words 0001 f203 f4f5 f6f7 sum to ddf2.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("RFC 1071 example: %#04x", got)
	}
	// A header from the wild (Wikipedia's IPv4 checksum example).
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := Checksum(hdr); got != 0xb861 {
		t.Errorf("IPv4 example: %#04x, want 0xb861", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 300; n++ {
		for range 50 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if n%7 == 0 {
				for i := range b {
					b[i] = 0xff // carries everywhere
				}
			}
			if got, want := Checksum(b), refChecksum(b); got != want {
				t.Fatalf("Checksum(%x) = %#04x, want %#04x", b, got, want)
			}
		}
	}
	// Every header gopacket builds verifies to zero.
	for _, s := range []spec{{}, {optWords: 10}, {vlan: true, tos: 0xff, df: true}} {
		frame := build(t, s)
		var f Flow
		if r := Parse(frame, &f); r != OK {
			t.Fatalf("%+v: %v", s, r)
		}
		if c := Checksum(frame[f.L3Off:f.L4Off]); c != 0 {
			t.Errorf("%+v: gopacket's header sums to %#04x, want 0", s, c)
		}
	}
}

// TestSumLong checks sum on packet-sized buffers, from an odd initial
// sum, against the reference.
func TestSumLong(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1279, 1280, 1400, 1500, 9000, 65535} {
		for _, fill := range []int{-1, 0xff, 0} {
			b := make([]byte, n+2)
			for i := range b {
				if fill < 0 {
					b[i] = byte(rng.Uint32())
				} else {
					b[i] = byte(fill)
				}
			}
			// acc holds 0x1234 + 0x5678 as the first two words would.
			b[0], b[1], b[2], b[3] = 0x12, 0x34, 0x56, 0x78
			if got, want := fold(sum(b[4:], 0x12345678)), refChecksum(b); got != want {
				t.Errorf("%d bytes of %d: %#04x, want %#04x", n, fill, got, want)
			}
		}
	}
}

// TestUpdate checks the RFC 1624 update against summing again, for every
// value of the changed word on random data.
func TestUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[2], b[3] = 0, 0
	c := refChecksum(b)
	b[2], b[3] = byte(c>>8), byte(c)
	for w := 0; w <= 0xffff; w++ {
		old := uint16(b[10])<<8 | uint16(b[11])
		got := update(uint16(b[2])<<8|uint16(b[3]), old, uint16(w))
		b[10], b[11] = byte(w>>8), byte(w)
		b[2], b[3] = byte(got>>8), byte(got)
		if refChecksum(b) != 0 {
			t.Fatalf("after setting word 5 to %#04x from %#04x the data sums to %#04x", w, old, refChecksum(b))
		}
	}
}

func TestPseudo6(t *testing.T) {
	var ph []byte
	ph = append(ph, lbIP6[:]...)
	ph = append(ph, backendIP6[:]...)
	ph = append(ph, 0, 1, 0x23, 0x45, 0, 0, 0, protoUDP)
	if got, want := fold(pseudo6(&lbIP6, &backendIP6, 0x12345, protoUDP)), refChecksum(ph); got != want {
		t.Errorf("pseudo6: %#04x, want %#04x", got, want)
	}
}
