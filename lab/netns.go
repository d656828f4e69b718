package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, the place
// `ip netns` reads them from.
const NetnsDir = "/run/netns"

// ErrExists is returned by New when a namespace it would create already
// exists, typically a leftover of a crashed run: Cleanup(prefix) removes it.
var ErrExists = errors.New("lab: namespace already exists")

// onThread runs fn on a fresh goroutine locked to its OS thread. If enter
// is not nil, it runs first on that thread to switch it into a namespace.
// Whatever fn does to the thread's network namespace, the thread goes back
// to the caller's namespace afterwards; if it cannot, the thread stays
// locked and so dies with its goroutine instead of running other
// goroutines in the wrong namespace. A panic in fn is re-raised in the
// caller. Every file descriptor it opens is closed before it returns, so
// callers (and tests counting descriptors) see none left over.
func onThread(enter func() error, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: get current netns: %w", err)}
			return
		}
		var r result
		if enter != nil {
			r.err = enter() // a failed setns leaves the thread where it was
		}
		if r.err == nil {
			func() {
				defer func() {
					if v := recover(); v != nil {
						r.panicked, r.value = true, v
					}
				}()
				r.err = fn()
			}()
		}
		restored := netns.Set(orig)
		orig.Close()
		if restored != nil {
			r.err = errors.Join(r.err, fmt.Errorf("lab: restore netns (thread discarded): %w", restored))
			done <- r
			return // still locked: the runtime ends this thread
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.value)
	}
	return r.err
}

// createNamed makes a new network namespace bind-mounted at
// NetnsDir/name and returns an open handle on it. It creates the mount
// point with O_EXCL, so it never takes over an existing namespace, and
// removes it again if the rest fails.
func createNamed(name string) (netns.NsHandle, error) {
	if err := sharedNetnsDir(); err != nil {
		return netns.None(), err
	}
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, fs.ErrExist) {
		return netns.None(), fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("lab: create %s: %w", path, err)
	}
	f.Close()
	handle := netns.None()
	err = onThread(nil, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("lab: unshare netns: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("lab: bind-mount netns on %s: %w", path, err)
		}
		h, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("lab: open %s: %w", path, err)
		}
		handle = h
		return nil
	})
	if err != nil {
		if handle.IsOpen() {
			handle.Close()
		}
		// The mount may or may not exist; the file is ours either way.
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return netns.None(), err
	}
	return handle, nil
}

// sharedNetnsDir makes NetnsDir a shared mount point, as `ip netns add`
// does before its first namespace. Otherwise the first `ip netns add` run
// by anyone while a lab exists bind-mounts the directory over itself and
// hides the lab's namespace mounts under it: they can no longer be
// unmounted by path, and Close fails with EBUSY, leaving them behind. Made
// a mount point first, the later `ip netns add` only sets its propagation.
func sharedNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("lab: create %s: %w", NetnsDir, err)
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("lab: make %s a shared mount point: %w", NetnsDir, err)
	}
	return nil
}

// deleteNamed unmounts and removes NetnsDir/name. The namespace itself,
// with its links, goes away once nothing else holds it (a process inside,
// a socket, an open handle). A name already gone is not an error.
func deleteNamed(name string) error {
	path := filepath.Join(NetnsDir, name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		// EINVAL: not a mount point (a half-made leftover); still remove it.
		return fmt.Errorf("lab: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab: remove %s: %w", path, err)
	}
	return nil
}

// Cleanup removes every named namespace that a lab with this prefix could
// have made ("PREFIX-switch", "PREFIX-HOST"), such as the leftovers of a
// run that crashed before Close. Deleting the namespaces deletes their
// bridge and veths. It touches nothing else: "PREFIX-a-b" and names of
// other prefixes are left alone.
func Cleanup(prefix string) error {
	names, err := Leftovers(prefix)
	if err != nil {
		return fmt.Errorf("lab: cleanup: %w", err)
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, deleteNamed(n))
	}
	return errors.Join(errs...)
}

// Leftovers lists the named namespaces a lab with this prefix could have
// made and that exist: what Cleanup would remove, and what a test checks
// is gone after Close.
func Leftovers(prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if ownedBy(prefix, e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
