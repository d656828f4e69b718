package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// recorder is a slog.Handler that keeps "LEVEL msg" lines.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func TestGobgpLogger(t *testing.T) {
	peer := netip.MustParseAddr("198.18.0.1")
	key := gobgplog.Fields{"Topic": "Peer", "Key": peer.String()}
	with := func(k string, v any) gobgplog.Fields {
		f := gobgplog.Fields{k: v}
		for a, b := range key {
			f[a] = b
		}
		return f
	}
	type call struct {
		level string // debug, info, warn, error
		msg   string
		f     gobgplog.Fields
	}
	tests := []struct {
		name      string
		calls     []call
		logged    string // logged lines, "|"-separated
		errors    uint64
		lastError string
	}{
		{
			name:   "connect failures warn once",
			calls:  []call{{"debug", "failed to connect", with("Error", "i/o timeout")}, {"debug", "failed to connect", with("Error", "i/o timeout")}},
			logged: "WARN gobgp: failed to connect|DEBUG gobgp: failed to connect", errors: 2, lastError: "failed to connect: i/o timeout",
		},
		{
			name:   "notification",
			calls:  []call{{"warn", "sent notification", with("Data", "as number mismatch")}},
			logged: "WARN gobgp: sent notification", errors: 1, lastError: "sent notification: as number mismatch",
		},
		{
			name:   "peer down",
			calls:  []call{{"info", "Peer Down", with("Reason", "hold-timer-expired")}},
			logged: "WARN gobgp: Peer Down", errors: 1, lastError: "Peer Down: hold-timer-expired",
		},
		{
			name:   "own close is no problem",
			calls:  []call{{"info", "Peer Down", with("Reason", "dying")}},
			logged: "INFO gobgp: Peer Down",
		},
		{
			name:   "other peer or none",
			calls:  []call{{"warn", "sent notification", gobgplog.Fields{"Key": "198.18.0.99"}}, {"error", "failed", nil}},
			logged: "WARN gobgp: sent notification|ERROR gobgp: failed",
		},
		{
			name:   "debug chatter",
			calls:  []call{{"debug", "received update", key}, {"info", "Peer Up", key}},
			logged: "DEBUG gobgp: received update|INFO gobgp: Peer Up",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			stats := newPeerStats()
			stats.add(peer)
			l := &gobgpLogger{log: slog.New(rec), stats: stats}
			for _, c := range tt.calls {
				map[string]func(string, gobgplog.Fields){"debug": l.Debug, "info": l.Info, "warn": l.Warn, "error": l.Error}[c.level](c.msg, c.f)
			}
			if got := strings.Join(rec.lines, "|"); got != tt.logged {
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
	stats := newPeerStats()
	stats.add(peer)
	event := func(s api.PeerState_SessionState) *api.WatchEventResponse {
		return &api.WatchEventResponse{Event: &api.WatchEventResponse_Peer{Peer: &api.WatchEventResponse_PeerEvent{
			Type: api.WatchEventResponse_PeerEvent_STATE,
			Peer: &api.Peer{State: &api.PeerState{NeighborAddress: peer.String(), SessionState: s}},
		}}}
	}
	for _, s := range []api.PeerState_SessionState{
		api.PeerState_ACTIVE, api.PeerState_OPENSENT, api.PeerState_OPENCONFIRM, api.PeerState_ESTABLISHED,
		api.PeerState_ESTABLISHED, // repeated: no second count
		api.PeerState_IDLE, api.PeerState_ACTIVE, api.PeerState_ESTABLISHED,
	} {
		stats.event(event(s))
	}
	if st := stats.get(peer); st.Established != 2 || st.Drops != 1 {
		t.Errorf("established %d drops %d, want 2 and 1", st.Established, st.Drops)
	}
	for i, name := range stateNames {
		var s SessionState
		if err := s.UnmarshalText([]byte(name)); err != nil || int(s) != i || s.String() != name {
			t.Errorf("state %q: %v %v", name, s, err)
		}
	}
}
