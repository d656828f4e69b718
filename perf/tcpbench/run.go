package tcpbench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/lab/xlbbin"
)

// ErrNotRoot is returned by Run when the process cannot build a lab.
var ErrNotRoot = errors.New("tcpbench: building the lab needs root")

// Run builds the lab, measures each of opts.Datapaths in turn and removes
// the lab. A datapath that cannot start gives records with Skipped (not
// installed) or Error set and the run goes on; Run itself fails only when
// the lab cannot be built or torn down.
func Run(opts Options) (rep Report, err error) {
	o := opts.withDefaults()
	rep = Report{Started: time.Now(), Duration: o.Duration, Repeat: o.Repeat, Streams: o.Streams,
		Clients: o.Clients, Rate: o.Rate, CPUs: runtime.NumCPU(), Load1: load1()}
	if os.Geteuid() != 0 {
		return rep, ErrNotRoot
	}
	for _, dp := range o.Datapaths {
		if starters[dp] == nil {
			return rep, fmt.Errorf("tcpbench: unknown datapath %q (want one of %s)", dp, strings.Join(AllDatapaths, ", "))
		}
	}
	dir, err := os.MkdirTemp("", "xlbtcp")
	if err != nil {
		return rep, fmt.Errorf("tcpbench: %w", err)
	}
	defer os.RemoveAll(dir)
	xlb := o.XLBBinary
	if xlb == "" {
		fmt.Fprintf(o.Out, "tcpbench: building cmd/xlb\n")
		if xlb, err = xlbbin.Path(); err != nil {
			return rep, err
		}
	}
	b, err := newBenchLab(fmt.Sprintf("xlbtcp%d", os.Getpid()), xlb)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	for _, dp := range o.Datapaths {
		rep.Records = append(rep.Records, b.runDatapath(dp, dir, xlb, o)...)
	}
	return rep, nil
}

// tests lists each test with its unit, in report order.
var tests = []struct{ name, unit string }{
	{TestStream1, "Gbit/s"},
	{TestStreamN, "Gbit/s"},
	{TestConnRate, "conn/s"},
	{TestLatencyP50, "µs"},
	{TestLatencyP99, "µs"},
	{TestLatencyP999, "µs"},
	{TestLatencyRate, "req/s"},
}

// failed gives every test of dp a record with the reason it did not run.
func failed(dp string, err error) []Record {
	var out []Record
	for _, t := range tests {
		r := Record{Datapath: dp, Test: t.name, Unit: t.unit}
		if errors.Is(err, ErrSkipped) {
			r.Skipped = err.Error()
		} else {
			r.Error = err.Error()
		}
		out = append(out, r)
	}
	return out
}

// runDatapath starts dp, runs every test Repeat times and stops it.
func (b *benchLab) runDatapath(dp, dir, xlb string, o Options) (recs []Record) {
	fmt.Fprintf(o.Out, "tcpbench: %s: starting\n", dp)
	p, target, err := starters[dp](b, dir, xlb)
	if err != nil {
		fmt.Fprintf(o.Out, "tcpbench: %s: %v\n", dp, err)
		return failed(dp, err)
	}
	defer func() {
		if err := p.stop(); err != nil {
			fmt.Fprintf(o.Out, "tcpbench: %s: %v\n", dp, err)
		}
	}()
	if err := b.probe(p, target); err != nil {
		fmt.Fprintf(o.Out, "tcpbench: %s: %v\n", dp, err)
		return failed(dp, err)
	}

	type series struct {
		vals   []float64
		cpus   []CPU
		splice SpliceCount
		err    error
	}
	res := map[string]*series{}
	for _, t := range tests {
		res[t.name] = &series{}
	}
	add := func(test string, v float64, w window, err error) {
		s := res[test]
		if err != nil {
			s.err = err
			return
		}
		s.vals, s.cpus = append(s.vals, v), append(s.cpus, w.cpu)
		s.splice = s.splice.add(w.splice)
	}
	for i := range o.Repeat {
		v, w, err := b.streams(target, 1, o.Duration)
		add(TestStream1, v, w, err)
		v, w, err = b.streams(target, o.Streams, o.Duration)
		add(TestStreamN, v, w, err)
		v, fails, w, err := b.connRate(target, o.Clients, o.Duration)
		add(TestConnRate, v, w, err)
		if fails > 0 {
			fmt.Fprintf(o.Out, "tcpbench: %s: conn-rate window %d: %d attempts failed\n", dp, i+1, fails)
		}
		lat, w, err := b.latency(target, o.Rate, o.Duration)
		us := func(q float64) float64 {
			if lat.hist == nil {
				return 0
			}
			return float64(lat.hist.Quantile(q)) / 1e3
		}
		add(TestLatencyP50, us(0.50), w, err)
		add(TestLatencyP99, us(0.99), w, err)
		add(TestLatencyP999, us(0.999), w, err)
		add(TestLatencyRate, lat.rate, w, err)
		fmt.Fprintf(o.Out, "tcpbench: %s: window %d/%d: %s\n", dp, i+1, o.Repeat, progress(res, func(s *series) (float64, error) {
			if len(s.vals) == 0 {
				return 0, s.err
			}
			return s.vals[len(s.vals)-1], s.err
		}))
	}
	for _, t := range tests {
		s := res[t.name]
		r := newRecord(dp, t.name, t.unit, s.vals, s.cpus)
		if target.splice != nil {
			r.Splice = &s.splice
		}
		if s.err != nil {
			// A failed window voids the test: fewer windows than asked
			// would make its median a different statistic.
			r = Record{Datapath: dp, Test: t.name, Unit: t.unit, Error: s.err.Error()}
		}
		recs = append(recs, r)
	}
	return recs
}

// progress is one line of the latest values, for Options.Out.
func progress[S any](res map[string]S, last func(S) (float64, error)) string {
	var parts []string
	for _, t := range tests {
		v, err := last(res[t.name])
		if err != nil {
			parts = append(parts, t.name+"=error")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s %s", t.name, fmtVal(v), t.unit))
	}
	return strings.Join(parts, " ")
}

// load1 is the 1-minute load average, 0 if unreadable.
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
