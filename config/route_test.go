package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/sni"
)

const spliceFile = `[datapath]
interface = "eth0"

[[vip]]
address = "198.18.100.5"
port = 443
forward = "splice"
hello_timeout = "2s"
hello_max_bytes = 4096
connect_timeout = "300ms"
idle_timeout = "90s"
health = {kind = "tcp", interval = "2s"}

  [[vip.route]]
  sni = "API.Example.com."
  health = {port = 8443}
    [[vip.route.backend]]
    address = "198.18.0.51"
    [[vip.route.backend]]
    address = "198.18.0.52"
    weight = 3
    state = "drain"
    health = {kind = "http", path = "/ready"}

  [[vip.route]]
  sni = "*.example.com"
    [[vip.route.backend]]
    address = "2001:db8::53"

  [[vip.route]]
  default = true
    [[vip.route.backend]]
    address = "198.18.0.54"
`

func TestParseSplice(t *testing.T) {
	c, err := Parse("s.toml", []byte(spliceFile))
	if err != nil {
		t.Fatal(err)
	}
	v := c.VIPs[0]
	if v.Forward != Splice || len(v.Backends) != 0 || len(v.Routes) != 3 {
		t.Fatalf("vip = %+v", v)
	}
	want := SpliceSettings{HelloTimeout: 2 * time.Second, HelloMaxBytes: 4096, ConnectTimeout: 300 * time.Millisecond, IdleTimeout: 90 * time.Second}
	if v.Splice != want {
		t.Errorf("splice = %+v, want %+v", v.Splice, want)
	}
	r0, r1, r2 := v.Routes[0], v.Routes[1], v.Routes[2]
	if r0.SNI != (sni.Pattern{Name: "api.example.com"}) || r0.Name() != "api.example.com" || r0.Default ||
		r1.SNI != (sni.Pattern{Name: "example.com", Wildcard: true}) || r1.Name() != "*.example.com" ||
		!r2.Default || r2.Name() != "default" {
		t.Errorf("routes = %+v", v.Routes)
	}
	// Health: backend over route over VIP.
	tcp := HealthCheck{Kind: HealthTCP, Port: 8443, Interval: 2 * time.Second, Timeout: DefaultHealthTimeout, Rise: DefaultHealthRise, Fall: DefaultHealthFall}
	if got := r0.Backends[0].Health; got != tcp {
		t.Errorf("route backend health = %+v, want %+v", got, tcp)
	}
	http := tcp
	http.Kind, http.Path, http.Expect = HealthHTTP, "/ready", DefaultHealthExpect
	if got := r0.Backends[1].Health; got != http {
		t.Errorf("backend's own health = %+v, want %+v", got, http)
	}
	if b := r0.Backends[1]; b.Weight != 3 || b.State != StateDrain || b.EffectiveWeight() != 0 {
		t.Errorf("backend = %+v", b)
	}
	if got := r1.Backends[0].Health.Port; got != 443 {
		t.Errorf("inherited health port = %d, want the VIP's 443", got)
	}

	// Defaults, and no splice settings on other VIPs.
	c, err = Parse("d.toml", []byte(strings.Join([]string{minimal, `
[[vip]]
address = "198.18.100.5"
port = 443
forward = "splice"
  [[vip.route]]
  sni = "a.example.com"
    [[vip.route.backend]]
    address = "198.18.0.51"
`}, "")))
	if err != nil {
		t.Fatal(err)
	}
	if c.VIPs[0].Splice != (SpliceSettings{}) || c.VIPs[1].Splice != DefaultSpliceSettings() {
		t.Errorf("splice settings = %+v, %+v", c.VIPs[0].Splice, c.VIPs[1].Splice)
	}
}

func TestParseSpliceErrors(t *testing.T) {
	head := "[datapath]\ninterface = \"eth0\"\n"
	vip := head + "[[vip]]\naddress = \"198.18.100.5\"\nport = 443\nforward = \"splice\"\n"
	route := "[[vip.route]]\nsni = \"a.example.com\"\n[[vip.route.backend]]\naddress = \"198.18.0.51\"\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"no route", vip, `e.toml:3: vip[0]: splice vip has no route`},
		{"udp", strings.Replace(vip, "port = 443", "port = 443\nprotocol = \"udp\"", 1) + route,
			`e.toml:6: vip[0].protocol: forward = "splice" routes TLS over TCP: protocol must be "tcp"`},
		{"port 0", strings.Replace(vip, "port = 443", "port = 0", 1) + route,
			`e.toml:5: vip[0].port: forward = "splice" needs a port`},
		{"vip backend", vip + route + "[[vip.backend]]\naddress = \"198.18.0.9\"\n",
			`e.toml:11: vip[0].backend[0]: a splice VIP's backends belong to its routes`},
		{"route on ipip", minimal + "[[vip.route]]\nsni = \"a.b\"\n",
			`e.toml:10: vip[0].route: route is only used with forward = "splice" (forward is "ipip")`},
		{"hello timeout on ipip", strings.Replace(minimal, "port = 80", "port = 80\nhello_timeout = \"1s\"", 1),
			`e.toml:7: vip[0].hello_timeout: hello_timeout is only used with forward = "splice"`},
		{"bad sni", vip + strings.Replace(route, "a.example.com", "a.*.example.com", 1),
			`e.toml:8: vip[0].route[0].sni: "a.*.example.com": a wildcard is only`},
		{"sni not a string", vip + strings.Replace(route, `"a.example.com"`, "7", 1),
			`e.toml:8: vip[0].route[0].sni: expected a string, got integer 7`},
		{"duplicate sni", vip + route + strings.Replace(route, "a.example.com", "A.example.com.", 1),
			`e.toml:12: vip[0].route[1].sni: a.example.com is already vip[0].route[0]`},
		{"duplicate wildcard", vip + strings.Replace(route, "a.example", "*.example", 1) + strings.Replace(route, "a.example", "*.Example", 1),
			`e.toml:12: vip[0].route[1].sni: *.example.com is already vip[0].route[0]`},
		{"no sni", vip + "[[vip.route]]\n[[vip.route.backend]]\naddress = \"198.18.0.51\"\n",
			`e.toml:7: vip[0].route[0]: route has no sni`},
		{"default false", vip + "[[vip.route]]\ndefault = false\n[[vip.route.backend]]\naddress = \"198.18.0.51\"\n",
			`e.toml:8: vip[0].route[0].default: route has no sni`},
		{"default with sni", vip + strings.Replace(route, "sni = ", "default = true\nsni = ", 1),
			`e.toml:9: vip[0].route[0].sni: a default route takes every server name`},
		{"two defaults", vip + strings.Replace(route, `sni = "a.example.com"`, "default = true", 1) + strings.Replace(route, `sni = "a.example.com"`, "default = true", 1),
			`e.toml:12: vip[0].route[1].default: vip[0].route[0] is already the default route`},
		{"route without backend", vip + "[[vip.route]]\nsni = \"a.b\"\n",
			`e.toml:7: vip[0].route[0]: route has no backend`},
		{"duplicate backend", vip + route + "[[vip.route.backend]]\naddress = \"198.18.0.51\"\n",
			`e.toml:12: vip[0].route[0].backend[1].address: 198.18.0.51 is already vip[0].route[0].backend[0]`},
		{"backend is the vip", vip + strings.Replace(route, "198.18.0.51", "198.18.100.5", 1),
			`e.toml:10: vip[0].route[0].backend[0].address: 198.18.100.5 is the VIP's own address: the proxy would connect to itself`},
		{"backend mac", vip + route + "mac = \"02:00:00:00:00:01\"\n",
			`e.toml:11: vip[0].route[0].backend[0].mac: forward = "splice" connects to backends through the kernel's routes`},
		{"backend bad weight", vip + route + "weight = 70000\n",
			`e.toml:11: vip[0].route[0].backend[0].weight: weight out of range: 70000 (must be 0..65535)`},
		{"unknown route key", vip + route + "[[vip.route]]\nsnii = \"b\"\n",
			`e.toml:12: vip[0].route[1].snii: unknown key (did you mean "sni"?)`},
		{"route health", vip + "[[vip.route]]\nsni = \"a.b\"\n[vip.route.health]\nkind = \"http\"\nexpect = 99\n[[vip.route.backend]]\naddress = \"198.18.0.51\"\n",
			`e.toml:11: vip[0].route[0].health.expect: HTTP status out of range: 99 (must be 100..599)`},
		{"hello bytes", strings.Replace(vip, "port = 443", "port = 443\nhello_max_bytes = 100", 1) + route,
			`e.toml:6: vip[0].hello_max_bytes: hello size out of range: 100 (must be 512..65536)`},
		{"hello timeout", strings.Replace(vip, "port = 443", "port = 443\nhello_timeout = \"2m\"", 1) + route,
			`e.toml:6: vip[0].hello_timeout: hello timeout out of range: 2m (must be 10ms..1m)`},
		{"connect timeout", strings.Replace(vip, "port = 443", "port = 443\nconnect_timeout = \"soon\"", 1) + route,
			`e.toml:6: vip[0].connect_timeout: "soon" is not a duration`},
		{"idle timeout", strings.Replace(vip, "port = 443", "port = 443\nidle_timeout = \"10ms\"", 1) + route,
			`e.toml:6: vip[0].idle_timeout: idle timeout out of range: 10ms (must be 1s..24h)`},
		{"port-0 vip on the address", vip + route + "[[vip]]\naddress = \"198.18.100.5\"\nport = 0\n[[vip.backend]]\naddress = \"198.18.0.9\"\n",
			`e.toml:4: vip[0].address: vip[1] (198.18.100.5:0/tcp) takes every port of 198.18.100.5 into the datapath`},
		{"native", strings.Replace(vip, "interface = \"eth0\"", "interface = \"eth0\"\nmode = \"native\"", 1) + route,
			`e.toml:7: vip[0].forward: mode = "native" forwards with ipip, gue or dsr only: forward = "splice" needs the balancer's own TCP stack, and the native program does not leave a splice VIP's packets to the kernel, so the proxy could not accept them`},
	} {
		_, err := Parse("e.toml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error\n got %v\nwant %s", tc.name, err, tc.want)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %T is not *Error", tc.name, err)
		}
	}
}

func TestCheckSpliceLocal(t *testing.T) {
	c, err := Parse("s.toml", []byte(spliceFile))
	if err != nil {
		t.Fatal(err)
	}
	// 198.18.100.5 is nowhere on a test machine; the loopback is.
	err = c.checkSpliceLocal()
	if err == nil || !strings.Contains(err.Error(), "s.toml:5: vip[0].address: 198.18.100.5 is not an address of this host") ||
		!strings.Contains(err.Error(), "ip address add 198.18.100.5/32 dev lo") {
		t.Errorf("checkSpliceLocal = %v", err)
	}
	c.VIPs[0].Address = netip.MustParseAddr("127.0.0.1")
	if err := c.checkSpliceLocal(); err != nil {
		t.Errorf("loopback: %v", err)
	}
}

// checkSpliceVIP holds what Parse guarantees about a splice VIP, for the
// fuzz target.
func checkSpliceVIP(t *testing.T, v VIP) {
	if len(v.Backends) != 0 || len(v.Routes) == 0 || v.Port == 0 || v.Protocol != TCP || !isPrime(v.TableSize) ||
		v.Splice.HelloMaxBytes < MinHelloMaxBytes || v.Splice.HelloTimeout <= 0 || v.Splice.IdleTimeout <= 0 {
		t.Fatalf("accepted a bad splice vip: %+v", v)
	}
	defaults := 0
	for _, r := range v.Routes {
		if r.Default {
			defaults++
		} else if r.SNI.Name == "" {
			t.Fatalf("accepted a route without sni: %+v", r)
		}
		if len(r.Backends) == 0 {
			t.Fatalf("accepted a route without backends: %+v", r)
		}
		for _, b := range r.Backends {
			if h := b.Health; h.Kind != HealthNone && h.Port == 0 || h.Timeout >= h.Interval || b.HasMAC {
				t.Fatalf("accepted a bad route backend of %v: %+v", v, b)
			}
		}
	}
	if defaults > 1 {
		t.Fatalf("accepted %d default routes", defaults)
	}
}
