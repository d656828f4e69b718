package privilege

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Kept is what Drop leaves in the permitted and effective sets (the package
// doc says why each is needed).
var Kept = []cap.Value{cap.NET_ADMIN, cap.NET_BIND_SERVICE}

// Drop reduces every thread of the process to Kept: permitted and effective
// sets to Kept (or less, when the process never held one of them), the
// inheritable and ambient sets to nothing, the bounding set to Kept when the
// process may change it, and sets no_new_privs. It only ever lowers
// privilege, so it works for any starting set; an error means the process
// may still hold more than Kept.
func Drop() error {
	return dropTo(Kept)
}

func dropTo(keep []cap.Value) error {
	cur := cap.GetProc()
	kept := func(v cap.Value) bool { return slices.Contains(keep, v) }

	// The bounding set first: lowering it needs CAP_SETPCAP, which goes
	// with the permitted set below. IAB.SetProc also clears the
	// inheritable and ambient sets.
	canBound, err := cur.GetFlag(cap.Permitted, cap.SETPCAP)
	if err != nil {
		return fmt.Errorf("privilege: read permitted set: %w", err)
	}
	if canBound {
		iab := cap.NewIAB()
		for v := range cap.MaxBits() {
			if kept(v) {
				continue
			}
			if err := iab.SetVector(cap.Bound, true, v); err != nil {
				return fmt.Errorf("privilege: bounding set: %w", err)
			}
		}
		if err := iab.SetProc(); err != nil {
			return fmt.Errorf("privilege: lower the bounding set to %s and clear the ambient set: %w", names(keep), err)
		}
	} else if err := cap.ResetAmbient(); err != nil {
		// Without CAP_SETPCAP the bounding set stays as the parent (systemd's
		// CapabilityBoundingSet) left it; with an empty permitted set and
		// no_new_privs nothing in it can be regained.
		return fmt.Errorf("privilege: clear the ambient set: %w", err)
	}

	want := cap.NewSet()
	for _, v := range keep {
		have, err := cur.GetFlag(cap.Permitted, v)
		if err != nil {
			return fmt.Errorf("privilege: read permitted set: %w", err)
		}
		if !have {
			continue
		}
		if err := want.SetFlag(cap.Permitted, true, v); err != nil {
			return err
		}
		if err := want.SetFlag(cap.Effective, true, v); err != nil {
			return err
		}
	}
	if err := want.SetProc(); err != nil {
		return fmt.Errorf("privilege: set capabilities to %q: %w", want, err)
	}

	// no_new_privs is per thread too.
	if _, _, errno := psx.Syscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); errno != 0 {
		return fmt.Errorf("privilege: set no_new_privs: %w", errno)
	}
	return nil
}

// Current describes the calling thread's capability sets in libcap's text
// form ("cap_net_bind_service,cap_net_admin=ep"; "=" is none), for the log.
func Current() string {
	return cap.GetProc().String()
}

func names(vs []cap.Value) string {
	s := cap.NewSet()
	_ = s.SetFlag(cap.Permitted, true, vs...)
	return s.String()
}
