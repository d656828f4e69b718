package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

// TestSecondInstance: a second `xlb run` on the interface a first one serves
// fails with exit 1 and says why in words, in every pairing of modes (an
// AF_XDP socket already bound to the queue, or the XDP hook taken, naming
// the program that holds it), and the first keeps forwarding.
func TestSecondInstance(t *testing.T) {
	testenv.Root(t, "runs two xlb instances in a network namespace")
	l := startLab(t, nil)
	second := filepath.Join(l.dir, "second.toml")
	firstProg := map[string]string{config.ModeAFXDP: "xlb_steer", config.ModeNative: "xlb_lb"}
	for _, first := range []string{config.ModeAFXDP, config.ModeNative} {
		if err := l.startXLB(withMode(configText(l.socketPath(), 0, []int{1, 1, 1}), first), io.Discard); err != nil {
			t.Fatal(err)
		}
		var progID uint32
		if err := l.lb.Do(func() error {
			link, err := netlink.LinkByName(lab.HostLink)
			if err == nil && link.Attrs().Xdp != nil {
				progID = link.Attrs().Xdp.ProgId
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		hookTaken := fmt.Sprintf("%s already has an XDP program attached (id %d: %s)", lab.HostLink, progID, firstProg[first])
		for _, mode := range modes {
			want := hookTaken
			if first == config.ModeAFXDP && mode == config.ModeAFXDP {
				// Its socket binds before it attaches.
				want = lab.HostLink + " queue 0 is already bound by another AF_XDP socket"
			}
			if err := os.WriteFile(second, []byte(withMode(configText(filepath.Join(l.dir, "second.sock"), 0, []int{1, 1, 1}), mode)), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := l.lb.Command(ctx, l.bin, "run", "-c", second).CombinedOutput()
			cancel()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitFail || !strings.Contains(string(out), want) {
				t.Errorf("second instance (%s beside %s): %v, want exit %d and %q:\n%s", mode, first, err, exitFail, want, out)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		served, failed := sendRequests(ctx, l, 30, 4)
		cancel()
		if failed > 0 {
			t.Errorf("first instance (%s) after the second one failed: %d of 30 requests failed, served %v", first, failed, served)
		}
		if err := l.stopXLB(); err != nil {
			t.Fatal(err)
		}
	}
}
