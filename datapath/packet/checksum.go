package packet

import "encoding/binary"

// Checksum returns the Internet checksum (RFC 1071) of b: the ones'
// complement of the ones'-complement sum of its big-endian 16-bit words,
// an odd last byte padded with zero. Over an IPv4 header whose checksum
// field is zero it gives the value to store there; over a header with its
// checksum in place it gives 0 if the header is intact.
//
// The 20-byte case, an IPv4 header without options, is unrolled into five
// 32-bit loads. EncapIPIP does not call it: it sums the words of the header
// it writes before storing them (see fold).
func Checksum(b []byte) uint16 {
	var sum uint64
	if len(b) == ipv4HeaderLen {
		sum = uint64(binary.BigEndian.Uint32(b[0:4])) +
			uint64(binary.BigEndian.Uint32(b[4:8])) +
			uint64(binary.BigEndian.Uint32(b[8:12])) +
			uint64(binary.BigEndian.Uint32(b[12:16])) +
			uint64(binary.BigEndian.Uint32(b[16:20]))
	} else {
		for len(b) >= 4 {
			sum += uint64(binary.BigEndian.Uint32(b))
			b = b[4:]
		}
		if len(b) >= 2 {
			sum += uint64(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint64(b[0]) << 8
		}
	}
	return fold(sum)
}

// fold returns the Internet checksum of a sum of big-endian 32-bit (or
// 16-bit) words of at most 2^33: the sum folded to 16 bits with end-around
// carries, complemented. Summing 32-bit words and folding gives the same
// ones'-complement sum as summing 16-bit words, since 2^16 ≡ 1 modulo
// 2^16-1.
func fold(sum uint64) uint16 {
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return ^uint16(sum)
}
