package xlbbin

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/testenv"
)

// TestPathOncePerProcess builds xlb, gets the same binary from a second
// call without building again, runs it, and checks Remove deletes it.
func TestPathOncePerProcess(t *testing.T) {
	testenv.Short(t, "builds cmd/xlb with the go tool")
	testenv.Tool(t, "go")
	t.Cleanup(func() { Remove() })
	first, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Path()
	if err != nil || second != first {
		t.Fatalf("second Path = %q, %v; want %q", second, err, first)
	}
	if fi2, err := os.Stat(second); err != nil || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("second Path rebuilt the binary: %v", err)
	}
	out, _ := exec.Command(first, "--help").CombinedOutput()
	if !strings.Contains(string(out), "usage: xlb") {
		t.Errorf("built binary's --help: %q", out)
	}
	if err := Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: %v", err)
	}
	if err := Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}
