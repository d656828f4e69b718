package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// decoder turns the generic tree BurntSushi/toml parses into a Config.
//
// It walks the tree itself instead of letting toml decode into structs: the
// library matches keys case-insensitively, names array-of-tables elements
// without their index, and reports type errors as plain strings. Walking
// the tree gives exact key names, the full path of every value, and so the
// line of every error. Errors are collected, not returned at the first, so
// one run shows every mistake in the file.
type decoder struct {
	file string
	idx  *posIndex
	errs []*Error
	// health holds the health tables the file sets, by the path of the VIP
	// or backend that holds them ("vip[0]", "vip[0].backend[1]"). They
	// are resolved in validate, once the whole VIP is known: a backend's
	// check inherits from its VIP's, which TOML may set after it.
	health map[string]*healthDecl
	// hasBGP: the file has a [bgp] table. vipBGPs holds the [vip.bgp]
	// tables by VIP path, resolved in validateBGP over [bgp]'s defaults.
	hasBGP  bool
	vipBGPs map[string]*vipBGPDecl
}

func (d *decoder) errorf(key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.idx.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected errors in line order, and forgets them.
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	d.errs = nil
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// fields calls set for every key of table t (at path) that is in known, in
// source order, and reports every other key as unknown.
func (d *decoder) fields(path string, t map[string]any, known []string, set func(name, key string, v any)) {
	names := make([]string, 0, len(t))
	for name := range t {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		li, lj := d.idx.line(joinKey(path, names[i])), d.idx.line(joinKey(path, names[j]))
		if li != lj {
			return li < lj
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		key := joinKey(path, name)
		if !slices.Contains(known, name) {
			d.errorf(key, "unknown key%s", suggest(name, known))
			continue
		}
		set(name, key, t[name])
	}
}

// suggest proposes the known key closest to a misspelt one.
func suggest(name string, known []string) string {
	best, bestDist := "", 3 // more than two edits apart is no typo
	for _, k := range known {
		if dist := editDistance(strings.ToLower(name), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeName names a TOML value's type the way the TOML spec does.
func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	case []map[string]any:
		return "array of tables"
	}
	return fmt.Sprintf("%T", v)
}

func isEmptyArray(v any) bool {
	a, ok := v.([]any)
	return ok && len(a) == 0
}

func (d *decoder) table(key string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		d.errorf(key, "expected a table, got %s", typeName(v))
	}
	return t, ok
}

// tables accepts [[key]] and key = [{...}, ...] alike.
func (d *decoder) tables(key string, v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		ts := make([]map[string]any, len(v))
		for i, e := range v {
			t, ok := e.(map[string]any)
			if !ok {
				d.errorf(indexKey(key, i), "expected a table, got %s", typeName(e))
				return nil, false
			}
			ts[i] = t
		}
		return ts, true
	}
	d.errorf(key, "expected an array of tables, got %s", typeName(v))
	return nil, false
}

func (d *decoder) str(key string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.errorf(key, "expected a string, got %s", typeName(v))
	}
	return s, ok
}

func (d *decoder) boolean(key string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		d.errorf(key, "expected true or false, got %s", typeName(v))
	}
	return b, ok
}

// integer checks that v is an integer within [lo, hi]; what names the value
// in the message ("port out of range: 70000 (must be 0..65535)").
func (d *decoder) integer(key string, v any, what string, lo, hi int64) (int64, bool) {
	n, ok := v.(int64)
	if !ok {
		d.errorf(key, "expected an integer, got %s", typeName(v))
		return 0, false
	}
	if n < lo || n > hi {
		d.errorf(key, "%s out of range: %d (must be %d..%d)", what, n, lo, hi)
		return 0, false
	}
	return n, true
}

func (d *decoder) u32(dst *uint32, key string, v any, what string, lo, hi int64) {
	if n, ok := d.integer(key, v, what, lo, hi); ok {
		*dst = uint32(n)
	}
}

func (d *decoder) ints(key string, v any, what string, lo, hi int64) ([]int, bool) {
	a, ok := v.([]any)
	if !ok {
		d.errorf(key, "expected an array of integers, got %s", typeName(v))
		return nil, false
	}
	out := make([]int, 0, len(a))
	for i, e := range a {
		n, ok := d.integer(indexKey(key, i), e, what, lo, hi)
		if !ok {
			return nil, false
		}
		out = append(out, int(n))
	}
	return out, true
}

func (d *decoder) oneOf(key string, v any, allowed ...string) (string, bool) {
	s, ok := d.str(key, v)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		d.errorf(key, "%q is not one of %q", s, allowed)
		return "", false
	}
	return s, true
}

// duration parses a Go duration string ("300ms", "5m") within [lo, hi].
func (d *decoder) duration(key string, v any, what string, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		d.errorf(key, "expected a duration such as \"500ms\" or \"5m\", got %s", typeName(v))
		return 0, false
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(key, "%q is not a duration (such as \"500ms\" or \"5m\")", s)
		return 0, false
	}
	if t < lo || t > hi {
		d.errorf(key, "%s out of range: %s (must be %s..%s)", what, fmtDuration(t), fmtDuration(lo), fmtDuration(hi))
		return 0, false
	}
	return t, true
}

// fmtDuration writes a duration as a file would: "24h", "1m30s", not
// time.Duration's "24h0m0s".
func fmtDuration(t time.Duration) string {
	s := t.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// addr parses a unicast IPv4 or IPv6 address.
func (d *decoder) addr(key string, v any) (netip.Addr, bool) {
	s, ok := d.str(key, v)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, perr := netip.ParseAddrPort(s); perr == nil {
			d.errorf(key, "%q is an address with a port: write the address alone (%q); a backend takes its VIP's port", s, ap.Addr())
			return netip.Addr{}, false
		}
		d.errorf(key, "%q is not an IP address", s)
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		d.errorf(key, "%s: an address with a zone is link-local to one interface, not a service address", s)
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		d.errorf(key, "%s is an IPv4-mapped IPv6 address: write it as %s", s, a.Unmap())
		return netip.Addr{}, false
	}
	if !a.IsGlobalUnicast() {
		d.errorf(key, "%s is not a global unicast address", s)
		return netip.Addr{}, false
	}
	return a, true
}

// addrFamily parses an address of one family (want4: IPv4, else IPv6).
func (d *decoder) addrFamily(key string, v any, want4 bool) (netip.Addr, bool) {
	a, ok := d.addr(key, v)
	if !ok {
		return a, false
	}
	switch {
	case want4 && !a.Is4():
		d.errorf(key, "%s is not an IPv4 address (an IPv6 outer source is datapath.source6)", a)
		return netip.Addr{}, false
	case !want4 && !a.Is6():
		d.errorf(key, "%s is not an IPv6 address (an IPv4 outer source is datapath.source)", a)
		return netip.Addr{}, false
	}
	return a, true
}

func (d *decoder) required(t map[string]any, path string, names ...string) {
	for _, name := range names {
		if _, ok := t[name]; !ok {
			d.errorf(joinKey(path, name), "required key is missing")
		}
	}
}

func (d *decoder) config(tree map[string]any) *Config {
	c := &Config{File: d.file, Datapath: DefaultDatapath(), Control: Control{Socket: DefaultSocket}}
	d.health = make(map[string]*healthDecl)
	d.vipBGPs = make(map[string]*vipBGPDecl)
	d.fields("", tree, []string{"datapath", "control", "metrics", "bgp", "vip", "firewall"}, func(name, key string, v any) {
		switch name {
		case "firewall":
			if t, ok := d.table(key, v); ok {
				d.firewall(&c.Firewall, key, t)
			}
		case "bgp":
			if t, ok := d.table(key, v); ok {
				d.hasBGP = true
				d.bgp(&c.BGP, key, t)
			}
		case "datapath":
			if t, ok := d.table(key, v); ok {
				d.datapath(&c.Datapath, key, t)
			}
		case "control":
			if t, ok := d.table(key, v); ok {
				d.control(&c.Control, key, t)
			}
		case "metrics":
			if t, ok := d.table(key, v); ok {
				d.metrics(&c.Metrics, key, t)
			}
		case "vip":
			if ts, ok := d.tables(key, v); ok {
				for i, t := range ts {
					c.VIPs = append(c.VIPs, d.vip(indexKey(key, i), t))
				}
			}
		}
	})
	if _, ok := tree["datapath"]; !ok {
		d.errorf("datapath.interface", "required key is missing")
	}
	if v, ok := tree["vip"]; !ok || len(c.VIPs) == 0 && isEmptyArray(v) {
		d.errorf("vip", "no vip configured")
	}
	return c
}

var datapathKeys = []string{
	"interface", "mode", "queues", "cpus", "xdp_mode", "zero_copy",
	"frame_size", "frame_count", "headroom",
	"rx_ring", "tx_ring", "fill_ring", "completion_ring", "batch_size",
	"need_wakeup", "busy_poll", "busy_poll_budget", "spin", "tx_budget",
	"source", "source6", "table_size",
	"flow_table_size", "flow_tcp_timeout", "flow_udp_timeout", "flow_syn_rate",
	"icmp_rate_limit", "icmp_rate_burst", "splice_table_size",
}

func (d *decoder) datapath(dp *Datapath, path string, t map[string]any) {
	d.required(t, path, "interface")
	d.fields(path, t, datapathKeys, func(name, key string, v any) {
		switch name {
		case "interface":
			if s, ok := d.str(key, v); ok {
				if err := checkIfName(s); err != nil {
					d.errorf(key, "%v", err)
				}
				dp.Interface = s
			}
		case "queues":
			dp.Queues, _ = d.ints(key, v, "queue", 0, math.MaxUint16)
		case "cpus":
			dp.CPUs, _ = d.ints(key, v, "CPU", 0, math.MaxUint16)
		case "mode":
			dp.Mode, _ = d.oneOf(key, v, ModeAFXDP, ModeNative)
		case "xdp_mode":
			dp.XDPMode, _ = d.oneOf(key, v, XDPModeAuto, XDPModeNative, XDPModeGeneric)
		case "zero_copy":
			dp.ZeroCopy, _ = d.oneOf(key, v, ZeroCopyAuto, ZeroCopyOn, ZeroCopyOff)
		case "frame_size":
			d.u32(&dp.FrameSize, key, v, "frame size", 0, math.MaxUint32)
		case "frame_count":
			d.u32(&dp.FrameCount, key, v, "frame count", 1, MaxFrameCount)
		case "headroom":
			d.u32(&dp.Headroom, key, v, "headroom", 0, math.MaxUint32)
		case "rx_ring":
			d.u32(&dp.RxRing, key, v, "ring size", MinRing, MaxRing)
		case "tx_ring":
			d.u32(&dp.TxRing, key, v, "ring size", MinRing, MaxRing)
		case "fill_ring":
			d.u32(&dp.FillRing, key, v, "ring size", MinRing, MaxRing)
		case "completion_ring":
			d.u32(&dp.CompletionRing, key, v, "ring size", MinRing, MaxRing)
		case "batch_size":
			d.u32(&dp.BatchSize, key, v, "batch size", 1, MaxBatch)
		case "need_wakeup":
			dp.NeedWakeup, _ = d.boolean(key, v)
		case "busy_poll":
			dp.BusyPoll, _ = d.boolean(key, v)
		case "busy_poll_budget":
			if n, ok := d.integer(key, v, "busy poll budget", 1, math.MaxUint16); ok {
				dp.BusyPollBudget = int(n)
			}
		case "spin":
			dp.Spin, _ = d.boolean(key, v)
		case "tx_budget":
			d.u32(&dp.TxBudget, key, v, "tx budget", 0, MaxRing)
		case "source":
			if s, ok := v.(string); ok && s == "" {
				return // "" = the interface's address, as when absent
			}
			dp.Source, _ = d.addrFamily(key, v, true)
		case "source6":
			if s, ok := v.(string); ok && s == "" {
				return
			}
			dp.Source6, _ = d.addrFamily(key, v, false)
		case "table_size":
			d.u32(&dp.TableSize, key, v, "table size", MinTableSize, MaxTableSize)
		case "flow_table_size":
			d.u32(&dp.FlowTableSize, key, v, "flow table size", MinFlowTableSize, MaxFlowTableSize)
		case "flow_tcp_timeout":
			if t, ok := d.duration(key, v, "flow timeout", MinFlowTimeout, MaxFlowTimeout); ok {
				dp.FlowTCPTimeout = t
			}
		case "flow_udp_timeout":
			if t, ok := d.duration(key, v, "flow timeout", MinFlowTimeout, MaxFlowTimeout); ok {
				dp.FlowUDPTimeout = t
			}
		case "flow_syn_rate":
			d.u32(&dp.FlowSYNRate, key, v, "SYN rate", 0, MaxFlowSYNRate)
		case "icmp_rate_limit":
			d.u32(&dp.ICMPRateLimit, key, v, "ICMP rate limit", 0, MaxICMPRate)
		case "icmp_rate_burst":
			d.u32(&dp.ICMPRateBurst, key, v, "ICMP burst", 1, MaxICMPRate)
		case "splice_table_size":
			d.u32(&dp.SpliceTableSize, key, v, "splice table size", 0, MaxSpliceTableSize)
		}
	})
}

// checkIfName applies the kernel's rules for interface names (dev_valid_name).
func checkIfName(s string) error {
	switch {
	case s == "":
		return errors.New("interface name is empty")
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n"):
		return fmt.Errorf("%q is not a valid interface name", s)
	}
	return nil
}

func (d *decoder) control(ctl *Control, path string, t map[string]any) {
	d.fields(path, t, []string{"socket"}, func(name, key string, v any) {
		if s, ok := d.str(key, v); ok {
			if !strings.HasPrefix(s, "/") {
				d.errorf(key, "%q is not an absolute path", s)
			}
			ctl.Socket = s
		}
	})
}

func (d *decoder) metrics(m *Metrics, path string, t map[string]any) {
	d.fields(path, t, []string{"listen", "allow_remote"}, func(name, key string, v any) {
		switch name {
		case "listen":
			m.Listen, _ = d.str(key, v)
		case "allow_remote":
			m.AllowRemote, _ = d.boolean(key, v)
		}
	})
}

var vipKeys = []string{
	"address", "port", "protocol", "forward", "gue_port", "table_size",
	"icmp_echo", "fragments", "health", "bgp", "backend",
	"route", "hello_timeout", "hello_max_bytes", "connect_timeout", "idle_timeout", // spliceKeys
	"allow", "deny", "syn_rate_limit",
}

var backendKeys = []string{"address", "weight", "state", "mac", "local", "health"}

func (d *decoder) vip(path string, t map[string]any) VIP {
	v := VIP{Protocol: TCP, Forward: IPIP, ICMPEcho: true, Fragments: DefaultFragments, Splice: DefaultSpliceSettings()}
	d.required(t, path, "address", "port")
	d.fields(path, t, vipKeys, func(name, key string, val any) {
		switch name {
		case "address":
			v.Address, _ = d.addr(key, val)
		case "port":
			if n, ok := d.integer(key, val, "port", 0, math.MaxUint16); ok {
				v.Port = uint16(n)
			}
		case "protocol":
			if s, ok := d.str(key, val); ok {
				if err := v.Protocol.UnmarshalText([]byte(s)); err != nil {
					d.errorf(key, "%v", err)
				}
			}
		case "forward":
			if s, ok := d.str(key, val); ok {
				if err := v.Forward.UnmarshalText([]byte(s)); err != nil {
					d.errorf(key, "%v", err)
				}
			}
		case "gue_port":
			if n, ok := d.integer(key, val, "GUE port", 1, math.MaxUint16); ok {
				v.GUEPort = uint16(n)
			}
		case "table_size":
			d.u32(&v.TableSize, key, val, "table size", MinTableSize, MaxTableSize)
		case "icmp_echo":
			v.ICMPEcho, _ = d.boolean(key, val)
		case "fragments":
			v.Fragments, _ = d.oneOf(key, val, FragmentsDrop, FragmentsPass)
		case "allow", "deny", "syn_rate_limit":
			d.vipFirewall(&v.Firewall, name, key, val)
		case "health", "backend":
			d.healthOrBackends(path, name, key, val, &v.Backends)
		case "bgp":
			if bt, ok := d.table(key, val); ok {
				d.vipBGPs[path] = d.vipBGP(key, bt)
			}
		default:
			d.spliceKey(&v, path, name, key, val)
		}
	})
	if v.Forward != Splice {
		v.Splice = SpliceSettings{}
	}
	return v
}

func (d *decoder) backend(path string, t map[string]any) Backend {
	b := Backend{Weight: DefaultWeight, State: StateActive}
	d.required(t, path, "address")
	d.fields(path, t, backendKeys, func(name, key string, v any) {
		switch name {
		case "address":
			b.Address, _ = d.addr(key, v)
		case "weight":
			d.u32(&b.Weight, key, v, "weight", 0, MaxWeight)
		case "state":
			b.State, _ = d.oneOf(key, v, StateActive, StateDrain)
		case "local":
			b.Local, _ = d.boolean(key, v)
		case "health":
			if ht, ok := d.table(key, v); ok {
				d.health[path] = d.healthTable(key, ht)
			}
		case "mac":
			if s, ok := d.str(key, v); ok {
				mac, err := parseMAC(s)
				if err != nil {
					d.errorf(key, "%v", err)
					return
				}
				b.MAC, b.HasMAC = mac, true
			}
		}
	})
	return b
}
