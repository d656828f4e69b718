package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/internal/testenv"
)

// tcpPair returns both ends of a loopback TCP connection that has moved
// n bytes each way.
func tcpPair(t *testing.T, n int) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a, b = c.(*net.TCPConn), s.(*net.TCPConn)
	t.Cleanup(func() { a.Close(); b.Close() })
	buf := make([]byte, n)
	for _, d := range [][2]*net.TCPConn{{a, b}, {b, a}} {
		if _, err := d[0].Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(d[1], buf); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// TestRepairReadsBothEnds: in repair mode, each end's send sequence is the
// other's receive sequence, the options agree, a quiescent pair is seen as
// such; leaving repair mode the connection goes on, and a socket closed in
// repair mode says nothing to its peer.
func TestRepairReadsBothEnds(t *testing.T) {
	testenv.Root(t, "TCP_REPAIR needs CAP_NET_ADMIN")
	a, b := tcpPair(t, 100000)
	time.Sleep(50 * time.Millisecond) // the last ACKs
	var sa, sb [2]bool
	var quietA, quietB bool
	err := withFDs(a, b, func(fa, fb int) error {
		var err error
		if quietA, err = quiet(fa); err != nil {
			return err
		}
		if quietB, err = quiet(fb); err != nil {
			return err
		}
		for _, fd := range []int{fa, fb} {
			if err := setRepair(fd, true); err != nil {
				return err
			}
		}
		x, err := readSide(fa, addrPort(a.LocalAddr()), addrPort(a.RemoteAddr()))
		if err != nil {
			return err
		}
		y, err := readSide(fb, addrPort(b.LocalAddr()), addrPort(b.RemoteAddr()))
		if err != nil {
			return err
		}
		if x.SndNxt != y.RcvNxt || x.RcvNxt != y.SndNxt {
			t.Errorf("sequences disagree: a %+v, b %+v", x, y)
		}
		if x.SndWscale != y.RcvWscale || x.RcvWscale != y.SndWscale {
			t.Errorf("window scales disagree: a %+v, b %+v", x, y)
		}
		sa, sb = [2]bool{x.SACK, x.Timestamps}, [2]bool{y.SACK, y.Timestamps}
		if x.Local != y.Remote || x.Remote != y.Local {
			t.Errorf("addresses: a %v-%v, b %v-%v", x.Local, x.Remote, y.Local, y.Remote)
		}
		for _, fd := range []int{fa, fb} {
			if err := setRepair(fd, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !quietA || !quietB {
		t.Errorf("a quiescent pair seen busy: %v %v", quietA, quietB)
	}
	if sa != sb {
		t.Errorf("SACK, timestamps: a %v, b %v", sa, sb)
	}
	// Out of repair mode, it goes on.
	if _, err := a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// Closed in repair mode, b sends neither FIN nor RST. (After its
	// delayed ACK: in repair mode it would not send it, a would retransmit
	// and the kernel answer for the socket that is gone with a reset.)
	time.Sleep(100 * time.Millisecond)
	if err := withFDs(a, b, func(_, fb int) error { return setRepair(fb, true) }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after the silent close: read %d, %v; want a timeout", n, err)
	}
}

// TestRSTSegment: the resets the proxy sends have valid checksums and say
// what they should.
func TestRSTSegment(t *testing.T) {
	for _, tt := range []struct{ src, dst string }{
		{"198.18.100.1:443", "198.18.0.2:40000"},
		{"[2001:db8::1]:443", "[2001:db8::2]:40000"},
	} {
		src, dst := netip.MustParseAddrPort(tt.src), netip.MustParseAddrPort(tt.dst)
		b := rstSegment(src, dst, 0xdeadbeef)
		var tcp, pseudo []byte
		if src.Addr().Is4() {
			if len(b) != 40 || packet.Checksum(b[:20]) != 0 {
				t.Fatalf("%s: IPv4 header %x", tt.src, b)
			}
			tcp = b[20:]
			pseudo = append(append(append([]byte{}, b[12:20]...), 0, 6), 0, 20)
		} else {
			if len(b) != 60 || b[6] != 6 || binary.BigEndian.Uint16(b[4:]) != 20 {
				t.Fatalf("%s: IPv6 header %x", tt.src, b)
			}
			tcp = b[40:]
			pseudo = append(append([]byte{}, b[8:40]...), 0, 0, 0, 20, 0, 0, 0, 6)
		}
		if packet.Checksum(append(pseudo, tcp...)) != 0 {
			t.Errorf("%s: bad TCP checksum: %x", tt.src, tcp)
		}
		if binary.BigEndian.Uint16(tcp[0:]) != src.Port() || binary.BigEndian.Uint16(tcp[2:]) != dst.Port() ||
			binary.BigEndian.Uint32(tcp[4:]) != 0xdeadbeef || tcp[13] != tcpRST || tcp[12] != 0x50 {
			t.Errorf("%s: TCP header %x", tt.src, tcp)
		}
	}
}
