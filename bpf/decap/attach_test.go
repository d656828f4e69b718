package decap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

// newLab builds two hosts on one bridge: "bal", a balancer at balancer and
// balancer6 (the outer sources of the frames the tests build), and "be", a
// backend at backend and backend6 holding the VIPs vip4 and vip6 on lo.
func newLab(t *testing.T) (bal, be *lab.Host) {
	t.Helper()
	testenv.Root(t, "builds network namespaces and attaches XDP programs")
	prefix := fmt.Sprintf("xlbd%d", os.Getpid()%100000)
	if err := lab.Cleanup(prefix); err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(lab.Spec{Prefix: prefix, Hosts: []lab.HostSpec{
		{Name: "bal", Addr: netip.PrefixFrom(balancer, 24), Addr6: netip.PrefixFrom(balancer6, 64)},
		{Name: "be", Addr: netip.PrefixFrom(backend, 24), Addr6: netip.PrefixFrom(backend6, 64),
			LoAddrs: []netip.Prefix{netip.PrefixFrom(vip4, 32), netip.PrefixFrom(vip6, 128)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l.Hosts["bal"], l.Hosts["be"]
}

// in runs fn in h's namespace, failing the test on error.
func in(t *testing.T, h *lab.Host, fn func() error) {
	t.Helper()
	if err := h.Do(fn); err != nil {
		t.Fatalf("in %s: %v", h.Name, err)
	}
}

// xdpProgID is the ID of the XDP program attached to h's eth0, 0 if none.
func xdpProgID(t *testing.T, h *lab.Host) (id uint32) {
	t.Helper()
	in(t, h, func() error {
		l, err := netlink.LinkByName(lab.HostLink)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	})
	return id
}

// foreignProgram is an XDP program that is not xlb's decap: it passes all.
func foreignProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "foreign", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// setXDP attaches prog to h's eth0 with flags, or detaches (prog nil).
func setXDP(t *testing.T, h *lab.Host, prog *ebpf.Program, flags int) {
	t.Helper()
	fd := -1
	if prog != nil {
		fd = prog.FD()
	}
	in(t, h, func() error {
		l, err := netlink.LinkByName(lab.HostLink)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, fd, flags)
	})
}

func TestAttach(t *testing.T) {
	_, be := newLab(t)
	const eth = lab.HostLink
	in(t, be, func() error {
		if st, err := GetStatus(eth); err != nil || st.Attached {
			t.Errorf("GetStatus with nothing attached = %+v, %v", st, err)
		}
		if err := Detach(eth); !errors.Is(err, ErrNotAttached) {
			t.Errorf("Detach with nothing attached = %v, want ErrNotAttached", err)
		}
		if _, err := ReadCounters(eth); !errors.Is(err, ErrNotAttached) {
			t.Errorf("ReadCounters with nothing attached = %v, want ErrNotAttached", err)
		}
		mode, err := Attach(eth, testOptions)
		if err != nil {
			return fmt.Errorf("Attach: %w", err)
		}
		if mode != bpf.ModeNative {
			t.Errorf("Attach mode %s, want native on veth", mode)
		}
		return nil
	})
	// Attach closed every Go handle before returning: the attachment
	// alone keeps the program alive.
	runtime.GC()
	first := xdpProgID(t, be)
	if first == 0 {
		t.Fatal("no XDP program attached after Attach")
	}
	in(t, be, func() error {
		st, err := GetStatus(eth)
		if err != nil || !st.Attached || st.Mode != bpf.ModeNative || st.GUEPort != DefaultGUEPort ||
			!slices.Equal(st.Allow, testAllow) || !slices.Equal(st.Local, sorted(testLocal)) {
			t.Errorf("GetStatus = %+v, %v; want attached natively with testOptions", st, err)
		}
		// Nothing was decapsulated yet (chatter may be counted as passed).
		if c, err := ReadCounters(eth); err != nil || c.Decapsulated() != 0 || c[CounterMalformed] != 0 || c.Dropped() != 0 {
			t.Errorf("ReadCounters = %v, %v; want nothing decapsulated", c, err)
		}
		// Without allowed sources nothing is attached, nor replaced.
		if _, err := Attach(eth, Options{GUEPort: DefaultGUEPort}); !errors.Is(err, ErrNoAllowedSources) {
			t.Errorf("Attach without allowed sources = %v, want ErrNoAllowedSources", err)
		}
		// Attaching again replaces our program in place.
		_, err = Attach(eth, testOptions)
		return err
	})
	if id := xdpProgID(t, be); id == 0 || id == first {
		t.Errorf("second Attach: program %d, want a new one replacing %d", id, first)
	}
	in(t, be, func() error { return Detach(eth) })
	if id := xdpProgID(t, be); id != 0 {
		t.Errorf("program %d still attached after Detach", id)
	}
	in(t, be, func() error {
		if st, err := GetStatus(eth); st.Attached || err != nil {
			t.Errorf("GetStatus after detach = %+v, %v", st, err)
		}
		return nil
	})

	// Our program attached in generic mode (as Attach does when the driver
	// has no native XDP) is replaced and detached in that mode.
	objs := loadTestDecap(t, DefaultGUEPort)
	setXDP(t, be, objs.XlbDecap, unix.XDP_FLAGS_SKB_MODE)
	in(t, be, func() error {
		if mode, err := Attach(eth, testOptions); err != nil || mode != bpf.ModeGeneric {
			t.Errorf("Attach over our generic program = %s, %v; want generic", mode, err)
		}
		return Detach(eth)
	})
	if id := xdpProgID(t, be); id != 0 {
		t.Errorf("program %d still attached after Detach", id)
	}

	// A foreign program is left alone.
	foreign := foreignProgram(t)
	setXDP(t, be, foreign, unix.XDP_FLAGS_DRV_MODE)
	t.Cleanup(func() { setXDP(t, be, nil, unix.XDP_FLAGS_DRV_MODE) })
	in(t, be, func() error {
		if _, err := Attach(eth, testOptions); !errors.Is(err, ErrForeignProgram) {
			t.Errorf("Attach over a foreign program = %v, want ErrForeignProgram", err)
		}
		if err := Detach(eth); !errors.Is(err, ErrForeignProgram) {
			t.Errorf("Detach of a foreign program = %v, want ErrForeignProgram", err)
		}
		if st, err := GetStatus(eth); st.Attached || !errors.Is(err, ErrForeignProgram) {
			t.Errorf("GetStatus with a foreign program = %+v, %v", st, err)
		}
		if err := SetAllowed(eth, testAllow, testLocal); !errors.Is(err, ErrForeignProgram) {
			t.Errorf("SetAllowed on a foreign program = %v, want ErrForeignProgram", err)
		}
		return nil
	})
	info, err := foreign.Info()
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := info.ID(); xdpProgID(t, be) != uint32(id) {
		t.Errorf("foreign program %d replaced: link shows %d", id, xdpProgID(t, be))
	}
}

// sendFrames writes whole Ethernet frames out of h's eth0, addressed to the
// MAC dst.
func sendFrames(t *testing.T, h *lab.Host, dst [6]byte, frames ...[]byte) {
	t.Helper()
	in(t, h, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: h.Ifindex, Halen: 6}
		for _, f := range frames {
			f = append([]byte(nil), f...)
			copy(f[0:6], dst[:])
			copy(f[6:12], h.MAC[:])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("send %d-byte frame: %w", len(f), err)
			}
		}
		return nil
	})
}

// TestDelivers sends IPIP, GUE (over IPv4 and IPv6) and 6in6 packets from
// the balancer host to a backend running the decap program and receives each
// inner UDP datagram on a socket bound to the inner destination: the kernel
// has no tunnel configured, so only the program can have delivered it.
func TestDelivers(t *testing.T) {
	bal, be := newLab(t)
	in(t, be, func() error { _, err := Attach(lab.HostLink, testOptions); return err })

	listen := func(vip netip.Addr) net.PacketConn {
		c, err := be.ListenPacket("udp", netip.AddrPortFrom(vip, 5353).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	conn4, conn6 := listen(vip4), listen(vip6)
	inner4 := inner(t, client, vip4, layers.IPProtocolUDP, 5353)
	inner6 := inner(t, client6, vip6, layers.IPProtocolUDP, 5353)
	for _, tc := range []struct {
		name  string
		frame []byte
		conn  net.PacketConn
		kind  func(Counters) uint64
	}{
		{"ipip", encap(t, inner4, layers.IPProtocolIPv4, 5, false), conn4, func(c Counters) uint64 { return c[CounterIPIP] }},
		{"gue over ipv4", gueFrame(t, true, DefaultGUEPort, gueHdr(4, 0, false), inner4, false), conn4, func(c Counters) uint64 { return c[CounterGUE] }},
		{"6in6", encap6(t, inner6, layers.IPProtocolIPv6, false), conn6, func(c Counters) uint64 { return c[Counter6in6] }},
		{"gue over ipv6", gueFrame(t, false, DefaultGUEPort, gueHdr(41, 0, false), inner6, false), conn6, func(c Counters) uint64 { return c[CounterGUE] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := readCountersIn(t, be)
			buf := make([]byte, 2048)
			for try := range 5 { // a fresh link may need a moment to carry traffic
				sendFrames(t, bal, be.MAC, tc.frame)
				_ = tc.conn.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err := tc.conn.ReadFrom(buf)
				if err == nil {
					if string(buf[:n]) != string(payload) {
						t.Fatalf("received %q, want %q", buf[:n], payload)
					}
					if after := readCountersIn(t, be); tc.kind(after) <= tc.kind(before) {
						t.Errorf("counters %+v -> %+v: want this kind counted", before, after)
					}
					return
				}
				t.Logf("try %d: %v", try, err)
			}
			t.Error("inner datagram never delivered")
		})
	}
}

// readCountersIn reads the counters of the program on h's eth0.
func readCountersIn(t *testing.T, h *lab.Host) (c Counters) {
	t.Helper()
	in(t, h, func() error {
		var err error
		c, err = ReadCounters(lab.HostLink)
		return err
	})
	return c
}

func sorted(as []netip.Addr) []netip.Addr {
	s := slices.Clone(as)
	slices.SortFunc(s, netip.Addr.Compare)
	return s
}

// TestSecurityContract, on a real interface: the program attached with the
// host's own addresses (Options.Local nil) delivers a balancer's IPIP
// packet, drops the same packet from a spoofed source and one to another
// host's address, counting each by reason, and passes a stranger's UDP to
// another port as ordinary traffic; SetAllowed then replaces the allowed
// set in the attached program's map, without re-attaching, and the verdicts
// follow.
func TestSecurityContract(t *testing.T) {
	bal, be := newLab(t)
	opts := Options{GUEPort: DefaultGUEPort, Allow: []netip.Prefix{netip.PrefixFrom(balancer, 32)}}
	in(t, be, func() error { _, err := Attach(lab.HostLink, opts); return err })
	st := statusIn(t, be)
	for _, a := range []netip.Addr{backend, backend6, vip4, vip6} {
		if !slices.Contains(st.Local, a) {
			t.Errorf("local addresses %v: missing the host's %s", st.Local, a)
		}
	}
	if slices.Contains(st.Local, netip.MustParseAddr("127.0.0.1")) || slices.Contains(st.Local, netip.IPv6Loopback()) {
		t.Errorf("local addresses %v: loopback addresses are no tunnel endpoints", st.Local)
	}
	progID := st.ProgramID

	conn, err := be.ListenPacket("udp", netip.AddrPortFrom(vip4, 5353).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	plainConn, err := be.ListenPacket("udp", netip.AddrPortFrom(backend, 5354).String())
	if err != nil {
		t.Fatal(err)
	}
	defer plainConn.Close()
	datagram := inner(t, client, vip4, layers.IPProtocolUDP, 5353)
	ipip := encap(t, datagram, layers.IPProtocolIPv4, 5, false)
	gue := gueFrame(t, true, DefaultGUEPort, gueHdr(4, 0, false), datagram, false)
	newBalancer := netip.MustParseAddr("198.18.0.77")
	// Plain UDP from a stranger to port 5354 of the backend.
	plainUDP := l2(t, false, layers.EthernetTypeIPv4, gopacket.Payload(inner(t, stranger, backend, layers.IPProtocolUDP, 5354)))

	expect := func(name string, frame []byte, c net.PacketConn, delivered bool, counter Counter) {
		t.Helper()
		before := readCountersIn(t, be)
		buf := make([]byte, 2048)
		var got bool
		for try := 0; try < 3 && !got; try++ { // a fresh link may need a moment
			sendFrames(t, bal, be.MAC, frame)
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, _, err := c.ReadFrom(buf)
			got = err == nil && string(buf[:n]) == string(payload)
			if !delivered && readCountersIn(t, be)[counter] > before[counter] {
				break
			}
		}
		if got != delivered {
			t.Errorf("%s: delivered %v, want %v", name, got, delivered)
		}
		if after := readCountersIn(t, be); after[counter] <= before[counter] {
			t.Errorf("%s: %s did not grow (%v -> %v)", name, counter, before, after)
		}
	}
	expect("balancer ipip", ipip, conn, true, CounterIPIP)
	expect("balancer gue", gue, conn, true, CounterGUE)
	expect("spoofed ipip", readdress(ipip, stranger, backend), conn, false, CounterSourceNotAllowed)
	expect("spoofed gue", readdress(gue, stranger, backend), conn, false, CounterSourceNotAllowed)
	expect("ipip to another address", readdress(ipip, balancer, other), conn, false, CounterNotLocalDestination)
	expect("new balancer before SetAllowed", readdress(ipip, newBalancer, backend), conn, false, CounterSourceNotAllowed)
	expect("stranger's udp to another port", plainUDP, plainConn, true, CounterPassed)

	in(t, be, func() error {
		return SetAllowed(lab.HostLink, []netip.Prefix{netip.PrefixFrom(newBalancer, 32)}, nil)
	})
	st2 := statusIn(t, be)
	if st2.ProgramID != progID {
		t.Errorf("SetAllowed replaced program %d with %d", progID, st2.ProgramID)
	}
	if !slices.Equal(st2.Allow, []netip.Prefix{netip.PrefixFrom(newBalancer, 32)}) {
		t.Errorf("allowed after SetAllowed: %v", st2.Allow)
	}
	if st2.Counters[CounterIPIP] < st.Counters[CounterIPIP]+1 {
		t.Errorf("counters restarted: %v -> %v", st.Counters, st2.Counters)
	}
	expect("new balancer after SetAllowed", readdress(ipip, newBalancer, backend), conn, true, CounterIPIP)
	expect("old balancer after SetAllowed", ipip, conn, false, CounterSourceNotAllowed)
}

func statusIn(t *testing.T, h *lab.Host) (st Status) {
	t.Helper()
	in(t, h, func() error {
		var err error
		st, err = GetStatus(lab.HostLink)
		return err
	})
	return st
}
