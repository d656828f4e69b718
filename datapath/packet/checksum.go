package packet

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the Internet checksum (RFC 1071) of b: the ones'
// complement of the ones'-complement sum of its big-endian 16-bit words,
// an odd last byte padded with zero. Over an IPv4 header whose checksum
// field is zero it gives the value to store there; over a header with its
// checksum in place it gives 0 if the header is intact.
//
// The 20-byte case, an IPv4 header without options, is unrolled into five
// 32-bit loads. The encapsulations do not call it: they sum the words of
// the header they write before storing them (see fold).
func Checksum(b []byte) uint16 {
	if len(b) == ipv4HeaderLen {
		return fold(uint64(binary.BigEndian.Uint32(b[0:4])) +
			uint64(binary.BigEndian.Uint32(b[4:8])) +
			uint64(binary.BigEndian.Uint32(b[8:12])) +
			uint64(binary.BigEndian.Uint32(b[12:16])) +
			uint64(binary.BigEndian.Uint32(b[16:20])))
	}
	return fold(sum(b, 0))
}

// sum adds the big-endian 16-bit words of b, an odd last byte padded with
// zero, to acc, unfolded: a ones'-complement sum in 64 bits (end-around
// carry), which fold reduces to 16 bits since 2^64-1 is a multiple of
// 2^16-1. It takes 32 bytes per iteration in a chain of add-with-carry
// instructions, about four times the speed of summing 32-bit words. b
// must start at an even offset of the checksummed data.
func sum(b []byte, acc uint64) uint64 {
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	var tail uint64 // the last 0 to 7 bytes, as the high bytes of a word
	if len(b) >= 4 {
		tail = uint64(binary.BigEndian.Uint32(b)) << 32
		b = b[4:]
	}
	if len(b) >= 2 {
		tail |= uint64(binary.BigEndian.Uint16(b)) << 16
		b = b[2:]
	}
	if len(b) == 1 {
		tail |= uint64(b[0]) << 8
	}
	acc, c = bits.Add64(acc, tail, c)
	acc, c = bits.Add64(acc, c, 0)
	return acc + c
}

// pseudo6 is the unfolded sum of the IPv6 pseudo-header (RFC 8200 section
// 8.1) that the UDP and ICMPv6 checksums cover: source and destination
// addresses, upper-layer length and next header.
func pseudo6(src, dst *[16]byte, length uint32, proto uint8) uint64 {
	return uint64(binary.BigEndian.Uint32(src[0:4])) + uint64(binary.BigEndian.Uint32(src[4:8])) +
		uint64(binary.BigEndian.Uint32(src[8:12])) + uint64(binary.BigEndian.Uint32(src[12:16])) +
		uint64(binary.BigEndian.Uint32(dst[0:4])) + uint64(binary.BigEndian.Uint32(dst[4:8])) +
		uint64(binary.BigEndian.Uint32(dst[8:12])) + uint64(binary.BigEndian.Uint32(dst[12:16])) +
		uint64(length) + uint64(proto)
}

// fold returns the Internet checksum of an unfolded sum of big-endian
// 16-, 32- or 64-bit words: the sum folded to 16 bits with end-around
// carries, complemented. Summing wider words and folding gives the same
// ones'-complement sum as summing 16-bit words, since 2^16 ≡ 1 modulo
// 2^16-1; the first step takes any 64-bit value down to 33 bits.
func fold(sum uint64) uint16 {
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return ^uint16(sum)
}

// update returns checksum hc after one 16-bit word it covers changed from
// old to new, without summing the data again: RFC 1624's equation 3,
// HC' = ~(~HC + ~m + m'). A checksum that was wrong stays wrong.
func update(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}
