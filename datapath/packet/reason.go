package packet

// Reason says why a frame was not forwarded; OK (0) means it parsed. A
// worker keeps one counter per Reason, indexed by the value, so the values
// are dense and NumReasons bounds them.
type Reason uint8

// The reasons, in the order a frame is examined. Each has a stable
// snake_case name (Reason.String) used as the stats label; renaming one
// breaks dashboards, so add new ones before NumReasons instead.
const (
	OK                   Reason = iota
	TruncatedEthernet           // shorter than the 14-byte Ethernet header
	TruncatedVLAN               // 802.1Q/802.1ad EtherType but no room for the 4-byte tag and inner EtherType
	StackedVLAN                 // a second VLAN tag (QinQ): only one is supported
	UnsupportedEtherType        // neither IPv4 nor IPv6 (ARP, LLDP, ...)
	IPv6                        // IPv6: not supported by this parser yet
	TruncatedIPv4               // no room for the 20-byte IPv4 header, or for its options
	BadIPVersion                // IPv4 EtherType but the version nibble is not 4
	BadIHL                      // IHL below 5
	BadIPLength                 // total length below IHL*4 or beyond the end of the frame
	Fragment                    // any fragment, first (MF set) or not (offset > 0)
	UnsupportedProtocol         // neither TCP nor UDP (ICMP, IPIP, ...)
	TruncatedL4                 // the IP payload is shorter than the TCP (20) or UDP (8) header
	NumReasons                  // number of reasons; not a reason
)

var reasonNames = [NumReasons]string{
	OK:                   "ok",
	TruncatedEthernet:    "truncated_ethernet",
	TruncatedVLAN:        "truncated_vlan",
	StackedVLAN:          "stacked_vlan",
	UnsupportedEtherType: "unsupported_ethertype",
	IPv6:                 "ipv6",
	TruncatedIPv4:        "truncated_ipv4",
	BadIPVersion:         "bad_ip_version",
	BadIHL:               "bad_ihl",
	BadIPLength:          "bad_ip_length",
	Fragment:             "fragment",
	UnsupportedProtocol:  "unsupported_protocol",
	TruncatedL4:          "truncated_l4",
}

// String returns the reason's stable snake_case name, or "invalid_reason"
// for a value at or past NumReasons. It does not allocate.
func (r Reason) String() string {
	if r >= NumReasons {
		return "invalid_reason"
	}
	return reasonNames[r]
}
