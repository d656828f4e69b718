package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/datapath/packet"
)

// resetter sends the resets that end a spliced pair the proxy ends itself
// (idle timeout, shutdown). The pair's sockets cannot: in repair mode they
// send nothing, and their sequence numbers are those of the splice, not of
// the bytes the datapath has forwarded since. The raw sockets (IPPROTO_RAW:
// the packet is ours from the IP header on, and they receive nothing) are
// opened at start, while xlb still holds CAP_NET_RAW.
type resetter struct {
	fd4, fd6 int
}

func newResetter() (*resetter, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("proxy: raw IPv4 socket for the resets of spliced pairs: %w", err)
	}
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("proxy: raw IPv6 socket for the resets of spliced pairs: %w", err)
	}
	return &resetter{fd4: fd4, fd6: fd6}, nil
}

func (r *resetter) close() {
	unix.Close(r.fd4)
	unix.Close(r.fd6)
}

// send sends from src to dst a TCP segment with RST set and sequence
// number seq: the one the receiver expects next, so it accepts the reset
// (RFC 5961 section 3.2).
func (r *resetter) send(src, dst netip.AddrPort, seq uint32) error {
	b := rstSegment(src, dst, seq)
	if dst.Addr().Is4() {
		return unix.Sendto(r.fd4, b, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
	}
	return unix.Sendto(r.fd6, b, 0, &unix.SockaddrInet6{Addr: dst.Addr().As16()})
}

const (
	ipv4Len = 20
	ipv6Len = 40
	tcpLen  = 20
	tcpRST  = 0x04
)

// rstSegment builds the IP packet of a reset from src to dst.
func rstSegment(src, dst netip.AddrPort, seq uint32) []byte {
	var ip, pseudo []byte
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	if src.Addr().Is4() {
		ip = make([]byte, ipv4Len, ipv4Len+tcpLen)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], ipv4Len+tcpLen)
		ip[8] = 64
		ip[9] = unix.IPPROTO_TCP
		copy(ip[12:16], s)
		copy(ip[16:20], d)
		binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip))
		pseudo = make([]byte, 12, 12+tcpLen)
		copy(pseudo[0:4], s)
		copy(pseudo[4:8], d)
		pseudo[9] = unix.IPPROTO_TCP
		binary.BigEndian.PutUint16(pseudo[10:], tcpLen)
	} else {
		ip = make([]byte, ipv6Len, ipv6Len+tcpLen)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], tcpLen)
		ip[6] = unix.IPPROTO_TCP
		ip[7] = 64
		copy(ip[8:24], s)
		copy(ip[24:40], d)
		pseudo = make([]byte, 40, 40+tcpLen)
		copy(pseudo[0:16], s)
		copy(pseudo[16:32], d)
		binary.BigEndian.PutUint32(pseudo[32:], tcpLen)
		pseudo[39] = unix.IPPROTO_TCP
	}
	tcp := make([]byte, tcpLen)
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = tcpLen / 4 << 4
	tcp[13] = tcpRST
	binary.BigEndian.PutUint16(tcp[16:], packet.Checksum(append(pseudo, tcp...)))
	return append(ip, tcp...)
}
