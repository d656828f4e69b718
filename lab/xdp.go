package lab

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// xdpPass is XDP_PASS from linux/bpf.h.
const xdpPass = 2

// attachPassXDP attaches, in native mode, a program that passes every
// frame to the interface ifindex of the switch namespace. A veth drops what
// its peer sends with XDP_TX or XDP_REDIRECT unless the receiving end runs
// an XDP program; any program will do. The program is built from two
// instructions, so no compiler or object file is needed, and it stays
// attached after its file descriptor is closed, until the port is deleted.
func (sw *Host) attachPassXDP(ifindex int) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "xlb_lab_pass",
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load pass-all XDP program: %w", err)
	}
	defer prog.Close()
	// The package-level call opens its netlink socket on the calling
	// thread, hence inside the switch namespace.
	return sw.Do(func() error {
		link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}
		if err := netlink.LinkSetXdpFdWithFlags(link, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
			return fmt.Errorf("attach XDP to ifindex %d in %s: %w", ifindex, sw.NS, err)
		}
		return nil
	})
}
