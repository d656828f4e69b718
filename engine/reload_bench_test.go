package engine

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/internal/frametest"
)

// headroom is where AF_XDP copy mode puts received data in a frame.
const headroom = 256

// udpFrame is a client's UDP frame from src to dst.
func udpFrame(tb testing.TB, src, dst netip.Addr, sport, dport uint16, payload int) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 2}, DstMAC: []byte{2, 0, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = u.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(tb, eth, ip, u, gopacket.Payload(make([]byte, payload)))
}

// bigConfig is one VIP with n backends, as a file would hold it.
func bigConfig(n, weightOf int) []byte {
	var b strings.Builder
	b.WriteString("[datapath]\ninterface = \"eth0\"\n\n[[vip]]\naddress = \"198.18.100.2\"\nport = 0\nprotocol = \"udp\"\n")
	for i := range n {
		fmt.Fprintf(&b, "[[vip.backend]]\naddress = \"198.18.%d.%d\"\nweight = %d\nmac = \"02:00:00:00:%02x:%02x\"\n",
			2+i/250, 1+i%250, 1+(i%weightOf), i/250, i%250)
	}
	return []byte(b.String())
}

// BenchmarkReload measures what a reload of a 1000-backend VIP costs the
// control side (parse and validate the file, build the Maglev table, build
// the plan, swap it in) and, on a goroutine forwarding packets meanwhile,
// the longest gap between two packets: the workers never stop for a reload,
// so that gap is what a reload costs the datapath (scheduling and GC
// included).
func BenchmarkReload(b *testing.B) {
	files := [][]byte{bigConfig(1000, 1), bigConfig(1000, 3)}
	ids, counters := newIDs(maxIndexes), map[backendKey]*datapath.BackendCounters{}
	var current atomic.Pointer[datapath.Plan]
	reload := func(data []byte) {
		cfg, err := config.Parse("big.toml", data)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Datapath.Source = netip.MustParseAddr("198.18.0.1")
		if _, err := ids.assign(cfg); err != nil {
			b.Fatal(err)
		}
		counters = keepCounters(counters, cfg, 1)
		tables, err := buildTables(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		p, err := datapath.NewPlan(planSpec(specInput{cfg: cfg, tables: tables, counters: counters, ids: ids}))
		if err != nil {
			b.Fatal(err)
		}
		current.Store(p)
	}
	reload(files[0])

	stop := make(chan struct{})
	var maxGap, longGaps atomic.Int64
	var packets atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Like a worker: its own OS thread.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		f, err := datapath.NewForwarder(0, [6]byte{2, 0, 0, 0, 0, 1}, 1500, flowtable.Config{Entries: 1 << 12})
		if err != nil {
			panic(err)
		}
		in := udpFrame(b, netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.100.2"), 9, 7, 64)
		buf := make([]byte, 2048)
		copy(buf[headroom:], in)
		last := time.Now()
		for i := 0; ; i++ {
			if i&1023 == 0 {
				select {
				case <-stop:
					return
				default:
				}
			}
			copy(buf[headroom:headroom+14], in)
			in[14+20] = byte(i) // vary the source port: new flows too
			if _, _, ok := f.Forward(current.Load(), buf, headroom, len(in)); !ok {
				panic("not forwarded")
			}
			now := time.Now()
			gap := now.Sub(last).Nanoseconds()
			if gap > maxGap.Load() {
				maxGap.Store(gap)
			}
			if gap > int64(time.Millisecond) {
				longGaps.Add(1)
			}
			last = now
			packets.Add(1)
		}
	}()
	time.Sleep(10 * time.Millisecond)
	maxGap.Store(0)
	longGaps.Store(0)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		reload(files[i%2])
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(maxGap.Load())/1e3, "max-worker-gap-µs")
	b.ReportMetric(float64(longGaps.Load())/float64(b.N), "gaps>1ms/reload")
	b.ReportMetric(float64(packets.Load())/b.Elapsed().Seconds()/1e6, "Mpps-during-reloads")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1e3, "ms/reload")
}
