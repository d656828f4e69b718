package perf

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/lab/xlbbin"
	"github.com/xlbproject/xlb/perf/procstat"
)

// ErrNotRoot is returned by Compare when not run as root: the lab needs to
// create namespaces and load BPF programs.
var ErrNotRoot = errors.New("perf: Compare needs root (network namespaces, BPF)")

// genSlack is how long a generator thread may outlive its planned run
// before it stops by itself, should the measuring side hang.
const genSlack = 30 * time.Second

// Report is the outcome of Compare.
type Report struct {
	Started time.Time `json:"started"`
	Kernel  string    `json:"kernel"`
	CPUs    int       `json:"cpus"`
	// LoadAvg is the machine's 1-minute load average at the start and at
	// the end: other work on the machine shares the CPUs being measured.
	LoadAvg [2]float64  `json:"loadavg"`
	Setup   ReportSetup `json:"setup"`
	Records []Record    `json:"records"`
}

// ReportSetup is what the runs were made with.
type ReportSetup struct {
	Scenario    Scenario `json:"scenario"`
	Topology    string   `json:"topology"`
	DurationSec float64  `json:"duration_sec"`
	WarmupSec   float64  `json:"warmup_sec"`
	Repeat      int      `json:"repeat"`
	Rounds      int      `json:"rounds"`
	Flows       int      `json:"flows"`
	// FlowTableNative and FlowTableAFXDP are the flow_table_size of
	// xlb-native and of xlb-afxdp (per worker).
	FlowTableNative int    `json:"flow_table_native"`
	FlowTableAFXDP  int    `json:"flow_table_afxdp"`
	Backends        int    `json:"backends"`
	GenCPUs         []int  `json:"gen_cpus"`
	LBCPUs          []int  `json:"lb_cpus"`
	Queues          int    `json:"queues"`
	Tuning          Tuning `json:"tuning"`
}

// Record is one datapath measured with one traffic kind and frame size.
type Record struct {
	Datapath  string  `json:"datapath"`
	Kind      string  `json:"kind"`
	Traffic   Traffic `json:"traffic"`
	FrameSize int     `json:"frame_size"`
	// Rules is the size of an xlb datapath's firewall, in entries per VIP
	// (Options.Rules); 0 for no firewall and for the other datapaths.
	Rules int `json:"rules,omitempty"`
	// PPS is the frames per second the sink received from the balancer,
	// and BPS their bits per second (frame bytes without FCS, so IPIP
	// frames count their outer header), over the repeats. In the drop
	// scenario PPS is the frames the datapath dropped per second, as
	// DropCounter counted them, and BPS is zero.
	PPS Summary `json:"pps"`
	BPS Summary `json:"bps"`
	// SentPPS is the generator's rate.
	SentPPS Summary `json:"sent_pps"`
	// Drops is frames sent and not delivered, summed over the repeats:
	// lost anywhere (generator's veth, bridge, balancer, sink's veth).
	// In the drop scenario, frames sent and not dropped by the datapath.
	Drops uint64 `json:"drops"`
	// DropCounter names what counted the drop scenario's drops.
	DropCounter string `json:"drop_counter,omitempty"`
	// CPU is each core's use, averaged over the repeats.
	CPU []CPUUsage `json:"cpu"`
	// Counters are the datapath's ring and worker counters accumulated
	// over the repeats, where it has them.
	Counters map[string]uint64 `json:"counters,omitempty"`
	Runs     []Run             `json:"runs,omitempty"`
	// Skipped says why the datapath was not measured; Error why its
	// measurement failed.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Run is one measured repeat.
type Run struct {
	// Round is the round (Options.Rounds) it was measured in, from 1.
	Round     int     `json:"round"`
	Seconds   float64 `json:"seconds"`
	Sent      uint64  `json:"sent"`      // frames the generator sent
	Delivered uint64  `json:"delivered"` // frames from the balancer the sink counted
	Bytes     uint64  `json:"bytes"`     // their bytes
	Stray     uint64  `json:"stray"`     // other frames the sink counted
	// Dropped is the frames the datapath dropped (drop scenario).
	Dropped uint64 `json:"dropped,omitempty"`
	// LBReceived is the frames the balancer's link received.
	LBReceived uint64  `json:"lb_received"`
	PPS        float64 `json:"pps"`
	BPS        float64 `json:"bps"`
	SentPPS    float64 `json:"sent_pps"`
	// Samples are the delivered (drop scenario: received by the
	// balancer's link) frames per second, second by second.
	Samples  []float64         `json:"pps_samples"`
	CPU      []CPUUsage        `json:"cpu"`
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// Compare builds the perf lab, measures every selected datapath with every
// traffic kind and frame size, tears the lab down and returns the report.
// It writes progress and finally the markdown table to o.Out, and the JSON
// report to o.JSONFile if set. A datapath that fails is recorded with its
// error and the others still run; the returned error joins such failures
// with any error of the lab itself.
func Compare(opts Options) (Report, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return Report{}, err
	}
	return compare(o, true)
}

// compare is Compare with validated options; table says whether to end
// with the markdown table (a sweep writes its own).
func compare(o Options, table bool) (Report, error) {
	if os.Geteuid() != 0 {
		return Report{}, ErrNotRoot
	}
	rep := Report{
		Started: time.Now().UTC(),
		Kernel:  kernelRelease(),
		CPUs:    runtime.NumCPU(),
		Setup: ReportSetup{
			Scenario: o.Scenario, Topology: o.Topology, DurationSec: o.Duration.Seconds(), WarmupSec: o.Warmup.Seconds(), Repeat: o.Repeat, Rounds: o.Rounds,
			Flows: o.Flows, FlowTableNative: o.flowTableSize(config.ModeNative), FlowTableAFXDP: o.flowTableSize(""), Backends: o.Backends, GenCPUs: o.GenCPUs, LBCPUs: o.LBCPUs, Queues: o.Queues, Tuning: o.Tuning,
		},
	}
	rep.LoadAvg[0] = loadAvg()
	pl, err := newPerfLab(o.Prefix, o.Topology, o.Queues)
	if err != nil {
		return rep, err
	}
	if o.XLBBinary == "" && needsXLB(o) {
		if o.XLBBinary, err = xlbbin.Path(); err != nil {
			return rep, errors.Join(err, pl.Close())
		}
	}
	fmt.Fprintf(o.Out, "perf lab %s (%s, %s): gen cpus %v -> lb cpus %v (%d queues) -> sink; %d flows (flow tables: native %d entries, AF_XDP %d per worker), %d backends, %s x %d per run, %d round(s)\n",
		o.Prefix, o.Topology, o.Scenario, o.GenCPUs, o.LBCPUs, o.Queues, o.Flows, o.flowTableSize(config.ModeNative), o.flowTableSize(""), o.Backends, o.Duration, o.Repeat, o.Rounds)
	var errs []error
	for round := 1; round <= o.Rounds; round++ {
		names := o.Datapaths
		if round%2 == 0 {
			names = slices.Clone(names)
			slices.Reverse(names)
		}
		if o.Rounds > 1 {
			fmt.Fprintf(o.Out, "round %d/%d: %s\n", round, o.Rounds, strings.Join(names, ", "))
		}
		for _, name := range names {
			recs, err := runDatapath(pl, findDatapath(name), o, round)
			rep.add(recs)
			if err != nil {
				if o.Rounds > 1 {
					err = fmt.Errorf("round %d: %w", round, err)
				}
				fmt.Fprintf(o.Out, "%s: %v\n", name, err)
				errs = append(errs, err)
			}
		}
	}
	for i := range rep.Records {
		rep.Records[i].summarize()
	}
	errs = append(errs, pl.Close())
	rep.LoadAvg[1] = loadAvg()
	if o.JSONFile != "" {
		errs = append(errs, writeJSONFile(o.JSONFile, rep))
	}
	if table {
		fmt.Fprintln(o.Out)
		errs = append(errs, rep.WriteMarkdown(o.Out))
	}
	return rep, errors.Join(errs...)
}

func needsXLB(o Options) bool {
	for _, n := range o.Datapaths {
		if d := findDatapath(n); d.kind == KindXLB && d.skip == "" {
			return true
		}
	}
	return false
}

// loadAvg is the 1-minute load average, or NaN if unreadable.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return math.NaN()
	}
	return l
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// add merges one round's records into the report: a record already there
// (same datapath, firewall, traffic and frame size) takes the new runs,
// and the first reason a round was skipped or failed. The caller
// summarizes once every round is in.
func (r *Report) add(recs []Record) {
	for _, rec := range recs {
		i := slices.IndexFunc(r.Records, func(o Record) bool {
			return o.Datapath == rec.Datapath && o.Rules == rec.Rules && o.Traffic == rec.Traffic && o.FrameSize == rec.FrameSize
		})
		if i < 0 {
			r.Records = append(r.Records, rec)
			continue
		}
		o := &r.Records[i]
		o.Runs = append(o.Runs, rec.Runs...)
		o.Skipped = cmp.Or(o.Skipped, rec.Skipped)
		o.Error = cmp.Or(o.Error, rec.Error)
	}
}

// runDatapath measures dp with every traffic kind and frame size, and an
// xlb datapath with every firewall size of o.Rules, each its own instance,
// in the given round. Records are returned even on error: a failed one
// carries Error.
func runDatapath(pl *perfLab, dp *datapath, o Options, round int) (recs []Record, err error) {
	sizes := []int{0}
	if dp.kind == KindXLB {
		sizes = o.Rules
	}
	for _, n := range sizes {
		r, rerr := runInstance(pl, dp, o, setup{rules: n, round: round})
		recs = append(recs, r...)
		err = errors.Join(err, rerr)
	}
	return recs, err
}

// runInstance starts one instance of dp and measures it with every
// traffic kind and frame size.
func runInstance(pl *perfLab, dp *datapath, o Options, su setup) (recs []Record, err error) {
	name := Record{Datapath: dp.name, Rules: su.rules}.label()
	record := func(t Traffic, size int) Record {
		return Record{Datapath: dp.name, Kind: dp.kind, Traffic: t, FrameSize: size, Rules: su.rules}
	}
	failAll := func(err error) ([]Record, error) {
		for _, t := range o.Traffic {
			for _, s := range o.FrameSizes {
				r := record(t, s)
				r.Error = err.Error()
				recs = append(recs, r)
			}
		}
		return recs, err
	}
	if dp.skip != "" {
		fmt.Fprintf(o.Out, "%s: skipped: %s\n", dp.name, dp.skip)
		for _, t := range o.Traffic {
			for _, s := range o.FrameSizes {
				r := record(t, s)
				r.Skipped = dp.skip
				recs = append(recs, r)
			}
		}
		return recs, nil
	}
	if err := pl.setPortXDP(dp.nativeTX); err != nil {
		return failAll(err)
	}
	inst, err := dp.start(pl, o, su)
	if err != nil {
		return failAll(fmt.Errorf("%s: start: %w", name, err))
	}
	defer func() {
		if cerr := inst.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("%s: stop: %w", name, cerr))
		}
	}()
	if _, ok := inst.(dropper); !ok && o.Scenario == ScenarioDrop {
		return failAll(fmt.Errorf("%s: counts no drops", name))
	}
	for _, t := range o.Traffic {
		for _, size := range o.FrameSizes {
			r := record(t, size)
			merr := measure(pl, inst, &r, o)
			for i := range r.Runs {
				r.Runs[i].Round = su.round
			}
			if merr != nil {
				r.Error = merr.Error()
				err = errors.Join(err, fmt.Errorf("%s %s %dB: %w", name, t, size, merr))
			}
			recs = append(recs, r)
		}
	}
	return recs, err
}

// template returns the generator's frame for traffic t of the given size.
func template(pl *perfLab, t Traffic, size int) ([]byte, error) {
	ts := labprogs.TemplateSpec{
		DstMAC: pl.lb.MAC, SrcMAC: pl.gen.MAC, Src: flowSource, Dst: vip, DstPort: vipPort,
		Proto: 17, Size: size,
	}
	switch t {
	case TCPSyn:
		ts.Proto, ts.TCPFlags = 6, labprogs.TCPSyn
	case TCPAck:
		ts.Proto, ts.TCPFlags = 6, labprogs.TCPAck
	}
	return labprogs.BuildTemplate(ts)
}

// snapshot is every counter a run is the difference of.
type snapshot struct {
	at        time.Time
	sent      uint64
	sink      labprogs.SinkCounts
	dropped   uint64    // drop scenario only
	droppedAt time.Time // when dropped was read: reading it takes a while
	lbRx      uint64
	// user and system are a timed instance's CPU time.
	user, system uint64
	cpu          []procstat.CPU
	counters     map[string]uint64
}

// progress is the count a window's rate and samples are taken from, and
// when it was read: the sink's frames from the balancer, or the
// datapath's drops.
func (s snapshot) progress(o Options) (uint64, time.Time) {
	if o.Scenario == ScenarioDrop {
		return s.dropped, s.droppedAt
	}
	return s.sink.FromLB.Packets, s.at
}

// takeSnapshot reads every counter. The datapath's own counters can be
// slow to read (xlb's list every firewall rule), so they are read outside
// the window: before the counts that bound it in the first snapshot of a
// window (first), after them in the last.
func takeSnapshot(pl *perfLab, g *labprogs.Gen, inst instance, o Options, first bool) (snapshot, error) {
	var s snapshot
	var err error
	if first {
		if s.counters, err = inst.counters(); err != nil {
			return s, err
		}
	}
	if o.Scenario == ScenarioDrop {
		if s.dropped, err = inst.(dropper).dropped(); err != nil {
			return s, err
		}
		s.droppedAt = time.Now()
	}
	if s.lbRx, err = pl.lbRxPackets(); err != nil {
		return s, err
	}
	if t, ok := inst.(timed); ok {
		if s.user, s.system, err = t.cpuTime(); err != nil {
			return s, err
		}
	}
	st, err := procstat.Read()
	if err != nil {
		return s, err
	}
	s.cpu = st.CPUs
	if s.sent, err = g.Sent(); err != nil {
		return s, err
	}
	if s.sink, err = pl.counter.Counts(); err != nil {
		return s, err
	}
	s.at = time.Now()
	if !first {
		if s.counters, err = inst.counters(); err != nil {
			return s, err
		}
	}
	return s, nil
}

// measure sends r's traffic through the running datapath: warm-up, then
// o.Repeat measured windows of o.Duration back to back, the generator
// running throughout.
func measure(pl *perfLab, inst instance, r *Record, o Options) (err error) {
	tmpl, err := template(pl, r.Traffic, r.FrameSize)
	if err != nil {
		return err
	}
	g, err := labprogs.LoadGen(tmpl, uint32(o.Flows), pl.gen.Ifindex)
	if err != nil {
		return err
	}
	defer g.Close()
	planned := o.Warmup + time.Duration(o.Repeat)*o.Duration
	gr, err := startGenerator(pl.gen.Host, g, o.GenCPUs, o.Queues, planned+genSlack)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, gr.halt()) }()
	time.Sleep(o.Warmup)
	verb := "delivered"
	if o.Scenario == ScenarioDrop {
		d := inst.(dropper)
		r.DropCounter, verb = d.dropCounter(), "dropped"
	}
	for i := range o.Repeat {
		if err := gr.failed(); err != nil {
			return err
		}
		run, err := measureOnce(pl, g, inst, o)
		if err != nil {
			return err
		}
		r.Runs = append(r.Runs, run)
		fmt.Fprintf(o.Out, "%-10s %-7s %4dB run %d/%d: %6.3f Mpps %s, %6.3f Mpps sent; %s\n",
			r.label(), r.Traffic, r.FrameSize, i+1, o.Repeat, run.PPS/1e6, verb, run.SentPPS/1e6, formatCPU(run.CPU))
	}
	return nil
}

// measureOnce measures one window of o.Duration, sampling the sink every
// second, or in the drop scenario the balancer link's receive counter: the
// datapaths' own drop counters take a process (nft) or a long answer (xlb
// with many rules) to read, which would load the CPUs being measured.
func measureOnce(pl *perfLab, g *labprogs.Gen, inst instance, o Options) (Run, error) {
	before, err := takeSnapshot(pl, g, inst, o, true)
	if err != nil {
		return Run{}, err
	}
	var run Run
	end := before.at.Add(o.Duration)
	last, lastAt := before.sink.FromLB.Packets, before.at
	if o.Scenario == ScenarioDrop {
		last = before.lbRx
	}
	for lastAt.Before(end) {
		next := lastAt.Add(time.Second)
		if next.After(end) {
			next = end
		}
		time.Sleep(time.Until(next))
		var n uint64
		if o.Scenario == ScenarioDrop {
			n, err = pl.lbRxPackets()
		} else {
			var c labprogs.SinkCounts
			c, err = pl.counter.Counts()
			n = c.FromLB.Packets
		}
		if err != nil {
			return Run{}, err
		}
		now := time.Now()
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			run.Samples = append(run.Samples, float64(n-last)/dt)
		}
		last, lastAt = n, now
	}
	after, err := takeSnapshot(pl, g, inst, o, false)
	if err != nil {
		return Run{}, err
	}
	run.Seconds = after.at.Sub(before.at).Seconds()
	run.Sent = after.sent - before.sent
	run.Delivered = after.sink.FromLB.Packets - before.sink.FromLB.Packets
	run.Bytes = after.sink.FromLB.Bytes - before.sink.FromLB.Bytes
	run.Stray = after.sink.Other.Packets - before.sink.Other.Packets
	run.Dropped = after.dropped - before.dropped
	run.LBReceived = after.lbRx - before.lbRx
	n0, t0 := before.progress(o)
	n1, t1 := after.progress(o)
	run.PPS = float64(n1-n0) / t1.Sub(t0).Seconds()
	run.BPS = 8 * float64(run.Bytes) / run.Seconds
	run.SentPPS = float64(run.Sent) / run.Seconds
	run.CPU = cpuUsage(before.cpu, after.cpu)
	run.Counters = diffCounters(before.counters, after.counters)
	if _, ok := inst.(timed); ok {
		if run.Counters == nil {
			run.Counters = map[string]uint64{}
		}
		run.Counters["user_ns"], run.Counters["system_ns"] = after.user-before.user, after.system-before.system
	}
	return run, nil
}

// diffCounters returns after - before per key (keys of after; a counter
// that went backwards, as after a restart, gives 0).
func diffCounters(before, after map[string]uint64) map[string]uint64 {
	if after == nil {
		return nil
	}
	out := make(map[string]uint64, len(after))
	for k, v := range after {
		if b := before[k]; v >= b {
			out[k] = v - b
		} else {
			out[k] = 0
		}
	}
	return out
}

// summarize fills r's summaries from its runs, once they are all in.
func (r *Record) summarize() {
	var pps, bps, sent []float64
	var cpu [][]CPUUsage
	for _, run := range r.Runs {
		pps = append(pps, run.PPS)
		bps = append(bps, run.BPS)
		sent = append(sent, run.SentPPS)
		cpu = append(cpu, run.CPU)
		if done := run.Delivered + run.Dropped; run.Sent > done {
			r.Drops += run.Sent - done
		}
		for k, v := range run.Counters {
			if r.Counters == nil {
				r.Counters = map[string]uint64{}
			}
			r.Counters[k] += v
		}
	}
	r.PPS, r.BPS, r.SentPPS = summarize(pps), summarize(bps), summarize(sent)
	r.CPU = meanUsage(cpu)
}

// formatCPU is "cpu0 0/31/66 cpu1 45/50/3": user/system/softirq percent.
func formatCPU(us []CPUUsage) string {
	parts := make([]string, len(us))
	for i, u := range us {
		parts[i] = fmt.Sprintf("cpu%d %.0f/%.0f/%.0f", u.CPU, u.User, u.System, u.Softirq)
	}
	return strings.Join(parts, " ")
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("perf: write json: %w", err)
	}
	return nil
}

func writeJSONFile(path string, r Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("perf: %w", err)
	}
	err = r.WriteJSON(f)
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("perf: %w", cerr)
	}
	return err
}

// label is the record's datapath, with its firewall's size if it has one.
func (r Record) label() string {
	switch r.Rules {
	case 0:
		return r.Datapath
	case 1:
		return r.Datapath + ", 1 rule"
	}
	return fmt.Sprintf("%s, %d rules", r.Datapath, r.Rules)
}

// WriteMarkdown writes the report as a markdown table, one row per record.
func (r Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Kernel %s, %d CPUs (load average %.1f at start, %.1f at end), %s topology; generator on cpu %v, balancer on cpu %v; %d flows (flow tables: native %d entries, AF_XDP %d per worker), %d backends; %gs x %d repeats x %d round(s) (median, min-max; vs ceiling: median over the ceiling's median).\n\n",
		r.Kernel, r.CPUs, r.LoadAvg[0], r.LoadAvg[1], r.Setup.Topology, r.Setup.GenCPUs, r.Setup.LBCPUs, r.Setup.Flows, r.Setup.FlowTableNative, r.Setup.FlowTableAFXDP, r.Setup.Backends, r.Setup.DurationSec, r.Setup.Repeat, max(r.Setup.Rounds, 1))
	if r.Setup.Scenario == ScenarioDrop {
		r.writeDropTable(&b)
		_, err := io.WriteString(w, b.String())
		return err
	}
	// The firewall's cost: each record against its datapath without one.
	withRules := slices.ContainsFunc(r.Records, func(rec Record) bool { return rec.Rules > 0 })
	if withRules {
		b.WriteString("| datapath | kind | traffic | frame | firewall entries | Mpps delivered | vs no firewall | vs ceiling | Gbit/s | Mpps sent | loss | CPU usr/sys/si % | per delivered frame |\n")
		b.WriteString("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|\n")
	} else {
		b.WriteString("| datapath | kind | traffic | frame | Mpps delivered | vs ceiling | Gbit/s | Mpps sent | loss | CPU usr/sys/si % | per delivered frame |\n")
		b.WriteString("|---|---|---|---:|---:|---|---:|---:|---:|---|---|\n")
	}
	for _, rec := range r.Records {
		head := fmt.Sprintf("| %s | %s | %s | %d ", rec.Datapath, rec.Kind, rec.Traffic, rec.FrameSize)
		empty := "| | | | | | |"
		if withRules {
			head += fmt.Sprintf("| %d ", rec.Rules)
			empty += " |"
		}
		switch {
		case rec.Skipped != "":
			fmt.Fprintf(&b, "%s| skipped: %s %s\n", head, rec.Skipped, empty)
			continue
		case rec.Error != "" && len(rec.Runs) == 0:
			fmt.Fprintf(&b, "%s| failed: %s %s\n", head, oneLine(rec.Error), empty)
			continue
		}
		var sent, delivered uint64
		for _, run := range rec.Runs {
			sent += run.Sent
			delivered += run.Delivered
		}
		loss := math.NaN()
		if sent > 0 {
			loss = 100 * float64(rec.Drops) / float64(sent)
		}
		rate := fmt.Sprintf("%.3f (%.3f-%.3f) ", rec.PPS.Median/1e6, rec.PPS.Min/1e6, rec.PPS.Max/1e6)
		if withRules {
			ratio := ""
			if rec.Kind == KindXLB {
				ratio = r.ratio(rec, func(o Record) bool { return o.Datapath == rec.Datapath && o.Rules == 0 })
			}
			rate += "| " + ratio + " "
		}
		rate += "| " + r.vsCeiling(rec) + " "
		fmt.Fprintf(&b, "%s| %s| %.2f | %.3f | %.0f%% | %s | %s |\n", head,
			rate, rec.BPS.Median/1e9, rec.SentPPS.Median/1e6,
			loss, formatCPU(rec.CPU), formatCounters(rec.Counters, delivered))
	}
	r.writeRoundsTable(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// vsCeiling is rec's median rate over that of its ceiling (ceilingOf), as
// "0.78 xdp-tx", or "".
func (r Report) vsCeiling(rec Record) string {
	if c, ok := r.ceilingOf(rec); ok {
		return fmt.Sprintf("%.2f %s", rec.PPS.Median/c.PPS.Median, c.Datapath)
	}
	return ""
}

// ceilingOf is the measured record of rec's traffic and frame size of the
// ceiling rec's datapath is rated against (datapath.ceiling), without a
// firewall.
func (r Report) ceilingOf(rec Record) (Record, bool) {
	dp := findDatapath(rec.Datapath)
	if dp == nil || dp.ceiling == "" {
		return Record{}, false
	}
	return r.baseOf(rec, func(o Record) bool { return o.Datapath == dp.ceiling && o.Rules == 0 })
}

// writeRoundsTable writes, when there was more than one round, each
// round's rate of every datapath that has a ceiling over the ceiling's in
// the same round (each the median of the round's repeats), and the median
// of those ratios: the pairing cancels what moved the whole machine
// between rounds.
func (r Report) writeRoundsTable(b *strings.Builder) {
	if r.Setup.Rounds < 2 {
		return
	}
	b.WriteString("\nRound by round against the ceiling (each round's median rate over the ceiling's in the same round; every other round runs the datapaths in reverse order):\n\n| datapath | traffic | frame | vs |")
	for i := 1; i <= r.Setup.Rounds; i++ {
		fmt.Fprintf(b, " round %d |", i)
	}
	b.WriteString(" median (min-max) |\n|---|---|---:|---|" + strings.Repeat("---:|", r.Setup.Rounds+1) + "\n")
	for _, rec := range r.Records {
		base, ok := r.ceilingOf(rec)
		if !ok {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %d | %s |", rec.label(), rec.Traffic, rec.FrameSize, base.Datapath)
		var ratios []float64
		for i := 1; i <= r.Setup.Rounds; i++ {
			n, d := rec.roundPPS(i), base.roundPPS(i)
			if n == 0 || d == 0 {
				b.WriteString(" |")
				continue
			}
			ratios = append(ratios, n/d)
			fmt.Fprintf(b, " %.2f |", n/d)
		}
		s := summarize(ratios)
		fmt.Fprintf(b, " %.2f (%.2f-%.2f) |\n", s.Median, s.Min, s.Max)
	}
}

// roundPPS is the median rate of the record's runs of one round, 0 if it
// has none.
func (r Record) roundPPS(round int) float64 {
	var pps []float64
	for _, run := range r.Runs {
		if run.Round == round {
			pps = append(pps, run.PPS)
		}
	}
	return summarize(pps).Median
}

// dropCeiling is the datapath the drop table compares against.
const dropCeiling = "xdp-drop"

// writeDropTable writes the drop scenario's table: frames dropped per
// second as the datapath counted them, beside what the balancer's link
// received, and each against the XDP drop ceiling, as a ratio and as the
// time per frame it adds: on a veth the drop runs on the sending CPU, so
// the generator and the dropper share a core and a costlier drop shows as
// fewer frames sent and dropped.
func (r Report) writeDropTable(b *strings.Builder) {
	fmt.Fprintf(b, "Drop scenario: every frame comes from %s, which each datapath drops.\n\n", deniedRange)
	b.WriteString("| datapath | kind | traffic | frame | firewall entries | Mpps dropped | vs " + dropCeiling + " | ns/frame over " + dropCeiling + " | counted by | lb link Mpps received | Mpps sent | not dropped | CPU usr/sys/si % |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, rec := range r.Records {
		rules := "1 rule (nft)"
		switch rec.Kind {
		case KindXLB:
			rules = strconv.Itoa(rec.Rules)
		case KindCeiling:
			rules = "–"
		}
		head := fmt.Sprintf("| %s | %s | %s | %d | %s ", rec.Datapath, rec.Kind, rec.Traffic, rec.FrameSize, rules)
		switch {
		case rec.Skipped != "":
			fmt.Fprintf(b, "%s| skipped: %s | | | | | | | |\n", head, rec.Skipped)
			continue
		case rec.Error != "" && len(rec.Runs) == 0:
			fmt.Fprintf(b, "%s| failed: %s | | | | | | | |\n", head, oneLine(rec.Error))
			continue
		}
		var sent, received, secs float64
		for _, run := range rec.Runs {
			sent += float64(run.Sent)
			received += float64(run.LBReceived)
			secs += run.Seconds
		}
		rx, missed := math.NaN(), math.NaN()
		if secs > 0 {
			rx = received / secs
		}
		if sent > 0 {
			missed = 100 * float64(rec.Drops) / sent
		}
		isCeiling := func(o Record) bool { return o.Datapath == dropCeiling }
		fmt.Fprintf(b, "%s| %.3f (%.3f-%.3f) | %s | %s | %s | %.3f | %.3f | %.0f%% | %s |\n", head,
			rec.PPS.Median/1e6, rec.PPS.Min/1e6, rec.PPS.Max/1e6, r.ratio(rec, isCeiling), r.extraNs(rec, isCeiling),
			rec.DropCounter, rx/1e6, rec.SentPPS.Median/1e6, missed, formatCPU(rec.CPU))
	}
}

// extraNs is the time per frame rec's median rate implies beyond that of
// the record base picks (as ratio), as "45", or "" if there is none.
func (r Report) extraNs(rec Record, base func(Record) bool) string {
	if o, ok := r.baseOf(rec, base); ok && rec.PPS.Median > 0 {
		return fmt.Sprintf("%.0f", 1e9/rec.PPS.Median-1e9/o.PPS.Median)
	}
	return ""
}

// baseOf is the measured record of rec's traffic and frame size that base
// picks.
func (r Report) baseOf(rec Record, base func(Record) bool) (Record, bool) {
	if len(rec.Runs) == 0 {
		return Record{}, false
	}
	for _, o := range r.Records {
		if o.Traffic == rec.Traffic && o.FrameSize == rec.FrameSize && base(o) && o.PPS.Median > 0 {
			return o, true
		}
	}
	return Record{}, false
}

// ratio is rec's median rate over that of the measured record of the same
// traffic and frame size that base picks, as "0.87", or "" if there is
// none.
func (r Report) ratio(rec Record, base func(Record) bool) string {
	if o, ok := r.baseOf(rec, base); ok {
		return fmt.Sprintf("%.2f", rec.PPS.Median/o.PPS.Median)
	}
	return ""
}

// counterColumns are the counters the table shows, per delivered frame.
var counterColumns = []string{"kicks", "polls", "tx_ring_full", "rx_ring_full", "rx_fill_ring_empty"}

func formatCounters(c map[string]uint64, delivered uint64) string {
	if c == nil || delivered == 0 {
		return ""
	}
	var parts []string
	if u, ok := c["user_ns"]; ok {
		parts = append(parts, fmt.Sprintf("worker usr %.0f ns, sys %.0f ns", float64(u)/float64(delivered), float64(c["system_ns"])/float64(delivered)))
	}
	for _, k := range counterColumns {
		if v, ok := c[k]; ok && v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.3f", k, float64(v)/float64(delivered)))
		}
	}
	return strings.Join(parts, ", ")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
