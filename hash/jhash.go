package hash

import (
	"encoding/binary"
	"math/bits"
)

// This file is Bob Jenkins' lookup3 hash in the exact form of the Linux
// kernel's include/linux/jhash.h (jhash2, jhash_3words), restricted to keys
// made of whole 32-bit words. Everything is 32-bit unsigned add, subtract,
// xor and rotate, so a BPF program computes the same values bit for bit.
//
// jhash2(k[0..n-1], n, initval), for n >= 1:
//
//	a = b = c = 0xdeadbeef + 4*n + initval
//	while n > 3: a += k[0]; b += k[1]; c += k[2]; mix(a, b, c); k += 3; n -= 3
//	c += k[2] (if n == 3); b += k[1] (if n >= 2); a += k[0]; final(a, b, c)
//	return c
//
// The kernel's jhash_3words(a, b, c, initval) is jhash2 of {a, b, c} with
// length 3, and jhash2 of n words equals the byte-wise jhash (and lookup3's
// hashlittle) of the same 4n bytes on a little-endian machine; the tests
// check both against Bob Jenkins' published hashlittle vectors.

// jhashInitval is JHASH_INITVAL, lookup3's arbitrary starting value.
const jhashInitval uint32 = 0xdeadbeef

// jhashMix is the kernel's __jhash_mix: it mixes three words reversibly.
func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

// jhashFinal is the kernel's __jhash_final; the hash is the returned c.
func jhashFinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// jhash3Words is the kernel's jhash_3words(a, b, c, initval).
func jhash3Words(a, b, c, initval uint32) uint32 {
	iv := jhashInitval + 3<<2 + initval
	return jhashFinal(a+iv, b+iv, c+iv)
}

// jhash16 is jhash2 over the 16 bytes of k read as four little-endian words:
// an IPv6 address (or an IPv4 address in its IPv4-mapped form).
func jhash16(k *[16]byte, initval uint32) uint32 {
	iv := jhashInitval + 4<<2 + initval
	a, b, c := jhashMix(
		iv+binary.LittleEndian.Uint32(k[0:4]),
		iv+binary.LittleEndian.Uint32(k[4:8]),
		iv+binary.LittleEndian.Uint32(k[8:12]))
	return jhashFinal(a+binary.LittleEndian.Uint32(k[12:16]), b, c)
}
