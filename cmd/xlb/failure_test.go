package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

// A datapath that dies takes xlb down with it: deleting the interface under
// a running `xlb run` (the workers' queues and the XDP program go with it)
// makes it log why and exit non-zero within seconds, in both modes, rather
// than run on forwarding nothing.
func TestRunExitsWhenTheInterfaceIsDeleted(t *testing.T) {
	testenv.Root(t, "creates network namespaces and attaches XDP programs")
	for _, mode := range []string{"afxdp", "native"} {
		t.Run(mode, func(t *testing.T) {
			l, logw := labForTest(t, func(dir string) (*lbLab, error) {
				return newLBLab(fmt.Sprintf("xlbt%d", os.Getpid()%100000), xlbBin, dir)
			})
			cfg := strings.Replace(configText(l.socketPath(), 80, []int{1, 1, 1}), "queues = [0]", "queues = [0]\nmode = \""+mode+"\"", 1)
			if err := l.startXLB(cfg, logw); err != nil {
				t.Fatal(err)
			}
			err := l.lb.Do(func() error {
				link, err := netlink.LinkByName(lab.HostLink)
				if err != nil {
					return err
				}
				return netlink.LinkDel(link)
			})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case werr := <-l.xlbDone:
				l.xlb = nil // exited: nothing for the teardown to stop
				if werr == nil {
					t.Fatal("xlb run exited 0 after its interface was deleted")
				}
				t.Logf("xlb run: %v", werr)
				for _, line := range strings.Split(logw.String(), "\n") {
					if strings.Contains(line, "level=ERROR") {
						t.Log(line)
					}
				}
			case <-time.After(15 * time.Second):
				t.Fatal("xlb run still running 15s after its interface was deleted")
			}
			if log := logw.String(); !strings.Contains(log, "datapath failed") || !strings.Contains(log, "deleted") {
				t.Errorf("the reason is not logged:\n%s", log)
			}
		})
	}
}
