package packet

// Reason says why a frame was not forwarded; OK (0) means it parsed. A
// worker keeps one counter per Reason, indexed by the value, so the values
// are dense and NumReasons bounds them.
type Reason uint8

// The reasons, in the order a frame is examined. Each has a stable
// snake_case name (Reason.String) used as the stats label; renaming one
// breaks dashboards. The numeric values are only counter indexes, never
// stored or exported, so a new reason may go where it reads best.
const (
	OK                   Reason = iota
	TruncatedEthernet           // shorter than the 14-byte Ethernet header
	TruncatedVLAN               // 802.1Q/802.1ad EtherType but no room for the 4-byte tag and inner EtherType
	StackedVLAN                 // a second VLAN tag (QinQ): only one is supported
	UnsupportedEtherType        // neither IPv4 nor IPv6 (ARP, LLDP, ...)
	BadIPVersion                // the version nibble does not match the EtherType (4 for IPv4, 6 for IPv6)
	TruncatedIPv4               // no room for the 20-byte IPv4 header, or for its options
	BadIHL                      // IHL below 5
	BadIPLength                 // IPv4 total length below IHL*4 or beyond the end of the frame
	TruncatedIPv6               // no room for the 40-byte IPv6 header
	BadIPv6Length               // IPv6 payload length beyond the end of the frame
	TruncatedExtHeader          // an IPv6 extension header runs past the payload length
	TooManyExtHeaders           // more IPv6 extension headers than MaxExtHeaders before the upper layer
	Fragment                    // any fragment: IPv4 MF set or offset > 0, or an IPv6 Fragment header
	UnsupportedProtocol         // neither TCP, UDP, ICMP nor ICMPv6 (IPIP, ESP, SCTP, no next header, ...)
	TruncatedL4                 // the IP payload is shorter than the TCP (20) or UDP (8) header
	TruncatedICMP               // the ICMP header, or an error's quoted IP header and 8 bytes, is cut
	UnsupportedICMP             // an ICMP type xlb does not handle, or an error quoting no TCP/UDP header of the same family
	NumReasons                  // number of reasons; not a reason
)

var reasonNames = [NumReasons]string{
	OK:                   "ok",
	TruncatedEthernet:    "truncated_ethernet",
	TruncatedVLAN:        "truncated_vlan",
	StackedVLAN:          "stacked_vlan",
	UnsupportedEtherType: "unsupported_ethertype",
	BadIPVersion:         "bad_ip_version",
	TruncatedIPv4:        "truncated_ipv4",
	BadIHL:               "bad_ihl",
	BadIPLength:          "bad_ip_length",
	TruncatedIPv6:        "truncated_ipv6",
	BadIPv6Length:        "bad_ipv6_length",
	TruncatedExtHeader:   "truncated_ext_header",
	TooManyExtHeaders:    "too_many_ext_headers",
	Fragment:             "fragment",
	UnsupportedProtocol:  "unsupported_protocol",
	TruncatedL4:          "truncated_l4",
	TruncatedICMP:        "truncated_icmp",
	UnsupportedICMP:      "unsupported_icmp",
}

// String returns the reason's stable snake_case name, or "invalid_reason"
// for a value at or past NumReasons. It does not allocate.
func (r Reason) String() string {
	if r >= NumReasons {
		return "invalid_reason"
	}
	return reasonNames[r]
}
