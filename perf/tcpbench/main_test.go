package tcpbench

import (
	"os"
	"testing"

	"github.com/xlbproject/xlb/lab/xlbbin"
)

// TestMain removes the xlb binary the tests built once and shared.
func TestMain(m *testing.M) {
	code := m.Run()
	xlbbin.Remove()
	os.Exit(code)
}
