package packet

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// benchFrames are the per-packet benchmark inputs: the common case and the
// slowest accepted one.
var benchFrames = []struct {
	name string
	s    spec
}{
	{"tcp", spec{payload: 64}},
	{"vlan_options_udp", spec{vlan: true, optWords: 3, proto: "udp", payload: 64}},
}

// reportMpps adds packets per second, the unit the lab reports in.
func reportMpps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

func BenchmarkParseIPv4(b *testing.B) {
	for _, bf := range benchFrames {
		b.Run(bf.name, func(b *testing.B) {
			frame := build(b, bf.s)
			b.ReportAllocs()
			for b.Loop() {
				sinkReason = ParseIPv4(frame, &sinkFlow)
			}
			if sinkReason != OK {
				b.Fatal(sinkReason)
			}
			reportMpps(b)
		})
	}
}

func BenchmarkEncapIPIP(b *testing.B) {
	for _, bf := range benchFrames {
		b.Run(bf.name, func(b *testing.B) {
			frame := build(b, bf.s)
			var f Flow
			if r := ParseIPv4(frame, &f); r != OK {
				b.Fatal(r)
			}
			buf := place(frame, testHeadroom, 0)
			b.ReportAllocs()
			for b.Loop() {
				// Encapsulating the same buffer again overwrites the old
				// L2 header; the work per call is the same.
				off, n, _ := EncapIPIP(buf, testHeadroom, len(frame), &f, lbIP, backendIP, lbMACArr, nextMAC, 1, 9000)
				sinkInt += off + n
			}
			reportMpps(b)
		})
	}
}

// BenchmarkParseEncap compares the worker's per-packet rewrite, parse then
// encapsulate in place, with the same work done the usual gopacket way: a
// preallocated DecodingLayerParser, then SerializeLayers into a reused
// buffer (which copies the inner packet). Read the ratio of the two ns/op.
func BenchmarkParseEncap(b *testing.B) {
	for _, bf := range benchFrames {
		frame := build(b, bf.s)
		b.Run(bf.name+"/xlb", func(b *testing.B) {
			buf := place(frame, testHeadroom, 0)
			b.ReportAllocs()
			for b.Loop() {
				// Restore the L2 header the previous iteration overwrote, as
				// a fresh received frame would have it.
				copy(buf[testHeadroom:testHeadroom+18], frame)
				var f Flow
				if r := ParseIPv4(buf[testHeadroom:testHeadroom+len(frame)], &f); r != OK {
					b.Fatal(r)
				}
				off, n, ok := EncapIPIP(buf, testHeadroom, len(frame), &f, lbIP, backendIP, lbMACArr, nextMAC, 1, 9000)
				if !ok {
					b.Fatal("EncapIPIP refused")
				}
				sinkInt += off + n
			}
			reportMpps(b)
		})
		b.Run(bf.name+"/gopacket", func(b *testing.B) {
			var (
				eth     layers.Ethernet
				dot1q   layers.Dot1Q
				ip      layers.IPv4
				tcp     layers.TCP
				udp     layers.UDP
				payload gopacket.Payload
			)
			parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip, &tcp, &udp, &payload)
			decoded := make([]gopacket.LayerType, 0, 8)
			outEth := layers.Ethernet{SrcMAC: net.HardwareAddr(lbMACArr[:]), DstMAC: net.HardwareAddr(nextMAC[:])}
			outDot1q := layers.Dot1Q{}
			outIP := layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolIPv4, SrcIP: net.IP(lbIP[:]), DstIP: net.IP(backendIP[:])}
			sb := gopacket.NewSerializeBuffer()
			opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
			b.ReportAllocs()
			for b.Loop() {
				if err := parser.DecodeLayers(frame, &decoded); err != nil {
					b.Fatal(err)
				}
				vlan := false
				for _, lt := range decoded {
					vlan = vlan || lt == layers.LayerTypeDot1Q
				}
				if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
					b.Fatal("fragment")
				}
				outIP.TOS = ip.TOS
				outIP.Flags = ip.Flags & layers.IPv4DontFragment
				inner := gopacket.Payload(frame[len(frame)-len(ip.Contents)-len(ip.Payload):])
				var err error
				if vlan {
					outEth.EthernetType = eth.EthernetType
					outDot1q = layers.Dot1Q{Priority: dot1q.Priority, DropEligible: dot1q.DropEligible, VLANIdentifier: dot1q.VLANIdentifier, Type: layers.EthernetTypeIPv4}
					err = gopacket.SerializeLayers(sb, opts, &outEth, &outDot1q, &outIP, inner)
				} else {
					outEth.EthernetType = layers.EthernetTypeIPv4
					err = gopacket.SerializeLayers(sb, opts, &outEth, &outIP, inner)
				}
				if err != nil {
					b.Fatal(err)
				}
				sinkInt += len(sb.Bytes())
			}
			reportMpps(b)
		})
	}
}
