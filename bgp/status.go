package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
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
	// Errors counts the problems gobgp logged for this peer (failed
	// connections, NOTIFICATIONs sent or received, such as a wrong ASN);
	// LastError is the latest, kept after the session recovers.
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

// peerStats keeps what gobgp reports only as events and log lines: state
// transitions and errors, per peer address.
type peerStats struct {
	mu    sync.Mutex
	peers map[string]*peerCounters
}

type peerCounters struct {
	state                      SessionState
	established, drops, errors uint64
	lastError                  string
	failing                    bool // the last connection attempt failed
}

func newPeerStats() *peerStats { return &peerStats{peers: map[string]*peerCounters{}} }

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

// event counts session transitions from gobgp's peer events.
func (ps *peerStats) event(ev *api.WatchEventResponse) {
	pe := ev.GetPeer()
	if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	st := pe.GetPeer().GetState()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.peers[st.GetNeighborAddress()]
	if c == nil {
		return
	}
	next := SessionState(st.GetSessionState())
	switch {
	case next == StateEstablished && c.state != StateEstablished:
		c.established++
		c.failing = false
	case next != StateEstablished && c.state == StateEstablished:
		c.drops++
	}
	c.state = next
}

// problem records an error about peer key and reports whether it is the
// first of a run of failed connection attempts (or not one at all), which
// is worth a warning; repeats are logged at debug level.
func (ps *peerStats) problem(key, msg string, connectFailure bool) (warn bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.peers[key]
	if c == nil {
		return true
	}
	c.errors++
	c.lastError = msg
	if connectFailure {
		warn = !c.failing
		c.failing = true
		return warn
	}
	return true
}

// gobgpLogger turns gobgp's log calls into slog records and the per-peer
// problems among them into counters. gobgp reports a failed connection
// attempt only at debug level, so the logger claims debug level and
// decides itself what reaches slog at which level.
type gobgpLogger struct {
	log   *slog.Logger
	stats *peerStats
}

func (l *gobgpLogger) Panic(msg string, f gobgplog.Fields) {
	l.emit(slog.LevelError, msg, f)
	panic(msg)
}

// Fatal only logs, at error level: a library must not end the process
// (GoBGP's own logger exits). GoBGP calls it for broken internal
// invariants and for a policy reload that also returns its error.
func (l *gobgpLogger) Fatal(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *gobgpLogger) Error(msg string, f gobgplog.Fields) { l.problem(slog.LevelError, msg, f) }
func (l *gobgpLogger) Warn(msg string, f gobgplog.Fields)  { l.problem(slog.LevelWarn, msg, f) }
func (l *gobgpLogger) Info(msg string, f gobgplog.Fields) {
	// "dying" is a session this speaker ended itself (Close, a removed
	// or replaced peer): news, not a problem.
	if msg == "Peer Down" && fmt.Sprint(f["Reason"]) != "dying" {
		l.problem(slog.LevelWarn, msg, f)
		return
	}
	l.emit(slog.LevelInfo, msg, f)
}
func (l *gobgpLogger) Debug(msg string, f gobgplog.Fields) {
	if msg == "failed to connect" {
		l.problem(slog.LevelDebug, msg, f)
		return
	}
	l.emit(slog.LevelDebug, msg, f)
}
func (l *gobgpLogger) SetLevel(gobgplog.LogLevel)  {}
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }

// problem counts a message about a peer (field Key) and logs it.
func (l *gobgpLogger) problem(level slog.Level, msg string, f gobgplog.Fields) {
	key, _ := f["Key"].(string)
	if key == "" {
		l.emit(level, msg, f)
		return
	}
	detail := msg
	for _, k := range []string{"Reason", "Error", "Err", "Data"} {
		if v, ok := f[k]; ok && v != nil {
			detail += ": " + fmt.Sprint(v)
		}
	}
	connect := msg == "failed to connect"
	if l.stats.problem(key, detail, connect) && connect {
		level = slog.LevelWarn
	}
	l.emit(level, msg, f)
}

func (l *gobgpLogger) emit(level slog.Level, msg string, f gobgplog.Fields) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(f))
	for k, v := range f {
		if k == gobgplog.FieldFacility {
			continue
		}
		attrs = append(attrs, slog.Any(strings.ToLower(k), v))
	}
	slices.SortFunc(attrs, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	l.log.LogAttrs(context.Background(), level, "gobgp: "+msg, attrs...)
}
