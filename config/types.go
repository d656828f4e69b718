package config

import (
	"fmt"
	"net"
)

// Protocol is a VIP's transport protocol. Its value is the IP protocol
// number, so the datapath compares it with the packet's byte directly.
type Protocol uint8

// The protocols a VIP can carry.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String returns the name used in the file: "tcp" or "udp".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// MarshalText returns the name used in the file.
func (p Protocol) MarshalText() ([]byte, error) {
	if p != TCP && p != UDP {
		return nil, fmt.Errorf("config: unknown protocol %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText accepts "tcp" or "udp".
func (p *Protocol) UnmarshalText(b []byte) error {
	switch string(b) {
	case "tcp":
		*p = TCP
	case "udp":
		*p = UDP
	default:
		return fmt.Errorf("unknown protocol %q (want \"tcp\" or \"udp\")", b)
	}
	return nil
}

// Forward is how packets reach a VIP's backends. The zero value is not a
// valid method: Parse always sets one.
//
// The outer family of IPIP and GUE is the backends' family: an IPv4 VIP may
// have IPv4 backends (IPIP, protocol 4) or IPv6 backends (4in6, next header
// 4); an IPv6 VIP has IPv6 backends (IP6IP6, next header 41). IPv6 inside
// IPv4 (6in4) is not offered: its outer header could not carry every IPv6
// packet a client may send. DSR needs the backends in the VIP's family.
type Forward uint8

// The forwarding methods.
const (
	// IPIP wraps the client's packet in an outer IP header from
	// datapath.source (or source6) to the backend, which decapsulates it
	// and answers the client directly.
	IPIP Forward = 1
	// GUE wraps it in outer IP and UDP headers (to the VIP's gue_port) and
	// a GUE header: the UDP source port carries the flow's entropy, so
	// ECMP and RSS on the way to the backend spread flows as they would
	// the clients' own packets.
	GUE Forward = 2
	// DSR (L2 direct server return) rewrites only the destination MAC to
	// the backend's: no header is added, so nothing grows beyond the MTU,
	// but every backend must be on-link on the datapath interface and
	// hold the VIP itself.
	DSR Forward = 3
	// Splice accepts the TCP connection in the balancer's own stack, reads
	// the TLS server name and connects to a backend of the matching
	// route (see Route). The datapath leaves such a VIP's packets to the
	// kernel.
	Splice Forward = 4
)

var forwardNames = [...]string{IPIP: "ipip", GUE: "gue", DSR: "dsr", Splice: "splice"}

// String returns the name used in the file.
func (f Forward) String() string {
	if f >= IPIP && f <= Splice {
		return forwardNames[f]
	}
	return fmt.Sprintf("Forward(%d)", uint8(f))
}

// MarshalText returns the name used in the file.
func (f Forward) MarshalText() ([]byte, error) {
	if f < IPIP || f > Splice {
		return nil, fmt.Errorf("config: unknown forward method %d", uint8(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText accepts "ipip", "gue", "dsr" or "splice".
func (f *Forward) UnmarshalText(b []byte) error {
	for m := IPIP; m <= Splice; m++ {
		if string(b) == forwardNames[m] {
			*f = m
			return nil
		}
	}
	return fmt.Errorf("unknown forward method %q (want \"ipip\", \"gue\", \"dsr\" or \"splice\")", b)
}

// Encapsulates reports whether f adds an outer header, which leaves from
// datapath.source (IPv4 backends) or datapath.source6 (IPv6 backends).
func (f Forward) Encapsulates() bool { return f == IPIP || f == GUE }

// parseMAC accepts a unicast Ethernet address ("02:00:00:00:00:11", also
// with dashes or in Cisco dotted form). The zero, broadcast and multicast
// addresses are refused: a packet sent to them would not reach one backend.
func parseMAC(s string) ([6]byte, error) {
	var mac [6]byte
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != len(mac) {
		return mac, fmt.Errorf("%q is not an Ethernet MAC address", s)
	}
	copy(mac[:], hw)
	if mac == [6]byte{} || mac[0]&1 != 0 {
		return mac, fmt.Errorf("%q is not a unicast MAC address", s)
	}
	return mac, nil
}
