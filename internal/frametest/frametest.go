// Package frametest builds test frames with gopacket: layers serialized
// with their lengths and checksums filled in.
//
// Why gopacket: it is an implementation independent of xlb's own parser
// and encapsulation, so a frame it builds is a fair input and a fair
// reference for them. It stays out of the per-packet path; only tests and
// tools import this package.
package frametest

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Serialize writes ls as one frame, lengths and checksums computed, into a
// slice of its own.
func Serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// IPv4 is an IPv4 header from src to dst carrying proto, TTL 64.
func IPv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// IPv6 is an IPv6 header from src to dst with next header next, hop limit
// 64.
func IPv6(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// WithIHL returns a copy of f with the IPv4 IHL nibble at offset off set
// to ihl: a header length the frame's bytes do not match.
func WithIHL(f []byte, off int, ihl byte) []byte {
	g := append([]byte(nil), f...)
	g[off] = g[off]&0xf0 | ihl
	return g
}
