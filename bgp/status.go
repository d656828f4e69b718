package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// SessionState is the RFC 4271 state of a session.
type SessionState uint8

const (
	StateUnknown SessionState = iota
	StateIdle
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

var stateNames = [...]string{"unknown", "idle", "connect", "active", "opensent", "openconfirm", "established"}

func (s SessionState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// MarshalText writes the name, for JSON status output.
func (s SessionState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (s *SessionState) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("bgp: unknown session state %q", b)
	}
	*s = SessionState(i)
	return nil
}

// Status is a snapshot of the speaker.
type Status struct {
	Peers []PeerStatus
	// Announced is what the speaker offers its peers, in prefix order.
	Announced []Route
}

// PeerStatus describes one peer's session.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	State   SessionState
	// Since is when the session became established; zero when it is not.
	Since time.Time
	// Uptime is how long it has been established, at the snapshot.
	Uptime time.Duration
	// HoldTime is the negotiated hold time while established.
	HoldTime time.Duration
	// Advertised and Received count routes sent to and received from the
	// peer over all families.
	Advertised, Received uint64
	// Established counts the times the session came up; Drops the times
	// it went down from established. Counters start when the peer is
	// added, again when Reconfigure replaces it.
	Established, Drops uint64
	// Errors counts this peer's problems: failed connection attempts,
	// NOTIFICATIONs sent or received (a wrong ASN, the router's shutdown;
	// not this speaker's own Cease), sessions ended by an expired hold
	// timer, a failed read or write or an invalid message. LastError is
	// the latest, kept after the session recovers.
	Errors    uint64
	LastError string
	// Messages sent and received over all sessions with this peer.
	UpdatesSent, UpdatesReceived             uint64
	NotificationsSent, NotificationsReceived uint64
}

// Status returns the state of every configured peer, in configuration
// order, and the announced routes.
func (s *Speaker) Status() (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Status{}, ErrClosed
	}
	byAddr := map[string]*api.Peer{}
	err := s.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		byAddr[p.GetState().GetNeighborAddress()] = p
	})
	if err != nil {
		return Status{}, fmt.Errorf("bgp: list peers: %w", err)
	}
	now := time.Now()
	st := Status{Announced: make([]Route, 0, len(s.announced))}
	for _, r := range s.announced {
		st.Announced = append(st.Announced, r)
	}
	slices.SortFunc(st.Announced, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	for _, cfg := range s.cfg.Peers {
		ps := s.stats.get(cfg.Address)
		ps.Address, ps.ASN = cfg.Address, cfg.ASN
		if p := byAddr[cfg.Address.String()]; p != nil {
			ps.State = SessionState(p.GetState().GetSessionState())
			msgs := p.GetState().GetMessages()
			ps.UpdatesSent, ps.UpdatesReceived = msgs.GetSent().GetUpdate(), msgs.GetReceived().GetUpdate()
			ps.NotificationsSent, ps.NotificationsReceived = msgs.GetSent().GetNotification(), msgs.GetReceived().GetNotification()
			if ps.State == StateEstablished {
				if up := p.GetTimers().GetState().GetUptime(); up != nil {
					ps.Since = up.AsTime()
					ps.Uptime = now.Sub(ps.Since)
				}
				ps.HoldTime = time.Duration(p.GetTimers().GetState().GetNegotiatedHoldTime()) * time.Second
			}
			for _, af := range p.GetAfiSafis() {
				ps.Advertised += af.GetState().GetAdvertised()
				ps.Received += af.GetState().GetReceived()
			}
		}
		st.Peers = append(st.Peers, ps)
	}
	return st, nil
}

// peerStats keeps what gobgp reports only as events and log records:
// state transitions and problems, per peer address.
type peerStats struct {
	log   *slog.Logger
	mu    sync.Mutex
	peers map[string]*peerCounters
}

type peerCounters struct {
	state                      SessionState
	established, drops, errors uint64
	lastError                  string
	failing                    bool // the last connection attempt failed
}

func newPeerStats(log *slog.Logger) *peerStats {
	return &peerStats{log: log, peers: map[string]*peerCounters{}}
}

func (ps *peerStats) add(a netip.Addr) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.peers[a.String()] = &peerCounters{}
}

func (ps *peerStats) remove(a netip.Addr) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.peers, a.String())
}

func (ps *peerStats) get(a netip.Addr) PeerStatus {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.peers[a.String()]
	if c == nil {
		return PeerStatus{}
	}
	return PeerStatus{Established: c.established, Drops: c.drops, Errors: c.errors, LastError: c.lastError}
}

// event counts session transitions from gobgp's peer events, and the
// sessions that end for a fault of the connection: an expired hold timer,
// a failed read or write, an invalid message. NOTIFICATIONs are counted
// from the log (see logHandler): gobgp reports no state change for an
// OPEN it refuses.
func (ps *peerStats) event(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.peers[st.NeighborAddress.String()]
	if c == nil {
		return
	}
	next := stateOf(st.SessionState)
	switch {
	case next == StateEstablished && c.state != StateEstablished:
		c.established++
		c.failing = false
	case next != StateEstablished && c.state == StateEstablished:
		c.drops++
	}
	c.state = next
	switch st.DisconnectReason {
	case api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED, api.PeerState_DISCONNECT_REASON_READ_FAILED,
		api.PeerState_DISCONNECT_REASON_WRITE_FAILED, api.PeerState_DISCONNECT_REASON_INVALID_MSG:
		c.errors++
		c.lastError = st.DisconnectMessage
		ps.log.Warn("bgp session failed", "peer", st.NeighborAddress, "state", next, "reason", st.DisconnectMessage)
	}
}

// stateOf maps gobgp's FSM state, which counts from idle = 0.
func stateOf(s bgp.FSMState) SessionState { return SessionState(s + 1) }

// problem counts a problem with peer key. A failed connection attempt is
// worth a warning only as the first of a run (first); later ones are
// logged at debug level.
func (ps *peerStats) problem(key, msg string, connect bool) (first bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.peers[key]
	if c == nil {
		return false
	}
	c.errors++
	c.lastError = msg
	if !connect {
		return false
	}
	first = !c.failing
	c.failing = true
	return first
}

// logHandler passes gobgp's log records on to the caller's handler (next)
// and counts the problems that gobgp reports only in its log: failed
// connection attempts (debug records; the first of a run is raised to a
// warning) and NOTIFICATIONs sent or received (info records, raised to
// warnings), such as a refused OPEN from a router with another ASN. A
// Cease sent is this speaker closing or replacing a session, no problem.
// gobgp binds the peer's address to its per-peer logger as attribute Key.
type logHandler struct {
	next  slog.Handler
	stats *peerStats
	key   string // the peer of this logger, if any
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.key != "" {
		switch r.Message {
		case "failed to connect":
			msg := r.Message
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "Error" {
					msg += ": " + a.Value.String()
				}
				return true
			})
			if h.stats.problem(h.key, msg, true) {
				r.Level = slog.LevelWarn
			}
		case "sent notification", "received notification":
			var code, subcode int64
			r.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "Code":
					code = a.Value.Int64()
				case "Subcode":
					subcode = a.Value.Int64()
				}
				return true
			})
			if r.Message == "sent notification" && code == bgp.BGP_ERROR_CEASE {
				break
			}
			h.stats.problem(h.key, r.Message+": "+bgp.NewNotificationErrorCode(uint8(code), uint8(subcode)).String(), false)
			r.Level = max(r.Level, slog.LevelWarn)
		}
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	r.Message = "gobgp: " + r.Message
	return h.next.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "Key" {
			c.key = a.Value.String()
		}
	}
	return &c
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
