package lab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue mirrors struct ethtool_value (linux/ethtool.h).
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData mirrors struct ifreq with its union used as ifr_data, the
// pointer SIOCETHTOOL reads its command from. x/sys/unix keeps its own
// version unexported.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtool issues one legacy ETHTOOL_G* or ETHTOOL_S* value command on the
// interface ifname through fd, a socket in the interface's namespace, and
// returns the value the kernel wrote back. The legacy commands go through
// the same feature code as `ethtool -K`, with no tool or netlink family
// needed.
func ethtool(fd int, ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("lab: ethtool: interface name %q too long", ifname)
	}
	val := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&val)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&val)
	if errno != 0 {
		return 0, fmt.Errorf("lab: ethtool %#x on %s: %w", cmd, ifname, errno)
	}
	return val.data, nil
}
