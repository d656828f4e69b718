package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/datapath/packet"
)

// Direction selects the frames as received (RX), as sent (TX) or both.
type Direction uint8

const (
	RX   Direction = 1 << iota // the frame as the worker received it
	TX                         // the frame as the worker sent it
	Both = RX | TX
)

func (d Direction) String() string {
	switch d {
	case RX:
		return "rx"
	case TX:
		return "tx"
	case Both:
		return "both"
	}
	return "unknown"
}

// ParseDirection reads rx, tx or both.
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "rx":
		return RX, nil
	case "tx":
		return TX, nil
	case "both", "":
		return Both, nil
	}
	return 0, fmt.Errorf("direction %q: want rx, tx or both", s)
}

// Bounds of a request.
const (
	// DefaultSnaplen captures whole frames of a 1500-byte MTU and a VLAN
	// tag with the forwarding header in front.
	DefaultSnaplen = 2048
	// MaxSnaplen covers the largest frame an AF_XDP frame holds.
	MaxSnaplen = 9216
	// MaxCount bounds --count so a typo cannot ask for forever.
	MaxCount = 1 << 40
)

// Request is the JSON argument of the control socket's capture command, as
// `xlb capture` sends it. Empty fields match everything.
type Request struct {
	VIP       string `json:"vip,omitempty"`       // ADDR:PORT/PROTO; port 0 is the every-port VIP
	Backend   string `json:"backend,omitempty"`   // backend address
	Queue     *int   `json:"queue,omitempty"`     // NIC queue
	Direction string `json:"direction,omitempty"` // rx, tx or both (default)
	Snaplen   int    `json:"snaplen,omitempty"`   // bytes kept per frame; 0: DefaultSnaplen
	Count     uint64 `json:"count,omitempty"`     // stop after this many frames; 0: no limit
	// Duration stops the capture after this long ("1m30s"); empty: no
	// limit.
	Duration string `json:"duration,omitempty"`
}

// Filter is a checked Request: what a capture keeps.
type Filter struct {
	VIP       netip.AddrPort // invalid: any
	VIPProto  uint8          // with VIP
	Backend   netip.Addr     // invalid: any
	Queue     int            // -1: any
	Direction Direction
	Snaplen   int
	Count     uint64
	Duration  time.Duration
}

// ParseRequest decodes and checks the capture command's JSON argument.
func ParseRequest(raw []byte) (Filter, error) {
	var r Request
	if len(raw) > 0 {
		d := json.NewDecoder(strings.NewReader(string(raw)))
		d.DisallowUnknownFields()
		if err := d.Decode(&r); err != nil {
			return Filter{}, fmt.Errorf("capture request: %w", err)
		}
	}
	return r.Filter()
}

// Filter checks r.
func (r Request) Filter() (Filter, error) {
	f := Filter{Queue: -1, Snaplen: r.Snaplen, Count: r.Count}
	var err error
	if r.VIP != "" {
		if f.VIP, f.VIPProto, err = ParseVIP(r.VIP); err != nil {
			return Filter{}, err
		}
	}
	if r.Backend != "" {
		if f.Backend, err = netip.ParseAddr(r.Backend); err != nil {
			return Filter{}, fmt.Errorf("backend %q: %w", r.Backend, err)
		}
		if f.Backend.Zone() != "" {
			return Filter{}, fmt.Errorf("backend %q: no zone allowed", r.Backend)
		}
		f.Backend = f.Backend.Unmap()
	}
	if r.Queue != nil {
		if *r.Queue < 0 || *r.Queue > 0xffff {
			return Filter{}, fmt.Errorf("queue %d: out of range", *r.Queue)
		}
		f.Queue = *r.Queue
	}
	if f.Direction, err = ParseDirection(r.Direction); err != nil {
		return Filter{}, err
	}
	switch {
	case f.Snaplen == 0:
		f.Snaplen = DefaultSnaplen
	case f.Snaplen < 64 || f.Snaplen > MaxSnaplen:
		return Filter{}, fmt.Errorf("snaplen %d: want 64 to %d", f.Snaplen, MaxSnaplen)
	}
	if f.Count > MaxCount {
		return Filter{}, fmt.Errorf("count %d: at most %d", f.Count, uint64(MaxCount))
	}
	if r.Duration != "" {
		if f.Duration, err = time.ParseDuration(r.Duration); err != nil {
			return Filter{}, fmt.Errorf("duration: %w", err)
		}
		if f.Duration <= 0 {
			return Filter{}, errors.New("duration: must be positive")
		}
	}
	return f, nil
}

// ParseVIP reads ADDR:PORT/PROTO (tcp or udp), as `xlb stats` prints a VIP.
func ParseVIP(s string) (netip.AddrPort, uint8, error) {
	ap, proto, ok := strings.Cut(s, "/")
	if !ok {
		return netip.AddrPort{}, 0, fmt.Errorf("vip %q: want ADDR:PORT/PROTO", s)
	}
	var p uint8
	switch proto {
	case "tcp":
		p = 6
	case "udp":
		p = 17
	default:
		if n, err := strconv.ParseUint(proto, 10, 8); err == nil && (n == 6 || n == 17) {
			p = uint8(n)
		} else {
			return netip.AddrPort{}, 0, fmt.Errorf("vip %q: protocol %q: want tcp or udp", s, proto)
		}
	}
	a, err := netip.ParseAddrPort(ap)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("vip %q: %w", s, err)
	}
	if a.Addr().Zone() != "" {
		return netip.AddrPort{}, 0, fmt.Errorf("vip %q: no zone allowed", s)
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), p, nil
}

// Wants reports whether the filter admits queue at all: a worker of
// another queue gets no ring.
func (f *Filter) Wants(queue int) bool { return f.Queue < 0 || f.Queue == queue }

// MatchRX reports whether a received frame is for the filter's VIP. It
// parses the frame (allocation-free) only when the filter names a VIP.
func (f *Filter) MatchRX(frame []byte) bool {
	if !f.VIP.IsValid() {
		return true
	}
	var fl packet.Flow
	if packet.Parse(frame, &fl) != packet.OK || fl.Proto != f.VIPProto {
		return false
	}
	if p := f.VIP.Port(); p != 0 && fl.DstPort != p {
		return false
	}
	a := f.VIP.Addr()
	if a.Is4() {
		if fl.Family != 4 {
			return false
		}
		b := a.As4()
		return fl.Dst == uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24
	}
	return fl.Family == 6 && fl.Dst6 == a.As16()
}

// MatchBackend reports whether a frame sent to backend (invalid: dropped or
// answered by the balancer) passes the filter's backend.
func (f *Filter) MatchBackend(backend netip.Addr) bool {
	return !f.Backend.IsValid() || f.Backend == backend
}
