package splice

import (
	"errors"
	"net/netip"
	"time"
)

// Side is one TCP connection's state as its socket reports it in repair
// mode (design section 2).
type Side struct {
	// Local and Remote are the socket's own view: the client socket sC is
	// VIP:443 <-> client, the backend socket sB is LB:lport <-> backend.
	Local, Remote netip.AddrPort
	// SndNxt and RcvNxt are TCP_QUEUE_SEQ of the send and receive queues.
	SndNxt, RcvNxt uint32
	// SndWscale is tcpi_snd_wscale (the shift the peer applies to the
	// windows it sends), RcvWscale tcpi_rcv_wscale (the shift this socket
	// announced); 0 when window scaling was not negotiated.
	SndWscale, RcvWscale uint8
	// SACK and Timestamps are TCPI_OPT_SACK and TCPI_OPT_TIMESTAMPS of
	// tcpi_options.
	SACK, Timestamps bool
	// TSClock is getsockopt(TCP_TIMESTAMP) read after the socket's last
	// send: the socket's timestamp clock, which the peer last saw at most.
	TSClock uint32
}

// Hop is how a rewritten frame leaves toward one peer: out of Ifindex
// (XDP_TX when it is the interface the frame came in on, else bpf_redirect)
// with these MACs.
type Hop struct {
	Ifindex  int
	Src, Dst [6]byte
}

// Pair is what the proxy hands over: both connections and the hops toward
// their peers.
type Pair struct {
	Client, Backend     Side
	ToClient, ToBackend Hop
}

// Errors for which a pair stays proxied by copy.
var (
	// ErrFull: no free pair slot, or the splice map is full (counted
	// splice_table_full).
	ErrFull = errors.New("splice: table full")
	// ErrOptionsMismatch: one connection negotiated timestamps and the
	// other did not, so one peer would get segments with and then without
	// them (counted options_mismatch).
	ErrOptionsMismatch = errors.New("splice: TCP options differ between the connections")
	// ErrFamilyMismatch: the connections are of different IP families
	// (the rewrite keeps the header's size).
	ErrFamilyMismatch = errors.New("splice: the connections' IP families differ")
)

// Direction is one direction of a pair; it indexes Status's arrays and is
// the splice_dir.dir of its entry.
type Direction uint8

const (
	ClientToBackend Direction = 0
	BackendToClient Direction = 1
)

func (d Direction) String() string {
	if d == ClientToBackend {
		return "client_to_backend"
	}
	return "backend_to_client"
}

// Slot is a pair's index: both directions' entries point at it, and it
// indexes the pair's state and counters.
type Slot uint32

// Status is what the datapath recorded about a pair.
type Status struct {
	// FinFromClient and FinFromBackend: a FIN went through that way.
	// Reset: an RST went through either way.
	FinFromClient, FinFromBackend, Reset bool
	// LastPacket is bpf_ktime_get_coarse_ns of the last packet
	// (CLOCK_MONOTONIC); 0: none yet.
	LastPacket time.Duration
	// Packets and Bytes (whole frames as received) per Direction, summed
	// over CPUs.
	Packets, Bytes [2]uint64
	// LastSeq and LastAck per Direction, as the last packet arrived
	// (before translation), for an idle reset.
	LastSeq, LastAck [2]uint32
}
