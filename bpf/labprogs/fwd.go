package labprogs

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// LoadL2Fwd loads the native-XDP reference forwarder: it rewrites every
// frame's destination MAC to dst and source MAC to src and sends it back
// out with XDP_TX.
func LoadL2Fwd(dst, src [6]byte) (*ebpf.Program, error) {
	var objs struct {
		Prog *ebpf.Program `ebpf:"xlb_l2fwd"`
	}
	spec, err := loadFwd()
	if err := load("l2fwd", spec, err, map[string]any{"dst_mac": dst, "src_mac": src}, &objs); err != nil {
		return nil, err
	}
	return objs.Prog, nil
}

// LoadPass loads a program that passes every frame.
func LoadPass() (*ebpf.Program, error) {
	var objs struct {
		Prog *ebpf.Program `ebpf:"xlb_pass"`
	}
	spec, err := loadFwd()
	if err := load("pass", spec, err, nil, &objs); err != nil {
		return nil, err
	}
	return objs.Prog, nil
}

// XSK redirects every frame to the AF_XDP socket registered for its
// receive queue, and passes it to the kernel when there is none.
type XSK struct {
	objs struct {
		Prog *ebpf.Program `ebpf:"xlb_xsk"`
		Map  *ebpf.Map     `ebpf:"xsks"`
	}
}

// LoadXSK loads the redirect program and its XSKMAP (queues 0 to 63).
func LoadXSK() (*XSK, error) {
	x := &XSK{}
	spec, err := loadFwd()
	if err := load("xsk", spec, err, nil, &x.objs); err != nil {
		return nil, err
	}
	return x, nil
}

// Program is the XDP program to attach to the interface the sockets are
// bound to.
func (x *XSK) Program() *ebpf.Program { return x.objs.Prog }

// SetSocket registers the AF_XDP socket fd for queue.
func (x *XSK) SetSocket(queue, fd int) error {
	if err := x.objs.Map.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("labprogs: register socket for queue %d: %w", queue, err)
	}
	return nil
}

// Close unloads the program and its map; sockets in it are released.
func (x *XSK) Close() error {
	return _FwdClose(x.objs.Prog, x.objs.Map)
}
