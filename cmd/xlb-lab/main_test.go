package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/testenv"
)

// labOnly are the import path prefixes of what only the lab needs.
var labOnly = []string{
	"gonum.org/",            // charts
	"codeberg.org/",         // the charts' fonts and PDF backend
	"github.com/ajstarks/",  // the charts' SVG backend
	"github.com/asavie/xdp", // the plain Go AF_XDP baseline
	"github.com/xlbproject/xlb/perf",
	"github.com/xlbproject/xlb/bpf/labprogs",
}

// linked returns the labOnly prefixes that pkg's dependencies match.
func linked(t *testing.T, pkg string) map[string][]string {
	t.Helper()
	goTool := testenv.Tool(t, "go")
	out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	found := map[string][]string{}
	for _, dep := range strings.Fields(string(out)) {
		for _, p := range labOnly {
			if strings.HasPrefix(dep, p) {
				found[p] = append(found[p], dep)
			}
		}
	}
	return found
}

// TestApplianceLinksNoLab fails if cmd/xlb, the appliance, links a package
// only the lab needs again: that is why the lab is a command of its own.
// xlb-lab itself must match every prefix, or the list has gone stale and
// the check would pass for nothing.
func TestApplianceLinksNoLab(t *testing.T) {
	for p, deps := range linked(t, "github.com/xlbproject/xlb/cmd/xlb") {
		t.Errorf("cmd/xlb links %s (lab-only %s*): keep lab code in cmd/xlb-lab", strings.Join(deps, ", "), p)
	}
	lab := linked(t, "github.com/xlbproject/xlb/cmd/xlb-lab")
	for _, p := range labOnly {
		if len(lab[p]) == 0 {
			t.Errorf("cmd/xlb-lab links nothing under %s: update labOnly", p)
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{nil, exitUsage, "usage: xlb-lab COMMAND"},
		{[]string{"--help"}, exitOK, "compare"},
		{[]string{"perf"}, exitUsage, `unknown command "perf"`},
		{[]string{"compare", "--help"}, exitOK, "--frames"},
		{[]string{"sweep", "-h"}, exitOK, "--knobs"},
		{[]string{"tcp", "--help"}, exitOK, "--streams"},
		{[]string{"compare", "--nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"compare", "extra"}, exitUsage, "unexpected arguments: extra"},
		{[]string{"compare", "--frames", "64,big"}, exitUsage, `--frames: "big" is not a number`},
		{[]string{"compare", "--lb-cpus", "x"}, exitUsage, `--lb-cpus: "x" is not a number`},
		{[]string{"compare", "--help"}, exitOK, "--scenario"},
		{[]string{"compare", "--help"}, exitOK, "--flows"},
		{[]string{"compare", "--flows", "0x"}, exitUsage, `invalid value "0x" for flag -flows`},
		{[]string{"compare", "--flows", "2000000"}, exitFail, "flows 2000000: want 1 to 1048576"},
		{[]string{"compare", "--rules", "10,1k"}, exitUsage, `--rules: "1k" is not a number`},
		{[]string{"compare", "--scenario", "ddos"}, exitFail, `scenario "ddos"`},
		{[]string{"compare", "--scenario", "drop", "--datapaths", "xdp-tx"}, exitFail, `datapath "xdp-tx" has no drop scenario`},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("xlb-lab %q: exit %d, want %d\nstderr: %s", tc.args, code, tc.code, stderr.String())
		}
		if all := stdout.String() + stderr.String(); !strings.Contains(all, tc.out) {
			t.Errorf("xlb-lab %q: output lacks %q:\n%s", tc.args, tc.out, all)
		}
	}
}
