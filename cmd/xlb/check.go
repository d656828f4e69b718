package main

import (
	"fmt"
	"io"
	"net"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
)

func cmdCheck(e *env, args []string) int {
	fs := newFlags(e, "check", "-c FILE")
	file := fs.String("c", "", "config file (TOML)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, code := loadChecked(e, *file)
	if cfg == nil {
		return code
	}
	printPlan(e.stdout, cfg)
	return exitOK
}

// checkSocket refuses, as `xlb run` would once attached, a control socket
// path that holds something else than a socket or whose directory others
// may write to; reported at control.socket's line.
func checkSocket(cfg *config.Config) error {
	if err := control.CheckPath(cfg.Control.Socket); err != nil {
		return cfg.Errorf("control.socket", "%v", err)
	}
	return nil
}

func hasSplice(cfg *config.Config) bool {
	for _, v := range cfg.VIPs {
		if v.Forward == config.Splice {
			return true
		}
	}
	return false
}

// printPlan prints the plan as xlb run would apply it, defaults resolved.
func printPlan(w io.Writer, cfg *config.Config) {
	dp := cfg.Datapath
	fmt.Fprintf(w, "config %s: ok\n", cfg.File)
	native := dp.Mode == config.ModeNative
	if native {
		fmt.Fprintf(w, "interface %s  mode=native  xdp_mode=%s\n", dp.Interface, dp.XDPMode)
		fmt.Fprintln(w, "  the lb XDP program forwards in the kernel on every queue: queues, cpus, umem, rings and polling are AF_XDP settings, unused")
	} else {
		fmt.Fprintf(w, "interface %s  xdp_mode=%s  zero_copy=%s\n", dp.Interface, dp.XDPMode, dp.ZeroCopy)
		for i, q := range dp.Queues {
			fmt.Fprintf(w, "  queue %d -> cpu %d\n", q, dp.CPUs[i])
		}
		fmt.Fprintf(w, "umem: %d frames x %d bytes, headroom %d\n", dp.FrameCount, dp.FrameSize, dp.Headroom)
		fmt.Fprintf(w, "rings: rx %d  tx %d  fill %d  completion %d  batch %d  tx_budget %d\n",
			dp.RxRing, dp.TxRing, dp.FillRing, dp.CompletionRing, dp.BatchSize, dp.TxBudget)
		fmt.Fprintf(w, "polling: need_wakeup=%t busy_poll=%t budget=%d spin=%t\n", dp.NeedWakeup, dp.BusyPoll, dp.BusyPollBudget, dp.Spin)
	}
	src := "first IPv4 address of " + dp.Interface
	if dp.Source.IsValid() {
		src = dp.Source.String()
	}
	src6 := "none needed"
	if dp.Source6.IsValid() {
		src6 = dp.Source6.String()
	}
	fmt.Fprintf(w, "outer source: %s, IPv6 %s\n", src, src6)
	if native {
		fmt.Fprintf(w, "flow tables: %d entries each (IPv4, IPv6), idle tcp %v udp %v: %s\n", dp.FlowTableSize, dp.FlowTCPTimeout, dp.FlowUDPTimeout, bpf.LBFlowExpiry)
	} else {
		fmt.Fprintf(w, "flow table: %d entries per queue, idle tcp %v udp %v\n", dp.FlowTableSize, dp.FlowTCPTimeout, dp.FlowUDPTimeout)
	}
	per := "queue"
	if native {
		per = "CPU"
	}
	if dp.ICMPRateLimit == 0 {
		fmt.Fprintln(w, "icmp sent by the balancer: no rate limit")
	} else {
		fmt.Fprintf(w, "icmp sent by the balancer: at most %d/s per %s, burst %d\n", dp.ICMPRateLimit, per, dp.ICMPRateBurst)
	}
	if dp.FlowSYNRate == 0 {
		fmt.Fprintln(w, "syn flood guard: off: every new flow's SYN makes a flow entry")
	} else {
		fmt.Fprintf(w, "syn flood guard: past %d SYNs/s per %s, a new flow's SYN goes by Maglev without a flow entry (its next packet makes one)\n", dp.FlowSYNRate, per)
	}
	if !native && hasSplice(cfg) {
		if dp.SpliceTableSize == 0 {
			fmt.Fprintln(w, "splice table: 0 (disabled): the proxy copies every connection of the splice VIPs")
		} else {
			fmt.Fprintf(w, "splice table: %d connection pairs handed to the steering program once quiescent; beyond that copied\n", dp.SpliceTableSize)
		}
	}
	fmt.Fprintf(w, "control socket: %s\n", cfg.Control.Socket)
	for _, v := range cfg.VIPs {
		port := fmt.Sprint(v.Port)
		if v.Port == 0 {
			port = "*"
		}
		var total uint64
		for _, b := range v.Backends {
			total += uint64(b.EffectiveWeight())
		}
		fwd := v.Forward.String()
		if v.GUEPort != 0 {
			fwd = fmt.Sprintf("%s(port %d)", fwd, v.GUEPort)
		}
		fmt.Fprintf(w, "vip %s/%s forward=%s maglev_slots=%d backends=%d icmp_echo=%t fragments=%s health=%s\n",
			net.JoinHostPort(v.Address.String(), port), v.Protocol, fwd, v.TableSize, len(v.Backends), v.ICMPEcho, v.Fragments, v.Health.Kind)
		for _, b := range v.Backends {
			share := 0.0
			if total > 0 {
				share = 100 * float64(b.EffectiveWeight()) / float64(total)
			}
			nh := "next hop from the kernel's neighbour table"
			if b.HasMAC {
				nh = "next hop " + net.HardwareAddr(b.MAC[:]).String() + " (static)"
			}
			fmt.Fprintf(w, "  backend %-16s weight %-5d %-6s share %5.1f%%  %s\n", b.Address, b.Weight, b.State, share, nh)
		}
		for _, r := range v.Routes {
			fmt.Fprintf(w, "  route %s: %d backends, hello within %v and %d bytes, connect within %v, idle %v\n",
				r.Name(), len(r.Backends), v.Splice.HelloTimeout, v.Splice.HelloMaxBytes, v.Splice.ConnectTimeout, v.Splice.IdleTimeout)
			for _, b := range r.Backends {
				fmt.Fprintf(w, "    backend %-16s weight %-5d %-6s health %s\n", b.Address, b.Weight, b.State, b.Health.Kind)
			}
		}
	}
}
