package main

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/metrics"
	"github.com/xlbproject/xlb/proxy"
)

// metricsShutdown bounds how long `xlb run` waits for scrapes in flight
// when it stops.
const metricsShutdown = 5 * time.Second

// metricsOptions is the [metrics] table as the endpoint's options.
func metricsOptions(cfg *config.Config) metrics.Options {
	return metrics.Options{Listen: cfg.Metrics.Listen, AllowRemote: cfg.Metrics.AllowRemote}
}

// checkMetrics applies the endpoint's rules (the loopback rule among them)
// to the file, reported at the line of metrics.listen.
func checkMetrics(cfg *config.Config) error {
	if cfg.Metrics.Listen == "" {
		return nil
	}
	if err := metricsOptions(cfg).Validate(); err != nil {
		return cfg.Errorf("metrics.listen", "%v", err)
	}
	// xlb run listens after it has dropped its capabilities, binding a
	// port below 1024 (CAP_NET_BIND_SERVICE) among them.
	_, port, _ := net.SplitHostPort(cfg.Metrics.Listen) // Validate checked it
	if p, _ := strconv.Atoi(port); p > 0 && p < 1024 {
		return cfg.Errorf("metrics.listen", "port %d needs CAP_NET_BIND_SERVICE, which xlb run drops before it listens: use a port above 1023", p)
	}
	return nil
}

// metricsSource is what the endpoint reads from `xlb run`.
type metricsSource struct {
	eng     *engine.Engine
	px      *proxy.Proxy
	spk     *speaker
	reloads *metrics.Reloads
	build   metrics.Build
}

func newMetricsSource(eng *engine.Engine, px *proxy.Proxy, spk *speaker, reloads *metrics.Reloads) *metricsSource {
	bi, _ := debug.ReadBuildInfo()
	v := versionOf(bi, "")
	rev := v.Commit
	if rev != "" && v.Modified {
		rev += "-modified"
	}
	return &metricsSource{eng: eng, px: px, spk: spk, reloads: reloads, build: metrics.Build{Version: v.Version, Revision: rev, GoVersion: v.Go}}
}

// Stats: the datapath's, and the splice VIPs' proxy's.
func (s *metricsSource) Stats() engine.Stats {
	st := s.eng.Stats()
	st.Splice = s.px.Stats()
	return st
}
func (s *metricsSource) Reloads() metrics.ReloadStatus { return s.reloads.Status() }
func (s *metricsSource) Build() metrics.Build          { return s.build }

// BGP makes the source a metrics.BGPSource: the speaker's status, if xlb
// runs one and it can be read.
func (s *metricsSource) BGP() (bgp.Status, bool) {
	st := s.spk.status()
	if st == nil || st.Error != "" {
		return bgp.Status{}, false
	}
	return st.Status, true
}

// Ready: the endpoint starts once the engine has attached the datapath and
// started every worker, and the engine fails for good (Err) when a worker
// stops or its program is detached.
func (s *metricsSource) Ready() error { return s.eng.Err() }

// stopMetrics shuts the endpoint down, if there is one.
func stopMetrics(srv *metrics.Server, log *slog.Logger) error {
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
	defer cancel()
	err := srv.Shutdown(ctx)
	if err != nil {
		log.Error("stop metrics endpoint", "err", err)
	}
	return err
}
