package perf

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/lab"
)

// genChunk is the repeat count of one live-frame test run: tens of
// milliseconds of traffic, so a stop request is seen quickly.
const genChunk = 1 << 16

// loIfindex is lo's interface index, in every namespace.
const loIfindex = 1

// generator is traffic in flight: one thread per CPU, each in the
// generator's namespace, pinned, looping over live-frame test runs until
// halted or until its time limit.
type generator struct {
	pin  link.Link // the program on lo
	stop atomic.Bool
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

// startGenerator starts sending g's frames (built for h's link) from one
// thread per CPU in cpus, the i-th thread as if from queue i mod queues.
// Every thread stops by itself after limit. The
// program is first attached to h's lo, in generic mode, where it sees
// nothing and passes anything: attached, it stays registered with the XDP
// dispatcher, which each test run would otherwise redo (measured at ~25 ms
// a run here).
func startGenerator(h *lab.Host, g *labprogs.Gen, cpus []int, queues int, limit time.Duration) (*generator, error) {
	gr := &generator{}
	err := h.Do(func() error {
		var err error
		gr.pin, err = link.AttachXDP(link.XDPOptions{Program: g.Program(), Interface: loIfindex, Flags: link.XDPGenericMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("perf: attach generator to lo in %s: %w", h.NS, err)
	}
	deadline := time.Now().Add(limit)
	for i, cpu := range cpus {
		queue := i % queues
		gr.wg.Add(1)
		go func() {
			defer gr.wg.Done()
			err := h.Do(func() error {
				return pinned(cpu, func() error {
					for !gr.stop.Load() && time.Now().Before(deadline) {
						if err := g.Run(queue, genChunk); err != nil {
							return err
						}
					}
					return nil
				})
			})
			if err != nil {
				gr.mu.Lock()
				gr.errs = append(gr.errs, fmt.Errorf("perf: generator on cpu %d: %w", cpu, err))
				gr.mu.Unlock()
				gr.stop.Store(true)
			}
		}()
	}
	return gr, nil
}

// failed returns the threads' errors so far, if any.
func (gr *generator) failed() error {
	gr.mu.Lock()
	defer gr.mu.Unlock()
	return errors.Join(gr.errs...)
}

// halt stops every thread, waits for them, detaches the program and
// returns their errors.
func (gr *generator) halt() error {
	gr.stop.Store(true)
	gr.wg.Wait()
	return errors.Join(gr.failed(), gr.pin.Close())
}

// pinned runs fn on the calling goroutine's thread restricted to cpu, then
// gives the thread its affinity back. The caller must have locked the
// goroutine to its thread (Host.Do does), and the thread returns to the
// runtime's pool afterwards, so it must not stay pinned.
func pinned(cpu int, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("read cpu affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to cpu %d: %w", cpu, err)
	}
	err := fn()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil {
		// The thread would go back to the pool pinned: keep it locked so
		// that the runtime ends it with its goroutine instead.
		runtime.LockOSThread()
		return errors.Join(err, fmt.Errorf("restore cpu affinity: %w", rerr))
	}
	return err
}
