package labtest

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/lab"
)

func TestPrefix(t *testing.T) {
	a, b := Prefix("xlbt"), Prefix("xlbt")
	if a == b || !strings.HasPrefix(a, "xlbt") {
		t.Fatalf("Prefix: %q then %q, want two distinct xlbt... prefixes", a, b)
	}
}

// TestNewAndEnter builds a one-host lab with a pair inside the host,
// enters it and sees the pair by name from the test's own thread; a
// subtest checks that every namespace is gone once its test has ended.
func TestNewAndEnter(t *testing.T) {
	var prefix string
	t.Run("lab", func(t *testing.T) {
		l := New(t, lab.Spec{
			Hosts: []lab.HostSpec{{Name: "h", NoSwitch: true}},
			Pairs: []lab.PairSpec{{A: lab.EndSpec{Host: "h", Name: "a"}, B: lab.EndSpec{Host: "h", Name: "b"}}},
		})
		prefix = l.Prefix
		Enter(t, l.Hosts["h"])
		for _, name := range []string{"a", "b"} {
			if _, err := netlink.LinkByName(name); err != nil {
				t.Errorf("pair end %s not seen from inside h: %v", name, err)
			}
		}
	})
	if prefix == "" {
		return // skipped: no root
	}
	if left, err := lab.Leftovers(prefix); err != nil || len(left) > 0 {
		t.Errorf("after the test: %v %v", left, err)
	}
	if _, err := netlink.LinkByName("a"); err == nil {
		t.Error("pair end a visible outside the lab after the test")
	}
}
