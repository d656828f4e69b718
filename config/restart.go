package config

import "slices"

// restartKeys lists the keys a running datapath cannot change: they size
// memory or bind sockets at start-up (the interface, its queues and workers,
// the UMEM, the rings, the socket options, the flow tables) or, for
// control.socket, name the socket it listens on. Every other key is applied
// by a reload: VIPs, backends, weights, states, health checks, Maglev table
// sizes, outer sources and flow timeouts. TestRestartKeysCoverEveryKey makes
// every new [datapath] key take a side.
var restartKeys = []struct {
	key  string
	same func(a, b *Config) bool
}{
	{"datapath.interface", func(a, b *Config) bool { return a.Datapath.Interface == b.Datapath.Interface }},
	{"datapath.queues", func(a, b *Config) bool { return slices.Equal(a.Datapath.Queues, b.Datapath.Queues) }},
	{"datapath.cpus", func(a, b *Config) bool { return slices.Equal(a.Datapath.CPUs, b.Datapath.CPUs) }},
	{"datapath.mode", func(a, b *Config) bool { return a.Datapath.Mode == b.Datapath.Mode }},
	{"datapath.xdp_mode", func(a, b *Config) bool { return a.Datapath.XDPMode == b.Datapath.XDPMode }},
	{"datapath.zero_copy", func(a, b *Config) bool { return a.Datapath.ZeroCopy == b.Datapath.ZeroCopy }},
	{"datapath.frame_size", func(a, b *Config) bool { return a.Datapath.FrameSize == b.Datapath.FrameSize }},
	{"datapath.frame_count", func(a, b *Config) bool { return a.Datapath.FrameCount == b.Datapath.FrameCount }},
	{"datapath.headroom", func(a, b *Config) bool { return a.Datapath.Headroom == b.Datapath.Headroom }},
	{"datapath.rx_ring", func(a, b *Config) bool { return a.Datapath.RxRing == b.Datapath.RxRing }},
	{"datapath.tx_ring", func(a, b *Config) bool { return a.Datapath.TxRing == b.Datapath.TxRing }},
	{"datapath.fill_ring", func(a, b *Config) bool { return a.Datapath.FillRing == b.Datapath.FillRing }},
	{"datapath.completion_ring", func(a, b *Config) bool { return a.Datapath.CompletionRing == b.Datapath.CompletionRing }},
	{"datapath.batch_size", func(a, b *Config) bool { return a.Datapath.BatchSize == b.Datapath.BatchSize }},
	{"datapath.need_wakeup", func(a, b *Config) bool { return a.Datapath.NeedWakeup == b.Datapath.NeedWakeup }},
	{"datapath.busy_poll", func(a, b *Config) bool { return a.Datapath.BusyPoll == b.Datapath.BusyPoll }},
	{"datapath.busy_poll_budget", func(a, b *Config) bool { return a.Datapath.BusyPollBudget == b.Datapath.BusyPollBudget }},
	{"datapath.spin", func(a, b *Config) bool { return a.Datapath.Spin == b.Datapath.Spin }},
	{"datapath.tx_budget", func(a, b *Config) bool { return a.Datapath.TxBudget == b.Datapath.TxBudget }},
	{"datapath.flow_table_size", func(a, b *Config) bool { return a.Datapath.FlowTableSize == b.Datapath.FlowTableSize }},
	{"datapath.splice_table_size", func(a, b *Config) bool { return a.Datapath.SpliceTableSize == b.Datapath.SpliceTableSize }},
	{"control.socket", func(a, b *Config) bool { return a.Control.Socket == b.Control.Socket }},
	{"metrics.listen", func(a, b *Config) bool { return a.Metrics.Listen == b.Metrics.Listen }},
	{"metrics.allow_remote", func(a, b *Config) bool { return a.Metrics.AllowRemote == b.Metrics.AllowRemote }},
	// The speaker's identity: a router would see another neighbour. Adding
	// or removing [bgp] changes asn, so it needs a restart too.
	{"bgp.asn", func(a, b *Config) bool { return a.BGP.Speaker.ASN == b.BGP.Speaker.ASN }},
	{"bgp.router_id", func(a, b *Config) bool { return a.BGP.Speaker.RouterID == b.BGP.Speaker.RouterID }},
	{"bgp.listen_port", func(a, b *Config) bool { return a.BGP.Speaker.ListenPort == b.BGP.Speaker.ListenPort }},
}

// RestartKeys returns the keys whose values differ between c, the running
// configuration, and next, and that only a restart can apply
// ("datapath.queues", "control.socket"), in the order examples/xlb.toml
// lists them. nil means a reload can apply next. Both configs should have
// passed CheckHost, so that resolved values are compared: queues left to the
// host and queues that name the same ones are then equal.
func (c *Config) RestartKeys(next *Config) []string {
	var keys []string
	for _, k := range restartKeys {
		if !k.same(c, next) {
			keys = append(keys, k.key)
		}
	}
	return keys
}
