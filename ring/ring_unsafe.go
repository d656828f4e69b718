package ring

// Every unsafe pointer cast of the package lives here: laying ring types over
// mapped memory, and the socket options whose values are C structs.

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewProducer lays a producer ring of size slots over mem, at the offsets the
// kernel reported in XDP_MMAP_OFFSETS. mem is a mapping of the ring, or plain
// memory in tests; it must outlive the ring. The cached indices start from
// whatever the shared indices hold.
func NewProducer[T Entry](mem []byte, off unix.XDPRingOffset, size uint32) (Producer[T], error) {
	prod, cons, flags, entries, err := layout[T](mem, off, size)
	if err != nil {
		return Producer[T]{}, err
	}
	p := atomic.LoadUint32(prod)
	return Producer[T]{
		producer:   prod,
		consumer:   cons,
		flags:      flags,
		entries:    entries,
		mask:       size - 1,
		cachedProd: p,
		published:  p,
		cachedCons: atomic.LoadUint32(cons) + size,
	}, nil
}

// NewConsumer lays a consumer ring of size slots over mem; see NewProducer.
func NewConsumer[T Entry](mem []byte, off unix.XDPRingOffset, size uint32) (Consumer[T], error) {
	prod, cons, _, entries, err := layout[T](mem, off, size)
	if err != nil {
		return Consumer[T]{}, err
	}
	c := atomic.LoadUint32(cons)
	return Consumer[T]{
		producer:   prod,
		consumer:   cons,
		entries:    entries,
		mask:       size - 1,
		cachedProd: atomic.LoadUint32(prod),
		cachedCons: c,
		released:   c,
	}, nil
}

// ringBytes is the length to map for a ring of size entries of type T.
func ringBytes[T Entry](off unix.XDPRingOffset, size uint32) int {
	var zero T
	return int(off.Desc) + int(size)*int(unsafe.Sizeof(zero))
}

// layout checks that a ring of size T entries fits mem at off, with every
// field naturally aligned, and returns typed views of it.
func layout[T Entry](mem []byte, off unix.XDPRingOffset, size uint32) (prod, cons, flags *uint32, entries []T, err error) {
	if size == 0 || size&(size-1) != 0 {
		return nil, nil, nil, nil, fmt.Errorf("ring: size %d must be a power of 2: %w", size, ErrInvalidConfig)
	}
	var zero T
	esz := uint64(unsafe.Sizeof(zero))
	n := uint64(len(mem))
	for _, f := range [...]struct {
		name      string
		off, size uint64
	}{
		{"producer", off.Producer, 4},
		{"consumer", off.Consumer, 4},
		{"flags", off.Flags, 4},
		{"descriptors", off.Desc, uint64(size) * esz},
	} {
		if f.off > n || f.size > n-f.off {
			return nil, nil, nil, nil, fmt.Errorf("ring: %s at offset %d (%d bytes) outside %d-byte mapping: %w", f.name, f.off, f.size, n, ErrInvalidConfig)
		}
		align := min(f.size, 8)
		if (uintptr(unsafe.Pointer(unsafe.SliceData(mem)))+uintptr(f.off))%uintptr(align) != 0 {
			return nil, nil, nil, nil, fmt.Errorf("ring: %s at offset %d is not %d-byte aligned: %w", f.name, f.off, align, ErrInvalidConfig)
		}
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	prod = (*uint32)(unsafe.Add(base, off.Producer))
	cons = (*uint32)(unsafe.Add(base, off.Consumer))
	flags = (*uint32)(unsafe.Add(base, off.Flags))
	entries = unsafe.Slice((*T)(unsafe.Add(base, off.Desc)), size)
	return prod, cons, flags, entries, nil
}

// umemAddr is the user-space address of the UMEM, for XDP_UMEM_REG.
func umemAddr(umem []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(umem))))
}

// setsockoptUmemReg registers the UMEM (XDP_UMEM_REG takes a struct).
func setsockoptUmemReg(fd int, reg *unix.XDPUmemReg) error {
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(reg)), unsafe.Sizeof(*reg), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// getsockoptStruct reads a struct-valued SOL_XDP option into *v, failing
// when the kernel returns a shorter (older) layout.
func getsockoptStruct[T unix.XDPMmapOffsets | unix.XDPStatistics](fd, opt int, v *T) error {
	size := uint32(unsafe.Sizeof(*v))
	l := size
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt),
		uintptr(unsafe.Pointer(v)), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	if l != size {
		return fmt.Errorf("kernel returned %d bytes, want %d (kernel too old)", l, size)
	}
	return nil
}
