package tcpbench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"time"

	"github.com/xlbproject/xlb/proxy"
)

// statsWait bounds one `xlb stats` call.
const statsWait = 10 * time.Second

// SpliceCount is what became of xlb-splice's connections: how many its
// proxy routed, how many of them it handed to the datapath (the others
// were copied), and why the ones it decided to keep copied were kept.
// A record's SpliceCount sums its windows' test connections, so it shows
// whether the figure was measured spliced.
type SpliceCount struct {
	Connections uint64 `json:"connections"`
	Spliced     uint64 `json:"spliced"`
	// StayedCopied counts, by reason (proxy.Kept), the connections xlb
	// decided to keep copied; a connection still waiting to be quiet is
	// copied without a reason yet.
	StayedCopied map[string]uint64 `json:"stayed_copied,omitempty"`
}

// Copied is how many connections were not spliced.
func (s SpliceCount) Copied() uint64 { return s.Connections - s.Spliced }

// sub is s less the earlier counters before, reasons that did not change
// left out.
func (s SpliceCount) sub(before SpliceCount) SpliceCount {
	d := SpliceCount{Connections: s.Connections - before.Connections, Spliced: s.Spliced - before.Spliced}
	for k, v := range s.StayedCopied {
		if n := v - before.StayedCopied[k]; n > 0 {
			if d.StayedCopied == nil {
				d.StayedCopied = map[string]uint64{}
			}
			d.StayedCopied[k] = n
		}
	}
	return d
}

// add is s and o together.
func (s SpliceCount) add(o SpliceCount) SpliceCount {
	sum := SpliceCount{Connections: s.Connections + o.Connections, Spliced: s.Spliced + o.Spliced}
	if len(s.StayedCopied)+len(o.StayedCopied) > 0 {
		sum.StayedCopied = maps.Clone(s.StayedCopied)
		if sum.StayedCopied == nil {
			sum.StayedCopied = map[string]uint64{}
		}
		for k, v := range o.StayedCopied {
			sum.StayedCopied[k] += v
		}
	}
	return sum
}

// parseSpliceStats sums the splice counters of every route of every
// splice VIP in the output of `xlb stats --json`.
func parseSpliceStats(out []byte) (SpliceCount, error) {
	var st struct {
		Splice []proxy.VIPStats `json:"splice"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return SpliceCount{}, fmt.Errorf("tcpbench: xlb stats --json: %w", err)
	}
	var c SpliceCount
	for _, v := range st.Splice {
		for _, r := range v.Routes {
			c = c.add(SpliceCount{Connections: r.Connections, Spliced: r.Spliced, StayedCopied: r.StayedCopied})
		}
	}
	return c, nil
}

// xlbSpliceCounts reads the splice counters of the xlb that serves the
// control socket, with `xlb stats --json` as an operator would.
func xlbSpliceCounts(xlb, socket string) func() (SpliceCount, error) {
	return func() (SpliceCount, error) {
		ctx, cancel := context.WithTimeout(context.Background(), statsWait)
		defer cancel()
		out, err := exec.CommandContext(ctx, xlb, "stats", "--socket", socket, "--json").Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			return SpliceCount{}, fmt.Errorf("tcpbench: xlb stats: %w", err)
		}
		return parseSpliceStats(out)
	}
}
