package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/capture"
	"github.com/xlbproject/xlb/datapath"
)

// Native mode's capture: the lb program copies the frames the filter's
// queue, VIP and direction admit into a ring buffer (bpf/lbcapture.h); the
// session reads it, names each frame's backend from its ID, applies the
// backend filter (a backend address may stand for several IDs, one per
// VIP: cheaper here than in the program) and streams the same records as
// the AF_XDP workers' rings give. One capture at a time.

// nativeCapture is the lb program's side of a CaptureSession.
type nativeCapture struct {
	e        *Engine
	c        *bpf.LBCapture
	backends map[uint32]netip.Addr // backend ID -> address, of the state read last
	from     *state
}

// captureNative starts the lb program's capture for f.
func (e *Engine) captureNative(f capture.Filter) (*CaptureSession, error) {
	snap := min(f.Snaplen, bpf.LBCaptureMax)
	c, err := e.lb.StartCapture(bpf.LBCaptureFilter{Queue: f.Queue, RX: f.Direction&capture.RX != 0, TX: f.Direction&capture.TX != 0,
		Snaplen: snap, VIP: f.VIP, VIPProto: f.VIPProto})
	if errors.Is(err, bpf.ErrCaptureBusy) {
		return nil, ErrCaptureNativeBusy
	}
	if err != nil {
		return nil, err
	}
	queues, err := e.nativeQueues(f)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	s := &CaptureSession{Header: capture.Header{Interface: e.ifname, Queues: queues, Snaplen: snap}, filter: f, native: &nativeCapture{e: e, c: c}}
	s.filter.Snaplen = snap
	return s, nil
}

// nativeQueues are the queues a native capture announces (one pcapng
// interface each): the interface's RX queues, or the filter's one.
func (e *Engine) nativeQueues(f capture.Filter) ([]int, error) {
	link, err := netlink.LinkByIndex(e.ifindex)
	if err != nil {
		return nil, fmt.Errorf("capture: the RX queues of %s: %w", e.ifname, err)
	}
	n := max(link.Attrs().NumRxQueues, 1)
	if f.Queue >= 0 {
		if f.Queue >= n {
			return nil, fmt.Errorf("queue %d: %s has %d RX queues", f.Queue, e.ifname, n)
		}
		return []int{f.Queue}, nil
	}
	q := make([]int, n)
	for i := range q {
		q[i] = i
	}
	return q, nil
}

// drain sends every record the ring holds now through send, as the AF_XDP
// rings' Drain does, its comment naming the CPU that ran the program, and
// returns how many it sent.
func (n *nativeCapture) drain(f *capture.Filter, send func(m *capture.Meta, note string, data []byte) error) (int, error) {
	sent := 0
	err := n.c.Read(time.Now(), func(r *bpf.LBCaptureRecord) error {
		m := capture.Meta{Time: r.Time, OrigLen: r.OrigLen, CapLen: uint32(len(r.Data)), Queue: r.Queue, Dir: capture.RX}
		if r.TX {
			m.Dir = capture.TX
		}
		switch r.Verdict {
		case bpf.LBCaptureForwarded:
			a := n.backend(r.Backend)
			m.Verdict = capture.Verdict{Kind: capture.Forwarded, V4: a.Is4()}
			if a.Is4() {
				b := a.As4()
				copy(m.Verdict.Backend[:], b[:])
			} else {
				m.Verdict.Backend = a.As16()
			}
		case bpf.LBCaptureDropped:
			m.Verdict = capture.Verdict{Kind: capture.Dropped, Drop: uint8(dropByName[r.Drop])}
		default:
			m.Verdict = capture.Verdict{Kind: capture.Answered}
		}
		if !f.MatchBackend(m.Verdict.BackendAddr()) {
			return nil
		}
		sent++
		return send(&m, fmt.Sprintf(" (cpu %d)", r.CPU), r.Data)
	})
	return sent, err
}

// backend is the address of the backend with id in the published state,
// read again when the state changed (a reload may add backends while the
// capture runs). An ID no state names is the unspecified address.
func (n *nativeCapture) backend(id uint32) netip.Addr {
	if pub := n.e.pub.Load(); pub != n.from {
		n.from, n.backends = pub, map[uint32]netip.Addr{}
		for _, v := range pub.spec.VIPs {
			for _, b := range v.Backends {
				n.backends[b.ID] = b.Addr.Unmap()
			}
		}
	}
	if a, ok := n.backends[id]; ok {
		return a
	}
	return netip.IPv6Unspecified()
}

// lost is the frames the full ring had no room for, per queue (each of
// queues present, zeros included).
func (n *nativeCapture) lost(queues []int) (map[int]uint64, error) {
	out := map[int]uint64{}
	for _, q := range queues {
		out[q] = 0
	}
	l, err := n.c.Lost()
	for q, k := range l {
		out[q] += k
	}
	return out, err
}

func (n *nativeCapture) stop() {
	if err := n.c.Stop(); err != nil {
		n.e.log.Warn("native capture: stop", "err", err)
	}
}

func (n *nativeCapture) close() {
	if err := n.c.Close(); err != nil {
		n.e.log.Warn("native capture: close", "err", err)
	}
}

// dropByName maps the lb program's drop reasons, named as datapath's, to
// datapath.Drop.
var dropByName = func() map[string]datapath.Drop {
	m := map[string]datapath.Drop{}
	for d := datapath.Drop(1); d < datapath.NumDrops; d++ {
		m[d.String()] = d
	}
	return m
}()
