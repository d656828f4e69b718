package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/splice"
)

// withFDs runs f with the file descriptors of a and b, which stay open
// meanwhile (a Close waits).
func withFDs(a, b *net.TCPConn, f func(fa, fb int) error) error {
	ra, err := a.SyscallConn()
	if err != nil {
		return err
	}
	rb, err := b.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = ra.Control(func(fa uintptr) {
		if err := rb.Control(func(fb uintptr) { ferr = f(int(fa), int(fb)) }); err != nil {
			ferr = err
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// setRepair turns TCP_REPAIR on (TCP_REPAIR_ON) or off without the window
// probe the kernel would otherwise send (TCP_REPAIR_OFF_NO_WP): leaving
// repair mode after a failed attempt must not say anything to the peer.
// In repair mode a socket sends nothing, and closing it sends nothing
// either (tcp_disconnect skips the reset of a socket in repair).
func setRepair(fd int, on bool) error {
	v := unix.TCP_REPAIR_OFF_NO_WP
	if on {
		v = unix.TCP_REPAIR_ON
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, v); err != nil {
		return fmt.Errorf("TCP_REPAIR %d: %w", v, err)
	}
	return nil
}

// queueSeq reads the sequence number of a socket's send queue (write_seq:
// the next byte it would send) or receive queue (rcv_nxt: the next byte
// it expects). The socket must be in repair mode.
func queueSeq(fd, queue int) (uint32, error) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, queue); err != nil {
		return 0, fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", queue, err)
	}
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return 0, fmt.Errorf("TCP_QUEUE_SEQ of queue %d: %w", queue, err)
	}
	return uint32(v), nil
}

// quiet says whether a socket in repair mode has nothing in flight: every
// byte received was read (and so forwarded by the copy), every byte sent
// was acknowledged.
func quiet(fd int) (bool, error) {
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return false, fmt.Errorf("SIOCINQ: %w", err)
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return false, fmt.Errorf("SIOCOUTQ: %w", err)
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return false, fmt.Errorf("TCP_INFO: %w", err)
	}
	return inq == 0 && outq == 0 && info.Unacked == 0 && info.State == unix.BPF_TCP_ESTABLISHED, nil
}

// TCP_REPAIR_QUEUE's queues (include/uapi/linux/tcp.h), not in x/sys/unix.
const (
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

// tcpi_options bits (include/uapi/linux/tcp.h), not in x/sys/unix.
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4
)

// tcpInfoWscale is the offset in struct tcp_info of the byte holding
// tcpi_snd_wscale (low nibble) and tcpi_rcv_wscale (high nibble), which
// unix.TCPInfo leaves out (its padding).
const tcpInfoWscale = 6

// readSide reads what the datapath needs of a socket in repair mode
// (local and remote are its addresses).
func readSide(fd int, local, remote netip.AddrPort) (splice.Side, error) {
	s := splice.Side{Local: local, Remote: remote}
	var err error
	if s.SndNxt, err = queueSeq(fd, tcpSendQueue); err != nil {
		return s, err
	}
	if s.RcvNxt, err = queueSeq(fd, tcpRecvQueue); err != nil {
		return s, err
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return s, fmt.Errorf("TCP_INFO: %w", err)
	}
	s.SACK = info.Options&tcpiOptSACK != 0
	s.Timestamps = info.Options&tcpiOptTimestamps != 0
	if info.Options&tcpiOptWscale != 0 {
		// The kernel filled the whole struct, the byte unix.TCPInfo
		// calls padding included.
		w := (*[tcpInfoWscale + 1]byte)(unsafe.Pointer(info))[tcpInfoWscale]
		s.SndWscale, s.RcvWscale = w&0xf, w>>4
	}
	if s.Timestamps {
		ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
		if err != nil {
			return s, fmt.Errorf("TCP_TIMESTAMP: %w", err)
		}
		s.TSClock = uint32(ts)
	}
	return s, nil
}

// setKeepAlive turns SO_KEEPALIVE on or off: a spliced socket must not
// probe its peer (in repair mode it would not send the probe, but its
// timer would count the peer's silence and kill the socket).
func setKeepAlive(fd int, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, v)
}

// clampMSS returns a Dialer.Control that announces to the backend the
// client connection's MSS at most: once spliced, the backend's segments go
// to the client as they are, and must fit the client's path (the client
// announced what fits it). A failure leaves the kernel's MSS: the pair may
// then lose its larger segments once spliced, so it is logged by the
// caller's counters as nothing worse than a slower connection.
func clampMSS(client *net.TCPConn) func(network, address string, c syscall.RawConn) error {
	mss := 0
	if rc, err := client.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { mss, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
	}
	return func(_, _ string, c syscall.RawConn) error {
		if mss <= 0 {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss) }); err != nil {
			return err
		}
		return serr
	}
}
