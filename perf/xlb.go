package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/perf/procstat"
)

// Bounds on the xlb process's life.
const (
	xlbReadyWait = 20 * time.Second
	xlbStopWait  = 15 * time.Second
	// xlbStatsWait bounds a stats call: its answer lists every firewall
	// rule with its counters, which takes seconds with 100,000 rules on a
	// loaded machine.
	xlbStatsWait = 30 * time.Second
)

// xlbConfig renders the balancer's config in mode ("" or config.ModeNative): one
// UDP and one TCP VIP on vipPort, each with every backend, all with the
// sink's MAC as a static next hop (no ARP), the flow table of
// o.flowTableSize(mode) entries and the firewall of rules entries per VIP
// (firewallRules).
func xlbConfig(p *perfLab, o Options, rules int, socket, mode string) string {
	var b strings.Builder
	t := o.Tuning
	mac := net.HardwareAddr(p.sink.MAC[:]).String()
	queues := make([]string, o.Queues)
	cpus := make([]string, o.Queues)
	for i := range queues {
		queues[i], cpus[i] = strconv.Itoa(i), strconv.Itoa(o.LBCPUs[i])
	}
	fmt.Fprintf(&b, "[datapath]\ninterface = %q\nqueues = [%s]\ncpus = [%s]\nsource = %q\n",
		p.lb.Name, strings.Join(queues, ", "), strings.Join(cpus, ", "), lbAddr.Addr())
	fmt.Fprintf(&b, "batch_size = %d\nrx_ring = %d\ntx_ring = %d\nfill_ring = %d\ncompletion_ring = %d\nframe_count = %d\ntx_budget = %d\n",
		t.Batch, t.Ring, t.Ring, t.Ring, t.Ring, 2*t.Ring, t.TxBudget)
	fmt.Fprintf(&b, "spin = %t\nbusy_poll = %t\nneed_wakeup = %t\nflow_table_size = %d\n", t.Spin, t.BusyPoll, !t.NoNeedWakeup, o.flowTableSize(mode))
	if mode != "" {
		fmt.Fprintf(&b, "mode = %q\n", mode)
	}
	fmt.Fprintf(&b, "\n[control]\nsocket = %q\n", socket)
	fw := firewallRules(rules, o.Scenario)
	if len(fw.deny) > 0 {
		fmt.Fprintf(&b, "\n[firewall]\ndeny = %s\n", tomlPrefixes(fw.deny))
	}
	for _, proto := range []string{"udp", "tcp"} {
		fmt.Fprintf(&b, "\n[[vip]]\naddress = %q\nport = %d\nprotocol = %q\n", vip, vipPort, proto)
		if len(fw.allow) > 0 {
			fmt.Fprintf(&b, "allow = %s\n", tomlPrefixes(fw.allow))
		}
		for _, a := range backends(o.Backends) {
			fmt.Fprintf(&b, "  [[vip.backend]]\n  address = %q\n  mac = %q\n", a, mac)
		}
	}
	return b.String()
}

// xlbProcess is `xlb run` in the balancer's namespace.
type xlbProcess struct {
	cmd    *exec.Cmd
	done   chan error
	socket string
	log    *tailBuffer
}

// startXLB returns the starter of the xlb datapath of mode ("" or
// config.ModeNative).
func startXLB(mode string) func(*perfLab, Options, setup) (instance, error) {
	return func(p *perfLab, o Options, s setup) (instance, error) {
		name := fmt.Sprintf("xlb%d", time.Now().UnixNano())
		socket := filepath.Join(p.dir, name+".sock")
		file := filepath.Join(p.dir, name+".toml")
		if err := os.WriteFile(file, []byte(xlbConfig(p, o, s.rules, socket, mode)), 0o600); err != nil {
			return nil, fmt.Errorf("perf: %w", err)
		}
		x := &xlbProcess{socket: socket, log: &tailBuffer{max: 8 << 10}, done: make(chan error, 1)}
		x.cmd = p.lb.Host.Command(context.Background(), o.XLBBinary, "run", "-c", file)
		x.cmd.Stdout, x.cmd.Stderr = x.log, x.log
		if err := x.cmd.Start(); err != nil {
			return nil, fmt.Errorf("perf: start xlb run: %w", err)
		}
		go func() { x.done <- x.cmd.Wait() }()
		if err := x.waitReady(); err != nil {
			return nil, errors.Join(err, x.close())
		}
		return x, nil
	}
}

// waitReady waits until the control socket answers, the process exits, or
// xlbReadyWait passes.
func (x *xlbProcess) waitReady() error {
	deadline := time.Now().Add(xlbReadyWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), xlbStatsWait)
		err := control.Call(ctx, x.socket, "stats", nil, nil)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-x.done:
			x.done <- werr // for close
			return fmt.Errorf("perf: xlb run exited before it was ready (%v): %s", werr, x.log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("perf: xlb run not ready after %s: %w: %s", xlbReadyWait, err, x.log)
		}
	}
}

// xlbStats is the part of `xlb stats` (datapath.Stats as JSON) the report
// keeps.
type xlbStats struct {
	Queues []struct {
		RxPackets  uint64 `json:"rx_packets"`
		TxPackets  uint64 `json:"tx_packets"`
		Kicks      uint64 `json:"kicks"`
		TxRingFull uint64 `json:"tx_ring_full"`
		Polls      uint64 `json:"polls"`
		Socket     struct {
			RxDropped            uint64 `json:"RxDropped"`
			RxInvalidDescs       uint64 `json:"RxInvalidDescs"`
			TxInvalidDescs       uint64 `json:"TxInvalidDescs"`
			RxRingFull           uint64 `json:"RxRingFull"`
			RxFillRingEmptyDescs uint64 `json:"RxFillRingEmptyDescs"`
			TxRingEmptyDescs     uint64 `json:"TxRingEmptyDescs"`
		} `json:"socket"`
	} `json:"queues"`
	Drops map[string]uint64 `json:"drops"`
	// Native is the native program's counters (mode = "native").
	Native *struct {
		Forwarded, Passed, Malformed uint64
		FlowHits                     uint64 `json:"flow_hits"`
		Drops                        map[string]uint64
	} `json:"native"`
	Firewall struct {
		VIPs []struct {
			DeniedPackets uint64 `json:"denied_packets"`
		} `json:"vips"`
	} `json:"firewall"`
}

func (x *xlbProcess) stats() (xlbStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), xlbStatsWait)
	defer cancel()
	var st xlbStats
	if err := control.Call(ctx, x.socket, "stats", nil, &st); err != nil {
		return st, fmt.Errorf("perf: xlb stats: %w", err)
	}
	return st, nil
}

// dropped is the firewall's denied frames, summed over the VIPs: what the
// steering program (AF_XDP mode) or the lb program (native) counts as it
// drops them.
func (x *xlbProcess) dropped() (uint64, error) {
	st, err := x.stats()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range st.Firewall.VIPs {
		n += v.DeniedPackets
	}
	return n, nil
}

func (x *xlbProcess) dropCounter() string { return "xlb firewall (VIP denied)" }

func (x *xlbProcess) counters() (map[string]uint64, error) {
	st, err := x.stats()
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for i, q := range st.Queues {
		add := func(k string, v uint64) { m[k] += v }
		if len(st.Queues) > 1 {
			// How the link spread the traffic over the queues.
			m[fmt.Sprintf("rx_packets_q%d", i)] = q.RxPackets
		}
		add("rx_packets", q.RxPackets)
		add("tx_packets", q.TxPackets)
		add("kicks", q.Kicks)
		add("polls", q.Polls)
		add("tx_ring_full", q.TxRingFull)
		add("rx_dropped", q.Socket.RxDropped)
		add("rx_ring_full", q.Socket.RxRingFull)
		add("rx_fill_ring_empty", q.Socket.RxFillRingEmptyDescs)
		add("tx_ring_empty", q.Socket.TxRingEmptyDescs)
		add("rx_invalid_descs", q.Socket.RxInvalidDescs)
		add("tx_invalid_descs", q.Socket.TxInvalidDescs)
	}
	drops := st.Drops
	if n := st.Native; n != nil {
		m["forwarded"], m["flow_hits"], m["passed"], m["malformed"] = n.Forwarded, n.FlowHits, n.Passed, n.Malformed
		drops = n.Drops
	}
	for k, v := range drops {
		if v != 0 {
			m["drop_"+k] = v
		}
	}
	return m, nil
}

// cpuTime is the whole process's: the worker, and the rest of xlb, which
// is idle but for the stats calls, which the snapshots keep outside.
func (x *xlbProcess) cpuTime() (user, system uint64, err error) {
	task, err := procstat.ReadTask(fmt.Sprintf("/proc/%d/stat", x.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	user, system = task.Nanoseconds()
	return user, system, nil
}

// close sends SIGTERM and waits, bounded, for a clean exit.
func (x *xlbProcess) close() error {
	if err := x.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("perf: stop xlb run: %w", err)
	}
	select {
	case err := <-x.done:
		if err != nil {
			return fmt.Errorf("perf: xlb run exited with %v: %s", err, x.log)
		}
		return nil
	case <-time.After(xlbStopWait):
		_ = x.cmd.Process.Kill()
		<-x.done
		return fmt.Errorf("perf: xlb run did not exit within %s of SIGTERM", xlbStopWait)
	}
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
