package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Sentinel errors of the decap attachment functions.
var (
	// ErrNotAttached: no XDP program is attached to the interface.
	ErrNotAttached = errors.New("bpf: no XDP program attached")
	// ErrForeignProgram: the interface's XDP program is not xlb's decap program.
	ErrForeignProgram = errors.New("bpf: another XDP program is attached")
)

// decapProgName is the kernel's name of the decap program (its C function
// name), which is how an attached program is recognised as ours.
const decapProgName = "xlb_decap"

// DecapCounters are the decap program's counters summed over CPUs. Every
// frame is counted once: Decapsulated + Passed + Malformed = all frames, and
// Decapsulated is the sum of the five kinds.
type DecapCounters struct {
	Decapsulated uint64
	// By kind: outer IPv4 carrying IPv4 (IPIP) or IPv6 (6in4), outer IPv6
	// carrying IPv4 (4in6) or IPv6 (6in6), and GUE whatever the families.
	IPIP, IP6in4, IP4in6, IP6in6, GUE uint64
	Passed, Malformed                 uint64
}

// DefaultGUEPort is the GUE UDP destination port AttachDecap listens on.
// GUE has no IANA port; 6080 is what the balancer sends to by default.
const DefaultGUEPort = 6080

// DecapOptions configure the decap program for AttachDecapWith.
type DecapOptions struct {
	// GUEPort is the UDP destination port of GUE packets to decapsulate;
	// 0 disables GUE (UDP is then always passed untouched).
	GUEPort uint16
}

// decapState is what is attached to an interface's XDP hook.
type decapState struct {
	link   netlink.Link
	progID uint32
	mode   uint32 // nl.XDP_ATTACHED_*
	ours   bool
}

func inspectXDP(ifname string) (decapState, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return decapState{}, fmt.Errorf("bpf: find interface %q: %w", ifname, err)
	}
	st := decapState{link: l}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return st, nil
	}
	st.progID, st.mode = x.ProgId, x.AttachMode
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return st, fmt.Errorf("bpf: open XDP program %d on %s: %w", x.ProgId, ifname, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return st, fmt.Errorf("bpf: inspect XDP program %d on %s: %w", x.ProgId, ifname, err)
	}
	st.ours = info.Type == ebpf.XDP && info.Name == decapProgName
	return st, nil
}

// AttachDecap is AttachDecapWith(ifname, DecapOptions{GUEPort: DefaultGUEPort}).
func AttachDecap(ifname string) (string, error) {
	return AttachDecapWith(ifname, DecapOptions{GUEPort: DefaultGUEPort})
}

// AttachDecapWith attaches the decap program, configured by opts, to ifname
// (in the calling thread's network namespace) through netlink, not a
// bpf_link, so the attachment outlives the process: `xlb decap attach` exits
// and the backend keeps decapsulating until DetachDecap. It tries native
// (driver) mode, then generic, and returns the mode used. If xlb's decap
// program is already attached it is replaced in place (an upgrade, or new
// options; the counters restart from zero); any other XDP program is left
// alone and ErrForeignProgram returned.
func AttachDecapWith(ifname string, opts DecapOptions) (string, error) {
	if err := memlockOnce(); err != nil {
		return "", err
	}
	st, err := inspectXDP(ifname)
	if err != nil {
		return "", err
	}
	if st.progID != 0 && !st.ours {
		return "", fmt.Errorf("bpf: attach decap to %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}

	var objs decapObjects
	if err := loadDecapObjects(&objs, nil); err != nil {
		return "", fmt.Errorf("bpf: load decap: %w", err)
	}
	// The attachment holds its own reference to the program.
	defer objs.Close()
	if err := objs.GuePort.Update(uint32(0), uint32(opts.GUEPort), ebpf.UpdateAny); err != nil {
		return "", fmt.Errorf("bpf: decap: set GUE port %d: %w", opts.GUEPort, err)
	}
	fd := objs.XlbDecap.FD()

	if st.ours {
		// Replace in the current mode: the kernel refuses a second mode.
		mode, flags := ModeNative, unix.XDP_FLAGS_DRV_MODE
		if st.mode == nl.XDP_ATTACHED_SKB {
			mode, flags = ModeGeneric, unix.XDP_FLAGS_SKB_MODE
		}
		if err := netlink.LinkSetXdpFdWithFlags(st.link, fd, flags); err != nil {
			return "", fmt.Errorf("bpf: replace decap on %s (%s): %w", ifname, mode, err)
		}
		return mode, nil
	}

	// UPDATE_IF_NOEXIST: never replace a program attached since inspectXDP.
	nativeErr := netlink.LinkSetXdpFdWithFlags(st.link, fd, unix.XDP_FLAGS_UPDATE_IF_NOEXIST|unix.XDP_FLAGS_DRV_MODE)
	if nativeErr == nil {
		return ModeNative, nil
	}
	if errors.Is(nativeErr, unix.EBUSY) || errors.Is(nativeErr, unix.EEXIST) {
		return "", fmt.Errorf("bpf: attach decap to %s: %w: %w", ifname, ErrForeignProgram, nativeErr)
	}
	genericErr := netlink.LinkSetXdpFdWithFlags(st.link, fd, unix.XDP_FLAGS_UPDATE_IF_NOEXIST|unix.XDP_FLAGS_SKB_MODE)
	if genericErr == nil {
		return ModeGeneric, nil
	}
	return "", fmt.Errorf("bpf: attach decap to %s: native: %w; generic: %w", ifname, nativeErr, genericErr)
}

// DetachDecap removes xlb's decap program from ifname. It returns
// ErrNotAttached if no XDP program is attached and ErrForeignProgram (and
// detaches nothing) if the attached program is not ours.
func DetachDecap(ifname string) error {
	st, err := inspectXDP(ifname)
	if err != nil {
		return err
	}
	if st.progID == 0 {
		return fmt.Errorf("bpf: detach decap from %s: %w", ifname, ErrNotAttached)
	}
	if !st.ours {
		return fmt.Errorf("bpf: detach decap from %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	flags := unix.XDP_FLAGS_DRV_MODE
	if st.mode == nl.XDP_ATTACHED_SKB {
		flags = unix.XDP_FLAGS_SKB_MODE
	}
	if err := netlink.LinkSetXdpFdWithFlags(st.link, -1, flags); err != nil {
		return fmt.Errorf("bpf: detach decap from %s: %w", ifname, err)
	}
	return nil
}

// DecapAttached reports whether xlb's decap program is attached to ifname.
// A foreign XDP program gives false and an error wrapping ErrForeignProgram.
func DecapAttached(ifname string) (bool, error) {
	st, err := inspectXDP(ifname)
	if err != nil {
		return false, err
	}
	if st.progID != 0 && !st.ours {
		return false, fmt.Errorf("bpf: %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	return st.ours, nil
}

// ReadDecapCounters reads the counters of the decap program attached to
// ifname (they live as long as the attachment).
func ReadDecapCounters(ifname string) (DecapCounters, error) {
	st, err := inspectXDP(ifname)
	if err != nil {
		return DecapCounters{}, err
	}
	if st.progID == 0 {
		return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: %w", ifname, ErrNotAttached)
	}
	if !st.ours {
		return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(st.progID))
	if err != nil {
		return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: %w", ifname, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: %w", ifname, err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: open map %d: %w", ifname, id, err)
		}
		mi, err := m.Info()
		if err != nil || mi.Name != decapMapDecapCounters {
			m.Close()
			continue
		}
		c, err := readDecapCounters(m)
		m.Close()
		if err != nil {
			return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: %w", ifname, err)
		}
		return c, nil
	}
	return DecapCounters{}, fmt.Errorf("bpf: decap counters of %s: program %d has no %s map", ifname, st.progID, decapMapDecapCounters)
}

func readDecapCounters(m *ebpf.Map) (DecapCounters, error) {
	var raw [decapCounterMax]uint64
	if err := sumPerCPU(m, raw[:]); err != nil {
		return DecapCounters{}, err
	}
	c := DecapCounters{
		IPIP:      raw[decapIPIP],
		IP6in4:    raw[decap6in4],
		IP4in6:    raw[decap4in6],
		IP6in6:    raw[decap6in6],
		GUE:       raw[decapGUE],
		Passed:    raw[decapPassed],
		Malformed: raw[decapMalformed],
	}
	c.Decapsulated = c.IPIP + c.IP6in4 + c.IP4in6 + c.IP6in6 + c.GUE
	return c, nil
}
