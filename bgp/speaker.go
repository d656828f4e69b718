package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// ErrClosed is returned by a Speaker's methods after Close.
var ErrClosed = errors.New("bgp: speaker closed")

// ErrRestartRequired is returned by Reconfigure when the new Config changes
// the speaker's identity (ASN, router ID, listen port), which only a new
// Speaker can apply; nothing is changed.
var ErrRestartRequired = errors.New("bgp: asn, router_id or listen_port changed: restart the speaker")

// Speaker is a running BGP speaker. Its methods are safe for concurrent use.
type Speaker struct {
	log   *slog.Logger
	srv   *server.BgpServer
	stats *peerStats
	stop  context.CancelFunc // ends the event watcher

	mu        sync.Mutex // serializes changes to peers and routes
	cfg       Config
	announced routeSet // in gobgp's RIB
	closed    bool
}

// Start validates cfg and starts a speaker with its peers, announcing
// nothing yet. ctx bounds the start only; the speaker runs until Close.
// Sessions come up in the background: an unreachable or misconfigured peer
// is logged to logger (slog.Default() if nil) and counted in Status, never
// an error here. The speaker's sockets belong to the network namespace of
// the process (see the package documentation).
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "bgp")
	stats := newPeerStats(logger)
	// gobgp logs at debug level and the handler passes on what the
	// caller's handler wants: it needs the debug records to see failed
	// connections, which gobgp reports nowhere else (see logHandler).
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	srv := server.NewBgpServer(server.LoggerOption(slog.New(&logHandler{next: logger.Handler(), stats: stats}), level))
	go srv.Serve()
	wctx, stop := context.WithCancel(context.Background())
	s := &Speaker{log: logger, srv: srv, stats: stats, stop: stop, cfg: Config{ASN: cfg.ASN, RouterID: cfg.RouterID, ListenPort: cfg.ListenPort}, announced: routeSet{}}
	fail := func(err error) (*Speaker, error) {
		stop()
		srv.Stop()
		return nil, err
	}
	listen := int32(-1) // gobgp opens no listener for a negative port
	if cfg.ListenPort != 0 {
		listen = int32(cfg.ListenPort)
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        cfg.ASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: listen,
	}}); err != nil {
		return fail(fmt.Errorf("bgp: start: %w", err))
	}
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: nextHopPolicy}}); err != nil {
		return fail(fmt.Errorf("bgp: next-hop policy: %w", err))
	}
	if err := srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies:      []*api.Policy{{Name: nextHopPolicy}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}}); err != nil {
		return fail(fmt.Errorf("bgp: next-hop policy: %w", err))
	}
	if err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: stats.event}, server.WatchPeer()); err != nil {
		return fail(fmt.Errorf("bgp: watch peer events: %w", err))
	}
	for _, p := range cfg.Peers {
		if err := s.addPeer(ctx, p); err != nil {
			return fail(err)
		}
	}
	logger.Info("bgp speaker started", "asn", cfg.ASN, "router_id", cfg.RouterID, "listen_port", cfg.ListenPort, "peers", len(cfg.Peers))
	return s, nil
}

// nextHopPolicy is the global export policy that sets configured next
// hops. GoBGP applies import and export policies per peer only to
// route-server clients; for other peers they are global, so the policy
// holds a statement per peer and family that matches the peer by a
// neighbor set of its own.
const nextHopPolicy = "xlb-next-hop"

func peerSet(addr netip.Addr) string { return "xlb-peer-" + addr.String() }

func nextHopStatement(addr netip.Addr, f *api.Family) string {
	return "xlb-next-hop-" + addr.String() + "-" + f.Afi.String()
}

var (
	family4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	family6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// nextHop is a configured next hop and the family it is for.
type nextHop struct {
	addr   netip.Addr
	family *api.Family
}

// nextHops lists p's configured next hops.
func (p Peer) nextHops() []nextHop {
	var out []nextHop
	for _, nh := range []nextHop{{p.NextHop, family4}, {p.NextHop6, family6}} {
		if nh.addr.IsValid() {
			out = append(out, nh)
		}
	}
	return out
}

// addPeer adds p to gobgp (and its next-hop policy first, so the session
// never sends a route without it) and to s.cfg.
func (s *Speaker) addPeer(ctx context.Context, p Peer) error {
	d := p.withDefaults()
	hold := uint64(d.HoldTime / time.Second)
	peer := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
			ConnectRetry:      uint64(d.ConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(d.Port)},
	}
	if p.carries4() {
		peer.AfiSafis = append(peer.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: family4, Enabled: true}})
	}
	if p.carries6() {
		peer.AfiSafis = append(peer.AfiSafis, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: family6, Enabled: true}})
	}
	if err := s.addNextHops(ctx, p); err != nil {
		return err
	}
	s.stats.add(p.Address)
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
		s.stats.remove(p.Address)
		return errors.Join(fmt.Errorf("bgp: add peer %v: %w", p.Address, err), s.deleteNextHops(ctx, p))
	}
	s.cfg.Peers = append(s.cfg.Peers, p)
	s.log.Info("bgp peer added", "peer", p.Address, "peer_asn", p.ASN, "hold_time", d.HoldTime)
	return nil
}

// addNextHops adds p's statements to the next-hop policy, before p's
// session exists, so no route ever goes to p without them.
func (s *Speaker) addNextHops(ctx context.Context, p Peer) error {
	nhs := p.nextHops()
	if len(nhs) == 0 {
		return nil
	}
	set := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: peerSet(p.Address), List: []string{netip.PrefixFrom(p.Address, p.Address.BitLen()).String()}}
	if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set}); err != nil {
		return fmt.Errorf("bgp: peer %v: next-hop neighbor set: %w", p.Address, err)
	}
	policy := &api.Policy{Name: nextHopPolicy}
	for _, nh := range nhs {
		policy.Statements = append(policy.Statements, &api.Statement{
			Name: nextHopStatement(p.Address, nh.family),
			Conditions: &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: set.Name},
				AfiSafiIn:   []*api.Family{nh.family},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_UNSPECIFIED, Nexthop: &api.NexthopAction{Address: nh.addr.String()}},
		})
	}
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: policy}); err != nil {
		_ = s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set, All: true})
		return fmt.Errorf("bgp: peer %v: next-hop policy: %w", p.Address, err)
	}
	return nil
}

// deleteNextHops undoes addNextHops.
func (s *Speaker) deleteNextHops(ctx context.Context, p Peer) error {
	nhs := p.nextHops()
	if len(nhs) == 0 {
		return nil
	}
	policy := &api.Policy{Name: nextHopPolicy}
	for _, nh := range nhs {
		policy.Statements = append(policy.Statements, &api.Statement{Name: nextHopStatement(p.Address, nh.family)})
	}
	var errs []error
	if err := s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: policy}); err != nil {
		errs = append(errs, err)
	}
	set := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: peerSet(p.Address)}
	if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set, All: true}); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bgp: peer %v: delete next-hop policy: %w", p.Address, err)
	}
	return nil
}

// deletePeer removes the peer at s.cfg.Peers[i]; gobgp closes its session
// with a Cease NOTIFICATION, so the peer drops its routes at once.
func (s *Speaker) deletePeer(ctx context.Context, i int) error {
	p := s.cfg.Peers[i]
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
		return fmt.Errorf("bgp: delete peer %v: %w", p.Address, err)
	}
	s.cfg.Peers = slices.Delete(s.cfg.Peers, i, i+1)
	s.stats.remove(p.Address)
	if err := s.deleteNextHops(ctx, p); err != nil {
		return err
	}
	s.log.Info("bgp peer removed", "peer", p.Address)
	return nil
}

// Reconfigure applies cfg's peers: it removes the peers cfg no longer
// lists, adds the new ones and replaces (session reset) those whose
// settings changed. A peer whose settings are equal keeps its session and
// its routes: nothing is sent to it. A cfg that does not validate, or that
// changes the ASN, router ID or listen port (ErrRestartRequired), changes
// nothing. Announced routes stay announced.
func (s *Speaker) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if cfg.ASN != s.cfg.ASN || cfg.RouterID != s.cfg.RouterID || cfg.ListenPort != s.cfg.ListenPort {
		return ErrRestartRequired
	}
	ctx := context.Background()
	want := make(map[netip.Addr]Peer, len(cfg.Peers))
	for _, p := range cfg.Peers {
		want[p.Address] = p
	}
	var errs []error
	for i := len(s.cfg.Peers) - 1; i >= 0; i-- {
		old := s.cfg.Peers[i]
		if p, ok := want[old.Address]; ok && p == old {
			continue
		}
		if err := s.deletePeer(ctx, i); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range cfg.Peers {
		if slices.Contains(s.cfg.Peers, p) {
			continue
		}
		if err := s.addPeer(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	// Status lists peers in the order of the configuration.
	slices.SortStableFunc(s.cfg.Peers, func(a, b Peer) int {
		return slices.IndexFunc(cfg.Peers, func(p Peer) bool { return p.Address == a.Address }) -
			slices.IndexFunc(cfg.Peers, func(p Peer) bool { return p.Address == b.Address })
	})
	return errors.Join(errs...)
}

// Announce makes routes the complete set of announced routes: it adds the
// new ones, re-announces those whose attributes changed and withdraws those
// no longer listed, and sends nothing for the rest, so calling it again
// with the same set is free. The caller passes the VIPs it can serve now
// (datapath attached, workers running, a backend up). Invalid routes make
// it change nothing; a route gobgp refuses is reported and the others are
// still applied.
func (s *Speaker) Announce(routes []Route) error {
	want, err := newRouteSet(routes)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.apply(want)
}

// WithdrawAll withdraws every announced route; the sessions stay up.
func (s *Speaker) WithdrawAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.apply(routeSet{})
}

// apply moves the RIB from s.announced to want. Called with s.mu held.
func (s *Speaker) apply(want routeSet) error {
	add, del := diff(s.announced, want)
	var errs []error
	for _, p := range del {
		// By path, not by the UUID AddPath returned: gobgp finds a UUID by
		// scanning its whole RIB.
		path, err := toPath(s.announced[p])
		if err == nil {
			err = s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bgp: withdraw %v: %w", p, err))
			continue
		}
		delete(s.announced, p)
		s.log.Info("bgp route withdrawn", "prefix", p)
	}
	for _, r := range add {
		path, err := toPath(r)
		if err == nil {
			var res []apiutil.AddPathResponse
			res, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
			if err == nil && len(res) == 1 {
				err = res[0].Error
			}
			if err == nil {
				s.announced[r.Prefix] = r
				s.log.Info("bgp route announced", "prefix", r.Prefix, "communities", r.Communities, "med", r.MED)
				continue
			}
		}
		errs = append(errs, fmt.Errorf("bgp: announce %v: %w", r.Prefix, err))
	}
	return errors.Join(errs...)
}

// toPath builds gobgp's path for r. The next hop is left unspecified: gobgp
// puts the session's local address there, unless the next-hop policy sets
// the peer's configured one.
func toPath(r Route) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, err
	}
	path := &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}}
	if r.Prefix.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		path.Attrs = append(path.Attrs, nh)
	} else {
		path.Family = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, err
		}
		path.Attrs = append(path.Attrs, mp)
	}
	if len(r.Communities) > 0 {
		cs := make([]uint32, len(r.Communities))
		for i, c := range r.Communities {
			cs[i] = uint32(c)
		}
		path.Attrs = append(path.Attrs, bgp.NewPathAttributeCommunities(cs))
	}
	if r.MED != 0 {
		path.Attrs = append(path.Attrs, bgp.NewPathAttributeMultiExitDisc(r.MED))
	}
	return path, nil
}

// Close stops the speaker: gobgp sends each peer a Cease NOTIFICATION and
// closes the session, so routers withdraw this speaker's routes at once.
// To let routers move flows away while this balancer still forwards, call
// Shutdown instead. Close is idempotent.
func (s *Speaker) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.srv.Stop() // StopBgp: every peer deleted with a Cease, listeners closed
	s.stop()
	s.log.Info("bgp speaker stopped")
	return nil
}

// Shutdown is the order of a graceful stop: withdraw every route, wait
// drain (or until ctx ends) while routers converge and the caller keeps
// forwarding the flows they still send, then Close. The caller detaches
// its datapath only after Shutdown returns.
func (s *Speaker) Shutdown(ctx context.Context, drain time.Duration) error {
	werr := s.WithdrawAll()
	if werr == nil {
		s.log.Info("bgp routes withdrawn, draining", "drain", drain)
		t := time.NewTimer(drain)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return errors.Join(werr, s.Close())
}
