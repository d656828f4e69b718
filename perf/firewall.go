package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/firewall"
)

// deniedRange is the source range the drop scenario denies: it holds
// every flow's source (flowSource and the 63 addresses after it).
var deniedRange = netip.MustParsePrefix("198.18.1.0/24")

// The rule sets' other prefixes: the allow list holds the generator's
// sources, and the padding deny rules are in 198.19.0.0/16, where no
// traffic comes from.
var (
	allowRange = netip.MustParsePrefix("198.18.0.0/16")
	padBase    = [2]byte{198, 19}
)

// maxRules bounds Options.Rules: the lab's two VIPs each hold every global
// rule, and the maps hold firewall.MaxEntries.
const maxRules = firewall.MaxEntries / 2

// fwRules is a firewall rule set: global deny rules and the allow list of
// every VIP.
type fwRules struct {
	deny, allow []netip.Prefix
}

// firewallRules returns the rule set of n entries per VIP, the one
// docs/firewall.md's Cost section measures in the programs: from 3 entries
// on, each VIP has an allow list holding the generator's sources (one entry
// and its implicit deny), and the rest are denied /32, /31, /30... prefixes
// in 198.19.0.0/16, as global rules. In the drop scenario the first deny
// rule is deniedRange, so the traffic is dropped by the most specific
// prefix, inside the allow list. n = 0 is no firewall.
func firewallRules(n int, s Scenario) fwRules {
	var r fwRules
	if s == ScenarioDrop && n > 0 {
		r.deny = append(r.deny, deniedRange)
	}
	if n >= 3 {
		r.allow = []netip.Prefix{allowRange}
		n -= 2
	}
	for i := 0; len(r.deny) < n; i++ {
		r.deny = append(r.deny, padPrefix(i))
	}
	return r
}

// padPrefix is the i-th padding prefix: the /32s of 198.19.0.0/16 first,
// then its /31s, and so on to its /17s: i < maxRules-2, as many as a rule
// set of maxRules entries, with its allow list, needs.
func padPrefix(i int) netip.Prefix {
	bits := 32
	for i >= 1<<(bits-16) {
		i -= 1 << (bits - 16)
		bits--
	}
	host := uint32(i) << (32 - bits)
	a := netip.AddrFrom4([4]byte{padBase[0], padBase[1], byte(host >> 8), byte(host)})
	return netip.PrefixFrom(a, bits)
}

// tomlPrefixes renders prefixes as a TOML array of strings.
func tomlPrefixes(ps []netip.Prefix) string {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", p)
	}
	b.WriteString("]")
	return b.String()
}

// nftHook is where an nftables datapath drops.
type nftHook int

const (
	// nftIngress: a netdev-family table in the ingress hook of the
	// balancer's link, before the kernel allocates anything per protocol.
	nftIngress nftHook = iota
	// nftPrerouting: an inet-family table in prerouting at priority raw
	// (-300), after the IP layer has checked the header and before
	// connection tracking (which no rule here loads) and routing.
	nftPrerouting
)

// nftTable is the lab's nftables table name in the balancer's namespace.
const nftTable = "xlbperf"

// nftWait bounds one nft command.
const nftWait = 10 * time.Second

// nftRuleset is the ruleset of hook on link dev: one rule dropping
// deniedRange, counted in the named counter "drops" (as an operator's
// drop rule counts, and xlb's firewall does).
func nftRuleset(hook nftHook, dev string) (family, ruleset string) {
	chain := fmt.Sprintf("type filter hook ingress device %q priority 0; policy accept;", dev)
	family = "netdev"
	if hook == nftPrerouting {
		chain = "type filter hook prerouting priority raw; policy accept;"
		family = "inet"
	}
	return family, fmt.Sprintf(`table %s %s {
	counter drops { }
	chain deny {
		%s
		ip saddr %s counter name "drops" drop
	}
}
`, family, nftTable, chain, deniedRange)
}

// nft is nftables dropping the lab's traffic in the balancer's namespace.
type nft struct {
	p      *perfLab
	family string
	// pass lets lb's end of the direct pair receive what the generator
	// transmits with XDP (a veth drops XDP frames for a peer without XDP),
	// so that the frames reach the stack as on a NIC.
	pass link.Link
}

func startNFT(hook nftHook) func(*perfLab, Options, setup) (instance, error) {
	return func(p *perfLab, _ Options, _ setup) (_ instance, err error) {
		n := &nft{p: p}
		var ruleset string
		n.family, ruleset = nftRuleset(hook, p.lb.Name)
		if p.topology == TopologyDirect {
			if n.pass, err = attach(p.lb.Host, p.pass, p.lb.Ifindex); err != nil {
				return nil, err
			}
		}
		if _, err := n.run(ruleset, "-f", "-"); err != nil {
			return nil, errors.Join(err, n.detach())
		}
		return n, nil
	}
}

// run runs nft with args in the balancer's namespace, stdin (if any) on
// its standard input, and returns its standard output.
func (n *nft) run(stdin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), nftWait)
	defer cancel()
	cmd := n.p.lb.Host.Command(ctx, "nft", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("perf: nft %s in %s: %w: %s", strings.Join(args, " "), n.p.lb.Host.NS, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (n *nft) dropped() (uint64, error) {
	out, err := n.run("", "-j", "list", "counter", n.family, nftTable, "drops")
	if err != nil {
		return 0, err
	}
	return nftCounter(out)
}

// nftCounter reads the packets of the one counter in `nft -j list counter`
// output.
func nftCounter(out []byte) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("perf: nft counter: %w", err)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("perf: nft counter: no counter in %q", out)
}

func (n *nft) dropCounter() string { return "nft counter" }

func (n *nft) counters() (map[string]uint64, error) { return nil, nil }

func (n *nft) detach() error {
	if n.pass == nil {
		return nil
	}
	return n.pass.Close()
}

func (n *nft) close() error {
	_, err := n.run("", "delete", "table", n.family, nftTable)
	return errors.Join(err, n.detach())
}

// xdpDrop is the XDP drop ceiling: a program that only returns XDP_DROP,
// on the balancer's link. It counts nothing, so its drops are read from
// the link's receive counter.
type xdpDrop struct {
	p    *perfLab
	prog *ebpf.Program
	link link.Link
}

func startXDPDrop(p *perfLab, _ Options, _ setup) (instance, error) {
	// Two instructions: anything more (a counter) would be the cost of
	// something else than dropping.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xlb_drop", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("perf: load XDP drop program: %w", err)
	}
	l, err := attach(p.lb.Host, prog, p.lb.Ifindex)
	if err != nil {
		return nil, errors.Join(err, prog.Close())
	}
	return &xdpDrop{p: p, prog: prog, link: l}, nil
}

func (d *xdpDrop) dropped() (uint64, error) { return d.p.lbRxPackets() }

func (d *xdpDrop) dropCounter() string { return "lb link rx_packets" }

func (d *xdpDrop) counters() (map[string]uint64, error) { return nil, nil }

func (d *xdpDrop) close() error {
	if err := errors.Join(d.link.Close(), d.prog.Close()); err != nil {
		return fmt.Errorf("perf: xdp-drop: %w", err)
	}
	return nil
}

// lbRxPackets is the balancer's link's received frames (on a veth, every
// frame its peer handed over, whatever XDP then did with it).
func (p *perfLab) lbRxPackets() (uint64, error) {
	var n uint64
	err := p.lb.Host.Do(func() error {
		l, err := netlink.LinkByIndex(p.lb.Ifindex)
		if err != nil {
			return err
		}
		if st := l.Attrs().Statistics; st != nil {
			n = st.RxPackets
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("perf: %s statistics: %w", p.lb.Name, err)
	}
	return n, nil
}
