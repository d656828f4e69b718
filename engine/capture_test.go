package engine

import (
	"errors"
	"testing"

	"github.com/xlbproject/xlb/capture"
)

// TestCaptureNativeBusy: in native mode a second capture is refused in
// words (the lb program runs one at a time).
func TestCaptureNativeBusy(t *testing.T) {
	f, err := capture.ParseRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Engine{mode: "native", lb: &fakeLB{}}).Capture(f); !errors.Is(err, ErrCaptureNativeBusy) {
		t.Fatalf("native capture while another runs: %v", err)
	}
}
