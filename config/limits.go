package config

import (
	"fmt"
	"net/netip"
)

// Capacities of the kernel maps the datapath fills from a configuration.
// They are the sizes the programs in bpf/ give their maps; config cannot
// import bpf (which loads programs), so it keeps its own copy and a test in
// cmd/xlb, which may import both, holds them equal. Parse refuses a file
// that does not fit them at the line where it stops fitting, so that
// `xlb check` refuses what `xlb run` would.
const (
	// MaxVIPEntries is the size of the vips map of the steering program
	// (steer.c) and of the native lb program (lb.c). It holds one entry
	// per VIP and one address marker per distinct VIP address.
	MaxVIPEntries = 4096
	// MaxQueues is the size of the steering program's xsks map: it
	// steers RX queues 0..MaxQueues-1.
	MaxQueues = 64
	// NativeMaxIDs is the native lb program's backend index space (its
	// backends map): every backend of every VIP takes one index. An index
	// is reused, with a new generation, as soon as its backend leaves, so
	// reloads need only as many as there are backends at once.
	NativeMaxIDs = 4096
	// NativeMinVIPTables is how many VIP Maglev tables the lb program's
	// maglev map holds at least (room for VIPs a reload adds).
	NativeMinVIPTables = 64
	// NativeMaglevSlots bounds the lb program's maglev map, which holds
	// every VIP's table at its own size, datapath.table_size slots for each
	// VIP index up to NativeMinVIPTables, and room for the largest table
	// once more, where a VIP's table of a new size is written before it
	// switches to it.
	NativeMaglevSlots = 1 << 28
)

// MaxFileSize bounds a configuration file: thousands of VIPs and backends
// take a few MB, and a file that is not a config (/dev/zero) must not be
// read without end.
const MaxFileSize = 16 << 20

// limits checks that c fits the datapath's maps.
func (d *decoder) limits(c *Config) {
	for i, q := range c.Datapath.Queues {
		if q >= MaxQueues && c.Datapath.Mode == ModeAFXDP {
			d.errorf(indexKey("datapath.queues", i), "queue %d: the steering program serves queues 0..%d", q, MaxQueues-1)
		}
	}

	// The VIP whose entries overflow the map is the one reported: the
	// first that does not fit.
	addrs := make(map[netip.Addr]bool, len(c.VIPs))
	entries, over := 0, -1
	for i, v := range c.VIPs {
		entries++
		if !addrs[v.Address] {
			addrs[v.Address] = true
			entries++
		}
		if entries > MaxVIPEntries && over < 0 {
			over = i
		}
	}
	if over >= 0 {
		d.errorf(indexKey("vip", over), "the VIP map is full: %d VIPs on %d addresses need %d entries (one per VIP and one per address), it holds %d; this VIP is the first that does not fit",
			len(c.VIPs), len(addrs), entries, MaxVIPEntries)
	}

	dp := c.Datapath
	if dp.Mode != ModeNative {
		return
	}
	ids := 0
	over = -1
	for i, v := range c.VIPs {
		ids += len(v.Backends)
		if ids > NativeMaxIDs && over < 0 {
			over = i
		}
	}
	if over >= 0 {
		d.errorf(indexKey("vip", over), "mode = \"native\": %d VIPs have %d backends, the lb program holds %d; this VIP is the first that does not fit",
			len(c.VIPs), ids, NativeMaxIDs)
	}
	tables := uint64(max(NativeMinVIPTables, len(c.VIPs)) + 1)
	if slots := tables * uint64(dp.TableSize); slots > NativeMaglevSlots {
		d.errorf(d.blame("datapath.table_size", "datapath.mode"),
			"mode = \"native\": %d Maglev tables (one spare) of %d slots (%d slots) exceed the lb program's %d; use a table_size of at most %d",
			tables, dp.TableSize, slots, NativeMaglevSlots, NativeMaglevSlots/tables)
		return
	}
	// VIPs with tables of their own size: all of them, the other indexes at
	// datapath.table_size, and the largest once more.
	spare := uint64(max(NativeMinVIPTables, len(c.VIPs))-len(c.VIPs)) * uint64(dp.TableSize)
	var largest uint64
	for _, v := range c.VIPs {
		largest = max(largest, uint64(v.TableSize))
	}
	slots := spare + largest
	for i, v := range c.VIPs {
		if slots += uint64(v.TableSize); slots > NativeMaglevSlots {
			d.errorf(indexKey("vip", i)+".table_size", "mode = \"native\": the Maglev tables need %d slots or more (every VIP's table, the largest once more), the lb program holds %d; this VIP is the first that does not fit",
				slots, NativeMaglevSlots)
			return
		}
	}
}

// errTooLarge is the error about a file larger than MaxFileSize.
func errTooLarge(file string) error {
	return &Error{File: file, Msg: fmt.Sprintf("larger than %d MiB, the limit for a config file", MaxFileSize>>20)}
}
