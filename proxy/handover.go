package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/splice"
)

// Handover is what the proxy needs to hand established pairs to the
// datapath (phase 2): the steering program's splice table, and how a frame
// leaves toward a peer.
type Handover struct {
	Table *splice.Table
	// Hop returns the interface and MACs a frame toward peer leaves with,
	// as the kernel's route and neighbour tables say. Its error wraps
	// ErrOtherInterface when the kernel reaches peer through an interface
	// the datapath does not attach to, ErrNoNeighbor when the neighbour's
	// MAC is not known yet.
	Hop func(peer netip.Addr) (splice.Hop, error)
}

// Errors of Handover.Hop.
var (
	ErrOtherInterface = errors.New("reached through an interface the datapath does not attach to")
	ErrNoNeighbor     = errors.New("next hop not resolved yet")
)

// Kept is why a routed pair stayed copied by the proxy instead of being
// handed to the datapath.
type Kept uint8

// The reasons, as counters name them.
const (
	ClosedFirst     Kept = iota // the pair ended or half-closed before it was ever quiescent
	NotQuiescent                // bytes in flight at each of maxTries attempts
	TableFull                   // the splice table is full (splice_table_size)
	OptionsMismatch             // timestamps negotiated on one connection only
	OtherInterface              // a peer is reached through an interface xlb does not attach to
	NoNeighbor                  // a peer's next hop MAC is unknown
	HandoverFailed              // a socket or map operation failed (logged)
	numKept
)

var keptNames = [numKept]string{
	"closed_first", "not_quiescent", "splice_table_full", "options_mismatch",
	"other_interface", "no_neighbor", "handover_failed",
}

func (k Kept) String() string {
	if k < numKept {
		return keptNames[k]
	}
	return "unknown"
}

// maxTries is how many times a pair is found idle and then not quiescent
// in repair mode (a segment in flight) before it stays copied.
const maxTries = 3

// Bounds of the interval at which a copied pair is checked for idleness:
// about one RTT, as the design says, but neither a busy loop on a LAN nor
// a long wait behind a slow path.
const (
	minQuietCheck = 10 * time.Millisecond
	maxQuietCheck = 200 * time.Millisecond
)

// quietWatch tells when a copied pair has been idle for a check interval
// after at least one flight each way past the ClientHello, from the
// sockets' TCP_INFO counters (the copy runs in the kernel).
type quietWatch struct {
	hello uint64 // bytes of the client's first read, the hello
	last  uint64 // bytes received by both sockets at the previous check
	seen  bool
}

// interval is how long to wait before the next check: twice the larger
// smoothed RTT of the two connections, bounded.
func (q *quietWatch) interval(client, backend *net.TCPConn) time.Duration {
	ci, ok1 := tcpInfo(client)
	bi, ok2 := tcpInfo(backend)
	if !ok1 || !ok2 {
		return maxQuietCheck
	}
	d := 2 * time.Duration(max(ci.Rtt, bi.Rtt)) * time.Microsecond
	return min(max(d, minQuietCheck), maxQuietCheck)
}

// idle reports whether nothing moved since the previous check, the
// backend has answered and the client sent more than its hello (the
// handshake's end).
func (q *quietWatch) idle(client, backend *net.TCPConn) bool {
	ci, ok1 := tcpInfo(client)
	bi, ok2 := tcpInfo(backend)
	if !ok1 || !ok2 {
		return false
	}
	moved := ci.Bytes_received + bi.Bytes_received + ci.Bytes_acked + bi.Bytes_acked
	was, seen := q.last, q.seen
	q.last, q.seen = moved, true
	if !seen || moved != was || ci.Bytes_received <= q.hello || bi.Bytes_received == 0 {
		return false
	}
	// Nothing queued either: a copy blocked writing to a peer that shows a
	// zero window would not return when its read is interrupted.
	err := withFDs(client, backend, func(fc, fb int) error {
		for _, fd := range []int{fc, fb} {
			if ok, err := quiet(fd); err != nil || !ok {
				return errNotQuiet
			}
		}
		return nil
	})
	return err == nil
}

// errNotQuiet is handover's error when a socket had bytes in flight or a
// segment arrived during the attempt: the copy resumes and it is tried
// again later.
var errNotQuiet = errors.New("not quiescent")

// keptError is handover's error when the pair must stay copied for good.
type keptError struct {
	kept Kept
	err  error
}

func (e *keptError) Error() string { return e.kept.String() + ": " + e.err.Error() }
func (e *keptError) Unwrap() error { return e.err }

// handover hands the pair to the datapath, with both copies stopped (every
// byte they read has been written). On success both sockets are left in
// repair mode, keepalive off, and c records the slot; on error both are
// back to normal and the copy may resume (errNotQuiet: try again later;
// *keptError: stay copied).
func (p *Proxy) handover(c *conn) error {
	h := p.handoff
	client, be := c.client, c.backend
	cl, cr := addrPort(client.LocalAddr()), addrPort(client.RemoteAddr())
	bl, br := addrPort(be.LocalAddr()), addrPort(be.RemoteAddr())
	pair := splice.Pair{}
	var err error
	if pair.ToClient, err = hop(h, cr.Addr()); err != nil {
		return err
	}
	if pair.ToBackend, err = hop(h, br.Addr()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return &keptError{ClosedFirst, errors.New("the pair ended")}
	}
	var slot splice.Slot
	err = withFDs(client, be, func(fc, fb int) error {
		for _, fd := range []int{fc, fb} {
			if err := setKeepAlive(fd, false); err != nil {
				return &keptError{HandoverFailed, fmt.Errorf("SO_KEEPALIVE: %w", err)}
			}
		}
		if err := setRepair(fc, true); err != nil {
			return &keptError{HandoverFailed, err}
		}
		if err := setRepair(fb, true); err != nil {
			setRepair(fc, false)
			return &keptError{HandoverFailed, err}
		}
		var err error
		slot, err = p.insert(fc, fb, cl, cr, bl, br, &pair)
		if err != nil {
			// Silently back to normal: no window probe, and keepalive as Go
			// set it on every connection.
			setRepair(fc, false)
			setRepair(fb, false)
			setKeepAlive(fc, true)
			setKeepAlive(fb, true)
		}
		return err
	})
	if err != nil {
		return err
	}
	c.spliced, c.slot, c.pair = true, slot, pair
	c.splicedAt = monotonic()
	c.unspliced = make(chan struct{})
	for _, a := range []*activeCounters{&c.route.activeCounters, &c.back.activeCounters} {
		a.SplicedConns.Add(1)
		a.Spliced.Add(1)
	}
	return nil
}

// insert checks that both sockets (in repair mode) are quiescent, reads
// them, inserts the pair and checks that no segment reached either socket
// meanwhile.
func (p *Proxy) insert(fc, fb int, cl, cr, bl, br netip.AddrPort, pair *splice.Pair) (splice.Slot, error) {
	for _, fd := range []int{fc, fb} {
		ok, err := quiet(fd)
		if err != nil {
			return 0, &keptError{HandoverFailed, err}
		}
		if !ok {
			return 0, errNotQuiet
		}
	}
	var err error
	if pair.Client, err = readSide(fc, cl, cr); err != nil {
		return 0, &keptError{HandoverFailed, fmt.Errorf("client socket: %w", err)}
	}
	if pair.Backend, err = readSide(fb, bl, br); err != nil {
		return 0, &keptError{HandoverFailed, fmt.Errorf("backend socket: %w", err)}
	}
	slot, err := p.handoff.Table.Insert(*pair)
	switch {
	case errors.Is(err, splice.ErrFull):
		return 0, &keptError{TableFull, err}
	case errors.Is(err, splice.ErrOptionsMismatch), errors.Is(err, splice.ErrFamilyMismatch):
		return 0, &keptError{OptionsMismatch, err}
	case err != nil:
		return 0, &keptError{HandoverFailed, err}
	}
	// A segment that reached a socket between the read and the insert
	// moved its rcv_nxt; after the insert none can reach it.
	rc, err1 := queueSeq(fc, tcpRecvQueue)
	rb, err2 := queueSeq(fb, tcpRecvQueue)
	if err := errors.Join(err1, err2); err != nil || rc != pair.Client.RcvNxt || rb != pair.Backend.RcvNxt {
		if derr := p.handoff.Table.Delete(slot); derr != nil {
			return 0, &keptError{HandoverFailed, fmt.Errorf("remove the entries of a pair that moved: %w", derr)}
		}
		if err != nil {
			return 0, &keptError{HandoverFailed, err}
		}
		return 0, errNotQuiet
	}
	return slot, nil
}

func hop(h *Handover, peer netip.Addr) (splice.Hop, error) {
	hp, err := h.Hop(peer)
	switch {
	case errors.Is(err, ErrOtherInterface):
		return hp, &keptError{OtherInterface, err}
	case errors.Is(err, ErrNoNeighbor):
		return hp, &keptError{NoNeighbor, err}
	case err != nil:
		return hp, &keptError{HandoverFailed, err}
	}
	return hp, nil
}

// monotonic is CLOCK_MONOTONIC, the clock of Status.LastPacket.
func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}
