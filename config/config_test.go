package config

import (
	"errors"
	"github.com/xlbproject/xlb/bgp"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const exampleFile = "../examples/xlb.toml"

// minimal is the smallest valid file; tests append to it or replace lines.
const minimal = `[datapath]
interface = "eth0"

[[vip]]
address = "198.18.100.1"
port = 80

  [[vip.backend]]
  address = "198.18.0.11"
`

func TestParseMinimalDefaults(t *testing.T) {
	c, err := Parse("x.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultDatapath()
	want.Interface = "eth0"
	if !reflect.DeepEqual(c.Datapath, want) {
		t.Errorf("datapath:\n got %+v\nwant %+v", c.Datapath, want)
	}
	if c.Control.Socket != DefaultSocket {
		t.Errorf("socket = %q, want %q", c.Control.Socket, DefaultSocket)
	}
	health := HealthCheck{Kind: HealthNone, Port: 80, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3}
	if DefaultHealth(80) != health {
		t.Errorf("DefaultHealth(80) = %+v, want %+v", DefaultHealth(80), health)
	}
	wantVIPs := []VIP{{
		Address:   netip.MustParseAddr("198.18.100.1"),
		Port:      80,
		Protocol:  TCP,
		Forward:   IPIP,
		ICMPEcho:  true,
		Fragments: FragmentsDrop,
		Health:    health,
		TableSize: DefaultTableSize,
		Backends:  []Backend{{Address: netip.MustParseAddr("198.18.0.11"), Weight: 1, State: StateActive, Health: health}},
	}}
	if !reflect.DeepEqual(c.VIPs, wantVIPs) {
		t.Errorf("vips:\n got %+v\nwant %+v", c.VIPs, wantVIPs)
	}
	if c.File != "x.toml" {
		t.Errorf("File = %q", c.File)
	}
}

func TestDefaultDatapathIsValid(t *testing.T) {
	// The defaults must pass the checks they are subject to.
	dp := DefaultDatapath()
	if dp.BatchSize > dp.RxRing || dp.FrameCount < dp.FillRing || !isPrime(dp.TableSize) ||
		dp.TxBudget < MinTxBudget || dp.TxBudget > dp.TxRing ||
		!isPow2(dp.FlowTableSize) || dp.FlowTableSize < MinFlowTableSize || dp.FlowTableSize > MaxFlowTableSize ||
		dp.FlowTCPTimeout < MinFlowTimeout || dp.FlowTCPTimeout > MaxFlowTimeout ||
		dp.FlowUDPTimeout < MinFlowTimeout || dp.FlowUDPTimeout > MaxFlowTimeout ||
		dp.SpliceTableSize > MaxSpliceTableSize {
		t.Errorf("defaults disagree with validation: %+v", dp)
	}
}

func TestExampleParses(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	dp := c.Datapath
	if dp.Interface != "eth0" || !reflect.DeepEqual(dp.Queues, []int{0}) || !reflect.DeepEqual(dp.CPUs, []int{1}) {
		t.Errorf("datapath = %+v", dp)
	}
	if dp.Source.IsValid() {
		t.Errorf("source = %v, want unset (empty string)", dp.Source)
	}
	if len(c.VIPs) != 5 {
		t.Fatalf("%d vips, want 5", len(c.VIPs))
	}
	v0, v1, v2, v3 := c.VIPs[0], c.VIPs[1], c.VIPs[2], c.VIPs[3]
	if v0.String() != "198.18.100.1:80/tcp" || v1.String() != "198.18.100.2:53/udp" ||
		v2.String() != "[2001:db8:100::1]:443/tcp" || v3.String() != "198.18.100.4:25/tcp" {
		t.Errorf("vips = %v, %v, %v, %v", v0, v1, v2, v3)
	}
	if len(v0.Backends) != 2 || !v0.Backends[0].HasMAC || v0.Backends[0].MAC != [6]byte{2, 0, 0, 0, 0, 0x11} || v0.Backends[1].HasMAC {
		t.Errorf("vip[0] backends = %+v", v0.Backends)
	}
	http := HealthCheck{Kind: HealthHTTP, Port: 80, Path: "/healthz", Expect: 200, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3}
	ready := http
	ready.Path = "/ready"
	if v0.Health != http || v0.Backends[0].Health != ready || v0.Backends[1].Health != http {
		t.Errorf("vip[0] health %+v, backends %+v and %+v", v0.Health, v0.Backends[0].Health, v0.Backends[1].Health)
	}
	if len(v1.Backends) != 2 || v1.Backends[1].State != StateDrain || v1.Backends[1].Weight != 1 ||
		v1.Backends[1].EffectiveWeight() != 0 || v1.Backends[0].EffectiveWeight() != 1 {
		t.Errorf("vip[1] backends = %+v", v1.Backends)
	}
	tcp443 := DefaultHealth(443)
	tcp443.Kind = HealthTCP
	if v2.Forward != GUE || v2.GUEPort != DefaultGUEPort || len(v2.Backends) != 2 || !v2.Backends[0].Address.Is6() || v2.Backends[1].Health != tcp443 {
		t.Errorf("vip[2] = %+v", v2)
	}
	if v3.Forward != DSR || v3.GUEPort != 0 || v3.Health != DefaultHealth(25) {
		t.Errorf("vip[3] = %+v", v3)
	}
	// The example sets every key at its default, except where it says so.
	want := DefaultDatapath()
	want.Interface, want.Queues, want.CPUs = "eth0", []int{0}, []int{1}
	if !reflect.DeepEqual(dp, want) {
		t.Errorf("example datapath differs from the defaults:\n got %+v\nwant %+v", dp, want)
	}
}

func TestExampleSetsEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	idx := newPosIndex(data)
	var keys []string
	for _, k := range datapathKeys {
		keys = append(keys, "datapath."+k)
	}
	for _, k := range healthKeys {
		keys = append(keys, "vip[0].health."+k)
	}
	keys = append(keys, "control.socket", "metrics.listen", "metrics.allow_remote", "vip[0].backend[0].health")
	for _, k := range keys {
		if !idx.has(k) {
			t.Errorf("example does not show %s", k)
		}
	}
	// VIP and backend keys: each in some VIP (gue_port only fits a gue VIP).
	anyVIP := func(sub string) bool {
		for i := range 8 {
			if idx.has(indexKey("vip", i) + "." + sub) {
				return true
			}
		}
		return false
	}
	for _, k := range vipKeys {
		if !anyVIP(k) {
			t.Errorf("example does not show vip.%s", k)
		}
	}
	for _, k := range backendKeys {
		if !anyVIP("backend[0]." + k) {
			t.Errorf("example does not show vip.backend.%s", k)
		}
	}
}

// set replaces the line of minimal that starts with prefix, or appends line
// when prefix is empty.
func edit(prefix, line string) string {
	if prefix == "" {
		return minimal + line + "\n"
	}
	lines := strings.Split(minimal, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			lines[i] = line
			return strings.Join(lines, "\n")
		}
	}
	panic("no line " + prefix)
}

func TestParseErrors(t *testing.T) {
	twoVIPs := minimal + `
[[vip]]
address = "198.18.100.1"
port = 80
protocol = "tcp"

  [[vip.backend]]
  address = "198.18.0.x"
`
	tests := []struct {
		name string
		src  string
		want string // the whole message
	}{
		{"unknown top-level key", "verbose = true\n" + minimal,
			`f.toml:1: verbose: unknown key`},
		{"unknown datapath key", edit(`interface`, `interfce = "eth0"`),
			"f.toml:1: datapath.interface: required key is missing\n" +
				`f.toml:2: datapath.interfce: unknown key (did you mean "interface"?)`},
		{"unknown vip key", edit("port", "port = 80\nweight = 3"),
			`f.toml:7: vip[0].weight: unknown key`},
		{"unknown backend key", edit("", "  prot = 80"),
			`f.toml:10: vip[0].backend[0].prot: unknown key`},
		{"unknown key in capitals", edit("port", "Port = 80"),
			"f.toml:4: vip[0].port: required key is missing\n" +
				`f.toml:6: vip[0].Port: unknown key (did you mean "port"?)`},
		{"unknown table", minimal + "[stats]\nx = 1\n",
			`f.toml:10: stats: unknown key`},
		{"bad backend address", twoVIPs,
			`f.toml:17: vip[1].backend[0].address: "198.18.0.x" is not an IP address`},
		{"backend with a port", edit(`address = "198.18.0.11"`, `  address = "198.18.0.2:80"`),
			`f.toml:9: vip[0].backend[0].address: "198.18.0.2:80" is an address with a port: write the address alone ("198.18.0.2"); a backend takes its VIP's port`},
		{"ipv6 backend with a port", edit(`address = "198.18.0.11"`, `  address = "[2001:db8::2]:80"`),
			`f.toml:9: vip[0].backend[0].address: "[2001:db8::2]:80" is an address with a port: write the address alone ("2001:db8::2"); a backend takes its VIP's port`},
		{"icmp rate limit negative", edit("interface", "interface = \"eth0\"\nicmp_rate_limit = -1"),
			`f.toml:3: datapath.icmp_rate_limit: ICMP rate limit out of range: -1 (must be 0..1000000)`},
		{"icmp burst 0", edit("interface", "interface = \"eth0\"\nicmp_rate_burst = 0"),
			`f.toml:3: datapath.icmp_rate_burst: ICMP burst out of range: 0 (must be 1..1000000)`},
		{"syn rate too high", edit("interface", "interface = \"eth0\"\nflow_syn_rate = 100000001"),
			`f.toml:3: datapath.flow_syn_rate: SYN rate out of range: 100000001 (must be 0..100000000)`},
		{"bad vip address", edit(`address = "198.18.100.1"`, `address = "vip"`),
			`f.toml:5: vip[0].address: "vip" is not an IP address`},
		{"ipv6 vip with ipv4 backend", edit(`address = "198.18.100.1"`, `address = "2001:db8::1"`),
			`f.toml:9: vip[0].backend[0].address: IPv4 backend for IPv6 VIP 2001:db8::1: ipip does not carry IPv6 in IPv4 (6in4); use IPv6 backends`},
		{"multicast backend", edit(`address = "198.18.0.11"`, `  address = "224.0.0.1"`),
			`f.toml:9: vip[0].backend[0].address: 224.0.0.1 is not a global unicast address`},
		{"missing backend", "[datapath]\ninterface = \"eth0\"\n\n[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n",
			`f.toml:4: vip[0]: vip has no backend`},
		{"port too large", edit("port", "port = 70000"),
			`f.toml:6: vip[0].port: port out of range: 70000 (must be 0..65535)`},
		{"port negative", edit("port", "port = -1"),
			`f.toml:6: vip[0].port: port out of range: -1 (must be 0..65535)`},
		{"port as string", edit("port", `port = "80"`),
			`f.toml:6: vip[0].port: expected an integer, got string "80"`},
		{"missing port", edit("port", ""),
			`f.toml:4: vip[0].port: required key is missing`},
		{"bad protocol", edit("port", "port = 80\nprotocol = \"sctp\""),
			`f.toml:7: vip[0].protocol: unknown protocol "sctp" (want "tcp" or "udp")`},
		{"bad forward", edit("port", "port = 80\nforward = \"nat\""),
			`f.toml:7: vip[0].forward: unknown forward method "nat" (want "ipip", "gue", "dsr" or "splice")`},
		{"syntax error", edit("port", "port = = 80"),
			`f.toml:6: vip[0].port: expected value but found '=' instead`},
		{"duplicate key", edit("port", "port = 80\nport = 81"),
			`f.toml:7: vip[0].port: Key 'vip.port' has already been defined.`},
		{"missing interface", "[datapath]\nqueues = [0]\n" + minimal[len("[datapath]\ninterface = \"eth0\"\n"):],
			`f.toml:1: datapath.interface: required key is missing`},
		{"no datapath", minimal[len("[datapath]\ninterface = \"eth0\"\n"):],
			`f.toml:1: datapath.interface: required key is missing`},
		{"no vip", "[datapath]\ninterface = \"eth0\"\n",
			`f.toml:1: vip: no vip configured`},
		{"empty vip array", "vip = []\n[datapath]\ninterface = \"eth0\"\n",
			`f.toml:1: vip: no vip configured`},
		{"vip not a table", "vip = 3\n[datapath]\ninterface = \"eth0\"\n",
			`f.toml:1: vip: expected an array of tables, got integer 3`},
		{"datapath not a table", "datapath = \"eth0\"\n" + minimal[len("[datapath]\ninterface = \"eth0\"\n"):],
			`f.toml:1: datapath: expected a table, got string "eth0"`},
		{"weight too large", edit("", "  weight = 65536"),
			`f.toml:10: vip[0].backend[0].weight: weight out of range: 65536 (must be 0..65535)`},
		{"bad mac", edit("", `  mac = "02:00:00:00:00"`),
			`f.toml:10: vip[0].backend[0].mac: "02:00:00:00:00" is not an Ethernet MAC address`},
		{"multicast mac", edit("", `  mac = "01:00:5e:00:00:01"`),
			`f.toml:10: vip[0].backend[0].mac: "01:00:5e:00:00:01" is not a unicast MAC address`},
		{"duplicate backend", edit("", "  [[vip.backend]]\n  address = \"198.18.0.11\""),
			`f.toml:11: vip[0].backend[1].address: 198.18.0.11 is already vip[0].backend[0]`},
		{"duplicate vip", minimal + "[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n[[vip.backend]]\naddress = \"198.18.0.12\"\n",
			`f.toml:10: vip[1]: duplicate of vip[0] (198.18.100.1:80/tcp)`},
		{"bad frame size", edit(`interface`, "interface = \"eth0\"\nframe_size = 3000"),
			`f.toml:3: datapath.frame_size: frame size 3000 is not 2048 or 4096`},
		{"frame count not power of two", edit(`interface`, "interface = \"eth0\"\nframe_count = 5000"),
			`f.toml:3: datapath.frame_count: frame count 5000 is not a power of two`},
		{"frame count below fill ring", edit(`interface`, "interface = \"eth0\"\nframe_count = 1024"),
			`f.toml:3: datapath.frame_count: frame_count (1024) is smaller than fill_ring (2048): the fill ring could never be filled`},
		{"fill ring above default frame count", edit(`interface`, "interface = \"eth0\"\nfill_ring = 8192"),
			`f.toml:3: datapath.fill_ring: frame_count (4096) is smaller than fill_ring (8192): the fill ring could never be filled`},
		{"ring not power of two", edit(`interface`, "interface = \"eth0\"\nrx_ring = 1000"),
			`f.toml:3: datapath.rx_ring: ring size 1000 is not a power of two`},
		{"ring too small", edit(`interface`, "interface = \"eth0\"\ntx_ring = 32"),
			`f.toml:3: datapath.tx_ring: ring size out of range: 32 (must be 64..32768)`},
		{"batch larger than ring", edit(`interface`, "interface = \"eth0\"\nbatch_size = 128\ncompletion_ring = 64"),
			`f.toml:3: datapath.batch_size: batch_size (128) is larger than completion_ring (64)`},
		{"batch too large", edit(`interface`, "interface = \"eth0\"\nbatch_size = 512"),
			`f.toml:3: datapath.batch_size: batch size out of range: 512 (must be 1..256)`},
		{"tx budget too small", edit(`interface`, "interface = \"eth0\"\ntx_budget = 16"),
			`f.toml:3: datapath.tx_budget: tx_budget (16) must be 0 or 32..tx_ring (2048)`},
		{"tx ring below default tx budget", edit(`interface`, "interface = \"eth0\"\ntx_ring = 64\nbatch_size = 32\ntx_budget = 128"),
			`f.toml:5: datapath.tx_budget: tx_budget (128) must be 0 or 32..tx_ring (64)`},
		{"headroom too large", edit(`interface`, "interface = \"eth0\"\nheadroom = 512"),
			`f.toml:3: datapath.headroom: headroom 512 leaves no room for a full-size packet in a 2048-byte frame (at most 256)`},
		{"table size not prime", edit(`interface`, "interface = \"eth0\"\ntable_size = 65536"),
			`f.toml:3: datapath.table_size: table size 65536 is not a prime`},
		{"vip table size too small", edit("port", "port = 80\ntable_size = 7"),
			`f.toml:7: vip[0].table_size: table size out of range: 7 (must be 251..16777216)`},
		{"cpus and queues differ", edit(`interface`, "interface = \"eth0\"\nqueues = [0, 1]\ncpus = [0]"),
			`f.toml:4: datapath.cpus: 1 cpus for 2 queues: give one CPU per queue`},
		{"duplicate queue", edit(`interface`, "interface = \"eth0\"\nqueues = [\n  0,\n  1,\n  0,\n]"),
			`f.toml:6: datapath.queues[2]: queue 0 is already datapath.queues[0]`},
		{"negative queue", edit(`interface`, "interface = \"eth0\"\nqueues = [0, -1]"),
			`f.toml:3: datapath.queues[1]: queue out of range: -1 (must be 0..65535)`},
		{"queues not an array", edit(`interface`, "interface = \"eth0\"\nqueues = 0"),
			`f.toml:3: datapath.queues: expected an array of integers, got integer 0`},
		{"bad xdp mode", edit(`interface`, "interface = \"eth0\"\nxdp_mode = \"skb\""),
			`f.toml:3: datapath.xdp_mode: "skb" is not one of ["auto" "native" "generic"]`},
		{"bad zero copy", edit(`interface`, "interface = \"eth0\"\nzero_copy = true"),
			`f.toml:3: datapath.zero_copy: expected a string, got boolean`},
		{"bad bool", edit(`interface`, "interface = \"eth0\"\nspin = \"yes\""),
			`f.toml:3: datapath.spin: expected true or false, got string "yes"`},
		{"ipv6 source", edit(`interface`, "interface = \"eth0\"\nsource = \"2001:db8::1\""),
			`f.toml:3: datapath.source: 2001:db8::1 is not an IPv4 address (an IPv6 outer source is datapath.source6)`},
		{"bad interface name", edit(`interface`, `interface = "a/b"`),
			`f.toml:2: datapath.interface: "a/b" is not a valid interface name`},
		{"relative socket", minimal + "[control]\nsocket = \"xlb.sock\"\n",
			`f.toml:11: control.socket: "xlb.sock" is not an absolute path`},
		{"metrics listen not a string", minimal + "[metrics]\nlisten = 9350\n",
			`f.toml:11: metrics.listen: expected a string, got integer 9350`},
		{"unknown metrics key", minimal + "[metrics]\nport = 9350\n",
			`f.toml:11: metrics.port: unknown key`},
		{"inline backend", strings.Replace(minimal, "\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n",
			"backend = [\n  {address = \"198.18.0.11\"},\n  {address = \"198.18.0.11\"},\n]\n", 1),
			`f.toml:9: vip[0].backend[1].address: 198.18.0.11 is already vip[0].backend[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.src, tt.want) })
	}
}

// checkParseError parses src as f.toml and wants exactly the error want.
func checkParseError(t *testing.T, src, want string) {
	t.Helper()
	c, err := Parse("f.toml", []byte(src))
	if err == nil {
		t.Fatalf("no error; config %+v", c)
	}
	if c != nil {
		t.Errorf("config returned with an error")
	}
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "f.toml" || e.Line == 0 {
		t.Errorf("error %#v is not a located *Error", err)
	}
}

func TestParseReportsEveryError(t *testing.T) {
	src := edit("port", "port = 70000\nprotocol = \"sctp\"") + "  colour = \"red\"\n"
	_, err := Parse("f.toml", []byte(src))
	want := `f.toml:6: vip[0].port: port out of range: 70000 (must be 0..65535)
f.toml:7: vip[0].protocol: unknown protocol "sctp" (want "tcp" or "udp")
f.toml:11: vip[0].backend[0].colour: unknown key`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 6 || e.Key != "vip[0].port" {
		t.Errorf("first error = %+v", e)
	}
}

func TestParseValues(t *testing.T) {
	src := `[datapath]
interface = "veth0"
queues = [1, 0]
cpus = [0, 1]
mode = "afxdp"
xdp_mode = "generic"
zero_copy = "off"
frame_size = 4096
frame_count = 8192
headroom = 64
rx_ring = 4096
tx_ring = 512
fill_ring = 8192
completion_ring = 64
batch_size = 32
need_wakeup = false
busy_poll = true
busy_poll_budget = 16
spin = true
tx_budget = 0
source = "198.18.0.1"
table_size = 251
source6 = "2001:db8::1"
flow_table_size = 1024
flow_tcp_timeout = "1h30m"
flow_udp_timeout = "2s"
flow_syn_rate = 0
icmp_rate_limit = 0
icmp_rate_burst = 7
splice_table_size = 0

[control]
socket = "/tmp/x.sock"

[metrics]
listen = "[::]:9350"
allow_remote = true

[bgp]
asn = 4200000001
router_id = "198.18.0.1"
listen_port = 1790
drain = "1s"
communities = ["65001:100", "0:65535"]
med = 7
peer = [{address = "198.18.0.254", asn = 65000, port = 1179, hold_time = "3s", connect_retry = "1s", password = "pw", next_hop = "198.18.0.1", next_hop6 = "2001:db8::1"}]

[[vip]]
address = "198.18.100.9"
port = 0
protocol = "udp"
forward = "gue"
gue_port = 9000
table_size = 16777213
icmp_echo = false
fragments = "pass"
allow = ["198.18.0.0/15", "198.18.1.1"]
deny = ["198.18.66.0/24"]
syn_rate_limit = 0
bgp = {communities = ["65001:200"], med = 9}
health = {kind = "http", port = 8080, path = "/h?x=1", host = "svc.example:8080", expect = 204, interval = "2s", timeout = "1500ms", rise = 5, fall = 7}
backend = [
  {address = "2001:db8::a", weight = 65535, state = "drain", mac = "02-00-00-00-00-01", local = false, health = {kind = "tcp", port = 9090, interval = "100ms", timeout = "50ms", rise = 1, fall = 100}},
  {address = "2001:db8::b", state = "active", health = {path = "/other"}},
]
`
	// The file sets every key there is, so that each is seen decoded.
	idx := newPosIndex([]byte(src))
	keys := []string{"control.socket", "metrics.listen", "metrics.allow_remote"}
	for _, k := range datapathKeys {
		keys = append(keys, "datapath."+k)
	}
	for _, k := range vipKeys {
		if !slices.Contains(spliceKeys, k) { // TestParseSplice sets them
			keys = append(keys, "vip[0]."+k)
		}
	}
	for _, k := range backendKeys {
		keys = append(keys, "vip[0].backend[0]."+k)
	}
	for _, k := range healthKeys {
		keys = append(keys, "vip[0].health."+k)
	}
	for _, k := range bgpKeys {
		keys = append(keys, "bgp."+k)
	}
	for _, k := range bgpPeerKeys {
		keys = append(keys, "bgp.peer[0]."+k)
	}
	for _, k := range vipBGPKeys {
		keys = append(keys, "vip[0].bgp."+k)
	}
	for _, k := range keys {
		if !idx.has(k) {
			t.Errorf("the test does not set %s", k)
		}
	}
	c, err := Parse("v.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Datapath{
		Interface: "veth0", Queues: []int{1, 0}, CPUs: []int{0, 1},
		Mode: ModeAFXDP, XDPMode: XDPModeGeneric, ZeroCopy: ZeroCopyOff,
		FrameSize: 4096, FrameCount: 8192, Headroom: 64,
		RxRing: 4096, TxRing: 512, FillRing: 8192, CompletionRing: 64, BatchSize: 32,
		NeedWakeup: false, BusyPoll: true, BusyPollBudget: 16, Spin: true, TxBudget: 0,
		Source: netip.MustParseAddr("198.18.0.1"), TableSize: 251,
		Source6: netip.MustParseAddr("2001:db8::1"), FlowTableSize: 1024,
		FlowTCPTimeout: 90 * time.Minute, FlowUDPTimeout: 2 * time.Second, FlowSYNRate: 0,
		ICMPRateLimit: 0, ICMPRateBurst: 7,
	}
	if !reflect.DeepEqual(c.Datapath, want) {
		t.Errorf("datapath:\n got %+v\nwant %+v", c.Datapath, want)
	}
	if c.Control.Socket != "/tmp/x.sock" {
		t.Errorf("socket = %q", c.Control.Socket)
	}
	if c.Metrics != (Metrics{Listen: "[::]:9350", AllowRemote: true}) {
		t.Errorf("metrics = %+v", c.Metrics)
	}
	vh := HealthCheck{Kind: HealthHTTP, Port: 8080, Path: "/h?x=1", Host: "svc.example:8080", Expect: 204,
		Interval: 2 * time.Second, Timeout: 1500 * time.Millisecond, Rise: 5, Fall: 7}
	b0h := HealthCheck{Kind: HealthTCP, Port: 9090, Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 1, Fall: 100}
	b1h := vh
	b1h.Path = "/other"
	wantVIP := VIP{
		Address: netip.MustParseAddr("198.18.100.9"), Port: 0, Protocol: UDP, Forward: GUE, GUEPort: 9000,
		TableSize: 16777213, ICMPEcho: false, Fragments: FragmentsPass, Health: vh,
		Firewall: VIPFirewall{
			Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.18.1.1/32")},
			Deny:  []netip.Prefix{netip.MustParsePrefix("198.18.66.0/24")},
		},
		BGP: VIPBGP{Communities: []bgp.Community{65001<<16 | 200}, MED: 9},
		Backends: []Backend{
			{Address: netip.MustParseAddr("2001:db8::a"), Weight: 65535, State: StateDrain, MAC: [6]byte{2, 0, 0, 0, 0, 1}, HasMAC: true, Health: b0h},
			{Address: netip.MustParseAddr("2001:db8::b"), Weight: 1, State: StateActive, Health: b1h},
		},
	}
	if len(c.VIPs) != 1 || !reflect.DeepEqual(c.VIPs[0], wantVIP) {
		t.Errorf("vips:\n got %+v\nwant %+v", c.VIPs, wantVIP)
	}
	wantBGP := BGP{
		Speaker: bgp.Config{ASN: 4200000001, RouterID: netip.MustParseAddr("198.18.0.1"), ListenPort: 1790, Peers: []bgp.Peer{{
			Address: netip.MustParseAddr("198.18.0.254"), ASN: 65000, Port: 1179, HoldTime: 3 * time.Second, ConnectRetry: time.Second,
			Password: "pw", NextHop: netip.MustParseAddr("198.18.0.1"), NextHop6: netip.MustParseAddr("2001:db8::1"),
		}}},
		Drain: time.Second, Communities: []bgp.Community{65001<<16 | 100, 65535}, MED: 7,
	}
	if !reflect.DeepEqual(c.BGP, wantBGP) {
		t.Errorf("bgp:\n got %+v\nwant %+v", c.BGP, wantBGP)
	}
}

func TestAllDrainedVIPIsAllowed(t *testing.T) {
	if _, err := Parse("f.toml", []byte(edit("", "  weight = 0"))); err != nil {
		t.Fatal(err)
	}
}

func TestErrorf(t *testing.T) {
	c, err := Parse("/etc/xlb.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ key, want string }{
		{"vip[0].backend[0].address", `/etc/xlb.toml:9: vip[0].backend[0].address: no route to 198.18.0.11`},
		{"datapath.interface", `/etc/xlb.toml:2: datapath.interface: no route to 198.18.0.11`},
		{"datapath.queues", `/etc/xlb.toml:1: datapath.queues: no route to 198.18.0.11`}, // not set: its table
		{"control.socket", `/etc/xlb.toml:1: control.socket: no route to 198.18.0.11`},   // no table: line 1
	}
	for _, tt := range tests {
		if got := c.Errorf(tt.key, "no route to %s", "198.18.0.11").Error(); got != tt.want {
			t.Errorf("Errorf(%q):\n got %s\nwant %s", tt.key, got, tt.want)
		}
	}
	// A Config built by hand has no index: the message says so by leaving
	// the line out.
	var hand Config
	hand.File = "mem"
	if got := hand.Errorf("datapath.interface", "x").Error(); got != "mem: datapath.interface: x" {
		t.Errorf("hand-built Errorf = %q", got)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{"/etc/xlb.toml", 14, "vip[1].backend[0].address", "bad"}, "/etc/xlb.toml:14: vip[1].backend[0].address: bad"},
		{Error{"f", 3, "", "syntax"}, "f:3: syntax"},
		{Error{"", 0, "k", "m"}, "k: m"},
		{Error{"", 0, "", "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/xlb.toml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}
}

func TestProtocolText(t *testing.T) {
	for _, p := range []Protocol{TCP, UDP} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q Protocol
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v round trip: %v, %v", p, q, err)
		}
	}
	if _, err := Protocol(1).MarshalText(); err == nil {
		t.Error("Protocol(1) marshalled")
	}
	if Protocol(1).String() != "Protocol(1)" || uint8(TCP) != 6 || uint8(UDP) != 17 {
		t.Error("protocol numbers")
	}
	for _, m := range []Forward{IPIP, GUE, DSR, Splice} {
		b, err := m.MarshalText()
		var f Forward
		if err != nil || f.UnmarshalText(b) != nil || f != m {
			t.Errorf("forward round trip: %q %v %v", b, err, f)
		}
	}
	if IPIP.String() != "ipip" || GUE.String() != "gue" || DSR.String() != "dsr" || Splice.String() != "splice" ||
		Forward(0).String() != "Forward(0)" || Forward(5).String() != "Forward(5)" {
		t.Error("forward names")
	}
	for _, f := range []Forward{0, 5} {
		if _, err := f.MarshalText(); err == nil {
			t.Errorf("%v marshalled", f)
		}
	}
}

func TestIsPrime(t *testing.T) {
	primes := map[uint32]bool{0: false, 1: false, 2: true, 3: true, 4: false, 9: false, 251: true, 65537: true, 65535: false, 16777213: true, 16777215: false}
	for n, want := range primes {
		if isPrime(n) != want {
			t.Errorf("isPrime(%d) = %v", n, !want)
		}
	}
}
