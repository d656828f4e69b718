package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf/decap"
	"github.com/xlbproject/xlb/lab"
)

func TestParseAllow(t *testing.T) {
	every := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	for _, tc := range []struct {
		args []string
		want []netip.Prefix
		open bool
		err  string
	}{
		{[]string{"198.18.0.1"}, []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32")}, false, ""},
		{[]string{"198.18.0.0/24", "2001:db8::1"}, []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:db8::1/128")}, false, ""},
		{[]string{"2001:db8::/32"}, []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, false, ""},
		{[]string{"any"}, every, true, ""},
		{[]string{"ANY"}, every, true, ""},
		{[]string{"any", "198.18.0.1"}, nil, false, "give it alone"},
		{[]string{"198.18.0.1/24"}, nil, false, "host bits set: write 198.18.0.0/24 for the network or 198.18.0.1/32"},
		{[]string{"::ffff:198.18.0.1"}, nil, false, "IPv4-mapped"},
		{[]string{"balancer.example"}, nil, false, "neither an address nor a prefix"},
		{[]string{"fe80::1%eth0"}, nil, false, "neither an address nor a prefix"},
		{[]string{"198.18.0.0/33"}, nil, false, "neither an address nor a prefix"},
	} {
		got, open, err := parseAllow(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseAllow(%q) = %v, %v; want an error containing %q", tc.args, got, err, tc.err)
			}
			continue
		}
		if err != nil || open != tc.open || !slices.Equal(got, tc.want) {
			t.Errorf("parseAllow(%q) = %v, %v, %v; want %v, %v", tc.args, got, open, err, tc.want, tc.open)
		}
	}
}

// TestDecapUsageErrors: attach without --allow-source, or with a bad one,
// is a usage error that names what is missing, before anything is touched.
func TestDecapUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"decap", "attach", "--interface", "eth0"}, "needs --allow-source"},
		{[]string{"decap", "attach", "--interface", "eth0", "--allow-source", "198.18.0.1/16"}, "host bits set"},
		{[]string{"decap", "attach", "--interface", "eth0", "--allow-source", "198.18.0.1", "--gue-port", "70000"}, "not a port"},
		{[]string{"decap", "allow", "--interface", "eth0"}, "needs a PREFIX argument"},
		{[]string{"decap", "allow", "--interface", "eth0", "any", "2001:db8::1"}, "give it alone"},
		{[]string{"decap", "status"}, "--interface is required"},
		{[]string{"decap", "status", "--interface", "eth0", "extra"}, "unexpected arguments"},
		{[]string{"decap", "bogus"}, "usage: xlb decap attach"},
	} {
		var out bytes.Buffer
		if code := run(&env{stdout: &out, stderr: &out}, tc.args); code != exitUsage || !strings.Contains(out.String(), tc.want) {
			t.Errorf("xlb %s: exit %d, output %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, out.String(), exitUsage, tc.want)
		}
	}
}

// decapStatus runs the real `xlb decap status` in h's namespace and returns
// its output and its counters by name.
func decapStatus(t *testing.T, h *lab.Host) (string, map[string]uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Command(ctx, xlbBin, "decap", "status", "--interface", lab.HostLink).CombinedOutput()
	if err != nil {
		t.Fatalf("xlb decap status in %s: %v: %s", h.Name, err, out)
	}
	counters := map[string]uint64{}
	_, after, _ := strings.Cut(string(out), "counters:\n")
	for _, line := range strings.Split(strings.TrimSpace(after), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("xlb decap status: odd counter line %q in\n%s", line, out)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("xlb decap status: %q: %v", line, err)
		}
		counters[f[0]] = v
	}
	return string(out), counters
}

// runXLB runs the real binary in h's namespace and fails the test unless it
// succeeds.
func runXLB(t *testing.T, h *lab.Host, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Command(ctx, xlbBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("xlb %s in %s: %v: %s", strings.Join(args, " "), h.Name, err, out)
	}
	return string(out)
}

// tunnelFrame is an Ethernet frame from the client host to be's MAC: an
// IPv4 packet from src to be's address carrying inner, either as IPIP or,
// if guePort is not 0, in UDP to guePort behind a GUE variant 0 header.
func tunnelFrame(t *testing.T, l *lbLab, be *lab.Host, src netip.Addr, guePort uint16, inner []byte) []byte {
	t.Helper()
	frame := binary.BigEndian.AppendUint16(append(append([]byte{}, be.MAC[:]...), l.client.MAC[:]...), 0x0800)
	if guePort == 0 {
		return append(frame, ser(t, true, ipLayer(src, be.Addr, uint8(layers.IPProtocolIPv4)).(gopacket.SerializableLayer), gopacket.Payload(inner))...)
	}
	ip := ipLayer(src, be.Addr, uint8(layers.IPProtocolUDP))
	udp := &layers.UDP{SrcPort: 40001, DstPort: layers.UDPPort(guePort)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	gue := []byte{0, byte(layers.IPProtocolIPv4), 0, 0}
	return append(frame, ser(t, true, ip.(gopacket.SerializableLayer), udp, gopacket.Payload(append(gue, inner...)))...)
}

// TestDecapDropsSpoofedTunnels, end to end with the real binary: the lab's
// backends run `xlb decap attach --allow-source <balancer>`. The client
// host, which is no balancer, crafts an IPIP packet carrying a TCP SYN to
// the VIP and a GUE packet carrying a UDP datagram to the VIP, both with the
// balancer's address as inner source (what would slip past a backend's
// source-based ACL), and writes them to a backend with AF_PACKET. The
// backend drops both in XDP: `xlb decap status` counts them as
// source_not_allowed, a capture after XDP and a UDP socket on the VIP see
// nothing of them, and HTTP through xlb still flows to every backend.
// `xlb decap allow` then changes the allowed set without re-attaching, and
// the verdicts follow.
func TestDecapDropsSpoofedTunnels(t *testing.T) {
	l := startLab(t, []int{1, 1, 1})
	be := l.backends[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	httpFlows := func(when string) {
		t.Helper()
		served, failed, err := getMany(ctx, l, "http://"+labVIP.String(), 30, 4)
		if failed > 0 || len(served) != len(l.backends) {
			t.Fatalf("%s: HTTP through xlb: %d failed (first %v), served %v", when, failed, err, served)
		}
	}
	httpFlows("before")

	status, before := decapStatus(t, be)
	for _, want := range []string{"decap attached, native mode", "gue port: 6080", "allowed sources: " + labLB.Addr().String() + "/32", be.Addr.String()} {
		if !strings.Contains(status, want) {
			t.Errorf("xlb decap status lacks %q:\n%s", want, status)
		}
	}
	for i := range len(decap.Counters{}) {
		if _, ok := before[decap.Counter(i).String()]; !ok {
			t.Errorf("xlb decap status lacks counter %s:\n%s", decap.Counter(i), status)
		}
	}
	progID := strings.Fields(strings.SplitN(status, "program ", 2)[1])[0]

	const udpPort = 5300
	sock, err := be.ListenPacket("udp4", netip.AddrPortFrom(labVIP, udpPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	capt, err := openCapture(be)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()

	// The inner packets claim to come from the balancer.
	innerSrc := labLB.Addr()
	ipPacket := func(proto layers.IPProtocol, l4bytes []byte) []byte {
		return ser(t, true, ipLayer(innerSrc, labVIP, uint8(proto)).(gopacket.SerializableLayer), gopacket.Payload(l4bytes))
	}
	syn := ipPacket(layers.IPProtocolTCP, l4(t, innerSrc, labVIP, &layers.TCP{SrcPort: 4444, DstPort: 80, SYN: true, Seq: 7, Window: 1024}))
	datagram := ipPacket(layers.IPProtocolUDP, l4(t, innerSrc, labVIP, &layers.UDP{SrcPort: 4444, DstPort: udpPort}, gopacket.Payload("injected")))
	client := l.client.Addr
	spoofed := [][]byte{
		tunnelFrame(t, l, be, client, 0, syn),
		tunnelFrame(t, l, be, client, decap.DefaultGUEPort, datagram),
	}
	// innerSeen: a frame after XDP that is the inner packet of either.
	innerSeen := func(f []byte) bool {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.SrcPort == 4444 {
			return true
		}
		udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		return ok && udp.SrcPort == 4444
	}
	// sendAndCount sends frames from the client and waits (bounded) until
	// counter grew by len(frames) in `xlb decap status`, or a second.
	sendAndCount := func(frames [][]byte, counter string) map[string]uint64 {
		t.Helper()
		_, c0 := decapStatus(t, be)
		if err := sendRaw(l.client, frames); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, c := decapStatus(t, be)
			if c[counter]-c0[counter] >= uint64(len(frames)) || time.Now().After(deadline) {
				if got := c[counter] - c0[counter]; got != uint64(len(frames)) {
					t.Errorf("%s grew by %d for %d frames (%v -> %v)", counter, got, len(frames), c0, c)
				}
				return c
			}
		}
	}
	sendAndCount(spoofed, "source_not_allowed")
	if seen := capt.read(time.Now().Add(500*time.Millisecond), innerSeen); len(seen) != 0 {
		t.Errorf("the backend's stack received %d inner packets of spoofed tunnels: %s", len(seen), layerNames(seen[0]))
	}
	_ = sock.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, from, err := sock.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("the backend's UDP socket on the VIP received %d bytes from %v", n, from)
	}
	httpFlows("after the spoofed tunnels")

	// The client becomes a balancer too: the same GUE packet is now
	// delivered, by the same program (no re-attach).
	out := runXLB(t, be, "decap", "allow", "--interface", lab.HostLink, labLB.Addr().String(), client.String())
	if !strings.Contains(out, client.String()+"/32") {
		t.Errorf("xlb decap allow printed %q", out)
	}
	sendAndCount(spoofed[1:], "gue")
	buf := make([]byte, 100)
	_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := sock.ReadFrom(buf); err != nil || string(buf[:n]) != "injected" {
		t.Errorf("GUE from a newly allowed source: UDP socket read %q, %v", buf[:n], err)
	}
	status, _ = decapStatus(t, be)
	if !strings.Contains(status, "program "+progID+"\n") {
		t.Errorf("xlb decap allow re-attached: program %s before, now:\n%s", progID, status)
	}
	httpFlows("with two allowed sources")

	// And back: only the balancer.
	runXLB(t, be, "decap", "allow", "--interface", lab.HostLink, labLB.Addr().String())
	sendAndCount(spoofed, "source_not_allowed")
	httpFlows("after the allowed set shrank back")
}
