package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Native capture (lbcapture.h): while a capture runs, the lb program
// tail-calls xlb_lb_capture, which forwards as usual and copies the frames
// the filter matches into a ring buffer. One capture at a time.

// LBCaptureMax bounds the bytes a native capture keeps of a frame: a frame
// is at most a page (the program is not multi-buffer aware).
const LBCaptureMax = 4096

// lbCaptureQueues is cap_lost's size (CAP_QUEUES).
const lbCaptureQueues = 256

// ErrCaptureBusy: a capture is already running on the lb program.
var ErrCaptureBusy = errors.New("bpf: lb: a capture is already running")

// LBCaptureFilter is what the program keeps while a capture runs.
type LBCaptureFilter struct {
	Queue   int  // -1: every RX queue
	RX, TX  bool // the frames as received, as sent
	Snaplen int  // bytes kept per frame, 1..LBCaptureMax (more is cut to it)
	// VIP (invalid: every frame) keeps the frames to that address and
	// protocol, and port unless it is 0, as capture.Filter.MatchRX.
	VIP      netip.AddrPort
	VIPProto uint8
}

// LBCaptureVerdict is what the program did with a captured frame.
type LBCaptureVerdict uint8

// The values of LBCaptureVerdict, as capture.VerdictKind.
const (
	LBCaptureForwarded LBCaptureVerdict = iota // sent to Backend
	LBCaptureDropped                           // dropped for Drop
	LBCaptureAnswered                          // answered by the program (echo reply, frag-needed)
)

// LBCaptureRecord is one captured frame.
type LBCaptureRecord struct {
	Time    int64 // Unix nanoseconds
	OrigLen uint32
	Queue   uint16
	CPU     uint16
	TX      bool // as sent; else as received
	Verdict LBCaptureVerdict
	Backend uint32 // LBCaptureForwarded: the backend's ID
	Drop    string // LBCaptureDropped: the reason, named as LBCounters.Drops
	Data    []byte // valid until the next record
}

// LBCapture is a running capture; Close ends it.
type LBCapture struct {
	lb     *LB
	rd     *ringbuf.Reader
	rec    ringbuf.Record
	offset int64 // Unix ns minus the monotonic clock
	base   [lbCaptureQueues]uint64
}

// lbCapHdr mirrors struct cap_hdr, in front of each record (bpf2go names
// no type for it: TestLBLayout checks it against lbCapScratch.Hdr).
type lbCapHdr struct {
	Ns                 uint64
	OrigLen, Backend   uint32
	Queue, Cpu, CapLen uint16
	Dir, Verdict, Drop uint8
	_                  [7]uint8
}

const lbCapHdrSize = 32

// StartCapture starts a capture with filter f. It fails with
// ErrCaptureBusy while another runs.
func (lb *LB) StartCapture(f LBCaptureFilter) (*LBCapture, error) {
	if f.Snaplen < 1 {
		return nil, fmt.Errorf("bpf: lb: capture snaplen %d", f.Snaplen)
	}
	conf := lbCaptureConf{Snaplen: uint32(min(f.Snaplen, LBCaptureMax)), Queue: -1}
	if f.RX {
		conf.Dir |= 1
	}
	if f.TX {
		conf.Dir |= 2
	}
	if f.Queue >= 0 {
		conf.Queue = int32(f.Queue)
	}
	if f.VIP.IsValid() {
		k := NewVIPKey(f.VIP.Addr(), f.VIP.Port(), f.VIPProto)
		conf.Vip.Addr, conf.Vip.Port, conf.Vip.Proto, conf.Vip.Family = k.Addr, k.Port, k.Proto, k.Family
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil, ErrClosed
	}
	if lb.capture != nil {
		return nil, ErrCaptureBusy
	}
	c := &LBCapture{lb: lb}
	var err error
	if c.base, err = lb.captureLost(); err != nil {
		return nil, err
	}
	if c.rd, err = ringbuf.NewReader(lb.objs.CaptureRing); err != nil {
		return nil, fmt.Errorf("bpf: lb: capture ring: %w", err)
	}
	// What a capture that ended in a hurry left in the ring is not this
	// one's.
	c.rd.SetDeadline(time.Now())
	for c.rd.ReadInto(&c.rec) == nil {
	}
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		c.rd.Close()
		return nil, fmt.Errorf("bpf: lb: capture clock: %w", err)
	}
	c.offset = time.Now().UnixNano() - mono.Nano()
	// The filter first, then the program, then the switch: the first
	// frame captured sees all three.
	if err := lb.objs.CaptureConf.Set(conf); err != nil {
		c.rd.Close()
		return nil, fmt.Errorf("bpf: lb: capture filter: %w", err)
	}
	if err := lb.objs.CaptureProg.Put(uint32(0), lb.objs.XlbLbCapture); err != nil {
		c.rd.Close()
		return nil, fmt.Errorf("bpf: lb: capture program: %w", err)
	}
	if err := lb.objs.CaptureOn.Set(uint32(1)); err != nil {
		c.rd.Close()
		return nil, errors.Join(fmt.Errorf("bpf: lb: start capture: %w", err), lb.objs.CaptureProg.Delete(uint32(0)))
	}
	lb.capture = c
	return c, nil
}

// captureLost reads cap_lost summed over CPUs.
func (lb *LB) captureLost() (out [lbCaptureQueues]uint64, err error) {
	if err := sumPerCPU(lb.objs.CapLost, out[:]); err != nil {
		return out, fmt.Errorf("bpf: lb: capture lost counts: %w", err)
	}
	return out, nil
}

// Read calls fn for each record until the ring is empty at until (it
// waits for records until then), or fn fails. The record's Data is valid
// until fn returns.
func (c *LBCapture) Read(until time.Time, fn func(*LBCaptureRecord) error) error {
	c.rd.SetDeadline(until)
	var r LBCaptureRecord
	for {
		if err := c.rd.ReadInto(&c.rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("bpf: lb: capture ring: %w", err)
		}
		if err := c.decode(c.rec.RawSample, &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
}

// decode reads one ring record (struct cap_hdr and the bytes kept).
func (c *LBCapture) decode(b []byte, r *LBCaptureRecord) error {
	if len(b) < lbCapHdrSize {
		return fmt.Errorf("bpf: lb: capture record of %d bytes", len(b))
	}
	var h lbCapHdr
	if _, err := binary.Decode(b[:lbCapHdrSize], binary.NativeEndian, &h); err != nil {
		return fmt.Errorf("bpf: lb: capture record: %w", err)
	}
	data := b[lbCapHdrSize:]
	if int(h.CapLen) > len(data) || h.CapLen > LBCaptureMax {
		return fmt.Errorf("bpf: lb: capture record keeps %d bytes, has %d", h.CapLen, len(data))
	}
	*r = LBCaptureRecord{Time: int64(h.Ns) + c.offset, OrigLen: h.OrigLen, Queue: h.Queue, CPU: h.Cpu, TX: h.Dir == 2,
		Verdict: LBCaptureVerdict(h.Verdict), Backend: h.Backend, Data: data[:h.CapLen]}
	if r.Verdict == LBCaptureDropped {
		if i := int(h.Drop) - lbFirstDrop; i >= 0 && i < len(lbDropNames) {
			r.Drop = lbDropNames[i]
		}
	}
	return nil
}

// Stop ends the capture in the program: frames from now on are not
// copied; what the ring holds can still be Read.
func (c *LBCapture) Stop() error {
	lb := c.lb
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed || lb.capture != c {
		return nil
	}
	err := lb.objs.CaptureOn.Set(uint32(0))
	if derr := lb.objs.CaptureProg.Delete(uint32(0)); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return fmt.Errorf("bpf: lb: stop capture: %w", err)
	}
	return nil
}

// Lost returns, per RX queue, the matching frames the full ring had no
// room for since the capture started (queues past 255 count on 255).
func (c *LBCapture) Lost() (map[int]uint64, error) {
	c.lb.mu.Lock()
	defer c.lb.mu.Unlock()
	if c.lb.closed {
		return nil, ErrClosed
	}
	now, err := c.lb.captureLost()
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for q, n := range now {
		if n != c.base[q] {
			out[q] = n - c.base[q]
		}
	}
	return out, nil
}

// Close stops the capture and releases its reader; the LB can then run
// another.
func (c *LBCapture) Close() error {
	err := c.Stop()
	lb := c.lb
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.capture == c {
		lb.capture = nil
		err = errors.Join(err, c.rd.Close())
	}
	return err
}
