package hash_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/hash"
)

// A VIP with three backends, one of them with twice the weight, and the
// backend chosen for one TCP flow. The words are loaded from packet bytes
// the way the datapath (Go or BPF) loads them.
func Example() {
	backends := []hash.Backend{
		{Addr: netip.MustParseAddr("198.18.1.1"), Weight: 1},
		{Addr: netip.MustParseAddr("198.18.1.2"), Weight: 1},
		{Addr: netip.MustParseAddr("198.18.1.3"), Weight: 2},
	}
	table, err := hash.Build(backends, hash.DefaultTableSize)
	if err != nil {
		fmt.Println(err)
		return
	}

	client := netip.MustParseAddr("198.19.0.7").As4()
	vip := netip.MustParseAddr("198.18.0.10").As4()
	ports := [4]byte{0x9c, 0x40, 0x00, 0x50} // source port 40000, destination port 80
	h := hash.Flow4(
		binary.LittleEndian.Uint32(client[:]),
		binary.LittleEndian.Uint32(vip[:]),
		binary.LittleEndian.Uint32(ports[:]),
		6, // TCP
	)
	i := table.Lookup(h)
	fmt.Printf("flow hash %#08x -> backend %d (%s)\n", h, i, backends[i].Addr)

	// Draining every backend keeps the VIP, with an empty table.
	for i := range backends {
		backends[i].Weight = 0
	}
	table, _ = hash.Build(backends, 0)
	fmt.Println(table.Empty(), table.Lookup(h))
	// Output:
	// flow hash 0x82b97ad1 -> backend 2 (198.18.1.3)
	// true -1
}
