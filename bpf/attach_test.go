package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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

	"github.com/xlbproject/xlb/internal/testenv"
)

// vethNetns moves the calling test's goroutine, locked to its thread, into a
// fresh network namespace holding an up veth pair, and returns the pair's
// names. Cleanup deletes the pair and returns the thread to its namespace
// (if that fails the thread stays locked and dies with the goroutine).
func vethNetns(t *testing.T) (string, string) {
	t.Helper()
	testenv.Root(t, "creates a network namespace and attaches XDP programs")
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
		s, err := LoadSteer(SteerOptions{})
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
			want := lbModel(t, frame, -1, id).out
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
