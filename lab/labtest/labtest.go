// Package labtest builds labs for tests: the one place that gates a test
// on root (internal/testenv), gives its lab a prefix no other test or run
// uses, and deletes the lab, checking nothing is left, when the test ends,
// pass or fail.
//
// Enter is for tests that drive code which works in "the current network
// namespace" (netlink by interface name, sockets): it moves the test's
// goroutine, locked to its thread, into a host's namespace for the rest of
// the test. Subtests and other goroutines run elsewhere, outside it.
//
// It is a package of its own so that lab, which the xlb binary links for
// its demo, does not import testing.
package labtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

var seq atomic.Uint32

// Prefix returns a namespace prefix unique to this process and call:
// tag, the process ID and a sequence number ("xlbring4242x1").
func Prefix(tag string) string {
	return fmt.Sprintf("%s%dx%d", tag, os.Getpid(), seq.Add(1))
}

// New builds spec for t. It gates t on root first (testenv.Root: skipped
// under -short, failed under CI without root). An empty spec.Prefix gets
// Prefix("xlbt"). When the test ends the lab is closed, after the
// cleanups registered later (Enter, sockets, programs), and any namespace
// with its prefix still there is an error.
func New(t testing.TB, spec lab.Spec) *lab.Lab {
	t.Helper()
	testenv.Root(t, "builds network namespaces and veths")
	if spec.Prefix == "" {
		spec.Prefix = Prefix("xlbt")
	}
	l, err := lab.New(spec)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("labtest: close lab %s: %v", spec.Prefix, err)
		}
		if left, err := lab.Leftovers(spec.Prefix); err != nil || len(left) > 0 {
			t.Errorf("labtest: after closing lab %s, namespaces left: %v %v", spec.Prefix, left, err)
		}
	})
	return l
}

// Enter moves the calling goroutine, locked to its OS thread, into h's
// namespace until t ends; then the thread goes back, or, if it cannot,
// stays locked so that the runtime ends it with the goroutine. Call it
// from the test's own goroutine, after New.
func Enter(t testing.TB, h *lab.Host) {
	t.Helper()
	target, err := netns.GetFromPath(filepath.Join(lab.NetnsDir, h.NS))
	if err != nil {
		t.Fatalf("labtest: open namespace %s: %v", h.NS, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("labtest: current namespace: %v", err)
	}
	if err := netns.Set(target); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("labtest: enter namespace %s: %v", h.NS, err)
	}
	t.Cleanup(func() {
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			t.Errorf("labtest: return from namespace %s (thread discarded): %v", h.NS, err)
			return
		}
		runtime.UnlockOSThread()
	})
}
