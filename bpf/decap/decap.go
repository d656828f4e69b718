package decap

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
)

// Sentinel errors of the decap attachment functions.
var (
	// ErrNotAttached: no XDP program is attached to the interface.
	ErrNotAttached = errors.New("decap: no XDP program attached")
	// ErrForeignProgram: the interface's XDP program is not xlb's decap program.
	ErrForeignProgram = errors.New("decap: another XDP program is attached")
)

// decapProgName is the kernel's name of the decap program (its C function
// name), which is how an attached program is recognised as ours.
const decapProgName = "xlb_decap"

// Counters are the decap program's counters summed over CPUs. Every
// frame is counted once: Decapsulated + Passed + Malformed = all frames, and
// Decapsulated is the sum of the five kinds.
type Counters struct {
	Decapsulated uint64
	// By kind: outer IPv4 carrying IPv4 (IPIP) or IPv6 (6in4), outer IPv6
	// carrying IPv4 (4in6) or IPv6 (6in6), and GUE whatever the families.
	IPIP, IP6in4, IP4in6, IP6in6, GUE uint64
	Passed, Malformed                 uint64
}

// DefaultGUEPort is the GUE UDP destination port decapsulated by default.
// GUE has no IANA port; 6080 is what the balancer sends to by default.
const DefaultGUEPort = 6080

// Options configure the decap program for Attach.
type Options struct {
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
		return decapState{}, fmt.Errorf("decap: find interface %q: %w", ifname, err)
	}
	st := decapState{link: l}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return st, nil
	}
	st.progID, st.mode = x.ProgId, x.AttachMode
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return st, fmt.Errorf("decap: open XDP program %d on %s: %w", x.ProgId, ifname, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return st, fmt.Errorf("decap: inspect XDP program %d on %s: %w", x.ProgId, ifname, err)
	}
	st.ours = info.Type == ebpf.XDP && info.Name == decapProgName
	return st, nil
}

// Attach attaches the decap program, configured by opts, to ifname
// (in the calling thread's network namespace) through netlink, not a
// bpf_link, so the attachment outlives the process: `xlb decap attach` exits
// and the backend keeps decapsulating until Detach. It tries native
// (driver) mode, then generic, and returns the mode used. If xlb's decap
// program is already attached it is replaced in place (an upgrade, or new
// options; the counters restart from zero); any other XDP program is left
// alone and ErrForeignProgram returned.
func Attach(ifname string, opts Options) (string, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return "", fmt.Errorf("decap: remove memlock limit: %w", err)
	}
	st, err := inspectXDP(ifname)
	if err != nil {
		return "", err
	}
	if st.progID != 0 && !st.ours {
		return "", fmt.Errorf("decap: attach to %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}

	var objs decapObjects
	if err := loadDecapObjects(&objs, nil); err != nil {
		return "", fmt.Errorf("decap: load: %w", err)
	}
	// The attachment holds its own reference to the program.
	defer objs.Close()
	if err := objs.GuePort.Update(uint32(0), uint32(opts.GUEPort), ebpf.UpdateAny); err != nil {
		return "", fmt.Errorf("decap: set GUE port %d: %w", opts.GUEPort, err)
	}
	fd := objs.XlbDecap.FD()

	if st.ours {
		// Replace in the current mode: the kernel refuses a second mode.
		mode, flags := bpf.ModeNative, unix.XDP_FLAGS_DRV_MODE
		if st.mode == nl.XDP_ATTACHED_SKB {
			mode, flags = bpf.ModeGeneric, unix.XDP_FLAGS_SKB_MODE
		}
		if err := netlink.LinkSetXdpFdWithFlags(st.link, fd, flags); err != nil {
			return "", fmt.Errorf("decap: replace on %s (%s): %w", ifname, mode, err)
		}
		return mode, nil
	}

	// UPDATE_IF_NOEXIST: never replace a program attached since inspectXDP.
	nativeErr := netlink.LinkSetXdpFdWithFlags(st.link, fd, unix.XDP_FLAGS_UPDATE_IF_NOEXIST|unix.XDP_FLAGS_DRV_MODE)
	if nativeErr == nil {
		return bpf.ModeNative, nil
	}
	if errors.Is(nativeErr, unix.EBUSY) || errors.Is(nativeErr, unix.EEXIST) {
		return "", fmt.Errorf("decap: attach to %s: %w: %w", ifname, ErrForeignProgram, nativeErr)
	}
	genericErr := netlink.LinkSetXdpFdWithFlags(st.link, fd, unix.XDP_FLAGS_UPDATE_IF_NOEXIST|unix.XDP_FLAGS_SKB_MODE)
	if genericErr == nil {
		return bpf.ModeGeneric, nil
	}
	return "", fmt.Errorf("decap: attach to %s: native: %w; generic: %w", ifname, nativeErr, genericErr)
}

// Detach removes xlb's decap program from ifname. It returns
// ErrNotAttached if no XDP program is attached and ErrForeignProgram (and
// detaches nothing) if the attached program is not ours.
func Detach(ifname string) error {
	st, err := inspectXDP(ifname)
	if err != nil {
		return err
	}
	if st.progID == 0 {
		return fmt.Errorf("decap: detach from %s: %w", ifname, ErrNotAttached)
	}
	if !st.ours {
		return fmt.Errorf("decap: detach from %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	flags := unix.XDP_FLAGS_DRV_MODE
	if st.mode == nl.XDP_ATTACHED_SKB {
		flags = unix.XDP_FLAGS_SKB_MODE
	}
	if err := netlink.LinkSetXdpFdWithFlags(st.link, -1, flags); err != nil {
		return fmt.Errorf("decap: detach from %s: %w", ifname, err)
	}
	return nil
}

// Attached reports whether xlb's decap program is attached to ifname.
// A foreign XDP program gives false and an error wrapping ErrForeignProgram.
func Attached(ifname string) (bool, error) {
	st, err := inspectXDP(ifname)
	if err != nil {
		return false, err
	}
	if st.progID != 0 && !st.ours {
		return false, fmt.Errorf("decap: %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	return st.ours, nil
}

// ReadCounters reads the counters of the decap program attached to
// ifname (they live as long as the attachment).
func ReadCounters(ifname string) (Counters, error) {
	st, err := inspectXDP(ifname)
	if err != nil {
		return Counters{}, err
	}
	if st.progID == 0 {
		return Counters{}, fmt.Errorf("decap: decap counters of %s: %w", ifname, ErrNotAttached)
	}
	if !st.ours {
		return Counters{}, fmt.Errorf("decap: decap counters of %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(st.progID))
	if err != nil {
		return Counters{}, fmt.Errorf("decap: decap counters of %s: %w", ifname, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return Counters{}, fmt.Errorf("decap: decap counters of %s: %w", ifname, err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return Counters{}, fmt.Errorf("decap: decap counters of %s: open map %d: %w", ifname, id, err)
		}
		mi, err := m.Info()
		if err != nil || mi.Name != decapMapDecapCounters {
			m.Close()
			continue
		}
		c, err := readCounters(m)
		m.Close()
		if err != nil {
			return Counters{}, fmt.Errorf("decap: decap counters of %s: %w", ifname, err)
		}
		return c, nil
	}
	return Counters{}, fmt.Errorf("decap: decap counters of %s: program %d has no %s map", ifname, st.progID, decapMapDecapCounters)
}

func readCounters(m *ebpf.Map) (Counters, error) {
	var raw [counterMax]uint64
	if err := bpf.SumPerCPU(m, raw[:]); err != nil {
		return Counters{}, err
	}
	c := Counters{
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

// Indexes of the decap program's decap_counters map: mirror enum
// decap_counter in decap.c.
const (
	decapIPIP = iota
	decap6in4
	decap4in6
	decap6in6
	decapGUE
	decapPassed
	decapMalformed
	counterMax
)
