package datapath

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/capture"
	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/ring"
)

// maxBatch bounds the batch arrays that live inside the Worker, so the loop
// slices fixed arrays and never allocates.
const maxBatch = 256

// idlePollMs bounds how long an idle worker sleeps in poll(2) before it looks
// at its stop flag again.
const idlePollMs = 100

// Worker forwards the traffic of one NIC queue. Its loop owns its thread.
type Worker struct {
	Queue int
	CPU   int

	sock  *ring.Socket
	plan  *atomic.Pointer[Plan]
	fwd   *Forwarder
	batch int
	spin  bool
	stop  atomic.Bool
	// capture is the ring of the capture running on this queue, nil when
	// none: loaded once per batch.
	capture atomic.Pointer[capture.Ring]
	done    chan struct{} // closed when the loop has returned
	err     error         // why the loop returned; read after done

	// flows is the flow table's counters as of the last batch: the table
	// itself is the worker's alone.
	flows flowStats

	// A count of flows by backend: FlowsByBackend bumps censusReq and
	// waits on census (buffered 1) for the answer to its number; the loop
	// walks its tables in steps while censusReq is ahead of censusDone
	// (its own, like censusOn, the request the walk under way is for).
	censusReq            atomic.Uint64
	censusOn, censusDone uint64
	census               chan censusAnswer
	censusMu             sync.Mutex

	rxPackets, rxBytes  atomic.Uint64
	txPackets, txBytes  atomic.Uint64
	kicks, txRingFull   atomic.Uint64
	polls, kickFailures atomic.Uint64
	rxWakeups           atomic.Uint64

	rx [maxBatch]ring.Desc
	tx [maxBatch]ring.Desc
}

// NewWorker returns the worker for queue, to run on cpu: it serves sock
// with fwd, forwarding by whatever plan is published in plan (which must be
// set before Start), at most batch frames at a time. With spin it never
// sleeps in poll(2) when idle.
func NewWorker(queue, cpu int, sock *ring.Socket, plan *atomic.Pointer[Plan], fwd *Forwarder, batch int, spin bool) *Worker {
	return &Worker{Queue: queue, CPU: cpu, sock: sock, plan: plan, fwd: fwd, batch: min(batch, maxBatch), spin: spin, done: make(chan struct{}), census: make(chan censusAnswer, 1)}
}

// Batch is the worker's batch size (capped at the loop's arrays).
func (w *Worker) Batch() int { return w.batch }

// Start runs the loop on a new goroutine locked to its own OS thread and
// pinned to the worker's CPU.
func (w *Worker) Start() {
	go func() {
		defer close(w.done)
		runtime.LockOSThread()
		// The thread stays locked: pinning changed its affinity, and an
		// unlocked goroutine would hand that thread to the scheduler.
		var set unix.CPUSet
		set.Set(w.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			w.err = fmt.Errorf("datapath: pin queue %d worker to cpu %d: %w", w.Queue, w.CPU, err)
			return
		}
		w.err = w.loop()
	}()
}

// Done is closed when the loop has returned: after Halt, or on its own
// because of an error (Err), which leaves the queue unserved.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err is why the loop returned (nil when Halt stopped it). Call it after
// Done is closed.
func (w *Worker) Err() error {
	<-w.done
	return w.err
}

// Halt asks the loop to return and waits for it; it returns the loop's
// error.
func (w *Worker) Halt() error {
	w.stop.Store(true)
	return w.Err()
}

// idleStep is what the loop does after a round, before the next one.
type idleStep uint8

const (
	stepNone idleStep = iota // go round again at once
	stepWake                 // a poll(2) that does not sleep: the kernel asked for one
	stepPoll                 // sleep in poll(2) until packets arrive or idlePollMs pass
)

// nextStep decides how a round that received n frames ends. A worker that
// is not spinning sleeps in poll(2) when idle, which also serves any
// wakeup. A spinning worker never sleeps, but when the fill ring's
// need_wakeup flag is set the driver has stopped receiving until the
// socket is polled: without that poll a spinning worker would wait for
// packets forever.
func nextStep(n int, spin, rxWakeup bool) idleStep {
	switch {
	case n == 0 && !spin:
		return stepPoll
	case rxWakeup:
		return stepWake
	}
	return stepNone
}

func (w *Worker) loop() error {
	epoch := time.Now()
	idle := true // the last receive found nothing
	for !w.stop.Load() {
		p := w.plan.Load()
		// One clock read per batch: the flow table's idle timeouts need
		// milliseconds, not a time.Now per packet.
		w.fwd.BeginBatch(p, time.Since(epoch))
		w.censusStep(idle)
		n := w.sock.Receive(w.rx[:w.batch])
		idle = n == 0
		if n > 0 {
			var ntx int
			var rxBytes, txBytes uint64
			if r := w.capture.Load(); r == nil {
				ntx, rxBytes, txBytes = w.forward(p, n)
			} else {
				ntx, rxBytes, txBytes = w.forwardCaptured(p, r, n)
			}
			w.transmit(w.tx[:ntx])
			w.rxPackets.Add(uint64(n))
			w.rxBytes.Add(rxBytes)
			w.txPackets.Add(uint64(ntx))
			w.txBytes.Add(txBytes)
			w.flows.publish(w.fwd.FlowStats())
		}
		w.sock.Complete()
		w.sock.Refill()
		var timeout int
		switch nextStep(n, w.spin, w.sock.NeedsRxWakeup()) {
		case stepNone:
			continue
		case stepWake:
			w.rxWakeups.Add(1)
		case stepPoll:
			timeout = idlePollMs
		}
		pending := w.sock.TxPending() > 0
		if pending {
			w.kick()
		}
		w.polls.Add(1)
		if _, err := w.sock.Poll(timeout, pending); err != nil {
			return fmt.Errorf("datapath: queue %d: %w", w.Queue, err)
		}
	}
	return nil
}

// forward forwards the n received frames and queues the ones to send in
// w.tx.
func (w *Worker) forward(p *Plan, n int) (ntx int, rxBytes, txBytes uint64) {
	for i := range w.rx[:n] {
		d := w.rx[i]
		rxBytes += uint64(d.Len)
		frame, off := w.sock.FrameOf(d)
		nOff, nLen, ok := w.fwd.Forward(p, frame, off, int(d.Len))
		if !ok {
			w.sock.Recycle(d.Addr)
			continue
		}
		w.tx[ntx] = w.sock.At(d, nOff, nLen)
		txBytes += uint64(nLen)
		ntx++
	}
	return ntx, rxBytes, txBytes
}

// forwardCaptured is forward while a capture runs on the queue: each frame
// the filter matches is copied into r as received (before Forward rewrites
// it in place) and as sent. A full ring loses the copy, never the frame.
func (w *Worker) forwardCaptured(p *Plan, r *capture.Ring, n int) (ntx int, rxBytes, txBytes uint64) {
	now := time.Now().UnixNano() // capture timestamps are wall clock, once per batch
	f := &r.Filter
	for i := range w.rx[:n] {
		d := w.rx[i]
		rxBytes += uint64(d.Len)
		frame, off := w.sock.FrameOf(d)
		in := frame[off : off+int(d.Len)]
		match := f.MatchRX(in)
		var m *capture.Meta
		if match && f.Direction&capture.RX != 0 {
			var buf []byte
			var ok bool
			if m, buf, ok = r.Reserve(); ok {
				m.CapLen = uint32(copy(buf, in))
			}
		}
		w.fwd.forgetBackend()
		nOff, nLen, ok := w.fwd.Forward(p, frame, off, int(d.Len))
		if match {
			v := w.fwd.verdict(ok)
			if f.MatchBackend(v.BackendAddr()) {
				if f.Direction&capture.RX != 0 {
					w.captured(r, m, capture.Meta{Time: now, OrigLen: uint32(d.Len), Queue: uint16(w.Queue), Dir: capture.RX, Verdict: v})
				}
				if ok && f.Direction&capture.TX != 0 {
					out := frame[nOff : nOff+nLen]
					m, buf, room := r.Reserve()
					if room {
						m.CapLen = uint32(copy(buf, out))
					}
					w.captured(r, m, capture.Meta{Time: now, OrigLen: uint32(nLen), Queue: uint16(w.Queue), Dir: capture.TX, Verdict: v})
				}
			}
		}
		if !ok {
			w.sock.Recycle(d.Addr)
			continue
		}
		w.tx[ntx] = w.sock.At(d, nOff, nLen)
		txBytes += uint64(nLen)
		ntx++
	}
	return ntx, rxBytes, txBytes
}

// captured commits the reserved slot m with meta (keeping the length the
// copy took), or counts the frame lost when there was no slot.
func (w *Worker) captured(r *capture.Ring, m *capture.Meta, meta capture.Meta) {
	if m == nil {
		r.Lose()
		return
	}
	meta.CapLen = m.CapLen
	*m = meta
	r.Commit()
}

// StartCapture gives the worker the capture ring r; it fails when another
// capture holds the queue.
func (w *Worker) StartCapture(r *capture.Ring) bool { return w.capture.CompareAndSwap(nil, r) }

// StopCapture takes r back. The worker may still be finishing a batch
// into r: its frames are committed or lost as usual.
func (w *Worker) StopCapture(r *capture.Ring) { w.capture.CompareAndSwap(r, nil) }

// transmit queues every descriptor of a batch. A batch that does not fit the
// TX ring is never dropped: it reaps completions, kicks the kernel and tries
// again, waiting in poll(2) for room if the kernel has not freed any.
func (w *Worker) transmit(descs []ring.Desc) {
	for len(descs) > 0 {
		k := w.sock.Transmit(descs)
		descs = descs[k:]
		w.kick()
		if len(descs) == 0 {
			return
		}
		w.txRingFull.Add(1)
		if w.sock.Complete() == 0 {
			if _, err := w.sock.Poll(1, true); err != nil || w.stop.Load() {
				// Shutting down or the socket is broken: give the frames
				// back rather than spin.
				for _, d := range descs {
					w.sock.Recycle(d.Addr)
				}
				return
			}
		}
	}
}

func (w *Worker) kick() {
	w.kicks.Add(1)
	if err := w.sock.Kick(); err != nil {
		w.kickFailures.Add(1)
	}
}

// WorkerCounters is a snapshot of one worker's counters (each read
// atomically; the set is not one instant).
type WorkerCounters struct {
	RxPackets, RxBytes  uint64
	TxPackets, TxBytes  uint64
	Kicks, KickFailures uint64
	TxRingFull          uint64
	Polls               uint64
	// RxWakeups counts the polls a spinning worker made because the fill
	// ring asked for a wakeup.
	RxWakeups uint64
	Flows     flowtable.Stats // as of the last batch
	Drops     [NumDrops]uint64
	Events    [NumEvents]uint64
}

// Counters reads the worker's counters; it is safe from any goroutine.
func (w *Worker) Counters() WorkerCounters {
	c := WorkerCounters{
		RxPackets: w.rxPackets.Load(), RxBytes: w.rxBytes.Load(),
		TxPackets: w.txPackets.Load(), TxBytes: w.txBytes.Load(),
		Kicks: w.kicks.Load(), KickFailures: w.kickFailures.Load(),
		TxRingFull: w.txRingFull.Load(), Polls: w.polls.Load(), RxWakeups: w.rxWakeups.Load(),
		Flows: flowtable.Stats{
			Entries: w.flows.entries.Load(), Capacity: w.flows.capacity.Load(),
			Hits: w.flows.hits.Load(), Misses: w.flows.misses.Load(), Inserts: w.flows.inserts.Load(),
			Evictions: w.flows.evictions.Load(), Expired: w.flows.expired.Load(),
		},
	}
	for d := range NumDrops {
		c.Drops[d] = w.fwd.Drops(d)
	}
	for ev := range NumEvents {
		c.Events[ev] = w.fwd.Events(ev)
	}
	return c
}

// censusSteps is how many flow table buckets a busy worker walks between
// two batches for FlowsByBackend: 2048 buckets (16384 slots) take about
// 50 us (flowtable's BenchmarkCensus), which the RX ring absorbs even at
// line rate; the default tables take 32 batches.
const censusSteps = 2048

type censusAnswer struct {
	req    uint64
	counts map[uint32]uint64
}

// censusStep advances a requested count of flows by backend: in steps of
// censusSteps buckets after a batch, all at once when the worker is idle
// (nothing waits for it). Without a request it is one atomic load.
func (w *Worker) censusStep(idle bool) {
	req := w.censusReq.Load()
	if req == w.censusDone {
		return
	}
	step := censusSteps
	if idle {
		step = math.MaxInt
	}
	counts := w.fwd.CensusStep(step, req != w.censusOn)
	w.censusOn = req
	if counts == nil {
		return
	}
	w.censusDone = req
	// Never blocks: an earlier answer nobody took is replaced (the loop is
	// the only sender, so the second try always finds room).
	for {
		select {
		case w.census <- censusAnswer{req, counts}:
			return
		default:
			select {
			case <-w.census:
			default:
			}
		}
	}
}

// FlowsByBackend asks the worker to count its live flows by backend ID and
// waits for the answer. The worker owns its flow tables without locks, so
// it counts them itself, between batches (a blocked worker wakes within
// idlePollMs); reading them from here would race with every packet. Not
// asking costs the worker one atomic load per batch.
func (w *Worker) FlowsByBackend(ctx context.Context) (map[uint32]uint64, error) {
	w.censusMu.Lock()
	defer w.censusMu.Unlock()
	req := w.censusReq.Add(1)
	for {
		select {
		case a := <-w.census:
			if a.req == req {
				return a.counts, nil
			}
			// The answer to an earlier caller that gave up.
		case <-ctx.Done():
			return nil, fmt.Errorf("datapath: queue %d: flow count: %w", w.Queue, ctx.Err())
		}
	}
}

// Socket is the worker's AF_XDP socket (for its kernel statistics).
func (w *Worker) Socket() *ring.Socket { return w.sock }

// flowStats mirrors flowtable.Stats for readers on other goroutines.
type flowStats struct {
	hits, misses, inserts, evictions, expired, entries, capacity atomic.Uint64
}

func (f *flowStats) publish(s flowtable.Stats) {
	f.hits.Store(s.Hits)
	f.misses.Store(s.Misses)
	f.inserts.Store(s.Inserts)
	f.evictions.Store(s.Evictions)
	f.expired.Store(s.Expired)
	f.entries.Store(s.Entries)
	f.capacity.Store(s.Capacity)
}
