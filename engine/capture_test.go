package engine

import (
	"errors"
	"testing"

	"github.com/xlbproject/xlb/capture"
)

// TestCaptureNativeRefused: native mode says in words that capture is
// AF_XDP-only in this release.
func TestCaptureNativeRefused(t *testing.T) {
	f, err := capture.ParseRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Engine{mode: "native"}).Capture(f); !errors.Is(err, ErrCaptureNative) {
		t.Fatalf("native capture: %v", err)
	}
}
