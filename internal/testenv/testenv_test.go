package testenv

import (
	"errors"
	"testing"
)

// fakeTB records how a gate ended a test without ending the real one.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Skip(...any)  { f.skipped = true }
func (f *fakeTB) Fatal(...any) { f.failed = true }
func (f *fakeTB) Name() string { return "fake" }

func TestFeature(t *testing.T) {
	for _, tc := range []struct {
		ci         string
		err        error
		skip, fail bool
	}{
		{ci: "", err: nil},
		{ci: "", err: errors.New("no"), skip: true},
		{ci: "false", err: errors.New("no"), skip: true},
		{ci: "true", err: errors.New("no"), fail: true},
		{ci: "true", err: nil},
	} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{}
		Feature(f, "thing", tc.err)
		if f.skipped != tc.skip || f.failed != tc.fail {
			t.Errorf("CI=%q err=%v: skipped=%v failed=%v, want %v %v", tc.ci, tc.err, f.skipped, f.failed, tc.skip, tc.fail)
		}
	}
}
