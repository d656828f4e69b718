package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethNetns moves the calling test's goroutine, locked to its thread, into a
// fresh network namespace holding an up veth pair, and returns the pair's
// names. Cleanup deletes the pair and returns the thread to its namespace
// (if that fails the thread stays locked and dies with the goroutine).
func vethNetns(t *testing.T) (string, string) {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	a := fmt.Sprintf("xbpf%da", os.Getpid())
	b := fmt.Sprintf("xbpf%db", os.Getpid())
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(a); err == nil {
			_ = netlink.LinkDel(l)
		}
		err := netns.Set(orig)
		ns.Close()
		orig.Close()
		if err != nil {
			t.Errorf("return to the original netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	})
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, MTU: 1500}, PeerName: b}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", a, b, err)
	}
	for _, name := range []string{a, b} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
	}
	return a, b
}

// xdpProgID returns the ID of the XDP program attached to name, 0 if none.
func xdpProgID(t *testing.T, name string) uint32 {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}

func ifindex(t *testing.T, name string) int {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func progID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

func TestSteerAttach(t *testing.T) {
	a, _ := vethNetns(t)
	for _, tc := range []struct{ mode, want string }{
		{ModeAuto, ModeNative}, // veth has native XDP
		{ModeNative, ModeNative},
		{ModeGeneric, ModeGeneric},
	} {
		s, err := LoadSteer()
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Attach(ifindex(t, a), tc.mode)
		if err != nil {
			s.Close()
			t.Fatalf("Attach(%s): %v", tc.mode, err)
		}
		if got != tc.want {
			t.Errorf("Attach(%s) used %s, want %s", tc.mode, got, tc.want)
		}
		if id := xdpProgID(t, a); id == 0 || id != progID(t, s.Program()) {
			t.Errorf("Attach(%s): link shows program %d, want %d", tc.mode, id, progID(t, s.Program()))
		}
		if _, err := s.Attach(ifindex(t, a), tc.mode); !errors.Is(err, ErrAlreadyAttached) {
			t.Errorf("second Attach = %v, want ErrAlreadyAttached", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if id := xdpProgID(t, a); id != 0 {
			t.Fatalf("program %d still attached after Close (mode %s)", id, tc.mode)
		}
	}
}

// TestSteerRedirect binds a real AF_XDP socket to queue 0 and checks that a
// VIP frame is redirected to it, and passed again after ClearSocket.
func TestSteerRedirect(t *testing.T) {
	a, _ := vethNetns(t)
	s := loadTestSteer(t)
	if _, err := s.Attach(ifindex(t, a), ModeNative); err != nil {
		t.Fatal(err)
	}
	opts := xdp.DefaultSocketOptions
	opts.NumFrames = 64
	opts.FillRingNumDescs, opts.CompletionRingNumDescs, opts.RxRingNumDescs, opts.TxRingNumDescs = 32, 32, 32, 32
	sock, err := xdp.NewSocket(ifindex(t, a), 0, &opts)
	if err != nil {
		t.Fatalf("AF_XDP socket on %s queue 0: %v", a, err)
	}
	t.Cleanup(func() { sock.Close() })
	if err := s.SetSocket(0, sock.FD()); err != nil {
		t.Fatal(err)
	}
	frame := frame4(t, vipTCP, layers.IPProtocolTCP, 80)
	run := func() (uint32, SteerCounters) {
		before, _ := s.Counters()
		verdict, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		after, _ := s.Counters()
		return verdict, sub(after, before)
	}
	if v, d := run(); v != xdpRedirect || d != (SteerCounters{Seen: 1, Redirected: 1}) {
		t.Errorf("with a socket: verdict %d, counters %+v; want XDP_REDIRECT, one Redirected", v, d)
	}
	if err := s.ClearSocket(0); err != nil {
		t.Fatal(err)
	}
	if v, d := run(); v != xdpPass || d != outVIP.delta() {
		t.Errorf("after ClearSocket: verdict %d, counters %+v; want XDP_PASS, NoSocket", v, d)
	}
}

func TestDecapAttach(t *testing.T) {
	a, b := vethNetns(t)
	if _, err := DecapAttached(a); err != nil {
		t.Fatal(err)
	}
	if err := DetachDecap(a); !errors.Is(err, ErrNotAttached) {
		t.Errorf("DetachDecap with nothing attached = %v, want ErrNotAttached", err)
	}
	if _, err := ReadDecapCounters(a); !errors.Is(err, ErrNotAttached) {
		t.Errorf("ReadDecapCounters with nothing attached = %v, want ErrNotAttached", err)
	}
	mode, err := AttachDecap(a)
	if err != nil {
		t.Fatalf("AttachDecap: %v", err)
	}
	if mode != ModeNative {
		t.Errorf("AttachDecap mode %s, want native on veth", mode)
	}
	// AttachDecap closed every Go handle before returning: the attachment
	// alone keeps the program alive.
	runtime.GC()
	first := xdpProgID(t, a)
	if first == 0 {
		t.Fatal("no XDP program attached after AttachDecap")
	}
	if ok, err := DecapAttached(a); !ok || err != nil {
		t.Errorf("DecapAttached = %v, %v; want true", ok, err)
	}
	// The link came up moments ago: IPv6 neighbour discovery may be counted
	// as passed, but nothing was decapsulated yet.
	if c, err := ReadDecapCounters(a); err != nil || c.Decapsulated != 0 || c.Malformed != 0 {
		t.Errorf("ReadDecapCounters = %+v, %v; want nothing decapsulated", c, err)
	}

	// Attaching again replaces our program in place.
	if _, err := AttachDecap(a); err != nil {
		t.Fatalf("second AttachDecap: %v", err)
	}
	if id := xdpProgID(t, a); id == 0 || id == first {
		t.Errorf("second AttachDecap: program %d, want a new one replacing %d", id, first)
	}

	if err := DetachDecap(a); err != nil {
		t.Fatalf("DetachDecap: %v", err)
	}
	if id := xdpProgID(t, a); id != 0 {
		t.Errorf("program %d still attached after DetachDecap", id)
	}
	if ok, err := DecapAttached(a); ok || err != nil {
		t.Errorf("DecapAttached after detach = %v, %v", ok, err)
	}

	// Our program attached in generic mode (as AttachDecap does when the
	// driver has no native XDP) is replaced and detached in that mode.
	objs := loadTestDecap(t)
	lb, err := netlink.LinkByName(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetXdpFdWithFlags(lb, objs.XlbDecap.FD(), unix.XDP_FLAGS_SKB_MODE); err != nil {
		t.Fatalf("generic attach on %s: %v", b, err)
	}
	if mode, err := AttachDecap(b); err != nil || mode != ModeGeneric {
		t.Errorf("AttachDecap over our generic program = %s, %v; want generic", mode, err)
	}
	if err := DetachDecap(b); err != nil {
		t.Fatal(err)
	}
	if id := xdpProgID(t, b); id != 0 {
		t.Errorf("program %d still attached to %s after DetachDecap", id, b)
	}

	// A foreign program (here the steer program) is left alone.
	s := loadTestSteer(t)
	if _, err := s.Attach(ifindex(t, a), ModeNative); err != nil {
		t.Fatal(err)
	}
	if _, err := AttachDecap(a); !errors.Is(err, ErrForeignProgram) {
		t.Errorf("AttachDecap over a foreign program = %v, want ErrForeignProgram", err)
	}
	if err := DetachDecap(a); !errors.Is(err, ErrForeignProgram) {
		t.Errorf("DetachDecap of a foreign program = %v, want ErrForeignProgram", err)
	}
	if ok, err := DecapAttached(a); ok || !errors.Is(err, ErrForeignProgram) {
		t.Errorf("DecapAttached with a foreign program = %v, %v", ok, err)
	}
	if id := xdpProgID(t, a); id != progID(t, s.Program()) {
		t.Errorf("foreign program replaced: link shows %d", id)
	}
}

// TestDecapDelivers sends IPIP, GUE (over IPv4 and IPv6) and 6in6 packets
// over a veth into an interface running the decap program and receives each
// inner UDP datagram on a socket bound to the inner destination: the kernel
// has no tunnel configured, so only the program can have delivered it.
func TestDecapDelivers(t *testing.T) {
	a, b := vethNetns(t)
	la, err := netlink.LinkByName(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"198.18.0.50/24", "198.18.0.10/32", "2001:db8::50/64", "2001:db8::10/128"} {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			t.Fatal(err)
		}
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection wait
		if err := netlink.AddrAdd(la, addr); err != nil {
			t.Fatalf("add %s to %s: %v", cidr, a, err)
		}
	}
	// The reply route for the client, so reverse-path filtering accepts it.
	_, clients, _ := net.ParseCIDR("198.18.1.0/24")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: la.Attrs().Index, Dst: clients}); err != nil {
		t.Fatal(err)
	}
	if _, err := AttachDecap(a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = DetachDecap(a) })

	conn4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: vipTCP.AsSlice(), Port: 5353})
	if err != nil {
		t.Fatal(err)
	}
	defer conn4.Close()
	conn6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: vip6.AsSlice(), Port: 5353})
	if err != nil {
		t.Fatal(err)
	}
	defer conn6.Close()

	ip4 := ipv4(client, vipTCP, layers.IPProtocolUDP)
	inner4 := serialize(t, ip4, l4(layers.IPProtocolUDP, 5353, ip4), payload)
	ip6 := ipv6(client6, vip6, layers.IPProtocolUDP)
	inner6 := serialize(t, ip6, l4(layers.IPProtocolUDP, 5353, ip6), payload)

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	dst := &unix.SockaddrLinklayer{Ifindex: ifindex(t, b), Halen: 6}
	copy(dst.Addr[:], la.Attrs().HardwareAddr)

	for _, tc := range []struct {
		name  string
		frame []byte
		conn  *net.UDPConn
		kind  func(DecapCounters) uint64
	}{
		{"ipip", encap(t, inner4, layers.IPProtocolIPv4, 5, false), conn4, func(c DecapCounters) uint64 { return c.IPIP }},
		{"gue over ipv4", gueFrame(t, true, DefaultGUEPort, gueHdr(4, 0, false), inner4, false), conn4, func(c DecapCounters) uint64 { return c.GUE }},
		{"6in6", encap6(t, inner6, layers.IPProtocolIPv6, false), conn6, func(c DecapCounters) uint64 { return c.IP6in6 }},
		{"gue over ipv6", gueFrame(t, false, DefaultGUEPort, gueHdr(41, 0, false), inner6, false), conn6, func(c DecapCounters) uint64 { return c.GUE }},
	} {
		// No t.Run: a subtest runs on another goroutine, outside this
		// thread's network namespace.
		func() {
			frame := tc.frame
			copy(frame[0:6], la.Attrs().HardwareAddr)
			before, err := ReadDecapCounters(a)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			for try := range 5 { // the veth may need a moment to carry traffic
				if err := unix.Sendto(fd, frame, 0, dst); err != nil {
					t.Fatalf("%s: send on %s: %v", tc.name, b, err)
				}
				_ = tc.conn.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err := tc.conn.ReadFromUDP(buf)
				if err == nil {
					if string(buf[:n]) != string(payload) {
						t.Fatalf("%s: received %q, want %q", tc.name, buf[:n], payload)
					}
					after, err := ReadDecapCounters(a)
					if err != nil || tc.kind(after) <= tc.kind(before) {
						t.Errorf("%s: counters %+v -> %+v, %v: want this kind counted", tc.name, before, after, err)
					}
					return
				}
				t.Logf("%s: try %d: %v", tc.name, try, err)
			}
			t.Errorf("%s: inner datagram never delivered", tc.name)
		}()
	}
}

// TestLBForwards attaches the lb program to one end of a veth pair, sends a
// VIP frame into it from the other end and receives what it sends back with
// XDP_TX: it must be the Go worker's frame for the same input.
func TestLBForwards(t *testing.T) {
	a, b := vethNetns(t)
	lb := loadTestLB(t)
	if mode, err := lb.Attach(ifindex(t, a), ModeNative); err != nil || mode != ModeNative {
		t.Fatalf("Attach: %s, %v", mode, err)
	}
	if _, err := lb.Attach(ifindex(t, a), ModeNative); !errors.Is(err, ErrAlreadyAttached) {
		t.Errorf("second Attach = %v, want ErrAlreadyAttached", err)
	}
	if id := xdpProgID(t, a); id != progID(t, lb.Program()) {
		t.Fatalf("link shows program %d, want the lb's", id)
	}
	// A frame sent with XDP_TX into a veth is dropped unless the receiving
	// end runs an XDP program: a steer program without VIPs passes all.
	pass := loadTestSteer(t)
	if err := pass.SetVIPs(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pass.Attach(ifindex(t, b), ModeNative); err != nil {
		t.Fatal(err)
	}

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex(t, b)}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	la, err := netlink.LinkByName(a)
	if err != nil {
		t.Fatal(err)
	}
	frame := tcpFrame(t, vipTCP, 44000, 80, "S", 0, true, 32)
	copy(frame[0:6], la.Attrs().HardwareAddr)
	dst := &unix.SockaddrLinklayer{Ifindex: ifindex(t, b), Halen: 6}
	copy(dst.Addr[:], la.Attrs().HardwareAddr)

	buf := make([]byte, 2048)
	deadline := time.Now().Add(5 * time.Second)
	for try := 0; try < 10 && time.Now().Before(deadline); try++ {
		if err := unix.Sendto(fd, frame, 0, dst); err != nil {
			t.Fatalf("send on %s: %v", b, err)
		}
		for range 20 { // skip our own frame and IPv6 chatter
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			got := buf[:n]
			if n < 34 || got[12] != 0x08 || got[13] != 0x00 || got[23] != 4 {
				continue
			}
			// The outer ID comes from the per-CPU counter (TestLBFrames
			// checks that); take it from the frame.
			id := binary.BigEndian.Uint16(got[18:20])
			want, _, _ := goForward(frame, lbTestTable(t), id)
			if !bytes.Equal(got, want) {
				t.Fatalf("received frame differs from the Go worker's\n got % x\nwant % x", got, want)
			}
			c, err := lb.Counters()
			if err != nil || c.Forwarded == 0 {
				t.Errorf("counters %+v, %v: want forwarded frames", c, err)
			}
			if err := lb.Close(); err != nil {
				t.Fatal(err)
			}
			if id := xdpProgID(t, a); id != 0 {
				t.Errorf("program %d still attached after Close", id)
			}
			return
		}
		t.Logf("try %d: nothing received", try)
	}
	t.Fatal("no encapsulated frame came back")
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
