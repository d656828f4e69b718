package perf

import (
	"errors"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart colours: one per datapath kind, and one per kind of CPU time.
var (
	kindColors = map[string]color.Color{
		KindXLB:      color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
		KindCeiling:  color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
		KindBaseline: color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	}
	otherColor  = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
	cpuColors   = [3]color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}}
	cpuSeries   = [3]string{"user", "system", "softirq"}
	chartHeight = 4 * vg.Inch
)

// bar is one bar of a rate chart: a median with its min-max spread.
type bar struct {
	label          string
	group          string // legend entry and colour
	med, min, max  float64
	color          color.Color
	missingComment string // why there is no value (skipped, failed)
}

// WriteCharts writes PNG charts of the report into dir (created if
// needed), two per traffic kind and frame size: mpps-TRAFFIC-SIZE.png, the
// delivered (drop scenario: dropped) Mpps per datapath (median, min-max
// error bars) coloured by kind, and cpu-TRAFFIC-SIZE.png, each core's
// user, system and softirq time per datapath, stacked. It returns the files it wrote.
func (r Report) WriteCharts(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("perf: charts: %w", err)
	}
	type cell struct {
		t    Traffic
		size int
	}
	var cells []cell
	byCell := map[cell][]Record{}
	for _, rec := range r.Records {
		c := cell{rec.Traffic, rec.FrameSize}
		if _, ok := byCell[c]; !ok {
			cells = append(cells, c)
		}
		byCell[c] = append(byCell[c], rec)
	}
	var files []string
	var errs []error
	for _, c := range cells {
		recs := byCell[c]
		title := fmt.Sprintf("%s %dB, %s topology, %gs x %d", c.t, c.size, r.Setup.Topology, r.Setup.DurationSec, r.Setup.Repeat)
		var bars []bar
		for _, rec := range recs {
			b := bar{label: rec.label(), group: rec.Kind, med: rec.PPS.Median / 1e6, min: rec.PPS.Min / 1e6, max: rec.PPS.Max / 1e6, color: kindColor(rec.Kind)}
			switch {
			case rec.Skipped != "":
				b.missingComment = "skipped"
			case len(rec.Runs) == 0:
				b.missingComment = "failed"
			}
			bars = append(bars, b)
		}
		mpps := filepath.Join(dir, fmt.Sprintf("mpps-%s-%d.png", c.t, c.size))
		verb := "delivered"
		if r.Setup.Scenario == ScenarioDrop {
			verb = "dropped"
		}
		if err := rateChart("Mpps "+verb+": "+title, "datapath", bars, mpps); err != nil {
			errs = append(errs, err)
		} else {
			files = append(files, mpps)
		}
		cpu := filepath.Join(dir, fmt.Sprintf("cpu-%s-%d.png", c.t, c.size))
		if err := cpuChart("CPU per core: "+title, recs, cpu); err != nil {
			errs = append(errs, err)
		} else {
			files = append(files, cpu)
		}
	}
	return files, errors.Join(errs...)
}

func kindColor(kind string) color.Color {
	if c, ok := kindColors[kind]; ok {
		return c
	}
	return otherColor
}

// medianBar is a one-value plotter.Values with its error bar.
type medianBar struct {
	x, y, lo, hi float64
}

func (m medianBar) Len() int                      { return 1 }
func (m medianBar) XY(int) (float64, float64)     { return m.x, m.y }
func (m medianBar) YError(int) (float64, float64) { return m.y - m.lo, m.hi - m.y }

// rateChart draws one bar per entry, each with a min-max error bar, one
// legend entry per group, and saves it as a PNG.
func rateChart(title, xlabel string, bars []bar, file string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = "Mpps (median, min-max)"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false
	labels := make([]string, len(bars))
	seen := map[string]bool{}
	top := 0.0
	var values plotter.XYLabels
	for i, b := range bars {
		labels[i] = b.label
		if b.missingComment != "" {
			labels[i] += "\n(" + b.missingComment + ")"
			continue
		}
		bc, err := plotter.NewBarChart(plotter.Values{b.med}, barWidth)
		if err != nil {
			return fmt.Errorf("perf: chart %s: %w", file, err)
		}
		bc.XMin = float64(i)
		bc.Color = b.color
		bc.LineStyle.Width = 0
		p.Add(bc)
		eb, err := plotter.NewYErrorBars(medianBar{x: float64(i), y: b.med, lo: b.min, hi: b.max})
		if err != nil {
			return fmt.Errorf("perf: chart %s: %w", file, err)
		}
		p.Add(eb)
		top = max(top, b.max, b.med)
		values.XYs = append(values.XYs, plotter.XY{X: float64(i), Y: b.max})
		values.Labels = append(values.Labels, fmt.Sprintf("%.3f", b.med))
		if b.group != "" && !seen[b.group] {
			seen[b.group] = true
			p.Legend.Add(b.group, bc)
		}
	}
	if len(values.XYs) > 0 {
		l, err := plotter.NewLabels(values)
		if err != nil {
			return fmt.Errorf("perf: chart %s: %w", file, err)
		}
		l.Offset = vg.Point{Y: 2 * vg.Millimeter} // above the error bar's cap
		for i := range l.TextStyle {
			l.TextStyle[i].XAlign = draw.XCenter
			l.TextStyle[i].YAlign = draw.YBottom
		}
		p.Add(l)
	}
	// Headroom above the tallest error bar for its label and the legend,
	// and every slot shown, skipped ones too.
	p.Y.Max = 1.25 * max(top, 0.001)
	p.X.Min, p.X.Max = -0.5, float64(len(bars))-0.5
	p.NominalX(labels...)
	return save(p, len(bars), file)
}

// cpuChart draws, per datapath and core, the core's user, system and
// softirq time as stacked bars.
func cpuChart(title string, recs []Record, file string) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "% of the core (mean of repeats)"
	p.Y.Min, p.Y.Max = 0, 120 // room for the legend
	p.Legend.Top = true
	var labels []string
	var series [3]plotter.Values
	for _, rec := range recs {
		if len(rec.CPU) == 0 {
			labels = append(labels, rec.label()+"\n(no data)")
			for s := range series {
				series[s] = append(series[s], 0)
			}
			continue
		}
		for _, u := range rec.CPU {
			labels = append(labels, fmt.Sprintf("%s\ncpu%d", rec.label(), u.CPU))
			series[0] = append(series[0], u.User)
			series[1] = append(series[1], u.System)
			series[2] = append(series[2], u.Softirq)
		}
	}
	if len(labels) == 0 {
		return fmt.Errorf("perf: chart %s: no records", file)
	}
	var below *plotter.BarChart
	for s := range series {
		bc, err := plotter.NewBarChart(series[s], barWidth)
		if err != nil {
			return fmt.Errorf("perf: chart %s: %w", file, err)
		}
		bc.Color = cpuColors[s]
		bc.LineStyle.Width = 0
		if below != nil {
			bc.StackOn(below)
		}
		below = bc
		p.Add(bc)
		p.Legend.Add(cpuSeries[s], bc)
	}
	p.X.Min, p.X.Max = -0.5, float64(len(labels))-0.5
	p.NominalX(labels...)
	return save(p, len(labels), file)
}

// barWidth is every bar's width; save makes the chart wide enough.
const barWidth = vg.Inch / 2

// save writes p as a PNG wide enough for n bars.
func save(p *plot.Plot, n int, file string) error {
	w := max(6*vg.Inch, vg.Length(n)*1.1*vg.Inch)
	if err := p.Save(w, chartHeight, file); err != nil {
		return fmt.Errorf("perf: chart %s: %w", file, err)
	}
	return nil
}
