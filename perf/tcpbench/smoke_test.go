package tcpbench

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab/xlbbin"
)

// TestMain removes the xlb binary the smoke tests built once and shared.
func TestMain(m *testing.M) { os.Exit(xlbbin.RunAndRemove(m)) }

// TestRunSmoke runs every datapath for one short window and checks that
// each moved bytes and answered requests, that xlb-splice's streams were
// spliced (handed to the datapath, not copied by its proxy), and that both
// report formats are well formed. Proxies that are not installed are
// skipped, not failed.
func TestRunSmoke(t *testing.T) {
	testenv.Root(t, "builds a namespace lab and runs four datapaths (about a minute)")
	testenv.Tool(t, "ip")
	var log bytes.Buffer
	rep, err := Run(Options{Duration: time.Second, Repeat: 1, Streams: 4, Clients: 4, Rate: 500, Out: &log})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]bool{}
	for _, r := range rep.Records {
		switch {
		case r.Skipped != "":
			if r.Datapath == XLBAFXDP || r.Datapath == XLBNative {
				t.Errorf("%s %s skipped: %s", r.Datapath, r.Test, r.Skipped)
			}
			continue
		case r.Error != "":
			t.Errorf("%s %s: %s", r.Datapath, r.Test, r.Error)
			continue
		}
		ran[r.Datapath] = true
		if r.Datapath == XLBSplice {
			t.Logf("%s %s: %+v", r.Datapath, r.Test, r.Splice)
			if r.Splice == nil || r.Splice.Connections == 0 {
				t.Errorf("%s %s: no splice counters (%+v)", r.Datapath, r.Test, r.Splice)
			} else if (r.Test == TestStream1 || r.Test == TestStreamN) && r.Splice.Spliced == 0 {
				t.Errorf("%s %s: none of %d connections spliced (kept copied: %v)", r.Datapath, r.Test, r.Splice.Connections, r.Splice.StayedCopied)
			}
		}
		if r.Median <= 0 || r.Min > r.Median || r.Median > r.Max || len(r.Runs) != 1 {
			t.Errorf("%s %s: median %v min %v max %v runs %v", r.Datapath, r.Test, r.Median, r.Min, r.Max, r.Runs)
		}
	}
	if want := len(AllDatapaths) * len(tests); len(rep.Records) != want {
		t.Errorf("%d records, want %d", len(rep.Records), want)
	}
	for _, dp := range []string{XLBAFXDP, XLBSplice} {
		if !ran[dp] {
			t.Errorf("%s did not run", dp)
		}
	}
	var md, js bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(md.String(), "\n| "); rows != len(rep.Records)+1 {
		t.Errorf("markdown has %d table rows, want %d:\n%s", rows, len(rep.Records)+1, md.String())
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Records) != len(rep.Records) {
		t.Errorf("json does not round-trip (%v, %d records)", err, len(back.Records))
	}
	t.Log("\n" + md.String())
}

// TestRunFull is the full measurement with the default options, for a
// person to run by hand: XLB_TCPBENCH=1 go test -run TestRunFull -v
// -timeout 30m ./perf/tcpbench. The markdown table is in the test log and
// the JSON in $XLB_TCPBENCH_JSON when set.
func TestRunFull(t *testing.T) {
	if os.Getenv("XLB_TCPBENCH") == "" {
		t.Skip("set XLB_TCPBENCH=1 to run the full measurement (several minutes)")
	}
	testenv.Root(t, "builds a namespace lab")
	rep, err := Run(Options{Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + md.String())
	if path := os.Getenv("XLB_TCPBENCH_JSON"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := rep.WriteJSON(f); err != nil {
			t.Fatal(err)
		}
	}
}

// testWriter sends progress lines to the test log as they come.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
