package ring

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrInvalidConfig is wrapped by every error about a bad Config or ring
// geometry, so that callers can tell a configuration mistake from a kernel
// refusal.
var ErrInvalidConfig = errors.New("invalid configuration")

// Zero-copy modes for Config.ZeroCopy.
const (
	ZeroCopyAuto = "auto" // zero-copy when the driver supports it, copy mode otherwise
	ZeroCopyOn   = "on"   // zero-copy or fail (XDP_ZEROCOPY)
	ZeroCopyOff  = "off"  // copy mode (XDP_COPY)
)

// Limits checked by Config.Validate.
const (
	// minTxBudget is the kernel's per-sendto default batch in copy mode
	// (TX_BATCH_SIZE); XDP_MAX_TX_SKB_BUDGET accepts 32 up to the TX ring size.
	minTxBudget = 32
	// maxRingSize bounds ring sizes well above any useful value, so that a
	// typo cannot ask the kernel for gigabytes of ring.
	maxRingSize = 1 << 20
	// maxFrames bounds the UMEM to 4 GiB of 4 KiB frames.
	maxFrames = 1 << 20
	// maxBusyPollBudget is the kernel's limit for SO_BUSY_POLL_BUDGET (U16_MAX).
	maxBusyPollBudget = 1<<16 - 1
	// busyPollUsec is SO_BUSY_POLL when busy polling is on: how long a
	// system call on the socket may spin on the device queue.
	busyPollUsec = 20
)

// Config describes one AF_XDP socket: which queue it binds and the geometry
// of its own UMEM and rings.
type Config struct {
	Ifindex int    // interface to bind
	Ifname  string // only for messages
	Queue   int    // NIC queue to bind

	FrameSize  uint32 // UMEM chunk size in aligned mode: 2048 or 4096
	FrameCount uint32 // number of frames in the UMEM
	// Headroom is the XDP_UMEM_REG headroom: received data starts
	// XDP_PACKET_HEADROOM (256) + Headroom bytes into its frame, and the
	// worker may prepend that much in place.
	Headroom uint32

	FillSize, CompletionSize, RxSize, TxSize uint32 // ring sizes, powers of two

	ZeroCopy   string // ZeroCopyAuto, ZeroCopyOn or ZeroCopyOff
	NeedWakeup bool   // bind with XDP_USE_NEED_WAKEUP
	// TxBudget sets XDP_MAX_TX_SKB_BUDGET, the most frames one sendto sends
	// in copy mode (32 to TxSize); 0 leaves the kernel default of 32.
	TxBudget uint32

	BusyPoll       bool // SO_PREFER_BUSY_POLL and SO_BUSY_POLL (20 µs)
	BusyPollBudget int  // SO_BUSY_POLL_BUDGET when BusyPoll; 0 leaves the kernel default
}

// name is how messages name the socket: "eth0 queue 3".
func (c *Config) name() string {
	n := c.Ifname
	if n == "" {
		n = fmt.Sprintf("ifindex %d", c.Ifindex)
	}
	return fmt.Sprintf("%s queue %d", n, c.Queue)
}

// Validate checks c without touching the kernel. The error names the bad
// value and wraps ErrInvalidConfig.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ring: %s: %s: %w", c.name(), fmt.Sprintf(format, args...), ErrInvalidConfig)
	}
	if c.Ifindex <= 0 {
		return bad("invalid interface index %d", c.Ifindex)
	}
	if c.Queue < 0 {
		return bad("invalid queue %d", c.Queue)
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return bad("frame size %d: must be 2048 or 4096", c.FrameSize)
	}
	if c.FrameCount == 0 || c.FrameCount > maxFrames {
		return bad("frame count %d: must be 1 to %d", c.FrameCount, maxFrames)
	}
	if c.Headroom >= c.FrameSize-unix.XDP_PACKET_HEADROOM {
		return bad("headroom %d: must be below %d for %d-byte frames", c.Headroom, c.FrameSize-unix.XDP_PACKET_HEADROOM, c.FrameSize)
	}
	for _, r := range [...]struct {
		name string
		size uint32
	}{
		{"fill", c.FillSize},
		{"completion", c.CompletionSize},
		{"rx", c.RxSize},
		{"tx", c.TxSize},
	} {
		if r.size == 0 || r.size&(r.size-1) != 0 || r.size > maxRingSize {
			return bad("%s ring size %d: must be a power of 2 up to %d", r.name, r.size, maxRingSize)
		}
	}
	switch c.ZeroCopy {
	case ZeroCopyAuto, ZeroCopyOn, ZeroCopyOff:
	default:
		return bad("zero-copy mode %q: must be %q, %q or %q", c.ZeroCopy, ZeroCopyAuto, ZeroCopyOn, ZeroCopyOff)
	}
	if c.TxBudget != 0 && (c.TxBudget < minTxBudget || c.TxBudget > c.TxSize) {
		return bad("tx budget %d: must be 0 or %d to the tx ring size %d", c.TxBudget, minTxBudget, c.TxSize)
	}
	if c.BusyPollBudget < 0 || c.BusyPollBudget > maxBusyPollBudget {
		return bad("busy-poll budget %d: must be 0 to %d", c.BusyPollBudget, maxBusyPollBudget)
	}
	return nil
}
