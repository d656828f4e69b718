package labprogs

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/internal/testenv"
)

// XDP verdicts from linux/bpf.h.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

var (
	macLB   = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	macGen  = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	macSink = [6]byte{0x02, 0, 0, 0, 0, 0x03}
	srcAddr = netip.MustParseAddr("198.18.1.10")
	vip     = netip.MustParseAddr("198.18.100.1")
)

func spec(proto, flags uint8, size int) TemplateSpec {
	return TemplateSpec{DstMAC: macLB, SrcMAC: macGen, Src: srcAddr, Dst: vip, DstPort: 80, Proto: proto, TCPFlags: flags, Size: size}
}

var templates = []struct {
	name string
	ts   TemplateSpec
}{
	{"udp-64", spec(protoUDP, 0, 64)},
	{"udp-60-odd-payload", spec(protoUDP, 0, 61)},
	{"udp-1500", spec(protoUDP, 0, 1500)},
	{"tcp-syn-64", spec(protoTCP, TCPSyn, 64)},
	{"tcp-ack-512", spec(protoTCP, TCPAck, 512)},
	{"tcp-ack-1500", spec(protoTCP, TCPAck, 1500)},
}

// checkFrame decodes f with gopacket and checks its addressing and that
// both checksums verify (the Internet checksum over a header or a
// pseudo-header plus segment with the checksum in place is 0).
func checkFrame(t *testing.T, f []byte, ts TemplateSpec, src netip.AddrPort) {
	t.Helper()
	if len(f) != ts.Size {
		t.Fatalf("frame is %d bytes, want %d", len(f), ts.Size)
	}
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if [6]byte(eth.DstMAC) != ts.DstMAC || [6]byte(eth.SrcMAC) != ts.SrcMAC {
		t.Errorf("MACs %s -> %s", eth.SrcMAC, eth.DstMAC)
	}
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if got, _ := netip.AddrFromSlice(ip.SrcIP); got != src.Addr() {
		t.Errorf("source address %s, want %s", got, src.Addr())
	}
	if int(ip.Length) != ts.Size-ethLen {
		t.Errorf("IP total length %d, want %d", ip.Length, ts.Size-ethLen)
	}
	if c := packet.Checksum(f[ethLen:l4Off]); c != 0 {
		t.Errorf("IP header checksum does not verify (%#04x)", c)
	}
	var sport, dport uint16
	switch ts.Proto {
	case protoUDP:
		u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		sport, dport = uint16(u.SrcPort), uint16(u.DstPort)
		if u.Checksum == 0 {
			t.Errorf("UDP checksum 0 (none)")
		}
	case protoTCP:
		tc := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		sport, dport = uint16(tc.SrcPort), uint16(tc.DstPort)
		if tc.SYN != (ts.TCPFlags&TCPSyn != 0) || tc.ACK != (ts.TCPFlags&TCPAck != 0) {
			t.Errorf("TCP flags SYN=%v ACK=%v, want %#02x", tc.SYN, tc.ACK, ts.TCPFlags)
		}
	}
	if sport != src.Port() || dport != ts.DstPort {
		t.Errorf("ports %d -> %d, want %d -> %d", sport, dport, src.Port(), ts.DstPort)
	}
	pseudo := make([]byte, 12, 12+len(f))
	copy(pseudo[0:4], f[ipSrcOff:ipSrcOff+4])
	copy(pseudo[4:8], f[ipDstOff:ipDstOff+4])
	pseudo[9] = ts.Proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(f)-l4Off))
	if c := packet.Checksum(append(pseudo, f[l4Off:]...)); c != 0 {
		t.Errorf("L4 checksum does not verify (%#04x)", c)
	}
}

func TestBuildTemplate(t *testing.T) {
	for _, tc := range templates {
		t.Run(tc.name, func(t *testing.T) {
			f, err := BuildTemplate(tc.ts)
			if err != nil {
				t.Fatal(err)
			}
			checkFrame(t, f, tc.ts, netip.AddrPortFrom(srcAddr, PortBase))
		})
	}
}

func TestBuildTemplateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*TemplateSpec)
	}{
		{"icmp", func(ts *TemplateSpec) { ts.Proto = 1 }},
		{"too-small", func(ts *TemplateSpec) { ts.Size = 59 }},
		{"too-big", func(ts *TemplateSpec) { ts.Size = MaxFrame + 1 }},
		{"ipv6", func(ts *TemplateSpec) { ts.Dst = netip.MustParseAddr("2001:db8::1") }},
		{"no-src", func(ts *TemplateSpec) { ts.Src = netip.Addr{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := spec(protoUDP, 0, 64)
			tc.mod(&ts)
			if _, err := BuildTemplate(ts); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// rewrite is what the generator must produce for flow f: the template
// with the flow's source address and port and both checksums recomputed
// from scratch.
func rewrite(t *testing.T, ts TemplateSpec, f uint32) []byte {
	t.Helper()
	fs := FlowSource(ts.Src, f)
	ts.Src = fs.Addr()
	frame, err := BuildTemplate(ts)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(frame[l4Off:], fs.Port())
	// Redo the L4 checksum for the new port.
	checkOff := l4Off + 6
	if ts.Proto == protoTCP {
		checkOff = l4Off + 16
	}
	clear(frame[checkOff : checkOff+2])
	pseudo := make([]byte, 12, 12+len(frame))
	copy(pseudo[0:4], frame[ipSrcOff:ipSrcOff+4])
	copy(pseudo[4:8], frame[ipDstOff:ipDstOff+4])
	pseudo[9] = ts.Proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(frame)-l4Off))
	c := packet.Checksum(append(pseudo, frame[l4Off:]...))
	if c == 0 && ts.Proto == protoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[checkOff:], c)
	return frame
}

// foldLE mirrors gen.c: fold, complement.
func foldLE(s uint64) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestTemplateSums checks the arithmetic gen.c does with the sums, in Go:
// the checksums it would write for several flows equal the ones computed
// from scratch.
func TestTemplateSums(t *testing.T) {
	for _, tc := range templates {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := BuildTemplate(tc.ts)
			if err != nil {
				t.Fatal(err)
			}
			ipSum, l4Sum, proto, err := templateSums(tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if proto != tc.ts.Proto {
				t.Fatalf("proto %d, want %d", proto, tc.ts.Proto)
			}
			for _, f := range []uint32{0, 1, PortsPerAddr - 1, PortsPerAddr, 3*PortsPerAddr + 77, MaxFlows - 1} {
				want := rewrite(t, tc.ts, f)
				saddr := uint64(binary.LittleEndian.Uint32(want[ipSrcOff:]))
				sport := uint64(binary.LittleEndian.Uint16(want[l4Off:]))
				addrSum := saddr&0xffff + saddr>>16
				checkOff := l4Off + 6
				if proto == protoTCP {
					checkOff = l4Off + 16
				}
				if got, w := foldLE(uint64(ipSum)+addrSum), binary.LittleEndian.Uint16(want[ipCheckOff:]); got != w {
					t.Errorf("flow %d: IP checksum %#04x, want %#04x", f, got, w)
				}
				got := foldLE(uint64(l4Sum) + addrSum + sport)
				if got == 0 && proto == protoUDP {
					got = 0xffff
				}
				if w := binary.LittleEndian.Uint16(want[checkOff:]); got != w {
					t.Errorf("flow %d: L4 checksum %#04x, want %#04x", f, got, w)
				}
			}
		})
	}
}

func TestTemplateSumsErrors(t *testing.T) {
	good, err := BuildTemplate(spec(protoUDP, 0, 64))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:l4Off+udpLen-1] }},
		{"not-ipv4", func(b []byte) []byte { b[12] = 0x86; b[13] = 0xdd; return b }},
		{"ip-options", func(b []byte) []byte { b[ethLen] = 0x46; return b }},
		{"padding", func(b []byte) []byte { return append(b, 0) }},
		{"icmp", func(b []byte) []byte { b[ethLen+9] = 1; return b }},
		{"tcp-too-short", func(b []byte) []byte {
			b = b[:l4Off+tcpLen-1]
			b[ethLen+9] = protoTCP
			binary.BigEndian.PutUint16(b[ethLen+2:], uint16(len(b)-ethLen))
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(append([]byte(nil), good...))
			if _, _, _, err := templateSums(b); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := LoadGen(good, 0, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("LoadGen with 0 flows: err = %v, want ErrInvalid", err)
	}
	if _, err := LoadGen(good, MaxFlows+1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("LoadGen with MaxFlows+1 flows: err = %v, want ErrInvalid", err)
	}
	if _, err := LoadGen(good, 1, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("LoadGen with ifindex 0: err = %v, want ErrInvalid", err)
	}
}

func TestFlowSource(t *testing.T) {
	for _, tc := range []struct {
		f    uint32
		want string
	}{
		{0, "198.18.1.10:1024"},
		{PortsPerAddr - 1, "198.18.1.10:17407"},
		{PortsPerAddr, "198.18.1.11:1024"},
		{MaxFlows - 1, "198.18.1.73:17407"},
	} {
		if got := FlowSource(srcAddr, tc.f).String(); got != tc.want {
			t.Errorf("FlowSource(%d) = %s, want %s", tc.f, got, tc.want)
		}
	}
}

// runOnce runs prog once on in (not in live-frame mode) and returns the
// verdict and the frame as the program left it.
func runOnce(t *testing.T, prog *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := prog.Run(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut
}

// TestGen runs the generator on each template (one run per flow, in order)
// and checks every frame byte for byte against one built from scratch, and
// the sent counter. (Frames shorter than an Ethernet header, which the
// programs check for, cannot be test-run: the kernel refuses them.)
func TestGen(t *testing.T) {
	testenv.Root(t, "loads BPF programs and runs them with BPF_PROG_TEST_RUN")
	const flows = PortsPerAddr + 3
	for _, tc := range templates {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := BuildTemplate(tc.ts)
			if err != nil {
				t.Fatal(err)
			}
			// A test run without a context comes from lo, ifindex 1.
			g, err := LoadGen(tmpl, flows, loIfindex)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			// Start every CPU's sequence just before the first address
			// wraps to the next: flows 16383, then 16384 (second address)
			// up to the last flow, then back to flow 0.
			const start = PortsPerAddr - 1
			cpus := mustCPUs(t)
			initial := make([]uint64, cpus)
			for i := range initial {
				initial[i] = start
			}
			if err := g.objs.Sent.Put(uint32(0), initial); err != nil {
				t.Fatal(err)
			}
			seq := []uint32{start, start + 1, start + 2, start + 3, 0}
			for _, f := range seq {
				ret, out := runOnce(t, g.objs.XlbGen, tmpl)
				if ret != xdpTX {
					t.Fatalf("verdict %d, want XDP_TX", ret)
				}
				want := rewrite(t, tc.ts, f)
				if string(out) != string(want) {
					t.Fatalf("flow %d: frame differs from one built from scratch\ngot  %x\nwant %x", f, out, want)
				}
				checkFrame(t, out, tc.ts, FlowSource(srcAddr, f))
			}
			sent, err := g.Sent()
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(start*cpus + len(seq)); sent != want {
				t.Errorf("Sent() = %d, want %d", sent, want)
			}
		})
	}
}

// loIfindex is lo's ifindex in every namespace: test runs without a
// context carry it as their ingress interface.
const loIfindex = 1

// TestGenPassesOtherInterfaces: on a frame from any interface but its own
// (as when it sits attached to an idle one) the generator passes the frame
// untouched and counts nothing.
func TestGenPassesOtherInterfaces(t *testing.T) {
	testenv.Root(t, "loads BPF programs and runs them with BPF_PROG_TEST_RUN")
	tmpl, err := BuildTemplate(spec(protoUDP, 0, 64))
	if err != nil {
		t.Fatal(err)
	}
	g, err := LoadGen(tmpl, 10, loIfindex+1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ret, out := runOnce(t, g.Program(), tmpl)
	if ret != xdpPass || string(out) != string(tmpl) {
		t.Errorf("verdict %d, frame changed %v; want XDP_PASS and the frame untouched", ret, string(out) != string(tmpl))
	}
	if sent, err := g.Sent(); err != nil || sent != 0 {
		t.Errorf("Sent() = %d, %v; want 0", sent, err)
	}
}

func mustCPUs(t *testing.T) int {
	t.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSink(t *testing.T) {
	testenv.Root(t, "loads BPF programs and runs them with BPF_PROG_TEST_RUN")
	s, err := LoadSink(macLB)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fromLB, err := BuildTemplate(TemplateSpec{DstMAC: macSink, SrcMAC: macLB, Src: srcAddr, Dst: vip, Proto: protoUDP, Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	stray, err := BuildTemplate(TemplateSpec{DstMAC: macSink, SrcMAC: macGen, Src: srcAddr, Dst: vip, Proto: protoUDP, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	arp := append([]byte(nil), stray...)
	arp[12], arp[13] = 0x08, 0x06
	for _, tc := range []struct {
		frame []byte
		want  uint32
	}{
		{fromLB, xdpDrop}, {fromLB, xdpDrop}, {stray, xdpDrop}, {arp, xdpPass},
	} {
		if ret, _ := runOnce(t, s.Program(), tc.frame); ret != tc.want {
			t.Errorf("verdict %d on a %d-byte frame, want %d", ret, len(tc.frame), tc.want)
		}
	}
	c, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := SinkCounts{FromLB: Count{2, 200}, Other: Count{1, 64}}
	if c != want {
		t.Errorf("Counts() = %+v, want %+v", c, want)
	}
}

func TestFwdPrograms(t *testing.T) {
	testenv.Root(t, "loads BPF programs and runs them with BPF_PROG_TEST_RUN")
	frame, err := BuildTemplate(spec(protoUDP, 0, 64))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := LoadL2Fwd(macSink, macLB)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	ret, out := runOnce(t, l2, frame)
	if ret != xdpTX {
		t.Errorf("l2fwd verdict %d, want XDP_TX", ret)
	}
	want := append([]byte(nil), frame...)
	copy(want[0:6], macSink[:])
	copy(want[6:12], macLB[:])
	if string(out) != string(want) {
		t.Errorf("l2fwd frame\ngot  %x\nwant %x", out, want)
	}

	pass, err := LoadPass()
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	if ret, _ := runOnce(t, pass, frame); ret != xdpPass {
		t.Errorf("pass verdict %d, want XDP_PASS", ret)
	}

	x, err := LoadXSK()
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	// No socket registered for queue 0: the frame goes to the kernel.
	if ret, _ := runOnce(t, x.Program(), frame); ret != xdpPass {
		t.Errorf("xsk verdict without a socket %d, want XDP_PASS", ret)
	}
}
