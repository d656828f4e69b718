package config

import (
	"fmt"
	"net/netip"
)

// validate checks what a single value cannot tell: values that must agree
// with each other, and uniqueness. It runs on a decoded tree with no errors,
// so every value is of the right type and within its own bounds.
func (d *decoder) validate(c *Config) {
	dp := &c.Datapath
	const p = "datapath."

	// The native program does per packet what the workers do; what it
	// cannot do is refused here, at the line that asks for it.
	if dp.Mode == ModeNative {
		d.native(c)
	}

	if dp.FrameSize != 2048 && dp.FrameSize != 4096 {
		d.errorf(p+"frame_size", "frame size %d is not 2048 or 4096", dp.FrameSize)
	} else if most := dp.FrameSize - xdpPacketHeadroom - frameRoom; dp.Headroom > most {
		d.errorf(d.blame(p+"headroom", p+"frame_size"),
			"headroom %d leaves no room for a full-size packet in a %d-byte frame (at most %d)",
			dp.Headroom, dp.FrameSize, most)
	}
	if !isPow2(dp.FrameCount) {
		d.errorf(p+"frame_count", "frame count %d is not a power of two", dp.FrameCount)
	}
	rings := []struct {
		name string
		size uint32
	}{{"rx_ring", dp.RxRing}, {"tx_ring", dp.TxRing}, {"fill_ring", dp.FillRing}, {"completion_ring", dp.CompletionRing}}
	for _, r := range rings {
		if !isPow2(r.size) {
			d.errorf(p+r.name, "ring size %d is not a power of two", r.size)
		}
		if dp.BatchSize > r.size {
			d.errorf(d.blame(p+"batch_size", p+r.name), "batch_size (%d) is larger than %s (%d)", dp.BatchSize, r.name, r.size)
		}
	}
	// Every fill ring slot needs a frame of its own at start-up; frames
	// beyond that are what RX and TX hold in flight.
	if dp.FrameCount < dp.FillRing {
		d.errorf(d.blame(p+"frame_count", p+"fill_ring"),
			"frame_count (%d) is smaller than fill_ring (%d): the fill ring could never be filled", dp.FrameCount, dp.FillRing)
	}
	if dp.TxBudget != 0 && (dp.TxBudget < MinTxBudget || dp.TxBudget > dp.TxRing) {
		d.errorf(d.blame(p+"tx_budget", p+"tx_ring"), "tx_budget (%d) must be 0 or %d..tx_ring (%d)", dp.TxBudget, MinTxBudget, dp.TxRing)
	}
	if !isPrime(dp.TableSize) {
		d.errorf(p+"table_size", "table size %d is not a prime", dp.TableSize)
	}
	if !isPow2(dp.FlowTableSize) {
		d.errorf(p+"flow_table_size", "flow table size %d is not a power of two", dp.FlowTableSize)
	}
	seen := make(map[int]int, len(dp.Queues))
	for i, q := range dp.Queues {
		if j, dup := seen[q]; dup {
			d.errorf(indexKey(p+"queues", i), "queue %d is already datapath.queues[%d]", q, j)
		}
		seen[q] = i
	}
	if len(dp.CPUs) > 0 && len(dp.Queues) > 0 && len(dp.CPUs) != len(dp.Queues) {
		d.errorf(p+"cpus", "%d cpus for %d queues: give one CPU per queue", len(dp.CPUs), len(dp.Queues))
	}

	type vipID struct {
		addr  netip.Addr
		port  uint16
		proto Protocol
	}
	vips := make(map[vipID]int, len(c.VIPs))
	for i := range c.VIPs {
		v := &c.VIPs[i]
		key := indexKey("vip", i)
		id := vipID{v.Address, v.Port, v.Protocol}
		if j, dup := vips[id]; dup {
			d.errorf(key, "duplicate of vip[%d] (%s)", j, v)
		}
		vips[id] = i

		if v.TableSize == 0 {
			v.TableSize = dp.TableSize
		} else if !isPrime(v.TableSize) {
			d.errorf(key+".table_size", "table size %d is not a prime", v.TableSize)
		}
		if len(v.Backends) == 0 && v.Forward != Splice {
			d.errorf(key, "vip has no backend")
		}
		if uint32(len(v.Backends)) > v.TableSize {
			d.errorf(key, "%d backends do not fit a Maglev table of %d slots", len(v.Backends), v.TableSize)
		}
		backends := make(map[netip.Addr]int, len(v.Backends))
		for j, b := range v.Backends {
			if k, dup := backends[b.Address]; dup {
				d.errorf(indexKey(key+".backend", j)+".address", "%s is already %s", b.Address, indexKey(key+".backend", k))
			}
			backends[b.Address] = j
		}
		d.families(v, key)
		d.local(c, v, key)

		switch {
		case v.Forward == GUE && v.GUEPort == 0:
			v.GUEPort = DefaultGUEPort
		case v.Forward != GUE && v.GUEPort != 0:
			d.errorf(key+".gue_port", "gue_port is only used with forward = \"gue\" (forward is %q)", v.Forward)
		}

		vh := d.health[key]
		v.Health = vh.apply(DefaultHealth(v.Port))
		if vh != nil {
			d.checkHealth(vh, v.Health)
		}
		for j := range v.Backends {
			b := &v.Backends[j]
			bh := d.health[indexKey(key+".backend", j)]
			b.Health = bh.apply(v.Health)
			if bh != nil {
				d.checkHealth(bh, b.Health)
			}
		}
		d.validateSplice(c, i)
	}
	d.validateFirewall(c)
	d.validateBGP(c)
	d.limits(c)
}

// native refuses what mode = "native" would accept and ignore. The lb
// program forwards with ipip, gue and dsr, and does not leave a splice
// VIP's packets to the kernel, so the proxy could not accept them.
func (d *decoder) native(c *Config) {
	for i, v := range c.VIPs {
		if v.Forward == Splice {
			d.errorf(indexKey("vip", i)+".forward", "mode = \"native\" forwards with ipip, gue or dsr only: forward = \"splice\" needs the balancer's own TCP stack, and the native program does not leave a splice VIP's packets to the kernel, so the proxy could not accept them")
		}
	}
}

// families checks the address families of a VIP and its backends. The
// backends share one family, so the VIP has one outer family: IPIP and GUE
// carry an IPv4 VIP to IPv4 or IPv6 backends and an IPv6 VIP to IPv6
// backends; DSR sends the client's packet as it is, so its backends are of
// the VIP's family.
func (d *decoder) families(v *VIP, key string) {
	if len(v.Backends) == 0 {
		return
	}
	first := v.Backends[0].Address
	for j, b := range v.Backends[1:] {
		if b.Address.Is4() != first.Is4() {
			d.errorf(indexKey(key+".backend", j+1)+".address", "%s is %s but %s.backend[0] is %s: a VIP's backends must be of one family",
				b.Address, family(b.Address), key, family(first))
		}
	}
	bkey := indexKey(key+".backend", 0) + ".address"
	switch {
	case v.Forward == DSR && first.Is4() != v.Address.Is4():
		d.errorf(bkey, "%s backend for %s VIP %s: dsr forwards the client's packet unchanged, so backends must be of the VIP's family",
			family(first), family(v.Address), v.Address)
	case v.Forward != DSR && v.Address.Is6() && first.Is4():
		d.errorf(bkey, "IPv4 backend for IPv6 VIP %s: %s does not carry IPv6 in IPv4 (6in4); use IPv6 backends",
			v.Address, v.Forward)
	}
}

// local checks a VIP's local backend (co-located mode): at most one, and
// only in native mode, where the XDP program can pass the flow to the
// host's stack. An AF_XDP worker cannot: once the steering program has
// redirected a frame to a socket, nothing hands it back to the kernel.
func (d *decoder) local(c *Config, v *VIP, key string) {
	first := -1
	for j, b := range v.Backends {
		if !b.Local {
			continue
		}
		bk := indexKey(key+".backend", j) + ".local"
		switch {
		case c.Datapath.Mode != ModeNative:
			d.errorf(bk, "local = true needs datapath.mode = \"native\": the XDP program passes this host's flows to its stack, and in afxdp mode a frame redirected to a socket cannot go back to the kernel")
		case first >= 0:
			d.errorf(bk, "%s.backend[%d] is already local: one backend is this host", key, first)
		default:
			first = j
		}
	}
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// blame picks the key to report a disagreement between two keys under: the
// first if the file sets it, else the second. A default found wrong is then
// reported where the user wrote the value it disagrees with.
func (d *decoder) blame(first, second string) string {
	if !d.idx.has(first) && d.idx.has(second) {
		return second
	}
	return first
}

func isPow2(n uint32) bool { return n != 0 && n&(n-1) == 0 }

// isPrime tests by trial division: table sizes are below 1<<24, so at most
// 2048 divisions.
func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for i := uint32(3); i*i <= n; i += 2 {
		if n%i == 0 {
			return false
		}
	}
	return true
}

// String formats a VIP as "198.18.100.1:80/tcp" for messages.
func (v VIP) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(v.Address, v.Port), v.Protocol)
}
