package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// checkEvery is how often the engine checks that its XDP program is still
// the one attached to the interface.
const checkEvery = time.Second

// A datapath that stops forwarding must not go unnoticed: the engine
// watches for a worker that returns (a failed CPU pin, a socket error), the
// interface being deleted, and its XDP program being detached. Any of these
// is fatal: it is logged at error level, Stats shows it, and Failed is
// closed so that `xlb run` stops and exits non-zero rather than run on with
// a dead datapath.

// fail records the engine's first fatal error.
func (e *Engine) fail(err error) {
	e.failOnce.Do(func() {
		e.failErr = err
		e.log.Error("datapath failed", "err", err)
		close(e.failed)
	})
}

// Failed is closed when the datapath has failed for good; Err says why.
func (e *Engine) Failed() <-chan struct{} { return e.failed }

// Err is the fatal error that closed Failed, or nil while the datapath
// runs.
func (e *Engine) Err() error {
	select {
	case <-e.failed:
		return e.failErr
	default:
		return nil
	}
}

// programID is prog's kernel ID, to recognise it on the interface.
func programID(prog *ebpf.Program) (uint32, error) {
	info, err := prog.Info()
	if err != nil {
		return 0, fmt.Errorf("engine: XDP program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("engine: the kernel does not report XDP program IDs")
	}
	return uint32(id), nil
}

// watch starts the watchers; they stop when ctx is done (Close cancels it
// before it halts the workers, so a halt is no failure).
func (e *Engine) watch(ctx context.Context) error {
	for _, w := range e.workers {
		e.watching.Add(1)
		go func() {
			defer e.watching.Done()
			select {
			case <-ctx.Done():
			case <-w.Done():
				err := w.Err()
				if err == nil {
					err = errors.New("stopped")
				}
				e.fail(fmt.Errorf("engine: worker of queue %d: %w", w.Queue, err))
			}
		}()
	}
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { e.log.Warn("link updates", "err", err) },
	})
	if err != nil {
		return fmt.Errorf("engine: subscribe to link updates: %w", err)
	}
	e.watching.Add(1)
	go func() {
		defer e.watching.Done()
		defer close(done)
		t := time.NewTicker(checkEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					e.fail(errors.New("engine: link updates stopped: the interface can no longer be watched"))
					return
				}
				if int(u.Index) == e.ifindex && u.Header.Type == unix.RTM_DELLINK {
					e.fail(fmt.Errorf("engine: interface %s was deleted", e.ifname))
					return
				}
			case <-t.C:
				if err := e.checkAttached(); err != nil {
					e.fail(err)
					return
				}
			}
		}
	}()
	return nil
}

// checkAttached checks that the interface still exists and runs the
// engine's XDP program.
func (e *Engine) checkAttached() error {
	link, err := netlink.LinkByIndex(e.ifindex)
	if err != nil {
		return fmt.Errorf("engine: interface %s: %w", e.ifname, err)
	}
	x := link.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId != e.progID {
		var now uint32
		if x != nil {
			now = x.ProgId
		}
		return fmt.Errorf("engine: the XDP program was detached from %s (program %d attached, want %d)", e.ifname, now, e.progID)
	}
	return nil
}
