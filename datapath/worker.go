package datapath

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/ring"
)

// maxBatch bounds the batch arrays that live inside the Worker, so the loop
// slices fixed arrays and never allocates.
const maxBatch = 256

// idlePollMs bounds how long an idle worker sleeps in poll(2) before it looks
// at its stop flag again.
const idlePollMs = 100

// Worker forwards the traffic of one NIC queue. Run owns its thread.
type Worker struct {
	Queue int
	CPU   int

	sock  *ring.Socket
	plan  *atomic.Pointer[Plan]
	fwd   *Forwarder
	batch int
	spin  bool
	stop  atomic.Bool
	done  chan error

	// flows is the flow table's counters as of the last batch: the table
	// itself is the worker's alone.
	flows flowStats

	rxPackets, rxBytes  atomic.Uint64
	txPackets, txBytes  atomic.Uint64
	kicks, txRingFull   atomic.Uint64
	polls, kickFailures atomic.Uint64

	rx [maxBatch]ring.Desc
	tx [maxBatch]ring.Desc
}

func newWorker(queue, cpu int, sock *ring.Socket, plan *atomic.Pointer[Plan], fwd *Forwarder, batch int, spin bool) *Worker {
	return &Worker{Queue: queue, CPU: cpu, sock: sock, plan: plan, fwd: fwd, batch: min(batch, maxBatch), spin: spin, done: make(chan error, 1)}
}

// start runs the loop on a new goroutine locked to its own OS thread and
// pinned to the worker's CPU.
func (w *Worker) start() {
	go func() {
		runtime.LockOSThread()
		// The thread stays locked: pinning changed its affinity, and an
		// unlocked goroutine would hand that thread to the scheduler.
		var set unix.CPUSet
		set.Set(w.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			w.done <- fmt.Errorf("datapath: pin queue %d worker to cpu %d: %w", w.Queue, w.CPU, err)
			return
		}
		w.done <- w.loop()
	}()
}

// halt asks the loop to return and waits for it.
func (w *Worker) halt() error {
	w.stop.Store(true)
	return <-w.done
}

func (w *Worker) loop() error {
	umem := w.sock.UMEM()
	fsize := uint64(w.sock.FrameSize())
	epoch := time.Now()
	var seen *Plan
	for !w.stop.Load() {
		// One clock read per batch: the flow table's idle timeouts need
		// milliseconds, not a time.Now per packet.
		w.fwd.now = uint32(time.Since(epoch) / time.Millisecond)
		w.fwd.flows.Sweep(w.fwd.now, 8)
		w.fwd.flows6.Sweep(w.fwd.now, 8)
		n := w.sock.Receive(w.rx[:w.batch])
		if n > 0 {
			p := w.plan.Load()
			if p != seen {
				// A new plan: take its flow timeouts (validated by config).
				_ = w.fwd.flows.SetTimeouts(p.tcpTimeout, p.udpTimeout)
				_ = w.fwd.flows6.SetTimeouts(p.tcpTimeout, p.udpTimeout)
				seen = p
			}
			ntx := 0
			var rxBytes, txBytes uint64
			for i := range w.rx[:n] {
				d := w.rx[i]
				rxBytes += uint64(d.Len)
				base := d.Addr &^ (fsize - 1)
				off := int(d.Addr - base)
				frame := umem[base : base+fsize]
				nOff, nLen, ok := w.fwd.Forward(p, frame, off, int(d.Len))
				if !ok {
					w.sock.Recycle(d.Addr)
					continue
				}
				w.tx[ntx] = ring.Desc{Addr: base + uint64(nOff), Len: uint32(nLen)}
				txBytes += uint64(nLen)
				ntx++
			}
			w.transmit(w.tx[:ntx])
			w.rxPackets.Add(uint64(n))
			w.rxBytes.Add(rxBytes)
			w.txPackets.Add(uint64(ntx))
			w.txBytes.Add(txBytes)
			w.flows.publish(w.fwd.flows.Stats(), w.fwd.flows6.Stats())
		}
		w.sock.Complete()
		w.sock.Refill()
		if n > 0 || w.spin {
			continue
		}
		pending := w.sock.TxPending() > 0
		if pending {
			w.kick()
		}
		w.polls.Add(1)
		if _, err := w.sock.Poll(idlePollMs, pending); err != nil {
			return fmt.Errorf("datapath: queue %d: %w", w.Queue, err)
		}
	}
	return nil
}

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

// flowStats mirrors flowtable.Stats for readers on other goroutines.
type flowStats struct {
	hits, misses, inserts, evictions, expired, entries, capacity atomic.Uint64
}

// publish stores the sum of the IPv4 and IPv6 tables' counters.
func (f *flowStats) publish(s4, s6 flowtable.Stats) {
	s := flowtable.Stats{
		Hits: s4.Hits + s6.Hits, Misses: s4.Misses + s6.Misses, Inserts: s4.Inserts + s6.Inserts,
		Evictions: s4.Evictions + s6.Evictions, Expired: s4.Expired + s6.Expired,
		Entries: s4.Entries + s6.Entries, Capacity: s4.Capacity + s6.Capacity,
	}
	f.hits.Store(s.Hits)
	f.misses.Store(s.Misses)
	f.inserts.Store(s.Inserts)
	f.evictions.Store(s.Evictions)
	f.expired.Store(s.Expired)
	f.entries.Store(s.Entries)
	f.capacity.Store(s.Capacity)
}
