package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

// A datapath that dies takes xlb down with it: deleting the interface under
// a running `xlb run` (the workers' queues and the XDP program go with it)
// makes it log why and exit non-zero within seconds, in both modes, rather
// than run on forwarding nothing.
func TestRunExitsWhenTheInterfaceIsDeleted(t *testing.T) {
	exitsWhenBroken(t, "was deleted", func(l *lbLab) error {
		return l.lb.Do(func() error {
			link, err := netlink.LinkByName(lab.HostLink)
			if err != nil {
				return err
			}
			return netlink.LinkDel(link)
		})
	})
}

// Detaching xlb's XDP program from its interface (as `bpftool link detach`
// would) is noticed the same way.
func TestRunExitsWhenItsProgramIsDetached(t *testing.T) {
	exitsWhenBroken(t, "XDP program was detached", func(l *lbLab) error {
		var prog ebpf.ProgramID
		err := l.lb.Do(func() error {
			nl, err := netlink.LinkByName(lab.HostLink)
			if err != nil {
				return err
			}
			if x := nl.Attrs().Xdp; x != nil && x.Attached {
				prog = ebpf.ProgramID(x.ProgId)
			}
			return nil
		})
		if err != nil || prog == 0 {
			return fmt.Errorf("no XDP program on the balancer's interface: %v", err)
		}
		it := new(link.Iterator)
		defer it.Close()
		for it.Next() {
			info, err := it.Link.Info()
			if err == nil && info.Type == link.XDPType && info.Program == prog {
				return it.Link.Detach()
			}
		}
		return errors.Join(errors.New("no bpf_link holds xlb's XDP program"), it.Err())
	})
}

// exitsWhenBroken runs xlb in each mode, breaks its datapath with breakIt,
// and wants it to exit non-zero within seconds, logging want.
func exitsWhenBroken(t *testing.T, want string, breakIt func(*lbLab) error) {
	testenv.Root(t, "creates network namespaces and attaches XDP programs")
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			l, logw := labForTest(t, func(dir string) (*lbLab, error) {
				return newLBLab(fmt.Sprintf("xlbt%d", os.Getpid()%100000), xlbBin, dir)
			})
			cfg := withMode(configText(l.socketPath(), 80, []int{1, 1, 1}), mode)
			if err := l.startXLB(cfg, logw); err != nil {
				t.Fatal(err)
			}
			if err := breakIt(l); err != nil {
				t.Fatal(err)
			}
			select {
			case werr := <-l.xlbDone:
				l.xlb = nil // exited: nothing for the teardown to stop
				if werr == nil {
					t.Fatal("xlb run exited 0 with a broken datapath")
				}
				t.Logf("xlb run: %v", werr)
			case <-time.After(15 * time.Second):
				t.Fatal("xlb run still running 15s after its datapath broke")
			}
			log := logw.String()
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, "level=ERROR") {
					t.Log(line)
				}
			}
			if !strings.Contains(log, "datapath failed") || !strings.Contains(log, want) {
				t.Errorf("the reason (%q) is not logged:\n%s", want, log)
			}
		})
	}
}
