package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/internal/frametest"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/xlbbin"
)

// xlbBin is the real binary the root tests run, built once per process
// (lab/xlbbin) by the first test that needs it.
var xlbBin string

// TestMain removes xlbBin when the tests are done.
func TestMain(m *testing.M) { os.Exit(xlbbin.RunAndRemove(m)) }

// needRoot gates a test that builds labs and runs xlb, and sets xlbBin.
func needRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t, "creates network namespaces and attaches XDP programs")
	bin, err := xlbbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	xlbBin = bin
}

// modes are xlb's two datapaths, for the end-to-end tests that hold in both.
var modes = []string{config.ModeAFXDP, config.ModeNative}

// withMode sets the datapath mode of a configText config (which sets none:
// the default, AF_XDP).
func withMode(cfg, mode string) string {
	return strings.Replace(cfg, "queues = [0]", "queues = [0]\nmode = \""+mode+"\"", 1)
}

// inEachMode runs check once per mode, against xlb started on l with the
// lab's config (three backends of weight 1, every port) and stopped after.
func inEachMode(t *testing.T, l *lbLab, check func(t *testing.T)) {
	inEachModeWith(t, l, "", check)
}

// inEachModeWith is inEachMode with datapath settings added to the config
// (TOML lines, "" for none).
func inEachModeWith(t *testing.T, l *lbLab, datapath string, check func(t *testing.T)) {
	cfg := strings.Replace(configText(l.socketPath(), 0, []int{1, 1, 1}), "queues = [0]", "queues = [0]\n"+datapath, 1)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			if err := l.startXLB(withMode(cfg, mode), io.Discard); err != nil {
				t.Fatal(err)
			}
			check(t)
			if err := l.stopXLB(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// startLab builds the lab and starts xlb with the given weights (nil: the
// test starts xlb itself); everything is torn down when the test ends, pass
// or fail.
func startLab(t *testing.T, weights []int) *lbLab {
	t.Helper()
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newLBLab(fmt.Sprintf("xlbt%d", os.Getpid()%100000), xlbBin, dir)
	})
	if weights != nil {
		if err := l.startXLB(configText(l.socketPath(), 0, weights), logw); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// labForTest builds a lab with build (given a temporary directory), tears
// it down when the test ends and, if the test failed, logs what xlb logged
// to the returned buffer.
func labForTest(t *testing.T, build func(dir string) (*lbLab, error)) (*lbLab, *lockedBuffer) {
	t.Helper()
	needRoot(t)
	l, err := build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	logw := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xlb log:\n%s", logw.String())
		}
	})
	return l, logw
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func stats(t *testing.T, l *lbLab) engine.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st engine.Stats
	if err := control.Call(ctx, l.socketPath(), "stats", nil, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestBalance: 300 real TCP connections over xlb to backends weighted 1, 1, 2
// all succeed and split by weight; 1 MB uploads arrive intact, which they
// cannot if any of their packets reach another backend.
func TestBalance(t *testing.T) {
	weights := []int{1, 1, 2}
	l := startLab(t, weights)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 1200 keeps the ±25% bound beyond 5 standard deviations of the binomial
	// spread of random source ports, so the test does not flake.
	const conns = 1200
	served, failed := sendRequests(ctx, l, conns, 8)
	if failed > 0 {
		t.Fatalf("%d of %d connections failed", failed, conns)
	}
	sum := 0
	for _, w := range weights {
		sum += w
	}
	for i, h := range l.backends {
		want := float64(weights[i]) / float64(sum)
		got := float64(served[h.Name]) / conns
		t.Logf("%s weight %d: %d connections (%.1f%%, expected %.1f%%)", h.Name, weights[i], served[h.Name], 100*got, 100*want)
		if got < 0.75*want || got > 1.25*want {
			t.Errorf("%s got %.1f%% of connections, want %.1f%% +-25%%", h.Name, 100*got, 100*want)
		}
		if n := l.servers[i].Conns(); n != uint64(served[h.Name]) {
			t.Errorf("%s accepted %d connections but answered %d requests", h.Name, n, served[h.Name])
		}
	}

	client := lab.HTTPClient(l.client)
	body := make([]byte, 1<<20)
	for range 6 {
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		r, err := lab.Upload(ctx, client, "http://"+labVIP.String(), body)
		if err != nil {
			t.Fatalf("1 MB upload: %v", err)
		}
		if r.Bytes != int64(len(body)) || r.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("upload to %s arrived as %d bytes sha256 %s, sent %d bytes sha256 %x", r.Backend, r.Bytes, r.SHA256, len(body), sum)
		}
	}

	// Counters are read one by one while the last ACKs and FINs may still
	// be in flight: wait (bounded) for the queue's and the backends' views
	// to agree, then check them.
	var st engine.Stats
	var pkts uint64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, pkts = stats(t, l), 0
		for _, b := range st.VIPs[0].Backends {
			pkts += b.Packets
		}
		if st.Queues[0].TxPackets == pkts || time.Now().After(deadline) {
			break
		}
	}
	q := st.Queues[0]
	if q.TxPackets != pkts || q.RxPackets < pkts {
		t.Errorf("queue counters rx %d tx %d disagree with backend counters %d", q.RxPackets, q.TxPackets, pkts)
	}
	for reason, n := range st.Drops {
		if n != 0 {
			t.Errorf("drop %s = %d during clean traffic", reason, n)
		}
	}
}

// TestHostTrafficAndDetach: while xlb runs, traffic that is not for a VIP
// (ARP, TCP to the balancer's own address) reaches its kernel; after SIGTERM
// no XDP program is left and that traffic still works.
func TestHostTrafficAndDetach(t *testing.T) {
	l := startLab(t, []int{1, 1, 1})
	ln, err := l.lb.Listen("tcp", netip.AddrPortFrom(labLB.Addr(), 7000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()

	// Forget the balancer's MAC so the connection needs ARP both ways.
	if err := l.client.Do(func() error {
		return netlink.NeighDel(&netlink.Neigh{LinkIndex: l.client.Ifindex, IP: labLB.Addr().AsSlice()})
	}); err != nil && !strings.Contains(err.Error(), "no such file") {
		t.Logf("neigh del: %v", err)
	}
	echo(t, l)
	var mac net.HardwareAddr
	if err := l.client.Do(func() error {
		neighs, err := netlink.NeighList(l.client.Ifindex, netlink.FAMILY_V4)
		for _, n := range neighs {
			if n.IP.Equal(labLB.Addr().AsSlice()) {
				mac = n.HardwareAddr
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mac, l.lb.MAC[:]) {
		t.Errorf("client's ARP entry for the balancer = %v, want %v", mac, net.HardwareAddr(l.lb.MAC[:]))
	}
	if st := stats(t, l); st.Steer.Passed == 0 {
		t.Errorf("steering program passed nothing to the kernel: %+v", st.Steer)
	}

	if err := l.stopXLB(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := l.lb.Do(func() error {
		link, err := netlink.LinkByName(lab.HostLink)
		if err != nil {
			return err
		}
		if x := link.Attrs().Xdp; x != nil && x.Attached {
			return fmt.Errorf("XDP program %d still attached after SIGTERM", x.ProgId)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	echo(t, l)
}

// echo round-trips a message over TCP from the client to the balancer's own
// address (port 7000).
func echo(t *testing.T, l *lbLab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.client.Dial(ctx, "tcp", netip.AddrPortFrom(labLB.Addr(), 7000).String())
	if err != nil {
		t.Fatalf("TCP to the balancer's own address: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("not for a VIP")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo from the balancer = %q, %v", got, err)
	}
}

// TestMalformedFrames replays broken frames at the VIP, in each mode: every
// one is counted (as malformed, or under a drop reason of the worker or the
// native program) and the datapath keeps forwarding.
func TestMalformedFrames(t *testing.T) {
	l := startLab(t, nil)
	inEachMode(t, l, func(t *testing.T) { malformedFrames(t, l) })
}

func malformedFrames(t *testing.T, l *lbLab) {
	base := vipFrame(t, l, nil)
	var frames [][]byte
	// Every truncation from a bare Ethernet header to one byte short of
	// the TCP header (the kernel refuses to send less than 14 bytes).
	for n := 14; n < len(base); n++ {
		frames = append(frames, base[:n])
	}
	mutate := func(f func(ip []byte)) []byte {
		b := bytes.Clone(base)
		f(b[14:])
		return b
	}
	frames = append(frames,
		mutate(func(ip []byte) { ip[0] = 0x44 }),              // IHL 4
		mutate(func(ip []byte) { ip[0] = 0x40 }),              // IHL 0
		mutate(func(ip []byte) { ip[0] = 0x4f }),              // IHL 15: options past the end
		mutate(func(ip []byte) { ip[2], ip[3] = 0xff, 0xff }), // total length past the frame
		mutate(func(ip []byte) { ip[2], ip[3] = 0, 10 }),      // total length below the header
		mutate(func(ip []byte) { ip[6], ip[7] = 0x00, 0x10 }), // non-first fragment
		mutate(func(ip []byte) { ip[6], ip[7] = 0x20, 0x00 }), // first fragment (MF)
		mutate(func(ip []byte) { ip[9] = 47 }),                // GRE: no balancing
		mutate(func(ip []byte) { ip[0] = 0x65 }),              // version 6 in an IPv4 frame
	)
	good := [][]byte{
		vipFrame(t, l, []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}), // IPv4 options (NOPs, EOL)
	}

	before := stats(t, l)
	if err := sendRaw(l.client, append(append([][]byte{}, frames...), good...)); err != nil {
		t.Fatal(err)
	}
	want := uint64(len(frames))
	var after engine.Stats
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = stats(t, l)
		// Drops are counted per packet, rx/tx once per batch: wait for
		// both.
		d := tallyOf(after).minus(tallyOf(before))
		if d.bad >= want && d.tx >= uint64(len(good)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := tallyOf(after).minus(tallyOf(before))
	if d.bad != want {
		t.Errorf("%d malformed frames sent, %d counted (steering malformed %d -> %d, drops %v)",
			want, d.bad, steerOf(before).Malformed, steerOf(after).Malformed, dropsDelta(before, after))
	}
	if d.tx < uint64(len(good)) {
		t.Errorf("valid frame with IPv4 options not forwarded: tx grew by %d", d.tx)
	}
	t.Logf("drops after replay: %v, steering %+v", dropsDelta(before, after), steerOf(after))
	// The worker is alive and forwarding.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, failed := sendRequests(ctx, l, 20, 4); failed > 0 {
		t.Fatalf("%d requests failed after the malformed replay", failed)
	}
}

// vipFrame builds a TCP SYN from the client to the VIP, addressed to the
// balancer's MAC.
func vipFrame(t *testing.T, l *lbLab, opts []layers.IPv4Option) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: l.client.MAC[:], DstMAC: l.lb.MAC[:], EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: labClient.Addr().AsSlice(), DstIP: labVIP.AsSlice(), Options: opts}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 1, Window: 1024}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	// gopacket pads Ethernet frames to 60 bytes; the truncation loop wants
	// the frame to end where the IP packet does.
	return frametest.Serialize(t, eth, ip, tcp)[:14+int(ip.Length)]
}

// sendRaw writes whole Ethernet frames out of the host's eth0.
func sendRaw(h *lab.Host, frames [][]byte) error {
	var fd int
	if err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Ifindex: h.Ifindex, Halen: 6}
	for _, f := range frames {
		if err := unix.Sendto(fd, f, 0, sa); err != nil {
			return fmt.Errorf("send %d-byte frame: %w", len(f), err)
		}
	}
	return nil
}

// TestBadConfig: every broken file is refused with exit code 3 and a
// FILE:LINE: message naming the key.
func TestBadConfig(t *testing.T) {
	good := func(mod func(string) string) string { return mod(configText("/run/xlb/t.sock", 80, []int{1, 1})) }
	tests := []struct {
		name, text, want string
	}{
		{"unknown key", good(func(s string) string { return strings.Replace(s, "queues = [0]", "queues = [0]\nqueus = [1]", 1) }), ":4: datapath.queus"},
		{"bad address", good(func(s string) string { return strings.Replace(s, `"198.18.0.12"`, `"198.18.0.300"`, 1) }), ":19: vip[0].backend[1].address"},
		{"missing backend", "[datapath]\ninterface = \"lo\"\n\n[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n", ":4: vip[0]"},
		{"splice table too large", good(func(s string) string {
			return strings.Replace(s, "queues = [0]", "queues = [0]\nsplice_table_size = 2000000", 1)
		}), ":4: datapath.splice_table_size: splice table size out of range: 2000000 (must be 0..1048576)"},
		{"port out of range", good(func(s string) string { return strings.Replace(s, "port = 80", "port = 65536", 1) }), ":10: vip[0].port"},
		{"negative port", good(func(s string) string { return strings.Replace(s, "port = 80", "port = -1", 1) }), ":10: vip[0].port"},
		{"unknown interface", good(func(s string) string { return strings.Replace(s, `interface = "eth0"`, `interface = "xlbnosuch0"`, 1) }), ":2: datapath.interface"},
		{"syntax error", good(func(s string) string { return strings.Replace(s, "port = 80", "port = = 80", 1) }), ":10: vip[0].port"},
		{"metrics not on loopback", good(func(s string) string { return s + "\n[metrics]\nlisten = \"0.0.0.0:9350\"\n" }), ":23: metrics.listen: listen address \"0.0.0.0:9350\": not a loopback address: the endpoint exposes backend addresses and traffic volumes and has no authentication"},
		{"metrics on a privileged port", good(func(s string) string { return s + "\n[metrics]\nlisten = \"127.0.0.1:80\"\n" }), ":23: metrics.listen: port 80 needs CAP_NET_BIND_SERVICE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.toml")
			if err := os.WriteFile(file, []byte(tt.text), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run(&env{stdout: &stdout, stderr: &stderr}, []string{"check", "-c", file})
			if code != exitConfig {
				t.Errorf("exit code %d, want %d; stderr: %s", code, exitConfig, stderr.String())
			}
			if !strings.Contains(stderr.String(), file+tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), file+tt.want)
			}
		})
	}
}

// TestCheckPrintsPlan: a good file prints the resolved plan.
func TestCheckPrintsPlan(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ok.toml")
	text := strings.Replace(configText("/run/xlb/t.sock", 80, []int{1, 3}), `interface = "eth0"`, `interface = "lo"`, 1)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(&env{stdout: &stdout, stderr: &stderr}, []string{"check", "-c", file}); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"interface lo", "queue 0 -> cpu", "vip 198.18.100.1:80/tcp forward=ipip maglev_slots=65537", "backend 198.18.0.12", "share  75.0%"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestUsage: every command answers --help with exit 0, unknown ones exit 2.
func TestUsage(t *testing.T) {
	for name := range commands {
		var out, errb bytes.Buffer
		if code := run(&env{stdout: &out, stderr: &errb}, []string{name, "--help"}); code != exitOK {
			t.Errorf("xlb %s --help: exit %d", name, code)
		}
		if !strings.Contains(out.String()+errb.String(), "usage: xlb "+name) {
			t.Errorf("xlb %s --help printed no usage: %q", name, out.String()+errb.String())
		}
	}
	var out bytes.Buffer
	if code := run(&env{stdout: &out, stderr: &out}, []string{"bogus"}); code != exitUsage {
		t.Errorf("unknown command: exit %d, want %d", code, exitUsage)
	}
}
