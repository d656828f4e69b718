// Package hashtest holds the flow hash's golden vectors, for the tests of
// both implementations of it: package hash (Go, the AF_XDP worker's) and
// the native BPF program's, which must produce the same values.
//
// Computed once from package hash (itself checked against lookup3's
// published values), frozen, and the first row of each table plus the
// all-zero rows reproduced by an independent transcription of
// include/linux/jhash.h. A change here changes which backend every flow
// goes to.
package hashtest

// Golden is one 5-tuple and the flow hash it must get. Addresses are
// strings so that a row reads as the packet would be written down.
type Golden struct {
	Src, Dst     string
	Sport, Dport uint16
	Proto        uint8
	Want         uint32
}

// Flow4 are IPv4 5-tuples: TCP, UDP (the same ports), the reply direction
// (which hashes elsewhere: the hash is not symmetric), ICMP without ports,
// and all zeros.
var Flow4 = []Golden{
	{"198.18.0.1", "198.19.0.10", 40000, 80, 6, 0x182e99af},
	{"198.19.0.10", "198.18.0.1", 80, 40000, 6, 0x8740f0cc},
	{"198.18.0.1", "198.19.0.10", 40000, 80, 17, 0x414a5f54},
	{"198.18.0.2", "198.19.0.10", 40000, 80, 6, 0x77c4b205},
	{"198.18.0.1", "198.19.0.10", 40001, 80, 6, 0x2199bf1d},
	{"198.18.255.254", "198.19.255.255", 65535, 443, 6, 0x7f735990},
	{"198.18.0.1", "198.19.0.10", 0, 0, 1, 0xa7d1ed89},
	{"0.0.0.0", "0.0.0.0", 0, 0, 0, 0xaa9dd076},
}

// Flow6 are the IPv6 counterparts.
var Flow6 = []Golden{
	{"2001:db8::1", "2001:db8:ffff::10", 40000, 80, 6, 0xbdc734f8},
	{"2001:db8:ffff::10", "2001:db8::1", 80, 40000, 6, 0x76516041},
	{"2001:db8::1", "2001:db8:ffff::10", 40000, 80, 17, 0x1ac3c1a6},
	{"2001:db8::2", "2001:db8:ffff::10", 40000, 80, 6, 0xbce4ddeb},
	{"2001:db8:1234:5678:9abc:def0:1234:5678", "2001:db8:ffff::10", 65535, 443, 6, 0x19ee2b38},
	{"2001:db8::1", "2001:db8:ffff::10", 0, 0, 58, 0x91cf53d5},
	{"::", "::", 0, 0, 0, 0xb6bc7c7b},
}
