// Package testenv is the one gate for tests that need something a developer's
// machine may lack: root (network namespaces, XDP, AF_XDP, BPF_PROG_TEST_RUN)
// or a kernel feature or tool.
//
// The rule, as cilium/ebpf's testutils has it: such a test skips with the
// reason on a developer's machine, but fails when the environment variable
// CI is set, because a CI run that silently skips the tests that matter is
// worse than a red one. -short always skips them, CI or not: `make
// test-unit` promises seconds and no namespaces.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under continuous integration (CI set to
// anything but "" or "false"), where a missing prerequisite is a failure.
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Short skips t under -short with why. Every test that builds namespaces,
// loads BPF programs or starts processes calls it (Root does).
func Short(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: " + why)
	}
}

// Root gates a test that needs root: under -short it skips; without root it
// skips on a developer's machine and fails under CI. why says what the test
// does with root, for the skip message.
func Root(t testing.TB, why string) {
	t.Helper()
	Short(t, why)
	if os.Geteuid() != 0 {
		missing(t, "needs root: "+why)
	}
}

// Feature gates a test on something the machine may lack: err is the probe's
// result (nil: present). Absent, it skips on a developer's machine and fails
// under CI, naming what is missing.
func Feature(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		missing(t, "needs "+what+": "+err.Error())
	}
}

// Tool gates a test on a program in PATH (a Debian package CI installs) and
// returns its path.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Feature(t, name, err)
	return p
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if CI() {
		t.Fatal(msg + " (CI is set: a missing prerequisite fails instead of skipping)")
		return
	}
	t.Skip(msg)
}
