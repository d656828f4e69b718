package ring

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by the system-call methods of a closed Socket.
var ErrClosed = errors.New("ring: socket closed")

// Stats mirrors struct xdp_statistics (getsockopt XDP_STATISTICS).
type Stats struct {
	RxDropped            uint64 // dropped for reasons other than an invalid descriptor
	RxInvalidDescs       uint64 // dropped because of an invalid RX descriptor
	TxInvalidDescs       uint64 // TX descriptors the kernel rejected (their frames are never completed)
	RxRingFull           uint64 // dropped because the RX ring was full
	RxFillRingEmptyDescs uint64 // times the kernel found the fill ring empty
	TxRingEmptyDescs     uint64 // times the kernel found the TX ring empty
}

// Socket is one AF_XDP socket bound to one queue, with its own UMEM.
//
// A Socket is used by one goroutine at a time and has no locks. Its frames
// are owned by exactly one place at a time: the fill ring, the kernel, the
// caller (between Receive and Transmit or Recycle), the TX ring, or the
// socket's free list.
type Socket struct {
	fd         int
	name       string // "eth0 queue 3", for messages
	zeroCopy   bool
	needWakeup bool

	umem      []byte
	frameSize uint32
	frameMask uint64 // frameSize - 1: clearing it gives a frame's base address

	rx   Consumer[Desc]
	tx   Producer[Desc]
	fill Producer[uint64]
	comp Consumer[uint64]
	maps [4][]byte // mappings behind rx, tx, fill and comp, in that order

	// free is a LIFO stack of frame base addresses; its capacity is the
	// number of frames, so pushing never allocates unless a frame is freed
	// twice (which panics instead).
	free      []uint64
	txPending uint32 // submitted to TX and not yet reaped from completion

	pfd [1]unix.PollFd // reused by Poll so that it does not allocate
}

// Open creates an AF_XDP socket as cfg says: it validates cfg, maps and
// registers the UMEM, creates and maps the four rings, binds to the queue and
// puts as many frames on the fill ring as fit (the rest go to the free list).
// On failure, everything done so far is undone.
//
// The socket lives in the network namespace of the calling thread.
func Open(cfg Config) (*Socket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Socket{
		fd:         -1,
		name:       cfg.name(),
		needWakeup: cfg.NeedWakeup,
		frameSize:  cfg.FrameSize,
		frameMask:  uint64(cfg.FrameSize) - 1,
	}
	if err := s.open(&cfg); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Socket) open(cfg *Config) error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ring: socket %s: %w", s.name, err)
	}
	s.fd = fd

	// MAP_POPULATE: fault the UMEM in now rather than on the first packets.
	s.umem, err = unix.Mmap(-1, 0, int(cfg.FrameSize)*int(cfg.FrameCount),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("ring: mmap umem %s (%d frames of %d bytes): %w", s.name, cfg.FrameCount, cfg.FrameSize, err)
	}
	reg := unix.XDPUmemReg{
		Addr:     umemAddr(s.umem),
		Len:      uint64(len(s.umem)),
		Size:     cfg.FrameSize,
		Headroom: cfg.Headroom,
	}
	if err := setsockoptUmemReg(fd, &reg); err != nil {
		return fmt.Errorf("ring: register umem %s: %w", s.name, err)
	}

	for _, r := range [...]struct {
		name string
		opt  int
		size uint32
	}{
		{"rx", unix.XDP_RX_RING, cfg.RxSize},
		{"tx", unix.XDP_TX_RING, cfg.TxSize},
		{"fill", unix.XDP_UMEM_FILL_RING, cfg.FillSize},
		{"completion", unix.XDP_UMEM_COMPLETION_RING, cfg.CompletionSize},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, int(r.size)); err != nil {
			return fmt.Errorf("ring: set %s ring size %d on %s: %w", r.name, r.size, s.name, err)
		}
	}

	var off unix.XDPMmapOffsets
	if err := getsockoptStruct(fd, unix.XDP_MMAP_OFFSETS, &off); err != nil {
		return fmt.Errorf("ring: mmap offsets %s: %w", s.name, err)
	}
	for i, m := range [...]struct {
		name  string
		pgoff int64
		len   int
	}{
		{"rx", unix.XDP_PGOFF_RX_RING, ringBytes[Desc](off.Rx, cfg.RxSize)},
		{"tx", unix.XDP_PGOFF_TX_RING, ringBytes[Desc](off.Tx, cfg.TxSize)},
		{"fill", unix.XDP_UMEM_PGOFF_FILL_RING, ringBytes[uint64](off.Fr, cfg.FillSize)},
		{"completion", unix.XDP_UMEM_PGOFF_COMPLETION_RING, ringBytes[uint64](off.Cr, cfg.CompletionSize)},
	} {
		s.maps[i], err = unix.Mmap(fd, m.pgoff, m.len, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("ring: mmap %s ring %s: %w", m.name, s.name, err)
		}
	}
	if s.rx, err = NewConsumer[Desc](s.maps[0], off.Rx, cfg.RxSize); err != nil {
		return err
	}
	if s.tx, err = NewProducer[Desc](s.maps[1], off.Tx, cfg.TxSize); err != nil {
		return err
	}
	if s.fill, err = NewProducer[uint64](s.maps[2], off.Fr, cfg.FillSize); err != nil {
		return err
	}
	if s.comp, err = NewConsumer[uint64](s.maps[3], off.Cr, cfg.CompletionSize); err != nil {
		return err
	}

	if cfg.TxBudget != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, int(cfg.TxBudget)); err != nil {
			return fmt.Errorf("ring: set tx budget %d on %s: %w", cfg.TxBudget, s.name, err)
		}
	}
	if cfg.BusyPoll {
		if err := setBusyPoll(fd, cfg.BusyPollBudget); err != nil {
			return fmt.Errorf("ring: busy poll on %s: %w", s.name, err)
		}
	}

	// "auto" binds with neither XDP_ZEROCOPY nor XDP_COPY: the kernel then
	// tries zero-copy and falls back to copy mode itself when the driver
	// cannot do it, without a second bind.
	var flags uint16
	switch cfg.ZeroCopy {
	case ZeroCopyOn:
		flags |= unix.XDP_ZEROCOPY
	case ZeroCopyOff:
		flags |= unix.XDP_COPY
	}
	if cfg.NeedWakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	sa := unix.SockaddrXDP{Flags: flags, Ifindex: uint32(cfg.Ifindex), QueueID: uint32(cfg.Queue)}
	if err := bind(fd, &sa); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("ring: %s is already bound by another AF_XDP socket (another xlb run?): %w", s.name, err)
		}
		return fmt.Errorf("ring: bind %s: %w", s.name, err)
	}
	opts, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return fmt.Errorf("ring: get options %s: %w", s.name, err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0

	s.free = make([]uint64, cfg.FrameCount)
	for i := range s.free {
		// Highest address at the bottom: the lowest frames are handed out first.
		s.free[i] = uint64(cfg.FrameCount-1-uint32(i)) * uint64(cfg.FrameSize)
	}
	s.Refill()
	return nil
}

// bindBusyWait bounds how long bind retries EBUSY.
const bindBusyWait = time.Second

// bind binds the socket, retrying for up to bindBusyWait while the queue is
// busy. The kernel releases a closed socket's hold on its queue in a work
// queue, a little after close returns, so a socket reopened on the same
// queue (a restart, a reload) would otherwise fail at random. EBUSY that
// lasts means another socket really holds the queue.
func bind(fd int, sa *unix.SockaddrXDP) error {
	deadline := time.Now().Add(bindBusyWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := unix.Bind(fd, sa)
		if err != unix.EBUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}

// setBusyPoll turns on preferred busy polling (SO_PREFER_BUSY_POLL,
// SO_BUSY_POLL) with an optional SO_BUSY_POLL_BUDGET (0: kernel default).
func setBusyPoll(fd, budget int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, 1); err != nil {
		return fmt.Errorf("SO_PREFER_BUSY_POLL: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, busyPollUsec); err != nil {
		return fmt.Errorf("SO_BUSY_POLL %d: %w", busyPollUsec, err)
	}
	if budget != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL_BUDGET, budget); err != nil {
			return fmt.Errorf("SO_BUSY_POLL_BUDGET %d: %w", budget, err)
		}
	}
	return nil
}

// FD is the socket's file descriptor, to put in an XSKMAP.
func (s *Socket) FD() int { return s.fd }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// FrameSize is the size of one UMEM frame.
func (s *Socket) FrameSize() uint32 { return s.frameSize }

// UMEM is the whole packet area. Descriptors address it by offset; a worker
// may rewrite a frame in place and prepend into the headroom before d.Addr.
func (s *Socket) UMEM() []byte { return s.umem }

// Frame returns the bytes of the packet d describes, with capacity up to the
// end of its frame (so that an append cannot spill into the next frame).
func (s *Socket) Frame(d Desc) []byte {
	end := d.Addr&^s.frameMask + uint64(s.frameSize)
	return s.umem[d.Addr : d.Addr+uint64(d.Len) : end]
}

// FrameOf returns the whole frame that holds d's packet and the packet's
// offset in it: the packet may be rewritten in place and a header prepended
// into frame[:off]. At then gives the descriptor to transmit.
func (s *Socket) FrameOf(d Desc) (frame []byte, off int) {
	base := d.Addr &^ s.frameMask
	return s.umem[base : base+uint64(s.frameSize)], int(d.Addr - base)
}

// At is the descriptor of the n bytes at offset off of the frame that holds
// d (offsets as FrameOf returns them).
func (s *Socket) At(d Desc, off, n int) Desc {
	return Desc{Addr: d.Addr&^s.frameMask + uint64(off), Len: uint32(n)}
}

// Receive consumes up to len(out) RX descriptors into out and returns how
// many. The caller then owns these frames and must Transmit or Recycle each.
// It costs at most one acquire load and one release store.
func (s *Socket) Receive(out []Desc) int {
	idx, got := s.rx.Peek(uint32(len(out)))
	if got == 0 {
		return 0
	}
	out = out[:got]
	for i := range out {
		out[i] = s.rx.Get(idx + uint32(i))
	}
	s.rx.Release(got)
	return int(got)
}

// Transmit puts as many of in as fit on the TX ring and returns how many it
// queued; it never drops. The rest stay the caller's: reap with Complete,
// Kick, and retry. A descriptor may start before or end after the one
// received (to prepend or append a header) but must stay within its frame.
func (s *Socket) Transmit(in []Desc) int {
	idx, got := s.tx.Reserve(uint32(len(in)))
	if got == 0 {
		return 0
	}
	for i, d := range in[:got] {
		s.tx.Set(idx+uint32(i), d)
	}
	s.tx.Submit(got)
	s.txPending += got
	return int(got)
}

// Recycle gives the caller's frame at addr (any address inside it) back to
// the free list, for a packet that is dropped.
func (s *Socket) Recycle(addr uint64) {
	if len(s.free) == cap(s.free) {
		panic("ring: Recycle: free list full, a frame was given back twice")
	}
	s.free = append(s.free, addr&^s.frameMask)
}

// Complete reaps the completion ring: the frames the kernel has finished
// transmitting go back to the free list. It returns how many.
func (s *Socket) Complete() int {
	idx, got := s.comp.Peek(s.comp.Size())
	if got == 0 {
		return 0
	}
	n := len(s.free)
	if uint32(cap(s.free)-n) < got {
		panic("ring: Complete: free list full, a frame was given back twice")
	}
	s.free = s.free[:n+int(got)]
	for i := range s.free[n:] {
		s.free[n+i] = s.comp.Get(idx+uint32(i)) &^ s.frameMask
	}
	s.comp.Release(got)
	s.txPending -= got
	return int(got)
}

// Refill moves free frames onto the fill ring, as many as fit, and returns
// how many.
func (s *Socket) Refill() int {
	n := uint32(len(s.free))
	if n == 0 {
		return 0
	}
	idx, got := s.fill.Reserve(n)
	if got == 0 {
		return 0
	}
	for i := range got {
		s.fill.Set(idx+i, s.free[n-1-i])
	}
	s.free = s.free[:n-got]
	s.fill.Submit(got)
	return int(got)
}

// Kick asks the kernel to transmit what is on the TX ring, with a
// non-blocking sendto. It makes the system call only when the kernel has
// descriptors it has not consumed and needs the call: always in copy mode
// (TX progresses only inside sendto or poll there), and in zero-copy mode
// when need_wakeup is off or the TX ring asks for a wakeup. EAGAIN, EBUSY,
// ENOBUFS and ENETDOWN mean "call again later" and return nil.
//
// The call is a raw system call: it can run the peer's softirq for tens of
// microseconds, and through the scheduler-aware path the runtime would hand
// the worker's P away each time.
func (s *Socket) Kick() error {
	if s.fd < 0 {
		return ErrClosed
	}
	if s.tx.Outstanding() == 0 {
		return nil
	}
	if s.zeroCopy && s.needWakeup && !s.tx.NeedWakeup() {
		return nil
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	}
	return fmt.Errorf("ring: kick %s: %w", s.name, errno)
}

// TxPending is how many descriptors were queued by Transmit and not yet
// reaped by Complete: while it is not zero the worker has to Kick and
// Complete.
func (s *Socket) TxPending() uint32 { return s.txPending }

// NeedsRxWakeup reports whether the kernel asked, through the fill ring's
// need_wakeup flag, for a poll or recvfrom before it receives again. It is
// always false without Config.NeedWakeup.
func (s *Socket) NeedsRxWakeup() bool {
	return s.needWakeup && s.fill.NeedWakeup()
}

// Poll waits up to timeoutMs (-1: forever, 0: not at all) for received
// packets, and also for TX ring space when wantTX. In copy mode poll itself
// transmits what is on the TX ring. It reports whether the RX ring has
// packets; an interrupted poll returns (false, nil).
func (s *Socket) Poll(timeoutMs int, wantTX bool) (readable bool, err error) {
	if s.fd < 0 {
		return false, ErrClosed
	}
	s.pfd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	if wantTX {
		s.pfd[0].Events |= unix.POLLOUT
	}
	n, err := unix.Poll(s.pfd[:], timeoutMs)
	if err == unix.EINTR {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ring: poll %s: %w", s.name, err)
	}
	if n == 0 {
		return false, nil
	}
	if rev := s.pfd[0].Revents; rev&(unix.POLLERR|unix.POLLNVAL) != 0 {
		return false, fmt.Errorf("ring: poll %s: revents %#x", s.name, rev)
	}
	return s.pfd[0].Revents&unix.POLLIN != 0, nil
}

// Stats reads the kernel's counters for the socket (XDP_STATISTICS).
func (s *Socket) Stats() (Stats, error) {
	if s.fd < 0 {
		return Stats{}, ErrClosed
	}
	var st unix.XDPStatistics
	if err := getsockoptStruct(s.fd, unix.XDP_STATISTICS, &st); err != nil {
		return Stats{}, fmt.Errorf("ring: statistics %s: %w", s.name, err)
	}
	return Stats{
		RxDropped:            st.Rx_dropped,
		RxInvalidDescs:       st.Rx_invalid_descs,
		TxInvalidDescs:       st.Tx_invalid_descs,
		RxRingFull:           st.Rx_ring_full,
		RxFillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:     st.Tx_ring_empty_descs,
	}, nil
}

// Close unmaps the rings, closes the socket (which removes it from any
// XSKMAP) and unmaps the UMEM. It is idempotent. The batch methods must not
// be called after Close: the rings are gone and they panic.
func (s *Socket) Close() error {
	var errs []error
	for i := range s.maps {
		if s.maps[i] != nil {
			if err := unix.Munmap(s.maps[i]); err != nil {
				errs = append(errs, fmt.Errorf("munmap ring: %w", err))
			}
			s.maps[i] = nil
		}
	}
	s.rx, s.tx, s.fill, s.comp = Consumer[Desc]{}, Producer[Desc]{}, Producer[uint64]{}, Consumer[uint64]{}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		s.fd = -1
	}
	if s.umem != nil {
		if err := unix.Munmap(s.umem); err != nil {
			errs = append(errs, fmt.Errorf("munmap umem: %w", err))
		}
		s.umem = nil
	}
	s.free = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ring: close %s: %w", s.name, err)
	}
	return nil
}
