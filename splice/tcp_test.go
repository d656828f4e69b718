package splice

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

// TestSpliceTCP carries real TCP connections through the splice alone: the
// entries are inserted before the client connects, so the steer program on
// the balancer rewrites the whole connection, handshake included, as a NAT
// with sequence offsets, timestamp offsets and SACK translation: the
// client talks to VIP:443, the backend sees LB:lport, and neither kernel
// may notice. 8 MiB go each way (echoed, SHA-256 compared); the FINs of
// both sides show in Status and the counters account for the frames. This
// checks what BPF_PROG_TEST_RUN cannot: the attached program, XDP_TX on
// veth, and real TCP stacks accepting every rewritten segment.
func TestSpliceTCP(t *testing.T) {
	testenv.Root(t, "builds network namespaces and attaches the steer program")
	var (
		lbA      = netip.MustParsePrefix("198.18.0.1/24")
		clientA  = netip.MustParsePrefix("198.18.0.2/24")
		beA      = netip.MustParsePrefix("198.18.0.11/24")
		vip      = netip.MustParseAddr("198.18.0.10")
		lbA6     = netip.MustParsePrefix("2001:db8::1/64")
		clientA6 = netip.MustParsePrefix("2001:db8::2/64")
		beA6     = netip.MustParsePrefix("2001:db8::11/64")
		vip6     = netip.MustParseAddr("2001:db8::10")
	)
	prefix := fmt.Sprintf("xlbs%d", os.Getpid()%100000)
	if err := lab.Cleanup(prefix); err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(lab.Spec{Prefix: prefix, Hosts: []lab.HostSpec{
		{Name: "client", Addr: clientA, Addr6: clientA6, Routes: []lab.Route{
			{Dst: netip.PrefixFrom(vip, 32), Via: lbA.Addr()}, {Dst: netip.PrefixFrom(vip6, 128), Via: lbA6.Addr()}}},
		{Name: "lb", Addr: lbA, Addr6: lbA6, PortXDP: true},
		{Name: "be", Addr: beA, Addr6: beA6},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	cl, lb, be := l.Hosts["client"], l.Hosts["lb"], l.Hosts["be"]

	s, err := bpf.LoadSteer(bpf.SteerOptions{SpliceTableSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := lb.Do(func() error { _, err := s.Attach(lb.Ifindex, bpf.ModeNative); return err }); err != nil {
		t.Fatal(err)
	}
	m, _ := s.SpliceMaps()
	tab, err := NewTable(m)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name                     string
		client, vip, lb, backend netip.AddrPort
	}{
		{"ipv4", netip.AddrPortFrom(clientA.Addr(), 40000), netip.AddrPortFrom(vip, 443),
			netip.AddrPortFrom(lbA.Addr(), 50000), netip.AddrPortFrom(beA.Addr(), 443)},
		{"ipv6", netip.AddrPortFrom(clientA6.Addr(), 40000), netip.AddrPortFrom(vip6, 443),
			netip.AddrPortFrom(lbA6.Addr(), 50000), netip.AddrPortFrom(beA6.Addr(), 443)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := be.Listen("tcp", tc.backend.String())
			if err != nil {
				t.Fatal(err)
			}
			peers := make(chan net.Addr, 1)
			wait := lab.Serve(ln, func(c net.Conn) {
				peers <- c.RemoteAddr()
				c.SetDeadline(time.Now().Add(time.Minute))
				lab.Echo(c)
			})
			defer wait()
			defer ln.Close()

			// Arbitrary socket states: offsets that wrap the sequence
			// and timestamp spaces; equal window scales (the handshake
			// goes through, so the peers negotiate their own).
			p := Pair{
				Client: Side{Local: tc.vip, Remote: tc.client, SndNxt: 0x8000_0000, RcvNxt: 0xffff_ff00,
					SndWscale: 7, RcvWscale: 7, SACK: true, Timestamps: true, TSClock: 0xffff_fff0},
				Backend: Side{Local: tc.lb, Remote: tc.backend, SndNxt: 0x10, RcvNxt: 0x7fff_ffff,
					SndWscale: 7, RcvWscale: 7, SACK: true, Timestamps: true, TSClock: 12345},
				ToClient:  Hop{Ifindex: lb.Ifindex, Src: lb.MAC, Dst: cl.MAC},
				ToBackend: Hop{Ifindex: lb.Ifindex, Src: lb.MAC, Dst: be.MAC},
			}
			slot, err := tab.Insert(p)
			if err != nil {
				t.Fatal(err)
			}
			defer tab.Delete(slot)

			var conn *net.TCPConn
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := cl.Do(func() error {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(tc.client)}
				c, err := d.DialContext(ctx, "tcp", tc.vip.String())
				if err == nil {
					conn = c.(*net.TCPConn)
				}
				return err
			}); err != nil {
				t.Fatalf("dial %v through the splice: %v", tc.vip, err)
			}
			defer conn.Close()
			select {
			case a := <-peers:
				if a.String() != tc.lb.String() {
					t.Errorf("the backend sees %v, want %v", a, tc.lb)
				}
			case <-ctx.Done():
				t.Fatal("the backend accepted nothing")
			}
			conn.SetDeadline(time.Now().Add(time.Minute))
			if err := lab.EchoRoundTrip(conn, conn, 8<<20); err != nil {
				t.Fatal(err)
			}
			conn.Close()

			// The backend's handler closes its side once the client's FIN
			// arrived: both FINs go through the splice.
			var st Status
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if st, err = tab.Status(slot); err != nil {
					t.Fatal(err)
				}
				if st.FinFromClient && st.FinFromBackend {
					break
				}
			}
			// Reset may be set too: an ACK that arrives after the backend's
			// socket is gone (behind the final ACK) gets an RST, which goes
			// through the splice like any segment.
			if !st.FinFromClient || !st.FinFromBackend {
				t.Errorf("status after close: %+v", st)
			}
			if st.Bytes[ClientToBackend] < 8<<20 || st.Bytes[BackendToClient] < 8<<20 || st.LastPacket == 0 {
				t.Errorf("counters: %d and %d bytes, last packet %v", st.Bytes[0], st.Bytes[1], st.LastPacket)
			}
			t.Logf("spliced %d/%d packets, %d/%d bytes (client to backend / back), reset %v",
				st.Packets[0], st.Packets[1], st.Bytes[0], st.Bytes[1], st.Reset)
		})
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Spliced == 0 || c.SpliceExpired != 0 {
		t.Errorf("steer counters %+v", c)
	}
}
