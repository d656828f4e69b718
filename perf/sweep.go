package perf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/lab/xlbbin"
)

// sweepDatapath is the datapath a sweep tunes.
const sweepDatapath = "xlb-afxdp"

// knob is one per-queue setting a sweep varies, the others at xlb's
// defaults.
type knob struct {
	name   string
	about  string
	points func(ncpu int) []knobPoint
}

// knobPoint is one value of a knob: how it changes the run's options and
// the [datapath] lines that set it in xlb's config.
type knobPoint struct {
	label string
	def   bool // xlb's default
	apply func(*Options)
	toml  string
}

func intPoints(values []int, def int, apply func(*Options, int), toml func(int) string) []knobPoint {
	out := make([]knobPoint, len(values))
	for i, v := range values {
		out[i] = knobPoint{label: strconv.Itoa(v), def: v == def, apply: func(o *Options) { apply(o, v) }, toml: toml(v)}
	}
	return out
}

func boolPoints(key string, def bool, apply func(*Options, bool)) func(int) []knobPoint {
	return func(int) []knobPoint {
		var out []knobPoint
		for _, v := range []bool{def, !def} {
			label := map[bool]string{false: "off", true: "on"}[v]
			out = append(out, knobPoint{label: label, def: v == def, apply: func(o *Options) { apply(o, v) }, toml: fmt.Sprintf("%s = %t\n", key, v)})
		}
		return out
	}
}

// knobs are the sweep's knobs, in order. The defaults are xlb's
// (config.DefaultDatapath).
var knobs = []knob{
	{
		name:  "batch",
		about: "descriptors per batch (batch_size), tx_budget at xlb's 64 throughout",
		points: func(int) []knobPoint {
			return intPoints([]int{16, 32, 64, 128, 256}, 64, func(o *Options, v int) { o.Tuning.Batch, o.Tuning.TxBudget = v, 64 },
				func(v int) string { return fmt.Sprintf("batch_size = %d\n", v) })
		},
	},
	{
		name:  "ring",
		about: "every ring's size, UMEM frame_count twice that",
		points: func(int) []knobPoint {
			return intPoints([]int{512, 1024, 2048, 4096}, 2048, func(o *Options, v int) { o.Tuning.Ring = v },
				func(v int) string {
					return fmt.Sprintf("rx_ring = %d\ntx_ring = %d\nfill_ring = %d\ncompletion_ring = %d\nframe_count = %d\n", v, v, v, v, 2*v)
				})
		},
	},
	{
		name:  "tx_budget",
		about: "XDP_MAX_TX_SKB_BUDGET: frames the kernel sends per transmit call in copy mode",
		points: func(int) []knobPoint {
			return intPoints([]int{32, 64, 128, 256}, 64, func(o *Options, v int) { o.Tuning.TxBudget = v },
				func(v int) string { return fmt.Sprintf("tx_budget = %d\n", v) })
		},
	},
	{name: "busy_poll", about: "SO_PREFER_BUSY_POLL + SO_BUSY_POLL", points: boolPoints("busy_poll", false, func(o *Options, v bool) { o.Tuning.BusyPoll = v })},
	{name: "spin", about: "busy-spin when idle instead of blocking in poll()", points: boolPoints("spin", false, func(o *Options, v bool) { o.Tuning.Spin = v })},
	{name: "need_wakeup", about: "XDP_USE_NEED_WAKEUP: kick the kernel only when it asks", points: boolPoints("need_wakeup", true, func(o *Options, v bool) { o.Tuning.NoNeedWakeup = !v })},
	{
		name: "queues",
		about: "queues of the direct veth pair, one xlb worker each; the generator sends from as many CPUs " +
			"in every point (veth picks the receive queue by the sending CPU)",
		points: func(ncpu int) []knobPoint {
			n := min(ncpu, 4)
			gen := make([]int, n)
			for i := range gen {
				gen[i] = i
			}
			var out []knobPoint
			for q := 1; q <= n; q *= 2 {
				qs, cpus := make([]string, q), make([]string, q)
				for i := range q {
					qs[i], cpus[i] = strconv.Itoa(i), strconv.Itoa((1+i)%ncpu)
				}
				out = append(out, knobPoint{
					label: strconv.Itoa(q), def: q == 1,
					apply: func(o *Options) { o.Queues, o.GenCPUs, o.LBCPUs = q, gen, nil },
					toml:  fmt.Sprintf("queues = [%s]\ncpus = [%s]\n", strings.Join(qs, ", "), strings.Join(cpus, ", ")),
				})
			}
			return out
		},
	},
}

// Knobs returns the names of the knobs Sweep can vary, in order.
func Knobs() []string {
	out := make([]string, len(knobs))
	for i, k := range knobs {
		out[i] = k.name
	}
	return out
}

func findKnob(name string) *knob {
	for i := range knobs {
		if knobs[i].name == name {
			return &knobs[i]
		}
	}
	return nil
}

// SweepOptions configure Sweep.
type SweepOptions struct {
	// Base is what every point runs with: Duration, Warmup, Repeat, one
	// traffic kind and one frame size, Flows, Backends, GenCPUs, LBCPUs,
	// Topology, XLBBinary, Prefix and Out as for Compare. Its Datapaths,
	// Tuning, Queues and JSONFile are ignored: each point runs xlb-afxdp
	// with xlb's defaults but for its knob.
	Base Options
	// Knobs to vary, one at a time (default: all of Knobs(); queues only
	// in the direct topology).
	Knobs []string
	// JSONFile, ChartsDir and TOMLFile, if set, receive the report as
	// JSON, one PNG chart per knob (sweep-KNOB.png) and the recommended
	// [datapath] snippet.
	JSONFile  string
	ChartsDir string
	TOMLFile  string
}

// SweepReport is the outcome of Sweep.
type SweepReport struct {
	Started time.Time    `json:"started"`
	Kernel  string       `json:"kernel"`
	CPUs    int          `json:"cpus"`
	LoadAvg [2]float64   `json:"loadavg"`
	Setup   ReportSetup  `json:"setup"` // of the base options, defaults filled in
	Traffic Traffic      `json:"traffic"`
	Frame   int          `json:"frame_size"`
	Knobs   []KnobResult `json:"knobs"`
}

// KnobResult is one knob's points and the setting recommended for it.
type KnobResult struct {
	Knob   string       `json:"knob"`
	About  string       `json:"about"`
	Points []SweepPoint `json:"points"`
	// Recommended is the label of the recommended point: the one with the
	// highest median rate if its slowest repeat beat the default's fastest,
	// the default otherwise (the machine's noise is not a finding).
	Recommended string `json:"recommended"`
	// TOML is the recommended point's [datapath] lines.
	TOML string `json:"toml"`
}

// SweepPoint is one value of a knob and its measurement.
type SweepPoint struct {
	Setting string `json:"setting"`
	Default bool   `json:"default"`
	TOML    string `json:"toml"`
	Record  Record `json:"record"`
}

// Sweep measures xlb's AF_XDP datapath at every point of each selected
// knob, the other knobs at xlb's defaults: each repeat of a point is a
// one-repeat Compare run (its own lab) of xlb-afxdp, and the repeats go
// round the knob's points. It writes progress and the per-knob tables to
// Base.Out, the JSON report, charts and recommended snippet where asked,
// and returns the report. Failed points are recorded with their error and
// the others still run; the error joins them.
func Sweep(so SweepOptions) (SweepReport, error) {
	base := so.Base
	base.Datapaths, base.Tuning, base.Queues, base.JSONFile = []string{sweepDatapath}, Tuning{}, 0, ""
	if len(base.Traffic) > 1 || len(base.FrameSizes) > 1 {
		return SweepReport{}, fmt.Errorf("%w: a sweep takes one traffic kind and one frame size", ErrInvalidOptions)
	}
	bo, err := base.withDefaults()
	if err != nil {
		return SweepReport{}, err
	}
	names := so.Knobs
	if len(names) == 0 {
		for _, k := range knobs {
			if k.name != "queues" || bo.Topology == TopologyDirect {
				names = append(names, k.name)
			}
		}
	}
	for _, n := range names {
		switch k := findKnob(n); {
		case k == nil:
			return SweepReport{}, fmt.Errorf("%w: knob %q: want one of %v", ErrInvalidOptions, n, Knobs())
		case n == "queues" && bo.Topology != TopologyDirect:
			return SweepReport{}, fmt.Errorf("%w: knob queues needs the direct topology", ErrInvalidOptions)
		case n == "queues" && runtime.NumCPU() < 2:
			return SweepReport{}, fmt.Errorf("%w: knob queues needs 2 CPUs", ErrInvalidOptions)
		}
	}
	if os.Geteuid() != 0 {
		return SweepReport{}, ErrNotRoot
	}
	rep := SweepReport{
		Started: time.Now().UTC(), Kernel: kernelRelease(), CPUs: runtime.NumCPU(),
		Traffic: bo.Traffic[0], Frame: bo.FrameSizes[0],
		Setup: ReportSetup{
			Topology: bo.Topology, DurationSec: bo.Duration.Seconds(), WarmupSec: bo.Warmup.Seconds(), Repeat: bo.Repeat,
			Flows: bo.Flows, Backends: bo.Backends, GenCPUs: bo.GenCPUs, LBCPUs: bo.LBCPUs, Queues: bo.Queues, Tuning: bo.Tuning,
		},
	}
	rep.LoadAvg[0] = loadAvg()
	if base.XLBBinary == "" {
		var err error
		if base.XLBBinary, err = xlbbin.Path(); err != nil {
			return rep, err
		}
	}
	var errs []error
	for _, n := range names {
		k := findKnob(n)
		pts := k.points(runtime.NumCPU())
		kr := KnobResult{Knob: k.name, About: k.about, Points: make([]SweepPoint, len(pts))}
		for i, pt := range pts {
			kr.Points[i] = SweepPoint{Setting: pt.label, Default: pt.def, TOML: pt.toml, Record: Record{
				Datapath: sweepDatapath, Kind: KindXLB, Traffic: rep.Traffic, FrameSize: rep.Frame,
			}}
		}
		// Rounds: each repeat visits every point once, so that the
		// machine's drift (other work coming and going, which moves the
		// rate far more than most knobs do) falls on every point alike.
		for round := range bo.Repeat {
			for i, pt := range pts {
				fmt.Fprintf(bo.Out, "sweep %s = %s, round %d/%d\n", k.name, pt.label, round+1, bo.Repeat)
				if err := runPoint(base, pt, &kr.Points[i].Record, round+1); err != nil {
					err = fmt.Errorf("perf: sweep %s = %s: %w", k.name, pt.label, err)
					errs = append(errs, err)
					kr.Points[i].Record.Error = err.Error()
				}
			}
		}
		for i := range kr.Points {
			kr.Points[i].Record.summarize()
		}
		kr.recommend()
		rep.Knobs = append(rep.Knobs, kr)
	}
	rep.LoadAvg[1] = loadAvg()
	fmt.Fprintln(bo.Out)
	errs = append(errs, rep.WriteMarkdown(bo.Out))
	fmt.Fprintf(bo.Out, "\nRecommended settings:\n\n```toml\n%s```\n", rep.TOML())
	if so.JSONFile != "" {
		errs = append(errs, writeJSON(so.JSONFile, rep))
	}
	if so.TOMLFile != "" {
		if err := os.WriteFile(so.TOMLFile, []byte(rep.TOML()), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("perf: %w", err))
		}
	}
	if so.ChartsDir != "" {
		files, err := rep.WriteCharts(so.ChartsDir)
		for _, f := range files {
			fmt.Fprintf(bo.Out, "chart: %s\n", f)
		}
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// runPoint runs one repeat of pt (a Compare run of its own) in the given
// round and appends its measured window to rec.
func runPoint(base Options, pt knobPoint, rec *Record, round int) error {
	o := base
	o.Repeat, o.Rounds = 1, 1
	pt.apply(&o)
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	r, err := compare(o, false)
	if len(r.Records) > 0 {
		for _, run := range r.Records[0].Runs {
			run.Round = round
			rec.Runs = append(rec.Runs, run)
		}
	}
	return err
}

// measured says whether p has a rate to compare.
func (p SweepPoint) measured() bool { return len(p.Record.Runs) > 0 }

// recommend sets Recommended and TOML (see KnobResult).
func (kr *KnobResult) recommend() {
	def, best := -1, -1
	for i, p := range kr.Points {
		if !p.measured() {
			continue
		}
		if p.Default {
			def = i
		}
		if best < 0 || p.Record.PPS.Median > kr.Points[best].Record.PPS.Median {
			best = i
		}
	}
	pick := best
	if def >= 0 && best >= 0 && kr.Points[best].Record.PPS.Min <= kr.Points[def].Record.PPS.Max {
		pick = def
	}
	if pick < 0 {
		return
	}
	kr.Recommended, kr.TOML = kr.Points[pick].Setting, kr.Points[pick].TOML
}

// TOML is the recommended setting of every knob as a [datapath] table.
func (r SweepReport) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# xlb-lab sweep %s: %s %dB, %s topology, %gs x %d, kernel %s, %d CPUs.\n",
		r.Started.Format(time.RFC3339), r.Traffic, r.Frame, r.Setup.Topology, r.Setup.DurationSec, r.Setup.Repeat, r.Kernel, r.CPUs)
	b.WriteString("# A knob stays at its default unless a setting's slowest repeat beat the default's fastest.\n[datapath]\n")
	for _, k := range r.Knobs {
		if k.Recommended == "" {
			fmt.Fprintf(&b, "# %s: nothing measured\n", k.Knob)
			continue
		}
		b.WriteString(k.TOML)
	}
	return b.String()
}

// WriteMarkdown writes one table per knob.
func (r SweepReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Sweep of %s: kernel %s, %d CPUs (load average %.1f at start, %.1f at end), %s topology, %s %dB; %gs x %d repeats per point (median, min-max).\n",
		sweepDatapath, r.Kernel, r.CPUs, r.LoadAvg[0], r.LoadAvg[1], r.Setup.Topology, r.Traffic, r.Frame, r.Setup.DurationSec, r.Setup.Repeat)
	for _, k := range r.Knobs {
		fmt.Fprintf(&b, "\n#### %s: %s\n\n", k.Knob, k.About)
		b.WriteString("| setting | Mpps delivered | Mpps sent | worker usr ns/frame | worker sys ns/frame | drops (loss) | rx per queue | |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---|---|\n")
		for _, p := range k.Points {
			var notes []string
			if p.Default {
				notes = append(notes, "default")
			}
			if p.Setting == k.Recommended {
				notes = append(notes, "**recommended**")
			}
			rec := p.Record
			if !p.measured() {
				fmt.Fprintf(&b, "| %s | failed: %s | | | | | | %s |\n", p.Setting, oneLine(rec.Error), strings.Join(notes, ", "))
				continue
			}
			var sent, delivered uint64
			for _, run := range rec.Runs {
				sent += run.Sent
				delivered += run.Delivered
			}
			perFrame := func(key string) string {
				v, ok := rec.Counters[key]
				if !ok || delivered == 0 {
					return ""
				}
				return fmt.Sprintf("%.0f", float64(v)/float64(delivered))
			}
			loss := math.NaN()
			if sent > 0 {
				loss = 100 * float64(rec.Drops) / float64(sent)
			}
			fmt.Fprintf(&b, "| %s | %.3f (%.3f-%.3f) | %.3f | %s | %s | %d (%.0f%%) | %s | %s |\n",
				p.Setting, rec.PPS.Median/1e6, rec.PPS.Min/1e6, rec.PPS.Max/1e6, rec.SentPPS.Median/1e6,
				perFrame("user_ns"), perFrame("system_ns"), rec.Drops, loss, queueSpread(rec.Counters), strings.Join(notes, ", "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// queueSpread is the share of received frames per queue, "q0 60%, q1
// 40%", from the rx_packets_qN counters of a multi-queue run.
func queueSpread(c map[string]uint64) string {
	var keys []string
	var total uint64
	for k, v := range c {
		if strings.HasPrefix(k, "rx_packets_q") {
			keys = append(keys, k)
			total += v
		}
	}
	if len(keys) == 0 || total == 0 {
		return ""
	}
	slices.SortFunc(keys, func(a, b string) int {
		x, _ := strconv.Atoi(strings.TrimPrefix(a, "rx_packets_q"))
		y, _ := strconv.Atoi(strings.TrimPrefix(b, "rx_packets_q"))
		return x - y
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("q%s %.0f%%", strings.TrimPrefix(k, "rx_packets_q"), 100*float64(c[k])/float64(total))
	}
	return strings.Join(parts, ", ")
}

// Legend groups of the sweep charts.
const (
	groupRecommended = "recommended"
	groupDefault     = "xlb default"
	groupOther       = "other"
)

// WriteCharts writes one PNG per knob into dir (created if needed),
// sweep-KNOB.png: the delivered Mpps per setting, median with min-max
// error bars, the recommended setting and the default told apart by
// colour. It returns the files it wrote.
func (r SweepReport) WriteCharts(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("perf: charts: %w", err)
	}
	var files []string
	var errs []error
	for _, k := range r.Knobs {
		bars := make([]bar, len(k.Points))
		for i, p := range k.Points {
			rec := p.Record
			label := p.Setting
			if p.Default {
				label += "\n(default)"
			}
			b := bar{label: label, med: rec.PPS.Median / 1e6, min: rec.PPS.Min / 1e6, max: rec.PPS.Max / 1e6}
			switch {
			case p.Setting == k.Recommended:
				b.group, b.color = groupRecommended, kindColors[KindCeiling]
			case p.Default:
				b.group, b.color = groupDefault, kindColors[KindXLB]
			default:
				b.group, b.color = groupOther, otherColor
			}
			if !p.measured() {
				b.missingComment = "failed"
			}
			bars[i] = b
		}
		title := fmt.Sprintf("%s: %s %s %dB, %s, %gs x %d", sweepDatapath, k.Knob, r.Traffic, r.Frame, r.Setup.Topology, r.Setup.DurationSec, r.Setup.Repeat)
		file := filepath.Join(dir, "sweep-"+k.Knob+".png")
		if err := rateChart(title, k.Knob, bars, file); err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, file)
	}
	return files, errors.Join(errs...)
}

// writeJSON writes v as indented JSON to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("perf: json: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("perf: %w", err)
	}
	return nil
}
