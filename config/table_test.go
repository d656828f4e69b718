package config

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/hash"
)

// BuildTable gives no slot to a drained backend nor to one that down
// reports, and shares the rest by weight.
func TestBuildTable(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	bs := []Backend{
		{Address: a("198.18.1.1"), Weight: 1},
		{Address: a("198.18.1.2"), Weight: 3},
		{Address: a("198.18.1.3"), Weight: 5, State: StateDrain},
		{Address: a("198.18.1.4"), Weight: 5},
	}
	tab, err := BuildTable(bs, 65537, func(b Backend) bool { return b.Address == a("198.18.1.4") })
	if err != nil {
		t.Fatal(err)
	}
	slots := make([]int, len(bs))
	for h := range uint32(1 << 16) {
		if i := tab.Lookup(h * 65521); i >= 0 {
			slots[i]++
		}
	}
	if slots[2] != 0 || slots[3] != 0 || slots[0] == 0 || slots[1] < 2*slots[0] {
		t.Errorf("lookups per backend %v: want none for the drained and the down one, about 1:3 for the others", slots)
	}
	if _, err := BuildTable(bs, 4, func(Backend) bool { return false }); !errors.Is(err, hash.ErrTableSize) {
		t.Errorf("a table of 4 slots: %v, want hash.ErrTableSize", err)
	}
}
