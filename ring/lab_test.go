package ring

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/frametest"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/labtest"
)

// vethLab is a veth pair between two fresh namespaces: A holds the AF_XDP
// socket, B plays the traffic source and sink.
type vethLab struct{ a, b lab.End }

// newVethLab builds the namespaces and the pair (one queue each way),
// both ends up, and removes everything when the test ends.
func newVethLab(t *testing.T) *vethLab {
	t.Helper()
	l := labtest.New(t, lab.Spec{
		Prefix: labtest.Prefix("xlbring"),
		Hosts:  []lab.HostSpec{{Name: "a", NoSwitch: true}, {Name: "b", NoSwitch: true}},
		Pairs:  []lab.PairSpec{{A: lab.EndSpec{Host: "a", Name: "veth0"}, B: lab.EndSpec{Host: "b", Name: "veth0"}}},
	})
	return &vethLab{a: l.Pairs[0].A, b: l.Pairs[0].B}
}

// openXSK opens a socket on queue 0 of A's veth, inside namespace A.
func (l *vethLab) openXSK(t *testing.T, cfg Config) (*Socket, error) {
	t.Helper()
	cfg.Ifindex, cfg.Ifname, cfg.Queue = l.a.Ifindex, l.a.Name, 0
	var s *Socket
	err := l.a.Host.Do(func() error {
		var err error
		s, err = Open(cfg)
		return err
	})
	if s != nil {
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	return s, err
}

// redirectAll attaches to A's veth, in driver mode, an XDP program that
// redirects every packet to the XSKMAP slot of its receive queue, and puts
// s in slot 0. It is built here from instructions so that this package does
// not depend on bpf/.
func (l *vethLab) redirectAll(t *testing.T, s *Socket) {
	t.Helper()
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatalf("create xskmap: %v", err)
	}
	t.Cleanup(func() { xsks.Close() })
	if err := xsks.Put(uint32(0), uint32(s.FD())); err != nil {
		t.Fatalf("put socket in xskmap: %v", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "xlbring_redir",
		Type:    ebpf.XDP,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // xdp_md.rx_queue_index
			asm.LoadMapPtr(asm.R1, xsks.FD()),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the slot is empty
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load redirect program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	// A bpf_link resolves the interface index in the caller's namespace.
	var lk link.Link
	err = l.a.Host.Do(func() error {
		var err error
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.a.Ifindex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attach XDP to %s: %v", l.a.Name, err)
	}
	t.Cleanup(func() { lk.Close() })
}

// packetSocket opens an AF_PACKET socket on B's veth, inside namespace B:
// with proto 0 it only sends; with ETH_P_ALL it also captures what B
// receives (not what it sends).
func (l *vethLab) packetSocket(t *testing.T, proto uint16) int {
	t.Helper()
	var fd int
	err := l.b.Host.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return err
		}
		if proto != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: l.b.Ifindex})
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", l.b.Name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// testMagic marks the frames the tests send, among the IPv6 neighbour
// discovery the namespaces' stacks emit on their own.
const testMagic = "xlbring!"

// udpFrame builds an Ethernet/IPv4/UDP frame from B to A carrying seq.
func (l *vethLab) udpFrame(t *testing.T, seq uint32) []byte {
	t.Helper()
	payload := make([]byte, len(testMagic)+4+40)
	copy(payload, testMagic)
	binary.BigEndian.PutUint32(payload[len(testMagic):], seq)
	for i := len(testMagic) + 4; i < len(payload); i++ {
		payload[i] = byte(seq) + byte(i)
	}
	eth := &layers.Ethernet{SrcMAC: l.b.MAC[:], DstMAC: l.a.MAC[:], EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{198, 18, 0, 2}, DstIP: net.IP{198, 18, 0, 1}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return frametest.Serialize(t, eth, ip, udp, gopacket.Payload(payload))
}

// frameSeq returns the sequence number of a test frame (under any prepended
// header), or false for any other frame.
func frameSeq(frame []byte) (uint32, bool) {
	i := bytes.Index(frame, []byte(testMagic))
	if i < 0 || len(frame) < i+len(testMagic)+4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(frame[i+len(testMagic):]), true
}

// send writes frames out of B's veth.
func send(t *testing.T, fd int, frames [][]byte) {
	t.Helper()
	for i, f := range frames {
		if _, err := unix.Write(fd, f); err != nil {
			t.Fatalf("send frame %d: %v", i, err)
		}
	}
}

// capture reads test frames arriving at B until want have come or the
// deadline passes, and returns them by sequence number.
func capture(t *testing.T, fd, want int, deadline time.Time) map[uint32][]byte {
	t.Helper()
	got := make(map[uint32][]byte)
	buf := make([]byte, 4096)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for len(got) < want && time.Now().Before(deadline) {
		if n, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
			t.Fatalf("poll capture: %v", err)
		} else if n == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			continue
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if seq, ok := frameSeq(buf[:n]); ok {
			if _, dup := got[seq]; dup {
				t.Errorf("frame %d arrived twice", seq)
			}
			got[seq] = append([]byte(nil), buf[:n]...)
		}
	}
	return got
}
