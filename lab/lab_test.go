package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/testenv"
)

// The test lab: a client on a 1500 path, two backends on 1600 that both
// hold the VIP on lo; the client reaches the VIP through b2.
var (
	vip       = netip.MustParseAddr("198.18.1.1")
	clientA   = netip.MustParsePrefix("198.18.0.1/24")
	clientA6  = netip.MustParsePrefix("2001:db8::1/64")
	b1A       = netip.MustParsePrefix("198.18.0.11/24")
	b1A6      = netip.MustParsePrefix("2001:db8::11/64")
	b2A       = netip.MustParsePrefix("198.18.0.12/24")
	vipPrefix = netip.PrefixFrom(vip, 32)
)

var prefixSeq atomic.Int32

// testPrefix is unique per test run and per lab: "xlblab<pid>x<n>".
func testPrefix() string {
	return fmt.Sprintf("xlblab%dx%d", os.Getpid(), prefixSeq.Add(1))
}

// leftovers lists the named namespaces a lab with prefix could own.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := Leftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testSpec(prefix string) Spec {
	return Spec{
		Prefix: prefix,
		Hosts: []HostSpec{
			{
				Name: "client", Addr: clientA, Addr6: clientA6, MTU: 1500,
				Routes: []Route{{Dst: vipPrefix, Via: b2A.Addr()}},
			},
			{Name: "b1", Addr: b1A, Addr6: b1A6, MTU: 1600, LoAddrs: []netip.Prefix{vipPrefix}},
			{Name: "b2", Addr: b2A, MTU: 1600, LoAddrs: []netip.Prefix{vipPrefix}},
		},
	}
}

// newLab builds spec and closes it when the test ends, pass or fail, then
// checks nothing with its prefix is left.
func newLab(t *testing.T, spec Spec) *Lab {
	t.Helper()
	testenv.Root(t, "creates network namespaces")
	l, err := New(spec)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left := leftovers(t, spec.Prefix); len(left) > 0 {
			t.Errorf("after Close, namespaces left: %v", left)
		}
	})
	return l
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTopology(t *testing.T) {
	testenv.Root(t, "creates network namespaces")
	rootLinks := linkNames(t, netlink.LinkList)
	l := newLab(t, testSpec(testPrefix()))
	if got := linkNames(t, netlink.LinkList); !slices.Equal(got, rootLinks) {
		t.Errorf("root namespace links changed: before %v, after %v", rootLinks, got)
	}

	swnl, err := netlink.NewHandleAt(l.Switch.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer swnl.Close()
	br, err := swnl.LinkByName(BridgeLink)
	if err != nil {
		t.Fatal(err)
	}
	if br.Attrs().MTU != 1600 || l.Switch.MTU != 1600 {
		t.Errorf("bridge MTU %d (Switch.MTU %d), want 1600", br.Attrs().MTU, l.Switch.MTU)
	}

	for i, h := range l.HostList() {
		want := testSpec("").Hosts[i]
		if h.Name != want.Name || l.Hosts[want.Name] != h {
			t.Fatalf("host %d is %q, want %q", i, h.Name, want.Name)
		}
		if h.NS != l.Prefix+"-"+h.Name {
			t.Errorf("%s: NS %q", h.Name, h.NS)
		}
		port, err := swnl.LinkByName(h.Port)
		if err != nil {
			t.Fatalf("%s: port: %v", h.Name, err)
		}
		if port.Attrs().MasterIndex != br.Attrs().Index || port.Attrs().MTU != 1600 || port.Attrs().OperState != netlink.OperUp {
			t.Errorf("%s: port master %d MTU %d state %v, want master %d MTU 1600 up", h.Name,
				port.Attrs().MasterIndex, port.Attrs().MTU, port.Attrs().OperState, br.Attrs().Index)
		}

		nl, err := netlink.NewHandleAt(h.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		eth, err := nl.LinkByName(HostLink)
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		a := eth.Attrs()
		if a.Index != h.Ifindex || a.MTU != want.MTU || h.MTU != want.MTU || !bytes.Equal(a.HardwareAddr, h.MAC[:]) || h.MAC != hostMAC(i) {
			t.Errorf("%s: eth0 index %d MTU %d MAC %s; Host says %d %d %x", h.Name, a.Index, a.MTU, a.HardwareAddr, h.Ifindex, h.MTU, h.MAC)
		}
		if a.OperState != netlink.OperUp {
			t.Errorf("%s: eth0 %v, want up", h.Name, a.OperState)
		}
		addrs, err := nl.AddrList(eth, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ad := range addrs {
			if !ad.IP.IsLinkLocalUnicast() {
				got = append(got, ad.IPNet.String())
			}
		}
		wantAddrs := []string{want.Addr.String()}
		if want.Addr6.IsValid() {
			wantAddrs = append(wantAddrs, want.Addr6.String())
		}
		slices.Sort(got)
		slices.Sort(wantAddrs)
		if !slices.Equal(got, wantAddrs) {
			t.Errorf("%s: eth0 addresses %v, want %v", h.Name, got, wantAddrs)
		}
		if h.Addr != want.Addr.Addr() || h.Addr6 != want.Addr6.Addr() {
			t.Errorf("%s: Host addresses %s %s", h.Name, h.Addr, h.Addr6)
		}
	}
}

func linkNames(t *testing.T, list func() ([]netlink.Link, error)) []string {
	t.Helper()
	links, err := list()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// echoOnce accepts one connection on ln and echoes what it reads, tagged.
func echoOnce(ln net.Listener, tag string) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			done <- err
			return
		}
		_, err = c.Write(append([]byte(tag+":"), buf[:n]...))
		done <- err
	}()
	return done
}

// roundTrip dials addr from h, sends "ping" and returns the answer.
func roundTrip(t *testing.T, h *Host, network, addr string) (string, error) {
	t.Helper()
	c, err := h.Dial(ctxFor(t, 5*time.Second), network, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestTCPBetweenHosts(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	tests := []struct {
		name, from, to, network string
		addr                    netip.Addr
	}{
		{"client to b1", "client", "b1", "tcp4", b1A.Addr()},
		{"b1 to b2", "b1", "b2", "tcp4", b2A.Addr()},
		{"b2 to client", "b2", "client", "tcp4", clientA.Addr()},
		{"client to b1 over IPv6", "client", "b1", "tcp6", b1A6.Addr()},
		{"client to VIP through b2", "client", "b2", "tcp4", vip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := l.Hosts[tt.to].Listen(tt.network, netip.AddrPortFrom(tt.addr, 7000).String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := echoOnce(ln, tt.to)
			got, err := roundTrip(t, l.Hosts[tt.from], tt.network, netip.AddrPortFrom(tt.addr, 7000).String())
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.to + ":ping"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if err := <-done; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}
}

// TestVIPNotAnsweredByARP checks that backends holding the VIP on lo do not
// answer ARP for it: a client that believes the VIP is on its link gets no
// neighbour and cannot connect.
func TestVIPNotAnsweredByARP(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	client := l.Hosts["client"]
	for _, b := range []string{"b1", "b2"} {
		ln, err := l.Hosts[b].Listen("tcp4", netip.AddrPortFrom(vip, 7001).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	nl, err := netlink.NewHandleAt(client.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	onLink := netip.MustParsePrefix("198.18.1.0/24")
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: client.Ifindex, Dst: prefixNet(onLink), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	// 198.18.1.1 keeps its /32 route via b2; .2 is now "on link".
	other := netip.MustParseAddr("198.18.1.2")
	for _, b := range []string{"b1", "b2"} {
		nlb, err := netlink.NewHandleAt(l.Hosts[b].handle)
		if err != nil {
			t.Fatal(err)
		}
		lo, err := nlb.LinkByName("lo")
		if err == nil {
			err = addAddr(nlb, lo, netip.PrefixFrom(other, 32))
		}
		nlb.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxFor(t, 2*time.Second)
	c, err := client.Dial(ctx, "tcp4", netip.AddrPortFrom(other, 7001).String())
	if err == nil {
		c.Close()
		t.Fatal("dialled a lo address across the link: a backend answered ARP for it")
	}
}

func TestChecksumOffload(t *testing.T) {
	spec := testSpec(testPrefix())
	spec.Hosts[2].KeepChecksumOffload = true
	l := newLab(t, spec)
	tests := []struct {
		host string
		want Offloads
	}{
		{"client", Offloads{TxChecksum: false, TSO: false, GSO: true}},
		{"b1", Offloads{TxChecksum: false, TSO: false, GSO: true}},
		{"b2", Offloads{TxChecksum: true, TSO: true, GSO: true}},
	}
	for _, tt := range tests {
		got, err := l.Hosts[tt.host].Offloads()
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s: offloads %+v, want %+v", tt.host, got, tt.want)
		}
	}
}

// TestFullChecksumsOnTheWire captures, at the client's bridge port, the
// TCP segments of a large write and checks that each carries a complete
// checksum and fits the MTU: what an XDP forwarder would pass on.
func TestFullChecksumsOnTheWire(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	client, b1 := l.Hosts["client"], l.Hosts["b1"]
	frames := capture(t, l.Switch, client.Port, func() {
		ln, err := b1.Listen("tcp4", netip.AddrPortFrom(b1.Addr, 7002).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		drained := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = io.Copy(io.Discard, c)
				c.Close()
			}
			drained <- err
		}()
		c, err := client.Dial(ctxFor(t, 5*time.Second), "tcp4", netip.AddrPortFrom(b1.Addr, 7002).String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write(make([]byte, 256<<10))
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := <-drained; err != nil {
			t.Fatal(err)
		}
	})
	var data int
	for _, f := range frames {
		seg, ok := tcpSegment(f, client.Addr, b1.Addr)
		if !ok {
			continue
		}
		if len(f)-14 > client.MTU {
			t.Fatalf("frame of %d bytes exceeds MTU %d", len(f)-14, client.MTU)
		}
		if !tcpChecksumOK(client.Addr, b1.Addr, seg) {
			t.Fatalf("TCP segment of %d bytes with incomplete checksum %#04x", len(seg), uint16(seg[16])<<8|uint16(seg[17]))
		}
		if len(seg) > 40 {
			data++
		}
	}
	if data < 10 {
		t.Fatalf("captured %d data segments from the client, want at least 10", data)
	}
}

// capture records the IPv4 frames that arrive on port (in ns) while fn
// runs, through an AF_PACKET socket bound to that port.
func capture(t *testing.T, ns *Host, port string, fn func()) [][]byte {
	t.Helper()
	var sock *os.File
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(port)
		if err != nil {
			return err
		}
		sock, err = packetSocket(ifi.Index)
		return err
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", port, err)
	}
	defer sock.Close()
	var frames [][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		sock.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(frames) < 10000 {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			frames = append(frames, bytes.Clone(buf[:n]))
		}
	}()
	fn()
	time.Sleep(100 * time.Millisecond) // frames already queued on the socket
	sock.SetReadDeadline(time.Now())
	<-done
	return frames
}

// tcpSegment returns the TCP segment of an Ethernet/IPv4 frame from src to
// dst, without options in the IP header as Linux sends them.
func tcpSegment(f []byte, src, dst netip.Addr) ([]byte, bool) {
	if len(f) < 14+20+20 || f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 || f[23] != 6 {
		return nil, false
	}
	if netip.AddrFrom4([4]byte(f[26:30])) != src || netip.AddrFrom4([4]byte(f[30:34])) != dst {
		return nil, false
	}
	total := int(f[16])<<8 | int(f[17])
	if total < 40 || 14+total > len(f) {
		return nil, false
	}
	return f[34 : 14+total], true
}

// tcpChecksumOK verifies seg's checksum over the IPv4 pseudo-header.
func tcpChecksumOK(src, dst netip.Addr, seg []byte) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As4(), dst.As4()
	add(s[:])
	add(d[:])
	sum += 6 + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestSysctl(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	const key, path = "net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "1\n"
	if string(before) == "1\n" {
		want = "0\n"
	}
	client := l.Hosts["client"]
	if err := client.Sysctl(key, strings.TrimSpace(want)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := client.Do(func() (err error) { got, err = os.ReadFile(path); return err }); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("in the namespace %s = %q, want %q", key, got, want)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Errorf("caller's %s changed from %q to %q", key, before, after)
	}
	if err := client.Sysctl("kernel.panic", "0"); err == nil {
		t.Error("Sysctl accepted a machine-wide key")
	}
	// The defaults New applies.
	for _, kv := range [][3]string{
		{"b1", "net/ipv4/conf/all/arp_ignore", "1"},
		{"b1", "net/ipv4/conf/all/arp_announce", "2"},
		{"b1", "net/ipv4/conf/eth0/rp_filter", "0"},
		{"client", "net/ipv4/conf/all/rp_filter", "0"},
		{"b2", "net/ipv6/conf/eth0/disable_ipv6", "1"},
		{"b1", "net/ipv6/conf/eth0/disable_ipv6", "0"},
	} {
		var v []byte
		if err := l.Hosts[kv[0]].Do(func() (err error) { v, err = os.ReadFile("/proc/sys/" + kv[1]); return err }); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(v)) != kv[2] {
			t.Errorf("%s: %s = %q, want %s", kv[0], kv[1], v, kv[2])
		}
	}
}

// TestDoRestoresNamespace checks that Do runs inside the host and that no
// thread of the process is left in a lab namespace afterwards.
func TestDoRestoresNamespace(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 20 {
		for _, h := range l.HostList() {
			err := h.Do(func() error {
				ns, err := os.Readlink("/proc/thread-self/ns/net")
				seen[ns] = true
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != 3 || seen[self] {
		t.Fatalf("Do saw namespaces %v (caller's is %s), want the 3 hosts'", seen, self)
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink(task)
		if err != nil {
			continue // the thread exited
		}
		if seen[ns] {
			t.Errorf("%s is still in a lab namespace %s", task, ns)
		}
	}
	// A panic inside fn reaches the caller, and the thread is restored.
	func() {
		defer func() {
			if recover() != "boom" {
				t.Error("panic in Do did not reach the caller")
			}
		}()
		l.Hosts["b1"].Do(func() error { panic("boom") })
	}()
}

func TestCommand(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	testenv.Tool(t, "ip")
	b1 := l.Hosts["b1"]
	out, err := b1.Command(ctxFor(t, 5*time.Second), "ip", "-o", "addr", "show", "dev", HostLink).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), b1A.String()) {
		t.Errorf("ip addr inside b1 shows %q, want %s", out, b1A)
	}
	out, err = b1.Command(ctxFor(t, 5*time.Second), "cat", "/sys/class/net/eth0/mtu").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1600" {
		t.Errorf("/sys/class/net/eth0/mtu inside b1: %q, %v; want 1600", out, err)
	}
	if err := b1.Run(ctxFor(t, 5*time.Second), "ip", "link", "show", "dev", HostLink); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := b1.Run(ctxFor(t, 5*time.Second), "ip", "link", "show", "dev", "nosuch0"); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("Run of a failing command: %v, want an error with its output", err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	testenv.Root(t, "creates network namespaces")
	prefix := testPrefix()
	l, err := New(testSpec(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Cleanup(prefix) })
	if got := leftovers(t, prefix); len(got) != 4 {
		t.Fatalf("namespaces %v, want switch and 3 hosts", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(t, prefix); len(got) != 0 {
		t.Fatalf("after Close: %v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Hosts["b1"].Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestCleanupLeftovers(t *testing.T) {
	testenv.Root(t, "creates network namespaces")
	prefix := testPrefix()
	l, err := New(testSpec(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Cleanup(prefix) })
	// A namespace of the longer prefix PREFIX-x: not ours to remove.
	foreign := prefix + "-x-client"
	h, err := createNamed(foreign)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() { deleteNamed(foreign) })

	// As after a crash: the lab was never closed.
	if err := Cleanup(prefix); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(t, prefix); len(got) != 0 {
		t.Fatalf("after Cleanup: %v", got)
	}
	if _, err := os.Stat(filepath.Join(NetnsDir, foreign)); err != nil {
		t.Fatalf("Cleanup removed %s: %v", foreign, err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close after Cleanup: %v", err)
	}
	if err := Cleanup(""); err == nil {
		t.Fatal(`Cleanup("") accepted`)
	}
}

func TestNewLeavesExistingNamespaces(t *testing.T) {
	testenv.Root(t, "creates network namespaces")
	prefix := testPrefix()
	t.Cleanup(func() { Cleanup(prefix) })
	h, err := createNamed(nsName(prefix, "b2"))
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	_, err = New(testSpec(prefix))
	if !errors.Is(err, ErrExists) {
		t.Fatalf("New over an existing namespace: %v, want ErrExists", err)
	}
	got := leftovers(t, prefix)
	if !slices.Equal(got, []string{nsName(prefix, "b2")}) {
		t.Fatalf("after the failed New: %v, want only the existing %s", got, nsName(prefix, "b2"))
	}
}

// TestPortXDP bounces every frame b1 receives back out of its eth0 with
// XDP_TX and counts, at b1's bridge port, the client's datagrams that come
// back: a veth delivers them only when the port runs an XDP program.
func TestPortXDP(t *testing.T) {
	tests := []struct {
		portXDP bool
		want    func(n int) bool
	}{
		{true, func(n int) bool { return n == 5 }},
		{false, func(n int) bool { return n == 0 }},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("PortXDP=%v", tt.portXDP), func(t *testing.T) {
			spec := testSpec(testPrefix())
			spec.Hosts[1].PortXDP = tt.portXDP
			l := newLab(t, spec)
			client, b1 := l.Hosts["client"], l.Hosts["b1"]
			attachXDPTx(t, b1)
			// b1 cannot answer ARP any more: tell the client its MAC.
			nl, err := netlink.NewHandleAt(client.handle)
			if err != nil {
				t.Fatal(err)
			}
			defer nl.Close()
			neigh := &netlink.Neigh{LinkIndex: client.Ifindex, State: netlink.NUD_PERMANENT,
				IP: b1.Addr.AsSlice(), HardwareAddr: b1.MAC[:]}
			if err := nl.NeighAdd(neigh); err != nil {
				t.Fatal(err)
			}
			frames := capture(t, l.Switch, b1.Port, func() {
				c, err := client.Dial(ctxFor(t, 5*time.Second), "udp4", netip.AddrPortFrom(b1.Addr, 7003).String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for range 5 {
					if _, err := c.Write([]byte("bounce")); err != nil {
						t.Fatal(err)
					}
				}
			})
			n := 0
			for _, f := range frames {
				if len(f) >= 42 && f[12] == 0x08 && f[13] == 0 && f[23] == 17 &&
					netip.AddrFrom4([4]byte(f[26:30])) == client.Addr && int(f[36])<<8|int(f[37]) == 7003 {
					n++
				}
			}
			if !tt.want(n) {
				t.Fatalf("captured %d bounced datagrams on b1's port", n)
			}
		})
	}
}

// attachXDPTx makes h's eth0 send every frame it receives straight back.
func attachXDPTx(t *testing.T, h *Host) {
	t.Helper()
	attachXDP(t, h, asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()})
}

// attachXDP attaches the program of insns to h's eth0 in native mode. The
// link keeps the program; the namespace's deletion detaches it.
func attachXDP(t *testing.T, h *Host, insns asm.Instructions) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	err = h.Do(func() error {
		link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: h.Ifindex}}
		return netlink.LinkSetXdpFdWithFlags(link, prog.FD(), nl.XDP_FLAGS_DRV_MODE)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNewFailureTearsDown makes the kernel refuse the last step (a route
// through a gateway that is not on the link) and checks that New removes
// every namespace it had made by then.
func TestNewFailureTearsDown(t *testing.T) {
	testenv.Root(t, "creates network namespaces")
	spec := testSpec(testPrefix())
	t.Cleanup(func() { Cleanup(spec.Prefix) })
	spec.Hosts[2].Routes = []Route{{Dst: netip.MustParsePrefix("198.19.0.0/24"), Via: netip.MustParseAddr("198.18.9.9")}}
	l, err := New(spec)
	if err == nil {
		l.Close()
		t.Fatal("New accepted a route through an unreachable gateway")
	}
	if !strings.Contains(err.Error(), "b2") {
		t.Errorf("error %q does not name the host", err)
	}
	if got := leftovers(t, spec.Prefix); len(got) > 0 {
		t.Fatalf("after the failed New: %v", got)
	}
}

// TestInlineVLAN sends 802.1Q-tagged frames from the client to b1, whose
// XDP program bounces only frames that carry the tag inside the frame, and
// counts the bounced ones at b1's port: all of them with InlineVLAN, none
// without (veth and the bridge then keep the tag out of band).
func TestInlineVLAN(t *testing.T) {
	for _, inline := range []bool{true, false} {
		t.Run(fmt.Sprintf("InlineVLAN=%v", inline), func(t *testing.T) {
			spec := testSpec(testPrefix())
			spec.Hosts[1].PortXDP = true // to receive what b1 bounces
			spec.Hosts[1].InlineVLAN = inline
			l := newLab(t, spec)
			client, b1 := l.Hosts["client"], l.Hosts["b1"]
			attachXDPTxTagged(t, b1)
			marker := []byte("xlb lab inline vlan")
			frame := append(append(append([]byte{}, b1.MAC[:]...), client.MAC[:]...), 0x81, 0x00, 0x00, 0x07, 0x88, 0xb5) // VLAN 7, local experimental EtherType
			frame = append(frame, marker...)
			var fd int
			if err := client.Do(func() error {
				var err error
				fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			frames := capture(t, l.Switch, b1.Port, func() {
				for range 5 {
					if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: client.Ifindex, Halen: 6}); err != nil {
						t.Fatal(err)
					}
				}
			})
			n := 0
			for _, f := range frames {
				if bytes.Contains(f, marker) {
					n++
				}
			}
			want := 0
			if inline {
				want = 5
			}
			if n != want {
				t.Fatalf("b1 bounced %d of 5 tagged frames, want %d", n, want)
			}
		})
	}
}

// attachXDPTxTagged makes h's eth0 send back every frame whose EtherType
// field is 802.1Q (a tag inside the frame) and pass the others.
func attachXDPTxTagged(t *testing.T, h *Host) {
	t.Helper()
	attachXDP(t, h, asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, 0x0081, "pass"), // 0x8100 in network order, loaded little-endian
		asm.Mov.Imm(asm.R0, 3 /* XDP_TX */),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */).WithSymbol("pass"),
		asm.Return(),
	})
}

// TestPairs builds a host on the switch, two hosts off it (NoSwitch) and
// three pairs: between the two NoSwitch hosts (two queues, IPv4 and
// IPv6), from the switched host to one of them, and inside one host. It
// checks where each end is, its MAC, MTU, queues and offloads, and TCP
// over the pairs.
func TestPairs(t *testing.T) {
	p := netip.MustParsePrefix
	xA, yA, xA6, yA6 := p("198.18.7.1/24"), p("198.18.7.2/24"), p("2001:db8:7::1/64"), p("2001:db8:7::2/64")
	sA, dA := p("198.18.8.1/24"), p("198.18.8.2/24")
	spec := Spec{
		Prefix: testPrefix(),
		Hosts: []HostSpec{
			{Name: "s", Addr: b1A},
			{Name: "x", NoSwitch: true},
			{Name: "y", NoSwitch: true, LoAddrs: []netip.Prefix{vipPrefix}},
		},
		Pairs: []PairSpec{
			{
				A:      EndSpec{Host: "x", Name: "p0", Addrs: []netip.Prefix{xA, xA6}, Routes: []Route{{Dst: vipPrefix, Via: yA.Addr()}}},
				B:      EndSpec{Host: "y", Name: "p0", Addrs: []netip.Prefix{yA, yA6}},
				MTU:    1600,
				Queues: 2,
			},
			{A: EndSpec{Host: "s", Name: "d0", Addrs: []netip.Prefix{sA}}, B: EndSpec{Host: "x", Name: "d0", Addrs: []netip.Prefix{dA}}},
			{A: EndSpec{Host: "x", Name: "in0"}, B: EndSpec{Host: "x", Name: "in1"}, KeepChecksumOffload: true},
		},
	}
	l := newLab(t, spec)
	if l.Switch == nil {
		t.Fatal("no switch, though host s is on it")
	}
	if len(l.Pairs) != 3 {
		t.Fatalf("%d pairs, want 3", len(l.Pairs))
	}
	x, y := l.Hosts["x"], l.Hosts["y"]
	if x.Link != "" || x.Port != "" || x.Addr.IsValid() {
		t.Errorf("NoSwitch host x has eth0 fields: link %q port %q addr %s", x.Link, x.Port, x.Addr)
	}
	if got := linkNames(t, l.Switch.nl(t).LinkList); !slices.Equal(got, []string{"br0", "lo", "s"}) {
		t.Errorf("switch links %v, want only s's port", got)
	}
	if got := linkNames(t, x.nl(t).LinkList); !slices.Equal(got, []string{"d0", "in0", "in1", "lo", "p0"}) {
		t.Errorf("x links %v", got)
	}
	for i, p := range l.Pairs {
		for e, end := range []End{p.A, p.B} {
			if want := pairMAC(i, byte(e+1)); end.MAC != want {
				t.Errorf("pair %d end %d MAC %x, want %x", i, e, end.MAC, want)
			}
			link, err := end.Host.nl(t).LinkByName(end.Name)
			if err != nil {
				t.Fatalf("pair %d: %s in %s: %v", i, end.Name, end.Host.NS, err)
			}
			a := link.Attrs()
			if a.Index != end.Ifindex || [6]byte(a.HardwareAddr) != end.MAC || a.MTU != end.MTU || a.OperState != netlink.OperUp {
				t.Errorf("pair %d %s:%s: index %d MAC %s MTU %d state %s; End says %d %x %d",
					i, end.Host.Name, end.Name, a.Index, a.HardwareAddr, a.MTU, a.OperState, end.Ifindex, end.MAC, end.MTU)
			}
			if want := spec.Pairs[i].Queues; want > 0 && (a.NumRxQueues != want || a.NumTxQueues != want) {
				t.Errorf("pair %d %s: %d rx %d tx queues, want %d", i, end.Name, a.NumRxQueues, a.NumTxQueues, want)
			}
		}
	}

	// Offloads: off on pair ends (as on eth0), kept where asked.
	for _, tc := range []struct {
		end  End
		want bool
	}{{l.Pairs[0].B, false}, {l.Pairs[2].A, true}} {
		var o Offloads
		err := tc.end.Host.withSocket(func(fd int) error {
			v, err := ethtool(fd, tc.end.Name, unix.ETHTOOL_GTXCSUM, 0)
			o.TxChecksum = v != 0
			return err
		})
		if err != nil || o.TxChecksum != tc.want {
			t.Errorf("%s:%s tx checksum %v, %v; want %v", tc.end.Host.Name, tc.end.Name, o.TxChecksum, err, tc.want)
		}
	}

	for _, tc := range []struct {
		name, network string
		from, to      *Host
		addr          netip.Addr
	}{
		{"x to y over IPv4", "tcp4", x, y, yA.Addr()},
		{"y to x over IPv6", "tcp6", y, x, xA6.Addr()},
		{"x to y's VIP by route", "tcp4", x, y, vip},
		{"s to x over d0", "tcp4", l.Hosts["s"], x, dA.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.to.Listen(tc.network, netip.AddrPortFrom(tc.addr, 7000).String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := echoOnce(ln, tc.to.Name)
			got, err := roundTrip(t, tc.from, tc.network, netip.AddrPortFrom(tc.addr, 7000).String())
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.to.Name + ":ping"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if err := <-done; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}
}

// TestNoSwitch: a lab of NoSwitch hosts has no switch namespace.
func TestNoSwitch(t *testing.T) {
	spec := Spec{
		Prefix: testPrefix(),
		Hosts:  []HostSpec{{Name: "a", NoSwitch: true}, {Name: "b", NoSwitch: true}},
		Pairs:  []PairSpec{{A: EndSpec{Host: "a", Name: "v"}, B: EndSpec{Host: "b", Name: "v"}}},
	}
	l := newLab(t, spec)
	if l.Switch != nil {
		t.Errorf("switch %s made for NoSwitch hosts", l.Switch.NS)
	}
	if got, want := leftovers(t, spec.Prefix), []string{spec.Prefix + "-a", spec.Prefix + "-b"}; !slices.Equal(got, want) {
		t.Errorf("namespaces %v, want %v", got, want)
	}
	if len(l.HostList()) != 2 {
		t.Errorf("HostList %d hosts, want 2", len(l.HostList()))
	}
}

// nl is a netlink handle in h's namespace, closed when the test ends.
func (h *Host) nl(t *testing.T) *netlink.Handle {
	t.Helper()
	nl, err := netlink.NewHandleAt(h.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}
