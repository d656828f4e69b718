package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by a Host's methods after its Lab was closed.
var ErrClosed = errors.New("lab: lab closed")

// Host is one namespace of a lab: a host with its eth0, or the switch.
type Host struct {
	// Name as in the spec ("switch" for the switch).
	Name string
	// NS is the named network namespace, for `ip netns exec NS ...`.
	NS string
	// Link is the host's interface, HostLink; BridgeLink for the switch.
	Link string
	// Port is the host's bridge port in the switch namespace, named after
	// the host: capture there to see what the host sends and receives.
	Port string
	// Addr and Addr6 are eth0's addresses; Addr6 is zero without IPv6.
	Addr, Addr6 netip.Addr
	// LoAddrs are the extra addresses on lo.
	LoAddrs []netip.Prefix
	// MAC of Link: 02:00:00:00:HI:LO, HI:LO = index in the spec + 1.
	MAC [6]byte
	// MTU of Link.
	MTU int
	// Ifindex of Link inside NS.
	Ifindex int

	mu     sync.RWMutex // guards handle against close during enter
	handle netns.NsHandle
}

// End is the host's eth0 as an End (zero Name on a NoSwitch host).
func (h *Host) End() End {
	return End{Host: h, Name: h.Link, Ifindex: h.Ifindex, MAC: h.MAC, MTU: h.MTU}
}

// close closes the handle; later calls to Do fail with ErrClosed.
func (h *Host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.handle.IsOpen() {
		h.handle.Close()
	}
}

// enter switches the calling thread into the host's namespace.
func (h *Host) enter() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !h.handle.IsOpen() {
		return fmt.Errorf("%w: host %s", ErrClosed, h.Name)
	}
	if err := netns.Set(h.handle); err != nil {
		return fmt.Errorf("lab: enter netns %s: %w", h.NS, err)
	}
	return nil
}

// Do runs fn on an OS thread inside the host's namespace and waits for it.
// Sockets fn creates stay in the namespace for their whole life, so
// Listen, Dial and the like need Do only to create them. fn runs on another
// goroutine: it must not call t.FailNow, and goroutines it starts run in
// the caller's namespace, not the host's. Afterwards the thread goes back
// to its namespace, or, if that fails, is discarded.
func (h *Host) Do(fn func() error) error {
	return onThread(h.enter, fn)
}

// Listen is net.Listen inside the host's namespace. addr's host part must
// be empty or a literal IP: a name lookup would leave the namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	if err := checkLiteral(addr); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: listen %s %s: %w", h.Name, network, addr, err)
	}
	return ln, nil
}

// ListenPacket is net.ListenPacket inside the host's namespace, with the
// same literal-address rule as Listen.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	if err := checkLiteral(addr); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: listen %s %s: %w", h.Name, network, addr, err)
	}
	return pc, nil
}

// Dial connects from inside the host's namespace, bounded by ctx. addr's
// host part must be a literal IP.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkLiteral(addr); err != nil {
		return nil, err
	}
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: dial %s %s: %w", h.Name, network, addr, err)
	}
	return c, nil
}

// checkLiteral rejects host:port strings whose host is a name.
func checkLiteral(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("lab: address %q: %w", addr, err)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("lab: address %q: host must be a literal IP: %w", addr, err)
	}
	return nil
}

// Command returns a command that runs name inside the host's namespace
// through `ip netns exec`, which also mounts the namespace's own /sys, so
// the program sees the namespace's interfaces in /sys/class/net as well.
// ctx kills it as exec.CommandContext does. It needs iproute2's ip.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Sysctl writes value to the dotted key (net.ipv4.conf.all.rp_filter)
// inside the host's namespace. Only net. keys are accepted: the others are
// shared by the whole machine.
func (h *Host) Sysctl(key, value string) error {
	if err := checkSysctlKey(key); err != nil {
		return err
	}
	return h.Do(func() error { return writeSysctl(key, value) })
}

// writeSysctl must run on a thread inside the target namespace: /proc/sys/net
// shows the namespace of the thread that opens it.
func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("lab: sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// Offloads are the offload features of an interface, as `ethtool -k`
// names them: tx-checksumming, tcp-segmentation-offload and
// generic-segmentation-offload.
type Offloads struct {
	TxChecksum, TSO, GSO bool
}

// Offloads reads the offloads of the host's Link.
func (h *Host) Offloads() (Offloads, error) {
	var o Offloads
	err := h.withSocket(func(fd int) error {
		for _, q := range []struct {
			cmd uint32
			dst *bool
		}{
			{unix.ETHTOOL_GTXCSUM, &o.TxChecksum},
			{unix.ETHTOOL_GTSO, &o.TSO},
			{unix.ETHTOOL_GGSO, &o.GSO},
		} {
			v, err := ethtool(fd, h.Link, q.cmd, 0)
			if err != nil {
				return err
			}
			*q.dst = v != 0
		}
		return nil
	})
	return o, err
}

// disableTxChecksum is `ethtool -K link tx off`. The kernel then drops TSO
// too, which needs checksum offload, and software GSO fills in checksums
// as it segments, so every frame leaves with a full checksum.
func (h *Host) disableTxChecksum(link string) error {
	return h.withSocket(func(fd int) error {
		_, err := ethtool(fd, link, unix.ETHTOOL_STXCSUM, 0)
		return err
	})
}

// ethFlagTxVLAN is ETH_FLAG_TXVLAN (linux/ethtool.h), the legacy flag of
// the tx-vlan-hw-insert feature (802.1Q only).
const ethFlagTxVLAN = 1 << 7

// disableTxVLAN is `ethtool -K link txvlan off` for a link in h's
// namespace: without the offload, the kernel writes a frame's out-of-band
// 802.1Q tag into the frame before handing it to the link.
func (h *Host) disableTxVLAN(link string) error {
	return h.withSocket(func(fd int) error {
		flags, err := ethtool(fd, link, unix.ETHTOOL_GFLAGS, 0)
		if err != nil {
			return err
		}
		_, err = ethtool(fd, link, unix.ETHTOOL_SFLAGS, flags&^ethFlagTxVLAN)
		return err
	})
}

// withSocket runs fn with a datagram socket made inside the namespace, the
// handle ioctls need to find the namespace's interfaces by name.
func (h *Host) withSocket(fn func(fd int) error) error {
	return h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("lab: %s: socket: %w", h.Name, err)
		}
		defer unix.Close(fd)
		return fn(fd)
	})
}
