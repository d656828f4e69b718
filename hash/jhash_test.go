package hash

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// jhashBytes is the kernel's byte-wise jhash(key, length, initval) (and
// lookup3's hashlittle on a little-endian machine), written plainly as a
// reference for the word-wise functions the package uses.
func jhashBytes(key []byte, initval uint32) uint32 {
	a := jhashInitval + uint32(len(key)) + initval
	b, c := a, a
	for len(key) > 12 {
		a += binary.LittleEndian.Uint32(key[0:])
		b += binary.LittleEndian.Uint32(key[4:])
		c += binary.LittleEndian.Uint32(key[8:])
		a, b, c = jhashMix(a, b, c)
		key = key[12:]
	}
	if len(key) == 0 {
		return c
	}
	var tail [12]byte
	copy(tail[:], key)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	return jhashFinal(a, b, c)
}

// TestJhashPublishedVectors checks the mix and final steps against the
// values Bob Jenkins' lookup3.c prints in driver5 for hashlittle.
func TestJhashPublishedVectors(t *testing.T) {
	tests := []struct {
		key     string
		initval uint32
		want    uint32
	}{
		{"", 0, 0xdeadbeef},
		{"", 0xdeadbeef, 0xbd5b7dde},
		{"Four score and seven years ago", 0, 0x17770551},
		{"Four score and seven years ago", 1, 0xcd628161},
	}
	for _, tt := range tests {
		if got := jhashBytes([]byte(tt.key), tt.initval); got != tt.want {
			t.Errorf("jhash(%q, %#x) = %#08x, want %#08x", tt.key, tt.initval, got, tt.want)
		}
	}
}

// TestJhashWordForms checks that the word-wise forms (jhash_3words, jhash2
// of 4 and 9 words) equal the byte-wise jhash of the same little-endian
// bytes, as the kernel's do.
func TestJhashWordForms(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var buf [36]byte
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		iv := rng.Uint32()
		w := func(i int) uint32 { return binary.LittleEndian.Uint32(buf[4*i:]) }

		if got, want := jhash3Words(w(0), w(1), w(2), iv), jhashBytes(buf[:12], iv); got != want {
			t.Fatalf("jhash3Words(% x, %#x) = %#08x, jhash = %#08x", buf[:12], iv, got, want)
		}
		k16 := [16]byte(buf[:16])
		if got, want := jhash16(&k16, iv), jhashBytes(buf[:16], iv); got != want {
			t.Fatalf("jhash16(% x, %#x) = %#08x, jhash = %#08x", buf[:16], iv, got, want)
		}
		s, d := [16]byte(buf[0:16]), [16]byte(buf[16:32])
		proto := uint8(iv)
		if got, want := Flow6(&s, &d, w(8), proto), jhashBytes(buf[:], FlowSeed^uint32(proto)); got != want {
			t.Fatalf("Flow6(% x) = %#08x, jhash = %#08x", buf[:], got, want)
		}
		if got, want := Flow4(w(0), w(1), w(2), proto), jhashBytes(buf[:12], FlowSeed^uint32(proto)); got != want {
			t.Fatalf("Flow4(% x) = %#08x, jhash = %#08x", buf[:12], got, want)
		}
	}
}
