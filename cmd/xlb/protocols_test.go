package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/decap"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/lab"
)

// The protocol lab: the hosts of the IPv4 lab (client, lb, be1..be3 on one
// bridge), each also holding an IPv6 address, every link at 1500 bytes, so
// that no encapsulation fits a full-size client packet and the balancer
// must run path MTU discovery for its clients.
var (
	protoLB6       = netip.MustParsePrefix("2001:db8::1/64")
	protoClient6   = netip.MustParsePrefix("2001:db8::2/64")
	protoBackends6 = []netip.Prefix{
		netip.MustParsePrefix("2001:db8::11/64"),
		netip.MustParsePrefix("2001:db8::12/64"),
		netip.MustParsePrefix("2001:db8::13/64"),
	}
	// The client routes these to the balancer.
	protoVIPNet4 = netip.MustParsePrefix("198.18.100.0/24")
	protoVIPNet6 = netip.MustParsePrefix("2001:db8:100::/64")
	// Sources of the ICMP errors the tests forge, as if a router on the
	// path between a backend and the client had sent them.
	protoRouter4 = netip.MustParseAddr("198.18.0.254")
	protoRouter6 = netip.MustParseAddr("2001:db8::fe")
)

const (
	protoMTU     = 1500
	protoGUEPort = 6635 // not the default, so `xlb decap attach --gue-port` is exercised
	protoUDPPort = 53   // a UDP VIP on vipIP6IP6's address, for UDP frames
)

// protoVIP is one VIP of the protocol lab: TCP port 80, held on lo by every
// backend, forwarded to all three backends of one family.
type protoVIP struct {
	name     string
	addr     netip.Addr
	forward  string // ipip, gue or dsr
	v6       bool   // IPv6 backends
	overhead int    // bytes the forwarding adds in front of the client's packet
	noEcho   bool   // icmp_echo = false
	fragPass bool   // fragments = "pass"
	only     int    // the first only backends (0: all three)
}

var (
	vipIPIP4   = protoVIP{name: "ipip", addr: netip.MustParseAddr("198.18.100.1"), forward: "ipip", overhead: 20}
	vipIP6IP6  = protoVIP{name: "ip6ip6", addr: netip.MustParseAddr("2001:db8:100::1"), forward: "ipip", v6: true, overhead: 40}
	vipGUE6    = protoVIP{name: "gue6", addr: netip.MustParseAddr("2001:db8:100::2"), forward: "gue", v6: true, overhead: 52}
	vip4in6    = protoVIP{name: "4in6", addr: netip.MustParseAddr("198.18.100.3"), forward: "ipip", v6: true, overhead: 40}
	vipDSR4    = protoVIP{name: "dsr", addr: netip.MustParseAddr("198.18.100.4"), forward: "dsr"}
	vipDSR6    = protoVIP{name: "dsr6", addr: netip.MustParseAddr("2001:db8:100::4"), forward: "dsr", v6: true}
	vipGUE4    = protoVIP{name: "gue4", addr: netip.MustParseAddr("198.18.100.5"), forward: "gue", overhead: 32}
	vipNoEcho4 = protoVIP{name: "noecho4", addr: netip.MustParseAddr("198.18.100.6"), forward: "ipip", overhead: 20, noEcho: true}
	vipNoEcho6 = protoVIP{name: "noecho6", addr: netip.MustParseAddr("2001:db8:100::6"), forward: "ipip", v6: true, overhead: 40, noEcho: true}
	vipFrag4   = protoVIP{name: "fragpass4", addr: netip.MustParseAddr("198.18.100.7"), forward: "ipip", overhead: 20, fragPass: true}
	vipFrag6   = protoVIP{name: "fragpass6", addr: netip.MustParseAddr("2001:db8:100::7"), forward: "ipip", v6: true, overhead: 40, fragPass: true}
	protoVIPs  = []protoVIP{vipIPIP4, vipIP6IP6, vipGUE6, vip4in6, vipDSR4, vipDSR6, vipGUE4, vipNoEcho4, vipNoEcho6, vipFrag4, vipFrag6}
)

func (v protoVIP) backends() []netip.Prefix {
	bs := labBackends
	if v.v6 {
		bs = protoBackends6
	}
	if v.only > 0 {
		return bs[:v.only]
	}
	return bs
}

func (v protoVIP) url() string { return "http://" + netip.AddrPortFrom(v.addr, 80).String() }

// protoConfig is the balancer's config for the protocol lab in mode (afxdp
// or native): every VIP of protoVIPs, plus UDP port protoUDPPort on
// vipIP6IP6's address.
func protoConfig(socket, mode string) string {
	return protoConfigOf(socket, mode, "", protoVIPs)
}

// protoConfigOf is protoConfig with vips (vips[1] is vipIP6IP6's
// address) and extra [datapath] lines.
func protoConfigOf(socket, mode, extra string, vips []protoVIP) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[datapath]\ninterface = %q\nmode = %q\nqueues = [0]\n%s\n[control]\nsocket = %q\n", lab.HostLink, mode, extra, socket)
	vip := func(addr netip.Addr, port int, proto string, v protoVIP) {
		fmt.Fprintf(&b, "\n[[vip]]\naddress = %q\nport = %d\nprotocol = %q\nforward = %q\n", addr, port, proto, v.forward)
		if v.forward == "gue" {
			fmt.Fprintf(&b, "gue_port = %d\n", protoGUEPort)
		}
		if v.noEcho {
			b.WriteString("icmp_echo = false\n")
		}
		if v.fragPass {
			b.WriteString("fragments = \"pass\"\n")
		}
		for _, be := range v.backends() {
			fmt.Fprintf(&b, "\n  [[vip.backend]]\n  address = %q\n", be.Addr())
		}
	}
	for _, v := range vips {
		vip(v.addr, 80, "tcp", v)
	}
	vip(vips[1].addr, protoUDPPort, "udp", vips[1])
	return b.String()
}

// newProtoLab builds the protocol lab: dual-stack hosts, the client routing
// both VIP networks to the balancer, every VIP on every backend's lo (with
// arp_ignore, so DSR works), `xlb decap attach --gue-port` and an HTTP
// server on [::]:80 (both families) in every backend. It returns an lbLab,
// so startXLB, stats and Close work as for the IPv4 lab.
func newProtoLab(prefix, bin, dir string) (_ *lbLab, err error) {
	if err := lab.Cleanup(prefix); err != nil {
		return nil, err
	}
	var lo []netip.Prefix
	for _, v := range protoVIPs {
		lo = append(lo, netip.PrefixFrom(v.addr, v.addr.BitLen()))
	}
	spec := lab.Spec{Prefix: prefix, Hosts: []lab.HostSpec{
		{Name: "client", Addr: labClient, Addr6: protoClient6, MTU: protoMTU, Routes: []lab.Route{
			{Dst: protoVIPNet4, Via: labLB.Addr()},
			{Dst: protoVIPNet6, Via: protoLB6.Addr()},
		}},
		// InlineVLAN: tagged frames reach the balancer's XDP tagged.
		// PortXDP: the native program's XDP_TX frames are received by
		// the bridge port (veth delivers them only to a peer with XDP).
		{Name: "lb", Addr: labLB, Addr6: protoLB6, MTU: protoMTU, InlineVLAN: true, PortXDP: true},
	}}
	for i := range labBackends {
		spec.Hosts = append(spec.Hosts, lab.HostSpec{Name: fmt.Sprintf("be%d", i+1), Addr: labBackends[i], Addr6: protoBackends6[i], MTU: protoMTU, LoAddrs: lo})
	}
	return buildLBLab(spec, bin, dir, "[::]:80", "--gue-port", strconv.Itoa(protoGUEPort),
		"--allow-source", labLB.Addr().String(), "--allow-source", protoLB6.Addr().String())
}

// startProtoLab builds the protocol lab, starts xlb on protoConfig in mode
// and waits until every backend's next hop (ARP or NDP) is resolved.
// Everything is torn down when the test ends.
func startProtoLab(t *testing.T, mode string) *lbLab {
	t.Helper()
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newProtoLab(fmt.Sprintf("xlbp%d", os.Getpid()%100000), xlbBin, dir)
	})
	if err := l.startXLB(protoConfig(l.socketPath(), mode), logw); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st := stats(t, l)
		var pending []string
		for _, v := range st.VIPs {
			for _, b := range v.Backends {
				if b.NextHop == "" {
					pending = append(pending, b.Address)
				}
			}
		}
		if len(pending) == 0 {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("next hops of %v unresolved after 10s", pending)
		}
	}
}

// xlbAlive fails the test if `xlb run` has exited.
func xlbAlive(t *testing.T, l *lbLab) {
	t.Helper()
	select {
	case err := <-l.xlbDone:
		l.xlbDone <- err // for stopXLB
		t.Fatalf("xlb run exited: %v", err)
	default:
	}
}

// getMany makes n HTTP requests to url from the client, parallel at a time,
// each on a new connection, and counts which backend answered.
func getMany(ctx context.Context, l *lbLab, url string, n, parallel int) (served map[string]int, failed int, firstErr error) {
	client := lab.HTTPClient(l.client)
	served = map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	for range parallel {
		wg.Go(func() {
			for range jobs {
				name, err := lab.Get(ctx, client, url+"/")
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					served[name]++
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return served, failed, firstErr
}

// decapCounters reads every backend's decap program counters.
func decapCounters(t *testing.T, l *lbLab) []decap.Counters {
	t.Helper()
	out := make([]decap.Counters, len(l.backends))
	for i, h := range l.backends {
		if err := h.Do(func() error {
			var err error
			out[i], err = decap.ReadCounters(lab.HostLink)
			return err
		}); err != nil {
			t.Fatalf("%s: decap counters: %v", h.Name, err)
		}
	}
	return out
}

// settledDecapCounters waits (bounded) until no backend decapsulates anything
// more for 300 ms, so the last ACKs and FINs of earlier traffic are not
// counted for what comes next.
func settledDecapCounters(t *testing.T, l *lbLab) []decap.Counters {
	t.Helper()
	prev := decapCounters(t, l)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		cur := decapCounters(t, l)
		if fmt.Sprint(cur) == fmt.Sprint(prev) {
			return cur
		}
		prev = cur
	}
	return prev
}

// vipStats finds a VIP's counters in st.
func vipStats(st engine.Stats, addr netip.Addr, port uint16, proto string) (engine.VIPStats, bool) {
	for _, v := range st.VIPs {
		if a, err := netip.ParseAddr(v.Address); err == nil && a == addr && v.Port == port && v.Protocol == proto {
			return v, true
		}
	}
	return engine.VIPStats{}, false
}

// TestProtocols runs the protocol lab's end-to-end cases against each
// datapath: the AF_XDP workers and the native XDP program must behave the
// same on the wire (forward modes, path MTU discovery, ICMP errors to the
// flow's backend, echo, the fragment policy, malformed frames, reload).
// One lab per mode, shared by its cases, which run in order.
func TestProtocols(t *testing.T) {
	cases := []struct {
		name string
		run  func(*testing.T, *lbLab)
	}{
		{"forward", forwardModes},
		{"pmtu", pathMTUDiscovery},
		{"icmp_error", icmpErrorReachesFlowBackend},
		{"echo", vipEcho},
		{"fragments", fragmentPolicy},
		{"malformed", malformedFramesIPv6},
		{"reload", protoReload},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			l := startProtoLab(t, mode)
			if st := stats(t, l); st.Mode != mode {
				t.Fatalf("xlb runs mode %q, want %q", st.Mode, mode)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					c.run(t, l)
					xlbAlive(t, l)
				})
			}
		})
	}
}

// forwardModes: 120 real HTTP connections to each of an IPv6 VIP over
// IP6IP6, an IPv6 VIP over GUE, an IPv4 VIP over IPv6 backends (4in6), an
// IPv4 and an IPv6 VIP over L2 DSR and an IPv4 VIP over GUE all succeed and reach every
// backend; the backends' decap counters show each went in the wire format
// its mode promises (and DSR in none).
func forwardModes(t *testing.T, l *lbLab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const conns = 120
	kinds := func(c decap.Counters) map[string]uint64 {
		return map[string]uint64{"ipip": c[decap.CounterIPIP], "6in4": c[decap.Counter6in4], "4in6": c[decap.Counter4in6], "6in6": c[decap.Counter6in6], "gue": c[decap.CounterGUE]}
	}
	for _, tc := range []struct {
		v    protoVIP
		kind string // decap counter that must grow; "" for none
	}{
		{vipIP6IP6, "6in6"},
		{vipGUE6, "gue"},
		{vip4in6, "4in6"},
		{vipDSR4, ""},
		{vipDSR6, ""},
		{vipGUE4, "gue"},
	} {
		t.Run(tc.v.name, func(t *testing.T) {
			before, stBefore := settledDecapCounters(t, l), stats(t, l)
			served, failed, err := getMany(ctx, l, tc.v.url(), conns, 8)
			if failed > 0 {
				t.Fatalf("%d of %d connections to %s failed, first: %v (served %v)", failed, conns, tc.v.url(), err, served)
			}
			t.Logf("%s (%s): served %v", tc.v.addr, tc.v.forward, served)
			after, stAfter := settledDecapCounters(t, l), stats(t, l)
			// Every connection is a flow the datapath picks a backend for.
			if n := newFlowsOf(stAfter) - newFlowsOf(stBefore); n < conns {
				t.Errorf("flows picked grew by %d for %d connections", n, conns)
			}
			vb, _ := vipStats(stBefore, tc.v.addr, 80, "tcp")
			va, ok := vipStats(stAfter, tc.v.addr, 80, "tcp")
			if !ok {
				t.Fatalf("xlb stats has no VIP %s:80/tcp", tc.v.addr)
			}
			for i, h := range l.backends {
				if served[h.Name] == 0 {
					t.Errorf("%s served none of %d connections", h.Name, conns)
				}
				if got := va.Backends[i].Packets - vb.Backends[i].Packets; got < uint64(3*served[h.Name]) {
					t.Errorf("%s: xlb counted %d packets for %d connections", h.Name, got, served[h.Name])
				}
				kb, ka := kinds(before[i]), kinds(after[i])
				for k := range ka {
					grew := ka[k] - kb[k]
					switch {
					case k == tc.kind && grew < uint64(3*served[h.Name]):
						t.Errorf("%s decapsulated %d %s packets for %d connections", h.Name, grew, k, served[h.Name])
					case k != tc.kind && grew != 0:
						t.Errorf("%s decapsulated %d %s packets: %s must arrive as %q only", h.Name, grew, k, tc.v.name, tc.kind)
					}
				}
			}
		})
	}
	st := stats(t, l)
	for _, r := range []string{"no_neighbor", "no_source", "no_headroom", "too_big"} {
		if n := dropsOf(st)[r]; n != 0 {
			t.Errorf("drop %s = %d during clean traffic", r, n)
		}
	}
}

// routeMTU is the path MTU the host's kernel holds for dst (0: none cached).
func routeMTU(h *lab.Host, dst netip.Addr) (int, error) {
	var mtu int
	err := h.Do(func() error {
		routes, err := netlink.RouteGet(dst.AsSlice())
		if err != nil {
			return err
		}
		if len(routes) > 0 {
			mtu = routes[0].MTU
		}
		return nil
	})
	return mtu, err
}

// pathMTUDiscovery: every link is 1500 bytes, so no encapsulated
// full-size packet fits the balancer's egress. For each encapsulating mode
// the client uploads 1 MB in full-size DF segments: the balancer answers
// frag-needed (IPv4) or packet-too-big (IPv6) with the MTU that fits, the
// client's kernel caches exactly that MTU for the VIP, and the upload
// arrives intact.
func pathMTUDiscovery(t *testing.T, l *lbLab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := lab.HTTPClient(l.client)
	body := make([]byte, 1<<20)
	for _, v := range []protoVIP{vipIPIP4, vipGUE4, vipIP6IP6, vipGUE6, vip4in6} {
		t.Run(v.name, func(t *testing.T) {
			if mtu, err := routeMTU(l.client, v.addr); err != nil || mtu != 0 {
				t.Fatalf("client's path MTU to %s before any traffic: %d, %v", v.addr, mtu, err)
			}
			before := stats(t, l)
			if _, err := rand.Read(body); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(body)
			r, err := lab.Upload(ctx, client, v.url(), body)
			if err != nil {
				t.Fatalf("1 MB upload to %s: %v", v.addr, err)
			}
			if r.Bytes != int64(len(body)) || r.SHA256 != hex.EncodeToString(sum[:]) {
				t.Fatalf("upload to %s arrived at %s as %d bytes sha256 %s, sent %d bytes sha256 %x", v.addr, r.Backend, r.Bytes, r.SHA256, len(body), sum)
			}
			after := stats(t, l)
			want := protoMTU - v.overhead
			mtu, err := routeMTU(l.client, v.addr)
			if err != nil {
				t.Fatal(err)
			}
			if mtu != want {
				t.Errorf("client's path MTU to %s after the upload: %d, want %d (%d - %s's %d bytes)", v.addr, mtu, want, protoMTU, v.name, v.overhead)
			}
			sent := eventsOf(after)["frag_needed_sent"] - eventsOf(before)["frag_needed_sent"]
			if sent == 0 {
				t.Errorf("frag_needed_sent did not grow (events %v)", eventsOf(after))
			}
			t.Logf("%s: path MTU %d, %d frag-needed/packet-too-big sent, %d too_big drops, upload served by %s",
				v.addr, mtu, sent, dropsOf(after)["too_big"]-dropsOf(before)["too_big"], r.Backend)
		})
	}
}

// capture is an AF_PACKET socket on a host's eth0 that keeps the frames
// the host receives (PACKET_HOST), after any XDP program there: on a
// backend it sees what xlb decap passes to the stack.
type capture struct {
	host *lab.Host
	fd   int
}

func openCapture(h *lab.Host) (*capture, error) {
	const all = uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8 // in network order
	c := &capture{host: h, fd: -1}
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(all))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: h.Ifindex}); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", h.Name, err)
	}
	return c, nil
}

func (c *capture) Close() { unix.Close(c.fd) }

// read returns the received frames for which keep is true, reading until
// deadline (then once more, without waiting).
func (c *capture) read(deadline time.Time, keep func([]byte) bool) [][]byte {
	var out [][]byte
	buf := make([]byte, 1<<16)
	for {
		for {
			n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				break
			}
			if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_HOST && keep(buf[:n]) {
				out = append(out, bytes.Clone(buf[:n]))
			}
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return out
		}
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}, int(wait/time.Millisecond)+1)
	}
}

// layerNames summarizes a frame: "Ethernet/IPv4/ICMPv4/...".
func layerNames(frame []byte) string {
	var names []string
	for _, ly := range gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default).Layers() {
		names = append(names, ly.LayerType().String())
	}
	return strings.Join(names, "/")
}

// l2 is an Ethernet header from the client to the balancer, with an 802.1Q
// tag (VLAN 5) if vlan.
func l2(l *lbLab, vlan bool, etype uint16) []byte {
	b := append(append([]byte{}, l.lb.MAC[:]...), l.client.MAC[:]...)
	if vlan {
		b = append(b, 0x81, 0x00, 0x00, 0x05)
	}
	return binary.BigEndian.AppendUint16(b, etype)
}

// ser serializes gopacket layers; fix sets lengths (and data offsets) from
// the content, else the layers' own length fields are written as they are.
func ser(t *testing.T, fix bool, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: fix, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// ipLayer is a network layer from src to dst carrying proto (the next
// header of an IPv6 packet, which may be an extension header).
func ipLayer(src, dst netip.Addr, proto uint8) gopacket.NetworkLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocol(proto), SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(proto), SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// l4 serializes transport layers (TCP, UDP, ICMPv6 and payload) with their
// checksums over the src -> dst pseudo header.
func l4(t *testing.T, src, dst netip.Addr, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	nl := ipLayer(src, dst, 0)
	for _, ly := range ls {
		if c, ok := ly.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			if err := c.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ser(t, true, ls...)
}

// ipFrame is a whole frame from the client to the balancer: L2, an IP
// header from src to dst with protocol (first next header) proto, payload.
func ipFrame(t *testing.T, l *lbLab, vlan bool, src, dst netip.Addr, proto uint8, payload []byte) []byte {
	t.Helper()
	etype := uint16(0x0800)
	if src.Is6() {
		etype = 0x86dd
	}
	return append(l2(l, vlan, etype), ser(t, true, ipLayer(src, dst, proto).(gopacket.SerializableLayer), gopacket.Payload(payload))...)
}

// quoted is the start of a packet as an ICMP error quotes it: its IP header
// claiming ipLen bytes, then the first bytes of its upper layers (ext).
func quoted(t *testing.T, src, dst netip.Addr, proto uint8, ipLen int, ext []byte) []byte {
	t.Helper()
	var hdr []byte
	switch ip := ipLayer(src, dst, proto).(type) {
	case *layers.IPv4:
		ip.Length = uint16(ipLen)
		hdr = ser(t, false, ip)
	case *layers.IPv6:
		ip.Length = uint16(ipLen - 40)
		hdr = ser(t, false, ip)
	}
	return append(hdr, ext...)
}

// tcpHeader is a bare 20-byte TCP header (checksum left 0: quoted headers
// are not checked).
func tcpHeader(sport, dport uint16, seq, ack uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12], b[13] = 5<<4, 0x18 // data offset 5, PSH|ACK
	binary.BigEndian.PutUint16(b[14:], 512)
	return b
}

// icmpTooBig is an ICMP frag-needed (IPv4, type 3 code 4) or ICMPv6
// packet-too-big (type 2) from src to dst announcing mtu and quoting q.
func icmpTooBig(t *testing.T, src, dst netip.Addr, mtu int, q []byte) []byte {
	t.Helper()
	if src.Is4() {
		return ser(t, true, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: uint16(mtu)}, gopacket.Payload(q))
	}
	return l4(t, src, dst, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}, gopacket.Payload(binary.BigEndian.AppendUint32(nil, uint32(mtu))), gopacket.Payload(q))
}

// tcpFrom is the TCP layer of a frame from src:sport, or nil.
func tcpFrom(frame []byte, src netip.Addr, sport uint16) *layers.TCP {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var from netip.Addr
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		from, _ = netip.AddrFromSlice(ip.SrcIP)
	} else if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		from, _ = netip.AddrFromSlice(ip.SrcIP)
	}
	tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok || from.Unmap() != src || uint16(tcp.SrcPort) != sport {
		return nil
	}
	return tcp
}

// icmpErrorReachesFlowBackend: an ICMP frag-needed (and an ICMPv6
// packet-too-big) quoting a backend's reply to the client, sent to the VIP
// as a router on the way would, reaches exactly the backend serving that
// connection and no other, and that backend's kernel takes the new path MTU
// towards the client.
func icmpErrorReachesFlowBackend(t *testing.T, l *lbLab) {
	for _, tc := range []struct {
		v              protoVIP
		client, router netip.Addr
		mtu            int
	}{
		{vipIPIP4, labClient.Addr(), protoRouter4, 1400},
		{vipIP6IP6, protoClient6.Addr(), protoRouter6, 1280},
	} {
		t.Run(tc.v.name, func(t *testing.T) {
			clientCap, err := openCapture(l.client)
			if err != nil {
				t.Fatal(err)
			}
			defer clientCap.Close()
			// A kept-alive connection; the answer names its backend.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := l.client.Dial(ctx, "tcp", netip.AddrPortFrom(tc.v.addr, 80).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			cport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
			if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: xlb\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			name, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			server := strings.TrimSpace(string(name))
			// The backend's next sequence number, from what the client
			// received: the quoted segment must lie in its send window
			// for its kernel to act on the error.
			var nxt uint32
			var seen bool
			for _, f := range clientCap.read(time.Now().Add(200*time.Millisecond), func(f []byte) bool { return tcpFrom(f, tc.v.addr, 80) != nil }) {
				tcp := tcpFrom(f, tc.v.addr, 80)
				end := tcp.Seq + uint32(len(tcp.Payload))
				if tcp.SYN || tcp.FIN {
					end++
				}
				if !seen || int32(end-nxt) > 0 {
					nxt, seen = end, true
				}
			}
			if !seen {
				t.Fatalf("client captured no segment from %s:80", tc.v.addr)
			}

			caps := make([]*capture, len(l.backends))
			for i, h := range l.backends {
				if caps[i], err = openCapture(h); err != nil {
					t.Fatal(err)
				}
				defer caps[i].Close()
			}
			var ackToken [4]byte
			if _, err := rand.Read(ackToken[:]); err != nil {
				t.Fatal(err)
			}
			tcpq := tcpHeader(80, cport, nxt, binary.BigEndian.Uint32(ackToken[:]))
			q := quoted(t, tc.v.addr, tc.client, 6, 1500, tcpq)
			proto := uint8(1)
			if tc.client.Is6() {
				proto = 58
			}
			frame := ipFrame(t, l, false, tc.router, tc.v.addr, proto, icmpTooBig(t, tc.router, tc.v.addr, tc.mtu, q))
			before := stats(t, l)
			if err := sendRaw(l.client, [][]byte{frame}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for i, h := range l.backends {
				got := caps[i].read(deadline, func(f []byte) bool { return bytes.Contains(f, tcpq[:12]) })
				for _, f := range got {
					t.Logf("%s received %d bytes %s from %v", h.Name, len(f), layerNames(f), net.HardwareAddr(f[6:12]))
				}
				want := 0
				if h.Name == server {
					want = 1
				}
				if len(got) != want {
					t.Errorf("%s (connection served by %s) received the ICMP error %d times, want %d", h.Name, server, len(got), want)
				}
			}
			after := stats(t, l)
			if n := eventsOf(after)["icmp_error_forwarded"] - eventsOf(before)["icmp_error_forwarded"]; n != 1 {
				t.Errorf("icmp_error_forwarded grew by %d, want 1 (events %v, drops %v)", n, eventsOf(after), dropsDelta(before, after))
			}
			// The backend's kernel matched the quote to its socket.
			var be *lab.Host
			for _, h := range l.backends {
				if h.Name == server {
					be = h
				}
			}
			if be == nil {
				t.Fatalf("answer %q names no backend", server)
			}
			var mtu int
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if mtu, err = routeMTU(be, tc.client); err != nil || mtu == tc.mtu {
					break
				}
			}
			if mtu != tc.mtu {
				t.Errorf("%s's path MTU to %s: %d, want %d from the forwarded error (%v)", server, tc.client, mtu, tc.mtu, err)
			}
		})
	}
}

// vipEcho: echo requests to an IPv4 and an IPv6 VIP are answered by the
// balancer (icmp_echo defaults to true); to VIPs with icmp_echo = false they
// are not answered, and counted as echo_disabled drops.
func vipEcho(t *testing.T, l *lbLab) {
	var c4, c6 net.PacketConn
	if err := l.client.Do(func() error {
		var err error
		if c4, err = net.ListenPacket("ip4:icmp", labClient.Addr().String()); err != nil {
			return err
		}
		c6, err = net.ListenPacket("ip6:ipv6-icmp", protoClient6.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if c6 != nil {
		defer c6.Close()
	}
	const pings = 3
	id := uint16(os.Getpid())
	targets := []struct {
		v    protoVIP
		conn net.PacketConn
	}{{vipIPIP4, c4}, {vipIP6IP6, c6}, {vipNoEcho4, c4}, {vipNoEcho6, c6}}
	before := stats(t, l)
	for i, tg := range targets {
		for s := range pings {
			seq := uint16(i*pings + s + 1)
			var msg []byte
			if tg.v.addr.Is4() {
				msg = ser(t, true, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: id, Seq: seq}, gopacket.Payload("xlb ping"))
			} else {
				// The kernel fills in the checksum of raw ICMPv6.
				msg = append([]byte{128, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}, "xlb ping"...)
			}
			if _, err := tg.conn.WriteTo(msg, &net.IPAddr{IP: tg.v.addr.AsSlice()}); err != nil {
				t.Fatalf("echo request to %s: %v", tg.v.addr, err)
			}
		}
	}
	// Every request handled: answered or counted.
	var after engine.Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after = stats(t, l)
		if eventsOf(after)["echo_reply"]-eventsOf(before)["echo_reply"] >= 2*pings && dropsOf(after)["echo_disabled"]-dropsOf(before)["echo_disabled"] >= 2*pings || time.Now().After(deadline) {
			break
		}
	}
	if n := eventsOf(after)["echo_reply"] - eventsOf(before)["echo_reply"]; n != 2*pings {
		t.Errorf("echo_reply grew by %d, want %d", n, 2*pings)
	}
	if n := dropsOf(after)["echo_disabled"] - dropsOf(before)["echo_disabled"]; n != 2*pings {
		t.Errorf("echo_disabled drops grew by %d, want %d (drops %v)", n, 2*pings, dropsDelta(before, after))
	}
	replies := map[netip.Addr]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for _, c := range []net.PacketConn{c4, c6} {
		wg.Go(func() {
			buf := make([]byte, 1500)
			_ = c.SetReadDeadline(deadline)
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				// Echo reply (0, or 129 for ICMPv6) with our identifier.
				if n < 8 || (buf[0] != 0 && buf[0] != 129) || binary.BigEndian.Uint16(buf[4:]) != id {
					continue
				}
				a, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
				mu.Lock()
				replies[a.Unmap()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, tg := range targets {
		want := pings
		if tg.v.noEcho {
			want = 0
		}
		if replies[tg.v.addr] != want {
			t.Errorf("%d echo replies from %s (icmp_echo = %t), want %d", replies[tg.v.addr], tg.v.addr, !tg.v.noEcho, want)
		}
	}
}

// fragmentPolicy: fragments to a VIP address, first (MF, offset 0, with
// ports) and later ones, are dropped and counted as "fragment" under
// fragments = "drop" (the default), and handed to the balancer's kernel,
// never to a worker (nor forwarded by the native program), under
// fragments = "pass"; for IPv4 and IPv6.
func fragmentPolicy(t *testing.T, l *lbLab) {
	syn := func(src, dst netip.Addr) []byte {
		return l4(t, src, dst, &layers.TCP{SrcPort: 40001, DstPort: 80, SYN: true, Seq: 1, Window: 1024}, gopacket.Payload("first fragment"))
	}
	fragments := func(v protoVIP) [][]byte {
		if v.addr.Is4() {
			c := labClient.Addr()
			first := ipFrame(t, l, false, c, v.addr, 6, syn(c, v.addr))
			first[14+6] = 0x20 // MF, offset 0
			later := ipFrame(t, l, false, c, v.addr, 6, []byte("later fragment.."))
			later[14+6], later[14+7] = 0, 8 // offset 64 bytes, last
			return [][]byte{fixLengths(first, 14), fixLengths(later, 14)}
		}
		c := protoClient6.Addr()
		return [][]byte{
			ipFrame(t, l, false, c, v.addr, 44, append([]byte{6, 0, 0, 1, 0, 0, 0, 7}, syn(c, v.addr)...)),      // offset 0, M
			ipFrame(t, l, false, c, v.addr, 44, append([]byte{6, 0, 0, 64, 0, 0, 0, 7}, "later fragment.."...)), // offset 64 bytes
		}
	}
	for _, v := range []protoVIP{vipIPIP4, vipFrag4, vipIP6IP6, vipFrag6} {
		t.Run(v.name, func(t *testing.T) {
			frames := fragments(v)
			before := stats(t, l)
			if err := sendRaw(l.client, frames); err != nil {
				t.Fatal(err)
			}
			var after engine.Stats
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				after = stats(t, l)
				if steerOf(after).Seen-steerOf(before).Seen >= 2 && (v.fragPass || dropsOf(after)["fragment"]-dropsOf(before)["fragment"] >= 2) || time.Now().After(deadline) {
					break
				}
			}
			st, d := subSteer(steerOf(after), steerOf(before)), tallyOf(after).minus(tallyOf(before))
			drops := dropsOf(after)["fragment"] - dropsOf(before)["fragment"]
			if v.fragPass && (st.Passed < 2 || st.Redirected != 0 || d.rx != 0 || drops != 0) ||
				!v.fragPass && (st.Redirected != 2 || drops != 2 || d.tx != 0) {
				t.Errorf("fragments to %s (pass %t): steering %+v, worker %s", v.addr, v.fragPass, st, workerDelta(before, after))
			}
		})
	}
}

// badFrame is a frame the balancer cannot forward, and what it is.
type badFrame struct {
	what  string
	frame []byte
}

// fixLengths sets the IP length field of frame (IP header at l3) to what
// the frame holds, so that a truncation is seen by the parser's inner
// header checks rather than as a length mismatch.
func fixLengths(frame []byte, l3 int) []byte {
	b := bytes.Clone(frame)
	ip := b[l3:]
	if ip[0]>>4 == 6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
		return b
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return b
}

// tally is what the balancer did with frames, from its counters, the same
// in both modes: in native mode the lb program is steering and worker in
// one (it "redirects" and "receives" every frame it neither passes nor
// finds malformed, and sends what it forwards or answers).
type tally struct {
	bad        uint64 // counted as not forwardable: malformed plus every drop
	redirected uint64 // steered into the AF_XDP sockets
	rx, tx     uint64 // received and sent by the workers
	fragNeeded uint64 // answers to packets too big, each also a too_big drop
}

func tallyOf(st engine.Stats) tally {
	t := tally{redirected: steerOf(st).Redirected, fragNeeded: eventsOf(st)["frag_needed_sent"]}
	t.bad = steerOf(st).Malformed
	for _, n := range dropsOf(st) {
		t.bad += n
	}
	if n := st.Native; n != nil {
		t.rx, t.tx = t.redirected, n.Forwarded+n.EchoReplies+n.FragNeeded
		return t
	}
	for _, q := range st.Queues {
		t.rx += q.RxPackets
		t.tx += q.TxPackets
	}
	return t
}

// steerOf is the steering counters of st; in native mode the lb program's
// counters in their terms.
func steerOf(st engine.Stats) engine.SteerStats {
	if n := st.Native; n != nil {
		return engine.SteerStats{Seen: n.Seen, Redirected: n.Seen - n.Passed - n.Malformed, Passed: n.Passed, Malformed: n.Malformed}
	}
	return st.Steer
}

// dropsOf is the drops by reason, of the workers or of the lb program
// (which names them as the workers do).
func dropsOf(st engine.Stats) map[string]uint64 {
	if n := st.Native; n != nil {
		return n.Drops
	}
	return st.Drops
}

// eventsOf is the workers' events, or the lb program's counters of the
// same events.
func eventsOf(st engine.Stats) map[string]uint64 {
	if n := st.Native; n != nil {
		return map[string]uint64{"frag_needed_sent": n.FragNeeded, "echo_reply": n.EchoReplies, "icmp_error_forwarded": n.ICMPErrors}
	}
	return st.Events
}

// newFlowsOf counts the frames whose backend was picked from a Maglev
// table: flow table inserts of the workers, the lb program's forwarded
// frames that missed its flow table.
func newFlowsOf(st engine.Stats) uint64 {
	if n := st.Native; n != nil {
		return n.Forwarded - n.FlowHits
	}
	var sum uint64
	for _, q := range st.Queues {
		sum += q.Flows.Inserts
	}
	return sum
}

// minus is the growth from b to t.
func (t tally) minus(b tally) tally {
	return tally{t.bad - b.bad, t.redirected - b.redirected, t.rx - b.rx, t.tx - b.tx, t.fragNeeded - b.fragNeeded}
}

// malformedFramesIPv6: every truncation of every header of IPv6 frames
// (Ethernet, VLAN, IPv6, hop-by-hop and destination options, TCP, UDP,
// ICMPv6 and the packet an ICMPv6 error quotes), with the IP length left
// or fixed, wrong lengths and unsupported headers, plus the ICMP inner
// headers of IPv4, are each counted once (steering's malformed counter or a
// worker drop reason); then 400 random and bit-flipped frames leave every
// frame the worker received accounted for, xlb running and connections over
// both families working.
func malformedFramesIPv6(t *testing.T, l *lbLab) {
	c6, v6 := protoClient6.Addr(), vipIP6IP6.addr
	c4, v4 := labClient.Addr(), vipIPIP4.addr
	ext := func(next uint8) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} } // 8 bytes: PadN
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	syn6 := l4(t, c6, v6, &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1, Window: 1024})
	// No payloads: the parser checks TCP and UDP headers, not the UDP
	// length or the TCP data offset, so only a cut header is unforwardable.
	udp6 := l4(t, c6, v6, &layers.UDP{SrcPort: 40000, DstPort: protoUDPPort})
	echo6 := l4(t, c6, v6, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
	// Errors about the backend's replies (VIP -> client) quote their IP
	// header and the first 8 bytes of TCP or UDP.
	reply6 := quoted(t, v6, c6, 6, 1500, tcpHeader(80, 40000, 1, 1)[:8])
	reply6udp := quoted(t, v6, c6, 60, 1500, cat(ext(17), []byte{0, protoUDPPort, 0x9c, 0x40, 0, 8, 0, 0}))
	reply4 := quoted(t, v4, c4, 6, 1500, tcpHeader(80, 40000, 1, 1)[:8])
	echo4 := ser(t, true, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1})

	// Valid frames: every truncation of them is broken.
	bases := []struct {
		what  string
		frame []byte
		l3    int
	}{
		{"ipv6+hbh+dstopts+tcp", ipFrame(t, l, false, c6, v6, 0, cat(ext(60), ext(6), syn6)), 14},
		{"vlan+ipv6+tcp", ipFrame(t, l, true, c6, v6, 6, syn6), 18},
		{"ipv6+udp", ipFrame(t, l, false, c6, v6, 17, udp6), 14},
		{"ipv6 echo request", ipFrame(t, l, false, c6, v6, 58, echo6), 14},
		{"ipv6 packet-too-big quoting tcp", ipFrame(t, l, false, c6, v6, 58, icmpTooBig(t, c6, v6, 1280, reply6)), 14},
		{"ipv6 packet-too-big quoting dstopts+udp", ipFrame(t, l, false, c6, v6, 58, icmpTooBig(t, c6, v6, 1280, reply6udp)), 14},
		{"ipv4 frag-needed quoting tcp", ipFrame(t, l, false, c4, v4, 1, icmpTooBig(t, c4, v4, 1400, reply4)), 14},
		{"ipv4 echo request", ipFrame(t, l, false, c4, v4, 1, echo4), 14},
	}
	var frames []badFrame
	for _, b := range bases {
		// A tagged frame under 20 bytes never crosses the lab's bridge
		// (see lab.HostSpec.InlineVLAN); untagged ones start at 14.
		start := 14
		if b.l3 == 18 {
			start = 20
		}
		for n := start; n < len(b.frame); n++ {
			frames = append(frames, badFrame{fmt.Sprintf("%s cut to %d of %d bytes", b.what, n, len(b.frame)), b.frame[:n]})
			if n >= b.l3+20 && (b.frame[b.l3]>>4 == 4 || n >= b.l3+40) {
				frames = append(frames, badFrame{fmt.Sprintf("%s cut to %d of %d bytes, IP length fixed", b.what, n, len(b.frame)), fixLengths(b.frame[:n], b.l3)})
			}
		}
	}
	with := func(f []byte, mod func(ip []byte)) []byte {
		b := bytes.Clone(f)
		mod(b[14:])
		return b
	}
	tcpExt := bases[0].frame
	plain6 := ipFrame(t, l, false, c6, v6, 6, syn6)
	fiveDstOpts := ipFrame(t, l, false, c6, v6, 60, cat(ext(60), ext(60), ext(60), ext(60), ext(6), syn6))
	fragment := ipFrame(t, l, false, c6, v6, 44, cat([]byte{6, 0, 0, 0, 0, 0, 0, 1}, syn6)) // atomic fragment: offset 0, M=0
	fragment4 := bytes.Clone(reply4)
	fragment4[6], fragment4[7] = 0, 8 // offset 64 bytes
	ptb := func(q []byte) []byte { return ipFrame(t, l, false, c6, v6, 58, icmpTooBig(t, c6, v6, 1280, q)) }
	frames = append(frames,
		badFrame{"ipv6 payload length 65535", with(plain6, func(ip []byte) { ip[4], ip[5] = 0xff, 0xff })},
		badFrame{"ipv6 payload length 0 before tcp", with(plain6, func(ip []byte) { ip[4], ip[5] = 0, 0 })},
		badFrame{"ipv6 payload length 4, inside hop-by-hop", with(tcpExt, func(ip []byte) { ip[4], ip[5] = 0, 4 })},
		badFrame{"ipv6 payload length 12, inside dstopts", with(tcpExt, func(ip []byte) { ip[4], ip[5] = 0, 12 })},
		badFrame{"ipv6 payload length 16, ext headers only", with(tcpExt, func(ip []byte) { ip[4], ip[5] = 0, 16 })},
		badFrame{"hop-by-hop length 255 (2 KB)", with(tcpExt, func(ip []byte) { ip[41] = 255 })},
		badFrame{"version 4 in an ipv6 frame", with(plain6, func(ip []byte) { ip[0] = 0x40 })},
		badFrame{"version 0 in an ipv6 frame", with(plain6, func(ip []byte) { ip[0] = 0x00 })},
		badFrame{"5 destination options headers", fiveDstOpts},
		badFrame{"ipv6 fragment header", fragment},
		badFrame{"no next header (59)", ipFrame(t, l, false, c6, v6, 59, make([]byte, 8))},
		badFrame{"esp (50)", ipFrame(t, l, false, c6, v6, 50, make([]byte, 16))},
		badFrame{"sctp (132)", ipFrame(t, l, false, c6, v6, 132, make([]byte, 16))},
		badFrame{"icmpv6 echo reply", ipFrame(t, l, false, c6, v6, 58, l4(t, c6, v6, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(129, 0)}, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1}))},
		badFrame{"icmpv6 type 200", ipFrame(t, l, false, c6, v6, 58, l4(t, c6, v6, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(200, 0)}, gopacket.Payload(make([]byte, 8))))},
		badFrame{"packet-too-big quoting icmpv6", ptb(quoted(t, v6, c6, 58, 1500, []byte{129, 0, 0, 0, 0, 1, 0, 1}))},
		badFrame{"packet-too-big quoting ipv4", ptb(reply4)},
		badFrame{"packet-too-big quoting a fragment", ptb(quoted(t, v6, c6, 44, 1500, cat([]byte{6, 0, 0, 8, 0, 0, 0, 1}, tcpHeader(80, 40000, 1, 1)[:8])))},
		badFrame{"packet-too-big quoting a port with no vip", ptb(quoted(t, v6, c6, 6, 1500, tcpHeader(8080, 40000, 1, 1)[:8]))},
		badFrame{"packet-too-big quoting udp from a tcp-only vip", ptb(quoted(t, vipGUE6.addr, c6, 17, 1500, []byte{0, protoUDPPort, 0x9c, 0x40, 0, 8, 0, 0}))},
		badFrame{"frag-needed quoting icmp", ipFrame(t, l, false, c4, v4, 1, icmpTooBig(t, c4, v4, 1400, quoted(t, v4, c4, 1, 1500, []byte{0, 0, 0, 0, 0, 1, 0, 1})))},
		badFrame{"frag-needed quoting a non-first fragment", ipFrame(t, l, false, c4, v4, 1, icmpTooBig(t, c4, v4, 1400, fragment4))},
		badFrame{"icmp redirect", ipFrame(t, l, false, c4, v4, 1, ser(t, true, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(5, 1)}, gopacket.Payload(reply4)))},
	)

	before := stats(t, l)
	base := tallyOf(before).bad
	// Chunks, each waited for: a burst larger than veth's 256-frame XDP
	// ring would lose frames before the balancer sees them.
	const chunk = 32
	var short [][]badFrame
	for i := 0; i < len(frames); i += chunk {
		part := frames[i:min(i+chunk, len(frames))]
		raw := make([][]byte, len(part))
		for j, f := range part {
			raw[j] = f.frame
		}
		if err := sendRaw(l.client, raw); err != nil {
			t.Fatal(err)
		}
		want := base + uint64(len(part))
		var got uint64
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got = tallyOf(stats(t, l)).bad
			if got >= want || time.Now().After(deadline) {
				break
			}
		}
		if got != want {
			short = append(short, part)
		}
		base = got
	}
	after := stats(t, l)
	d := tallyOf(after).minus(tallyOf(before))
	if d.bad != uint64(len(frames)) {
		t.Errorf("%d unforwardable frames sent, %d counted (steering malformed +%d, redirected +%d, worker rx +%d, drops %v)",
			len(frames), d.bad, steerOf(after).Malformed-steerOf(before).Malformed, d.redirected, d.rx, dropsDelta(before, after))
	}
	if d.tx != 0 {
		t.Errorf("%d of the unforwardable frames were transmitted", d.tx)
	}
	// Replay (the first 64 frames of) the chunks that came up short one
	// frame at a time, to name the frames not counted exactly once.
	replayed := 0
	for _, part := range short {
		for _, f := range part {
			if replayed++; replayed > 64 {
				break
			}
			if fate := frameFate(t, l, f.frame); fate != "" {
				t.Logf("%s (% x): %s", f.what, f.frame[14:], fate)
			}
		}
	}
	t.Logf("%d frames: steering malformed +%d, worker drops %v", len(frames), steerOf(after).Malformed-steerOf(before).Malformed, dropsDelta(before, after))
	xlbAlive(t, l)

	// Random and bit-flipped frames: their fate is unknown, but every one
	// the worker receives must be forwarded, answered or counted.
	seed := uint64(time.Now().UnixNano())
	rng := mrand.New(mrand.NewPCG(seed, 0x786c62))
	t.Logf("random frames from seed %d", seed)
	nexts := []uint8{0, 6, 17, 43, 44, 50, 58, 59, 60, 135}
	var random [][]byte
	for range 200 {
		payload := make([]byte, rng.IntN(120))
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		next := nexts[rng.IntN(len(nexts))]
		if rng.IntN(4) == 0 {
			next = uint8(rng.Uint32())
		}
		f := ipFrame(t, l, rng.IntN(4) == 0, c6, v6, next, payload)
		if rng.IntN(2) == 0 {
			l3 := 14
			if f[12] == 0x81 {
				l3 = 18
			}
			binary.BigEndian.PutUint16(f[l3+4:], uint16(rng.Uint32()))
		}
		random = append(random, f)
	}
	for range 200 {
		f := bytes.Clone(bases[rng.IntN(len(bases))].frame)
		for range 1 + rng.IntN(4) {
			f[14+rng.IntN(len(f)-14)] ^= byte(1 + rng.IntN(255))
		}
		random = append(random, f)
	}
	b2 := stats(t, l)
	for i := 0; i < len(random); i += chunk {
		if err := sendRaw(l.client, random[i:min(i+chunk, len(random))]); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if st := stats(t, l); steerOf(st).Seen-steerOf(b2).Seen >= uint64(i+chunk) || time.Now().After(deadline) {
				break
			}
		}
	}
	// Every frame the worker took is forwarded, answered or dropped with a
	// reason (a frag-needed answer is also a too_big drop): wait for the
	// counters to agree, bounded.
	var a2 engine.Stats
	var unaccounted, lost int64
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a2 = stats(t, l)
		d := tallyOf(a2).minus(tallyOf(b2))
		workerDrops := int64(d.bad) - int64(steerOf(a2).Malformed-steerOf(b2).Malformed)
		unaccounted = int64(d.rx) - (int64(d.tx) + workerDrops - int64(d.fragNeeded))
		lost = int64(d.redirected) - int64(d.rx)
		if unaccounted == 0 && lost == 0 || time.Now().After(deadline) {
			break
		}
	}
	if unaccounted != 0 || lost != 0 {
		t.Errorf("after %d random frames: %d frames received by the worker neither sent nor counted, %d redirected but not received (before %s, after %s)",
			len(random), unaccounted, lost, queueSummary(b2), queueSummary(a2))
	}
	t.Logf("%d random frames: steering %+v -> %+v, worker drops %v, events %v", len(random), steerOf(b2), steerOf(a2), dropsDelta(b2, a2), eventsOf(a2))
	xlbAlive(t, l)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []protoVIP{vipIP6IP6, vipIPIP4} {
		if served, failed, err := getMany(ctx, l, v.url(), 20, 4); failed > 0 {
			t.Errorf("after the replay, %d of 20 requests to %s failed: %v (served %v)", failed, v.addr, err, served)
		}
	}
}

// frameFate sends one frame and says what became of it if it was not
// counted exactly once as unforwardable, else "".
func frameFate(t *testing.T, l *lbLab, frame []byte) string {
	t.Helper()
	b := stats(t, l)
	if err := sendRaw(l.client, [][]byte{frame}); err != nil {
		t.Fatal(err)
	}
	var a engine.Stats
	for deadline := time.Now().Add(500 * time.Millisecond); ; time.Sleep(10 * time.Millisecond) {
		a = stats(t, l)
		if d := tallyOf(a).minus(tallyOf(b)); d.bad == 1 && d.tx == 0 && d.redirected == d.rx {
			return ""
		}
		if time.Now().After(deadline) {
			break
		}
	}
	return fmt.Sprintf("steering %+v, worker %s", subSteer(steerOf(a), steerOf(b)), workerDelta(b, a))
}

func subSteer(a, b engine.SteerStats) engine.SteerStats {
	return engine.SteerStats{Seen: a.Seen - b.Seen, Redirected: a.Redirected - b.Redirected, Passed: a.Passed - b.Passed, Malformed: a.Malformed - b.Malformed, NoSocket: a.NoSocket - b.NoSocket}
}

func workerDelta(b, a engine.Stats) string {
	d := tallyOf(a).minus(tallyOf(b))
	ev := map[string]uint64{}
	for k, v := range eventsOf(a) {
		if v != eventsOf(b)[k] {
			ev[k] = v - eventsOf(b)[k]
		}
	}
	return fmt.Sprintf("rx +%d tx +%d drops %v events %v", d.rx, d.tx, dropsDelta(b, a), ev)
}

func dropsDelta(a, b engine.Stats) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range dropsOf(b) {
		if v != dropsOf(a)[k] {
			d[k] = v - dropsOf(a)[k]
		}
	}
	return d
}

func queueSummary(st engine.Stats) string {
	t := tallyOf(st)
	s := fmt.Sprintf("rx %d tx %d drops %d events %v redirected %d", t.rx, t.tx, t.bad-steerOf(st).Malformed, eventsOf(st), t.redirected)
	if len(st.Queues) > 0 {
		s += fmt.Sprintf(" socket %+v", st.Queues[0].Socket)
	}
	return s
}
