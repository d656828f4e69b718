package perf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/labprogs"
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
	Topology    string  `json:"topology"`
	DurationSec float64 `json:"duration_sec"`
	WarmupSec   float64 `json:"warmup_sec"`
	Repeat      int     `json:"repeat"`
	Flows       int     `json:"flows"`
	Backends    int     `json:"backends"`
	GenCPUs     []int   `json:"gen_cpus"`
	LBCPUs      []int   `json:"lb_cpus"`
	Queues      int     `json:"queues"`
	Tuning      Tuning  `json:"tuning"`
}

// Record is one datapath measured with one traffic kind and frame size.
type Record struct {
	Datapath  string  `json:"datapath"`
	Kind      string  `json:"kind"`
	Traffic   Traffic `json:"traffic"`
	FrameSize int     `json:"frame_size"`
	// PPS is the frames per second the sink received from the balancer,
	// and BPS their bits per second (frame bytes without FCS, so IPIP
	// frames count their outer header), over the repeats.
	PPS Summary `json:"pps"`
	BPS Summary `json:"bps"`
	// SentPPS is the generator's rate.
	SentPPS Summary `json:"sent_pps"`
	// Drops is frames sent and not delivered, summed over the repeats:
	// lost anywhere (generator's veth, bridge, balancer, sink's veth).
	Drops uint64 `json:"drops"`
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
	Seconds   float64 `json:"seconds"`
	Sent      uint64  `json:"sent"`      // frames the generator sent
	Delivered uint64  `json:"delivered"` // frames from the balancer the sink counted
	Bytes     uint64  `json:"bytes"`     // their bytes
	Stray     uint64  `json:"stray"`     // other frames the sink counted
	PPS       float64 `json:"pps"`
	BPS       float64 `json:"bps"`
	SentPPS   float64 `json:"sent_pps"`
	// Samples are the delivered frames per second, second by second.
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
			Topology: o.Topology, DurationSec: o.Duration.Seconds(), WarmupSec: o.Warmup.Seconds(), Repeat: o.Repeat,
			Flows: o.Flows, Backends: o.Backends, GenCPUs: o.GenCPUs, LBCPUs: o.LBCPUs, Queues: o.Queues, Tuning: o.Tuning,
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
	fmt.Fprintf(o.Out, "perf lab %s (%s): gen cpus %v -> lb cpus %v (%d queues) -> sink; %d flows, %d backends, %s x %d per run\n",
		o.Prefix, o.Topology, o.GenCPUs, o.LBCPUs, o.Queues, o.Flows, o.Backends, o.Duration, o.Repeat)
	var errs []error
	for _, name := range o.Datapaths {
		recs, err := runDatapath(pl, findDatapath(name), o)
		rep.Records = append(rep.Records, recs...)
		if err != nil {
			fmt.Fprintf(o.Out, "%s: %v\n", name, err)
			errs = append(errs, err)
		}
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

// runDatapath starts dp and measures it with every traffic kind and frame
// size. Records are returned even on error: a failed one carries Error.
func runDatapath(pl *perfLab, dp *datapath, o Options) (recs []Record, err error) {
	record := func(t Traffic, size int) Record {
		return Record{Datapath: dp.name, Kind: dp.kind, Traffic: t, FrameSize: size}
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
	inst, err := dp.start(pl, o)
	if err != nil {
		return failAll(fmt.Errorf("%s: start: %w", dp.name, err))
	}
	defer func() {
		if cerr := inst.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("%s: stop: %w", dp.name, cerr))
		}
	}()
	for _, t := range o.Traffic {
		for _, size := range o.FrameSizes {
			r := record(t, size)
			if merr := measure(pl, inst, &r, o); merr != nil {
				r.Error = merr.Error()
				err = errors.Join(err, fmt.Errorf("%s %s %dB: %w", dp.name, t, size, merr))
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
	at       time.Time
	sent     uint64
	sink     labprogs.SinkCounts
	cpu      []procstat.CPU
	counters map[string]uint64
}

func takeSnapshot(pl *perfLab, g *labprogs.Gen, inst instance) (snapshot, error) {
	var s snapshot
	var err error
	if s.counters, err = inst.counters(); err != nil {
		return s, err
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
	for i := range o.Repeat {
		if err := gr.failed(); err != nil {
			return err
		}
		run, err := measureOnce(pl, g, inst, o.Duration)
		if err != nil {
			return err
		}
		r.Runs = append(r.Runs, run)
		fmt.Fprintf(o.Out, "%-10s %-7s %4dB run %d/%d: %6.3f Mpps delivered, %6.3f Mpps sent; %s\n",
			r.Datapath, r.Traffic, r.FrameSize, i+1, o.Repeat, run.PPS/1e6, run.SentPPS/1e6, formatCPU(run.CPU))
	}
	r.summarize()
	return nil
}

// measureOnce measures one window of length d, sampling the sink every
// second.
func measureOnce(pl *perfLab, g *labprogs.Gen, inst instance, d time.Duration) (Run, error) {
	before, err := takeSnapshot(pl, g, inst)
	if err != nil {
		return Run{}, err
	}
	var run Run
	end := before.at.Add(d)
	last, lastAt := before.sink.FromLB.Packets, before.at
	for lastAt.Before(end) {
		next := lastAt.Add(time.Second)
		if next.After(end) {
			next = end
		}
		time.Sleep(time.Until(next))
		c, err := pl.counter.Counts()
		if err != nil {
			return Run{}, err
		}
		now := time.Now()
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			run.Samples = append(run.Samples, float64(c.FromLB.Packets-last)/dt)
		}
		last, lastAt = c.FromLB.Packets, now
	}
	after, err := takeSnapshot(pl, g, inst)
	if err != nil {
		return Run{}, err
	}
	run.Seconds = after.at.Sub(before.at).Seconds()
	run.Sent = after.sent - before.sent
	run.Delivered = after.sink.FromLB.Packets - before.sink.FromLB.Packets
	run.Bytes = after.sink.FromLB.Bytes - before.sink.FromLB.Bytes
	run.Stray = after.sink.Other.Packets - before.sink.Other.Packets
	run.PPS = float64(run.Delivered) / run.Seconds
	run.BPS = 8 * float64(run.Bytes) / run.Seconds
	run.SentPPS = float64(run.Sent) / run.Seconds
	run.CPU = cpuUsage(before.cpu, after.cpu)
	run.Counters = diffCounters(before.counters, after.counters)
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

// summarize fills r's summaries from its runs.
func (r *Record) summarize() {
	var pps, bps, sent []float64
	var cpu [][]CPUUsage
	for _, run := range r.Runs {
		pps = append(pps, run.PPS)
		bps = append(bps, run.BPS)
		sent = append(sent, run.SentPPS)
		cpu = append(cpu, run.CPU)
		if run.Sent > run.Delivered {
			r.Drops += run.Sent - run.Delivered
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

// WriteMarkdown writes the report as a markdown table, one row per record.
func (r Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Kernel %s, %d CPUs (load average %.1f at start, %.1f at end), %s topology; generator on cpu %v, balancer on cpu %v; %d flows, %d backends; %gs x %d repeats (median, min-max).\n\n",
		r.Kernel, r.CPUs, r.LoadAvg[0], r.LoadAvg[1], r.Setup.Topology, r.Setup.GenCPUs, r.Setup.LBCPUs, r.Setup.Flows, r.Setup.Backends, r.Setup.DurationSec, r.Setup.Repeat)
	b.WriteString("| datapath | kind | traffic | frame | Mpps delivered | Gbit/s | Mpps sent | loss | CPU usr/sys/si % | per delivered frame |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, rec := range r.Records {
		head := fmt.Sprintf("| %s | %s | %s | %d ", rec.Datapath, rec.Kind, rec.Traffic, rec.FrameSize)
		switch {
		case rec.Skipped != "":
			fmt.Fprintf(&b, "%s| skipped: %s | | | | | |\n", head, rec.Skipped)
			continue
		case rec.Error != "" && len(rec.Runs) == 0:
			fmt.Fprintf(&b, "%s| failed: %s | | | | | |\n", head, oneLine(rec.Error))
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
		fmt.Fprintf(&b, "%s| %.3f (%.3f-%.3f) | %.2f | %.3f | %.0f%% | %s | %s |\n", head,
			rec.PPS.Median/1e6, rec.PPS.Min/1e6, rec.PPS.Max/1e6, rec.BPS.Median/1e9, rec.SentPPS.Median/1e6,
			loss, formatCPU(rec.CPU), formatCounters(rec.Counters, delivered))
	}
	_, err := io.WriteString(w, b.String())
	return err
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
