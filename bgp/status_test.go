package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// recorder is a slog.Handler that keeps "LEVEL msg" lines from min up.
type recorder struct {
	min   slog.Level
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.min }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "|")
}

func TestLogHandler(t *testing.T) {
	peer := netip.MustParseAddr("198.18.0.1")
	type record struct {
		peer          bool // logged by the peer's logger (with Key)
		level         slog.Level
		msg           string
		code, subcode int
	}
	fail := record{true, slog.LevelDebug, "failed to connect", 0, 0}
	badAS := record{true, slog.LevelInfo, "sent notification", 2, 2}
	cease := record{true, slog.LevelInfo, "sent notification", 6, 3}
	ceased := record{true, slog.LevelInfo, "received notification", 6, 2}
	tests := []struct {
		name      string
		min       slog.Level
		records   []record
		logged    string
		errors    uint64
		lastError string
	}{
		{"first failure warns", slog.LevelInfo, []record{fail, fail, fail}, "WARN gobgp: failed to connect", 3, "failed to connect: i/o timeout"},
		{"debug shows repeats", slog.LevelDebug, []record{fail, fail}, "WARN gobgp: failed to connect|DEBUG gobgp: failed to connect", 2, "failed to connect: i/o timeout"},
		{"not a peer's", slog.LevelDebug, []record{{false, slog.LevelDebug, "failed to connect", 0, 0}}, "DEBUG gobgp: failed to connect", 0, ""},
		{"others pass by level", slog.LevelInfo, []record{{true, slog.LevelDebug, "sent", 0, 0}, {true, slog.LevelInfo, "Peer Up", 0, 0}, {false, slog.LevelError, "oops", 0, 0}}, "INFO gobgp: Peer Up|ERROR gobgp: oops", 0, ""},
		{"refused open", slog.LevelInfo, []record{badAS}, "WARN gobgp: sent notification", 1, "sent notification: code 2(open) subcode 2(bad peer as)"},
		{"own cease", slog.LevelInfo, []record{cease}, "INFO gobgp: sent notification", 0, ""},
		{"router's cease", slog.LevelInfo, []record{ceased}, "WARN gobgp: received notification", 1, "received notification: code 6(cease) subcode 2(administrative shutdown)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{min: tt.min}
			stats := newPeerStats(slog.New(rec))
			stats.add(peer)
			base := slog.New(&logHandler{next: rec, stats: stats})
			peerLog := base.With(slog.String("Topic", "Peer"), slog.String("Key", peer.String()))
			for _, r := range tt.records {
				l := base
				if r.peer {
					l = peerLog
				}
				l.Log(context.Background(), r.level, r.msg, slog.String("Error", "i/o timeout"), slog.Int("Code", r.code), slog.Int("Subcode", r.subcode))
			}
			if got := rec.String(); got != tt.logged {
				t.Errorf("logged %q, want %q", got, tt.logged)
			}
			st := stats.get(peer)
			if st.Errors != tt.errors || st.LastError != tt.lastError {
				t.Errorf("errors %d %q, want %d %q", st.Errors, st.LastError, tt.errors, tt.lastError)
			}
		})
	}
}

func TestPeerStatsEvents(t *testing.T) {
	peer := netip.MustParseAddr("2001:db8::1")
	rec := &recorder{}
	stats := newPeerStats(slog.New(rec))
	stats.add(peer)
	event := func(s bgp.FSMState, why api.PeerState_DisconnectReason, msg string) *apiutil.WatchEventMessage_PeerEvent {
		return &apiutil.WatchEventMessage_PeerEvent{
			Type: apiutil.PEER_EVENT_STATE,
			Peer: apiutil.Peer{State: apiutil.PeerState{NeighborAddress: peer, SessionState: s, DisconnectReason: why, DisconnectMessage: msg}},
		}
	}
	none := api.PeerState_DISCONNECT_REASON_UNSPECIFIED
	for _, ev := range []*apiutil.WatchEventMessage_PeerEvent{
		event(bgp.BGP_FSM_ACTIVE, none, ""),
		event(bgp.BGP_FSM_OPENSENT, none, ""),
		event(bgp.BGP_FSM_IDLE, api.PeerState_DISCONNECT_REASON_BAD_PEER_AS, "bad-peer-as"),
		event(bgp.BGP_FSM_OPENCONFIRM, none, ""),
		event(bgp.BGP_FSM_ESTABLISHED, none, ""),
		event(bgp.BGP_FSM_ESTABLISHED, none, ""), // repeated: no second count
		event(bgp.BGP_FSM_IDLE, api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED, "hold-timer-expired"),
		event(bgp.BGP_FSM_ESTABLISHED, none, ""),
		event(bgp.BGP_FSM_IDLE, api.PeerState_DISCONNECT_REASON_DECONFIGURED, "deconfigured"), // our own doing
	} {
		stats.event(ev, time.Time{})
	}
	st := stats.get(peer)
	// Only the hold timer is an error here: the refused OPEN is counted
	// from the log, the removal was this speaker's own.
	if st.Established != 2 || st.Drops != 2 || st.Errors != 1 || st.LastError != "hold-timer-expired" {
		t.Errorf("established %d drops %d errors %d %q; want 2, 2, 1 \"hold-timer-expired\"", st.Established, st.Drops, st.Errors, st.LastError)
	}
	if got := rec.String(); got != "WARN bgp session failed" {
		t.Errorf("logged %q", got)
	}
	for i, name := range stateNames {
		var s SessionState
		if err := s.UnmarshalText([]byte(name)); err != nil || int(s) != i || s.String() != name {
			t.Errorf("state %q: %v %v", name, s, err)
		}
	}
	if stateOf(bgp.BGP_FSM_ESTABLISHED) != StateEstablished || stateOf(bgp.BGP_FSM_IDLE) != StateIdle {
		t.Error("stateOf maps gobgp's states wrongly")
	}
}
