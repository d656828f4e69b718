package perf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/config"
)

// Kinds of datapath, as the report labels them.
const (
	KindXLB      = "xlb"      // the balancer itself
	KindCeiling  = "ceiling"  // a forwarder doing the least possible work on one transport
	KindBaseline = "baseline" // another implementation doing the balancer's work
)

// datapath is one entry of the comparison: how to start it in the lab's
// balancer namespace, on the balancer's CPU, forwarding to the sink.
type datapath struct {
	name  string
	kind  string
	about string
	// nativeTX: it transmits with XDP_TX, so the balancer's bridge port
	// must run an XDP program to accept its frames.
	nativeTX bool
	// multiQueue: it serves every queue of Options.Queues.
	multiQueue bool
	// scenarios it takes part in: forwarding, dropping, or both.
	scenarios []Scenario
	// ceiling names the forward scenario's ceiling of its transport,
	// which the report rates it against ("" for none).
	ceiling string
	// skip, when set, says why the entry cannot run yet; it is reported
	// instead of measured.
	skip  string
	start func(*perfLab, Options, setup) (instance, error)
}

// setup is what one instance of a datapath is started with beyond the
// Options every instance shares.
type setup struct {
	// rules is the size of the xlb datapaths' firewall (Options.Rules).
	rules int
	// round is the round (Options.Rounds) the instance is measured in.
	round int
}

// instance is a running datapath.
type instance interface {
	// counters returns cumulative counters worth reporting (ring and
	// worker statistics), by name; nil when there are none.
	counters() (map[string]uint64, error)
	// close stops it and removes everything it attached.
	close() error
}

// timed is an instance that runs as a process of its own, whose CPU time
// the report gives per frame, as counters user_ns and system_ns.
type timed interface {
	cpuTime() (user, system uint64, err error)
}

// dropper is an instance that takes part in the drop scenario.
type dropper interface {
	instance
	// dropped returns how many of the lab's frames it has dropped so
	// far (cumulative), from the counter dropCounter names.
	dropped() (uint64, error)
	// dropCounter names the counter dropped reads, for the report.
	dropCounter() string
}

// datapaths is the comparison's list, in report order. Adding a datapath
// is adding an entry.
var datapaths = []datapath{
	{
		name:       "xlb-afxdp",
		kind:       KindXLB,
		about:      "`xlb run`: steering program, AF_XDP worker, parse + Maglev + IPIP",
		multiQueue: true,
		scenarios:  bothScenarios,
		ceiling:    "ring-fwd",
		start:      startXLB(""),
	},
	{
		name:       "xlb-native",
		kind:       KindXLB,
		about:      "`xlb run` with mode = \"native\": Maglev + IPIP in XDP, XDP_TX",
		nativeTX:   true,
		multiQueue: true,
		scenarios:  bothScenarios,
		ceiling:    "xdp-tx",
		// NativeFlowTableSize entries unless Options.FlowTableSize says
		// otherwise; the AF_XDP run keeps xlb's default (262144 per
		// worker).
		start: startXLB(config.ModeNative),
	},
	{
		name:      "xdp-tx",
		kind:      KindCeiling,
		about:     "XDP program rewriting MACs, XDP_TX: native XDP limit",
		nativeTX:  true,
		scenarios: forwardOnly,
		start:     startL2Fwd,
	},
	{
		name:      "ring-fwd",
		kind:      KindCeiling,
		about:     "xlb's ring package forwarding frames with MACs rewritten: AF_XDP transport limit",
		scenarios: forwardOnly,
		start:     startRingFwd,
	},
	{
		name:      "asavie",
		kind:      KindBaseline,
		about:     "asavie/xdp v0.3.3 as shipped + xlb's parse, Maglev and IPIP",
		scenarios: forwardOnly,
		ceiling:   "ring-fwd",
		start:     startAsavie,
	},
	{
		name:       "nft-ingress",
		kind:       KindBaseline,
		about:      "nftables (netdev family) dropping the denied range in the ingress hook of the balancer's link",
		multiQueue: true,
		scenarios:  dropOnly,
		start:      startNFT(nftIngress),
	},
	{
		name:       "nft-prerouting",
		kind:       KindBaseline,
		about:      "nftables (inet family) dropping the denied range in prerouting at priority raw",
		multiQueue: true,
		scenarios:  dropOnly,
		start:      startNFT(nftPrerouting),
	},
	{
		name:       "xdp-drop",
		kind:       KindCeiling,
		about:      "XDP program that only returns XDP_DROP: native XDP drop limit",
		multiQueue: true,
		scenarios:  dropOnly,
		start:      startXDPDrop,
	},
}

// Scenario lists for the datapath table.
var (
	forwardOnly   = []Scenario{ScenarioForward}
	dropOnly      = []Scenario{ScenarioDrop}
	bothScenarios = []Scenario{ScenarioForward, ScenarioDrop}
)

// Datapaths returns the names of every datapath Compare knows, in report
// order.
func Datapaths() []string {
	out := make([]string, len(datapaths))
	for i, d := range datapaths {
		out[i] = d.name
	}
	return out
}

// DatapathsOf returns the names of the datapaths that take part in
// scenario s, in report order.
func DatapathsOf(s Scenario) []string {
	var out []string
	for _, d := range datapaths {
		if slices.Contains(d.scenarios, s) {
			out = append(out, d.name)
		}
	}
	return out
}

func findDatapath(name string) *datapath {
	for i := range datapaths {
		if datapaths[i].name == name {
			return &datapaths[i]
		}
	}
	return nil
}

// l2fwd is the native-XDP ceiling: labprogs' MAC-rewriting XDP_TX program
// on the balancer's link.
type l2fwd struct {
	prog *ebpf.Program
	link link.Link
}

func startL2Fwd(p *perfLab, _ Options, _ setup) (instance, error) {
	prog, err := labprogs.LoadL2Fwd(p.sink.MAC, p.lb.MAC)
	if err != nil {
		return nil, err
	}
	l, err := attach(p.lb.Host, prog, p.lb.Ifindex)
	if err != nil {
		return nil, errors.Join(err, prog.Close())
	}
	return &l2fwd{prog: prog, link: l}, nil
}

func (f *l2fwd) counters() (map[string]uint64, error) { return nil, nil }

func (f *l2fwd) close() error {
	err := errors.Join(f.link.Close(), f.prog.Close())
	if err != nil {
		return fmt.Errorf("perf: xdp-tx: %w", err)
	}
	return nil
}
