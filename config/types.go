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
type Forward uint8

// The forwarding methods. Only IPIP exists so far; GUE and L2 DSR come later.
const (
	// IPIP wraps the client's packet in an outer IPv4 header (protocol 4)
	// from datapath.source to the backend, which decapsulates it and answers
	// the client directly.
	IPIP Forward = 1
)

// String returns the name used in the file.
func (f Forward) String() string {
	if f == IPIP {
		return "ipip"
	}
	return fmt.Sprintf("Forward(%d)", uint8(f))
}

// MarshalText returns the name used in the file.
func (f Forward) MarshalText() ([]byte, error) {
	if f != IPIP {
		return nil, fmt.Errorf("config: unknown forward method %d", uint8(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText accepts "ipip".
func (f *Forward) UnmarshalText(b []byte) error {
	if string(b) != "ipip" {
		return fmt.Errorf("unknown forward method %q (want \"ipip\")", b)
	}
	*f = IPIP
	return nil
}

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
