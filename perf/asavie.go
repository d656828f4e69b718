package perf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/hash"
	"github.com/xlbproject/xlb/perf/procstat"
)

// asavieFrameSize is the UMEM frame size given to asavie/xdp, as xlb's.
const asavieFrameSize = 2048

// asavie is the plain-Go-library baseline: github.com/asavie/xdp v0.3.3
// used as it ships (its socket, its XDP program, its poll/receive/transmit
// calls, whose Transmit sends what fits and forgets the rest), doing the
// balancer's per-packet work with xlb's own packages. Against xlb-afxdp it
// isolates the transport: same parse, hash, Maglev and IPIP code.
type asavie struct {
	prog     *xdp.Program
	sock     *xdp.Socket
	ifindex  int
	attached bool
	loop     forwarderThread
	fwd      baselineForwarder
	p        *perfLab

	rxPackets, txPackets atomic.Uint64
}

func startAsavie(p *perfLab, o Options, _ setup) (_ instance, err error) {
	a := &asavie{p: p, ifindex: p.lb.Ifindex}
	if a.fwd, err = newBaselineForwarder(p.lb.MAC, p.sink.MAC, p.lb.MTU, o.Backends); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.teardown())
		}
	}()
	ring := o.Tuning.Ring
	// Its program and socket calls use netlink and bind by ifindex, so
	// they run inside the balancer's namespace.
	err = p.lb.Host.Do(func() error {
		var err error
		if a.prog, err = xdp.NewProgram(1); err != nil {
			return err
		}
		if err = a.prog.Attach(a.ifindex); err != nil {
			return err
		}
		a.attached = true
		opts := xdp.SocketOptions{
			NumFrames: 2 * ring, FrameSize: asavieFrameSize,
			FillRingNumDescs: ring, CompletionRingNumDescs: ring, RxRingNumDescs: ring, TxRingNumDescs: ring,
		}
		// The kernel frees a closed socket's queue (the previous
		// datapath's) a little after close returns; ring.Open retries
		// EBUSY for that, the library does not, so retry here. It
		// formats the errno with %v: only its text is left to match.
		deadline := time.Now().Add(time.Second)
		for {
			a.sock, err = xdp.NewSocket(a.ifindex, 0, &opts)
			if err == nil || !strings.Contains(err.Error(), unix.EBUSY.Error()) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		return a.prog.Register(0, a.sock.FD())
	})
	if err != nil {
		return nil, fmt.Errorf("perf: asavie/xdp: %w", err)
	}
	a.loop.start(o.LBCPUs[0], a.run)
	return a, nil
}

// run is the library's documented loop: fill, poll, receive, work,
// transmit.
func (a *asavie) run(stop *atomic.Bool) error {
	var tx [maxBatch * 8]xdp.Desc // a receive returns up to the RX ring's size
	for !stop.Load() {
		a.sock.Fill(a.sock.GetDescs(a.sock.NumFreeFillSlots()))
		n, _, err := a.sock.Poll(idlePollMs)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		rx := a.sock.Receive(min(n, len(tx)))
		out := tx[:0]
		for _, d := range rx {
			base := d.Addr &^ (asavieFrameSize - 1)
			buf := a.sock.GetFrame(xdp.Desc{Addr: base, Len: asavieFrameSize})
			off, n, ok := a.fwd.forward(buf, int(d.Addr-base), int(d.Len))
			if ok {
				out = append(out, xdp.Desc{Addr: base + uint64(off), Len: uint32(n)})
			}
		}
		a.rxPackets.Add(uint64(len(rx)))
		a.txPackets.Add(uint64(a.sock.Transmit(out)))
	}
	return nil
}

func (a *asavie) counters() (map[string]uint64, error) {
	st, err := a.sock.Stats()
	if err != nil {
		return nil, err
	}
	k := st.KernelStats
	m := map[string]uint64{
		"rx_packets":         a.rxPackets.Load(),
		"tx_packets":         a.txPackets.Load(),
		"rx_dropped":         k.Rx_dropped,
		"rx_ring_full":       k.Rx_ring_full,
		"rx_fill_ring_empty": k.Rx_fill_ring_empty_descs,
		"tx_ring_empty":      k.Tx_ring_empty_descs,
		"rx_invalid_descs":   k.Rx_invalid_descs,
		"tx_invalid_descs":   k.Tx_invalid_descs,
	}
	return m, a.loop.cpuTime(m)
}

func (a *asavie) close() error { return a.teardown() }

func (a *asavie) teardown() error {
	var errs []error
	if a.attached {
		errs = append(errs, a.p.lb.Host.Do(func() error { return a.prog.Detach(a.ifindex) }))
	}
	errs = append(errs, a.loop.halt())
	if a.sock != nil {
		errs = append(errs, unmapRings(a.sock.FD()), a.sock.Close())
	}
	if a.prog != nil {
		errs = append(errs, a.prog.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("perf: asavie: %w", err)
	}
	return nil
}

// unmapRings unmaps the four rings of the AF_XDP socket fd, which
// asavie/xdp v0.3.3's Close leaves mapped (it clears its slices only):
// their mappings hold the socket, and so its queue, until the process
// exits, and the next datapath on that queue (a later round's) could not
// bind.
func unmapRings(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("unmap rings: %w", err)
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return fmt.Errorf("unmap rings: %w", err)
	}
	ms, err := procstat.ParseSocketMaps(bytes.NewReader(b), st.Ino)
	if err != nil {
		return fmt.Errorf("unmap rings: %w", err)
	}
	for _, m := range ms {
		if _, _, errno := unix.Syscall(unix.SYS_MUNMAP, m.Start, m.End-m.Start, 0); errno != 0 {
			return fmt.Errorf("unmap rings: munmap %#x: %w", m.Start, errno)
		}
	}
	return nil
}

// baselineForwarder is the balancer's per-packet work for the baseline,
// built from the same packages as datapath.Forwarder: parse, VIP match,
// flow hash, Maglev lookup, IPIP encapsulation in place.
type baselineForwarder struct {
	vip      uint32 // the VIP's address bytes loaded little-endian, as packet.Flow holds it
	table    *hash.Table
	backends [][4]byte
	src      [4]byte
	srcMAC   [6]byte
	dstMAC   [6]byte
	mtu      int
	id       uint16
}

// newBaselineForwarder returns the forwarder from srcMAC (the balancer's)
// to dstMAC (the backends' next hop) with an egress MTU and n backends.
func newBaselineForwarder(srcMAC, dstMAC [6]byte, mtu, n int) (baselineForwarder, error) {
	addrs := backends(n)
	hb := make([]hash.Backend, len(addrs))
	f := baselineForwarder{
		vip:    binary.LittleEndian.Uint32(vip.AsSlice()),
		src:    lbAddr.Addr().As4(),
		srcMAC: srcMAC,
		dstMAC: dstMAC,
		mtu:    mtu,
	}
	for i, a := range addrs {
		hb[i] = hash.Backend{Addr: a, Weight: 1}
		f.backends = append(f.backends, a.As4())
	}
	var err error
	if f.table, err = hash.Build(hb, hash.DefaultTableSize); err != nil {
		return f, fmt.Errorf("perf: baseline maglev table: %w", err)
	}
	return f, nil
}

// forward rewrites buf[off:off+n] in place for its backend and returns the
// new position, or ok=false for a frame to drop. It allocates nothing.
func (f *baselineForwarder) forward(buf []byte, off, n int) (newOff, newLen int, ok bool) {
	var fl packet.Flow
	if packet.ParseIPv4(buf[off:off+n], &fl) != packet.OK || fl.Dst != f.vip || fl.DstPort != vipPort {
		return 0, 0, false
	}
	bi := f.table.Lookup(hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto))
	if bi < 0 {
		return 0, 0, false
	}
	f.id++
	return packet.EncapIPIP(buf, off, n, &fl, f.src, f.backends[bi], f.srcMAC, f.dstMAC, f.id, f.mtu+int(fl.L3Off))
}
