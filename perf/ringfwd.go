package perf

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/perf/procstat"
	"github.com/xlbproject/xlb/ring"
)

// idlePollMs bounds how long an idle forwarder sleeps in poll(2) before it
// looks at its stop flag again.
const idlePollMs = 100

// maxBatch bounds the forwarders' batch arrays.
const maxBatch = 256

// ringFwd is the AF_XDP transport ceiling: xlb's ring.Socket with the loop
// of datapath.Worker, minus the balancer's work. It rewrites the MACs
// (toward the sink) and transmits each frame on the queue it came from.
type ringFwd struct {
	xsk  *labprogs.XSK
	link link.Link
	sock *ring.Socket
	loop forwarderThread

	dst, src [6]byte
	batch    int
	spin     bool

	rxPackets, txPackets atomic.Uint64
	kicks, polls, full   atomic.Uint64

	rx [maxBatch]ring.Desc
}

func startRingFwd(p *perfLab, o Options, _ setup) (_ instance, err error) {
	t := o.Tuning
	f := &ringFwd{dst: p.sink.MAC, src: p.lb.MAC, batch: t.Batch, spin: t.Spin}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.teardown())
		}
	}()
	if f.xsk, err = labprogs.LoadXSK(); err != nil {
		return nil, err
	}
	err = p.lb.Host.Do(func() error {
		var err error
		f.sock, err = ring.Open(ring.Config{
			Ifindex: p.lb.Ifindex, Ifname: p.lb.Name, Queue: 0,
			FrameSize: 2048, FrameCount: uint32(2 * t.Ring),
			FillSize: uint32(t.Ring), CompletionSize: uint32(t.Ring), RxSize: uint32(t.Ring), TxSize: uint32(t.Ring),
			ZeroCopy: ring.ZeroCopyAuto, NeedWakeup: true, TxBudget: uint32(t.TxBudget), BusyPoll: t.BusyPoll,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := f.xsk.SetSocket(0, f.sock.FD()); err != nil {
		return nil, err
	}
	if f.link, err = attach(p.lb.Host, f.xsk.Program(), p.lb.Ifindex); err != nil {
		return nil, err
	}
	f.loop.start(o.LBCPUs[0], f.run)
	return f, nil
}

// run is datapath.Worker's loop with the per-packet work replaced by a MAC
// rewrite.
func (f *ringFwd) run(stop *atomic.Bool) error {
	for !stop.Load() {
		n := f.sock.Receive(f.rx[:f.batch])
		if n > 0 {
			for _, d := range f.rx[:n] {
				fr := f.sock.Frame(d)
				copy(fr[0:6], f.dst[:])
				copy(fr[6:12], f.src[:])
			}
			f.transmit(f.rx[:n], stop)
			f.rxPackets.Add(uint64(n))
		}
		f.sock.Complete()
		f.sock.Refill()
		if n > 0 || f.spin {
			continue
		}
		pending := f.sock.TxPending() > 0
		if pending {
			f.kick()
		}
		f.polls.Add(1)
		if _, err := f.sock.Poll(idlePollMs, pending); err != nil {
			return err
		}
	}
	return nil
}

// transmit is datapath.Worker.transmit: never drop a batch, reap, kick and
// retry, waiting in poll for room.
func (f *ringFwd) transmit(descs []ring.Desc, stop *atomic.Bool) {
	for len(descs) > 0 {
		k := f.sock.Transmit(descs)
		f.txPackets.Add(uint64(k))
		descs = descs[k:]
		f.kick()
		if len(descs) == 0 {
			return
		}
		f.full.Add(1)
		if f.sock.Complete() == 0 {
			if _, err := f.sock.Poll(1, true); err != nil || stop.Load() {
				for _, d := range descs {
					f.sock.Recycle(d.Addr)
				}
				return
			}
		}
	}
}

func (f *ringFwd) kick() {
	f.kicks.Add(1)
	_ = f.sock.Kick() // a failed kick is retried by the next one
}

func (f *ringFwd) counters() (map[string]uint64, error) {
	st, err := f.sock.Stats()
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{
		"rx_packets":         f.rxPackets.Load(),
		"tx_packets":         f.txPackets.Load(),
		"kicks":              f.kicks.Load(),
		"polls":              f.polls.Load(),
		"tx_ring_full":       f.full.Load(),
		"rx_dropped":         st.RxDropped,
		"rx_ring_full":       st.RxRingFull,
		"rx_fill_ring_empty": st.RxFillRingEmptyDescs,
		"tx_ring_empty":      st.TxRingEmptyDescs,
		"rx_invalid_descs":   st.RxInvalidDescs,
		"tx_invalid_descs":   st.TxInvalidDescs,
	}
	return m, f.loop.cpuTime(m)
}

func (f *ringFwd) close() error { return f.teardown() }

// teardown detaches the program first (traffic goes back to the kernel),
// then stops the loop and closes the socket and the program.
func (f *ringFwd) teardown() error {
	var errs []error
	if f.link != nil {
		errs = append(errs, f.link.Close())
	}
	errs = append(errs, f.loop.halt())
	if f.sock != nil {
		errs = append(errs, f.sock.Close())
	}
	if f.xsk != nil {
		errs = append(errs, f.xsk.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("perf: ring-fwd: %w", err)
	}
	return nil
}

// forwarderThread runs a forwarding loop on its own OS thread pinned to
// one CPU, as datapath.Worker does, until halted.
type forwarderThread struct {
	stop atomic.Bool
	done chan error
	tid  atomic.Int32 // the thread's id once started, for its CPU time
}

// cpuTime adds the thread's user and system time to m, as counters
// "user_ns" and "system_ns".
func (t *forwarderThread) cpuTime(m map[string]uint64) error {
	tid := t.tid.Load()
	if tid == 0 {
		return nil
	}
	task, err := procstat.ReadTask(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return err
	}
	m["user_ns"], m["system_ns"] = task.Nanoseconds()
	return nil
}

func (t *forwarderThread) start(cpu int, loop func(stop *atomic.Bool) error) {
	t.done = make(chan error, 1)
	go func() {
		// The thread stays locked: its affinity changed, and it ends with
		// the goroutine rather than return to the scheduler pinned.
		runtime.LockOSThread()
		t.tid.Store(int32(unix.Gettid()))
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.done <- fmt.Errorf("pin forwarder to cpu %d: %w", cpu, err)
			return
		}
		t.done <- loop(&t.stop)
	}()
}

// halt stops the loop and returns its error; it does nothing if the loop
// was never started.
func (t *forwarderThread) halt() error {
	if t.done == nil {
		return nil
	}
	t.stop.Store(true)
	err := <-t.done
	t.done = nil
	return err
}
