package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestVersion runs `xlb version` and `xlb version --json` in-process: the
// Go version and the kernel release are this process's and this machine's.
func TestVersion(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	kernel := unix.ByteSliceToString(u.Release[:])

	var out, errb bytes.Buffer
	if code := run(&env{stdout: &out, stderr: &errb}, []string{"version"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"\ngo      " + runtime.Version() + "\n", "\nkernel  " + kernel + "\n", "\ncommit  "} {
		if !strings.Contains("\n"+out.String(), want) {
			t.Errorf("xlb version lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if code := run(&env{stdout: &out, stderr: &errb}, []string{"version", "--json"}); code != exitOK {
		t.Fatalf("--json: exit %d: %s", code, errb.String())
	}
	var v versionInfo
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	if v.Go != runtime.Version() || v.Kernel != kernel {
		t.Errorf("--json: %+v, want go %s kernel %s", v, runtime.Version(), kernel)
	}
}

// TestVersionOf: the VCS stamp of `go build` in a git checkout becomes the
// commit fields; without one they stay empty.
func TestVersionOf(t *testing.T) {
	main := debug.Module{Path: "github.com/xlbproject/xlb", Version: "(devel)"}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want versionInfo
	}{
		{"no build info", nil, versionInfo{}},
		{"no VCS stamp", &debug.BuildInfo{Main: main, Settings: []debug.BuildSetting{{Key: "CGO_ENABLED", Value: "1"}}},
			versionInfo{Module: main.Path, Version: main.Version}},
		{"clean checkout", &debug.BuildInfo{Main: main, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "7c0f6a7e"}, {Key: "vcs.time", Value: "2026-12-03T06:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			versionInfo{Module: main.Path, Version: main.Version, Commit: "7c0f6a7e", CommitTime: "2026-12-03T06:00:00Z"}},
		{"modified checkout", &debug.BuildInfo{Main: main, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "7c0f6a7e"}, {Key: "vcs.modified", Value: "true"}}},
			versionInfo{Module: main.Path, Version: main.Version, Commit: "7c0f6a7e", Modified: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.Go, tc.want.Kernel = runtime.Version(), "6.18.0"
			if got := versionOf(tc.bi, "6.18.0"); got != tc.want {
				t.Errorf("versionOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
