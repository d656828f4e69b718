// Package xlbbin builds the xlb binary that labs run as a process of its
// own (the perf labs, the integration tests), from this module's source
// with the go tool, once per process: every lab and test of a process
// shares one build, and Remove deletes it when the process is done (the
// end of TestMain or main).
//
// It needs the go tool in PATH and a working directory inside the module,
// as `go test` has; a command run elsewhere takes an xlb binary instead.
package xlbbin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Package is the import path of the command Path builds.
const Package = "github.com/xlbproject/xlb/cmd/xlb"

// buildTimeout bounds one build: a cold cache on a loaded 2-CPU machine
// takes a minute or two.
const buildTimeout = 5 * time.Minute

var (
	mu  sync.Mutex
	dir string // the temporary directory of the built binary, "" before
)

// Path returns the path of xlb built from this module's source, building
// it on the first call of the process (or the first after Remove). A
// failed build is not remembered: the next call tries again.
func Path() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		return filepath.Join(dir, "xlb"), nil
	}
	d, err := os.MkdirTemp("", "xlbbin")
	if err != nil {
		return "", fmt.Errorf("xlbbin: %w", err)
	}
	bin := filepath.Join(d, "xlb")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, Package).CombinedOutput()
	if err != nil {
		os.RemoveAll(d)
		return "", fmt.Errorf("xlbbin: go build %s (run inside the module, or give an xlb binary): %w: %s", Package, err, bytes.TrimSpace(out))
	}
	dir = d
	return bin, nil
}

// Remove deletes the binary Path built, if any. Paths it returned before
// are then gone.
func Remove() error {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		return nil
	}
	err := os.RemoveAll(dir)
	dir = ""
	if err != nil {
		return fmt.Errorf("xlbbin: %w", err)
	}
	return nil
}

// RunAndRemove runs a test binary's tests (m is its *testing.M), then
// removes the binary Path built for them, and returns m.Run's exit code:
// func TestMain(m *testing.M) { os.Exit(xlbbin.RunAndRemove(m)) }.
func RunAndRemove(m interface{ Run() int }) int {
	code := m.Run()
	if err := Remove(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}
