package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary text to Parse: it must never panic, and must
// either return a config that holds Parse's guarantees or a located *Error.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(exampleFile)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		minimal,
		minimal + "[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n",
		"[datapath\ninterface = \"eth0\"\n",
		"a = \"\"\"\nnever closed\n",
		"x = [1, [2, {a = 3}], '''\n'''\n]\n",
		"[[vip]]\n[[vip.backend]]\n[vip]\n",
		"vip = [{address = \"198.18.100.1\", port = 1, backend = [{address = \"198.18.0.1\"}]}]\n[datapath]\ninterface = \"x\"\n",
		"\"\\u00e9\" = 1\n'a.b'.c = {d = 1979-05-27}\n",
		minimal + "  state = \"drain\"\n  [vip.backend.health]\n  kind = \"http\"\n  timeout = \"2s\"\n",
		strings.Replace(minimal, "port = 80", "port = 0\nforward = \"gue\"\nhealth = {kind = \"tcp\", port = 1}", 1),
		"bgp = {asn = 1, router_id = \"1.2.3.4\", peer = [{address = \"198.18.0.1\", asn = 2, hold_time = \"3s\"}], communities = [\"1:2\"]}\n" + minimal + "bgp = {med = 1}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not *Error", err, err)
			}
			if e.File != "fuzz.toml" || e.Line < 1 || e.Line > lines {
				t.Fatalf("error %q: line %d of %d", err, e.Line, lines)
			}
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		if len(c.VIPs) == 0 || c.Datapath.Interface == "" {
			t.Fatalf("accepted a config without vip or interface: %+v", c)
		}
		for _, v := range c.VIPs {
			if v.Forward == Splice {
				checkSpliceVIP(t, v)
				continue
			}
			if len(v.Backends) == 0 || !isPrime(v.TableSize) || !v.Address.IsGlobalUnicast() ||
				(v.Forward == GUE) != (v.GUEPort != 0) || v.Health.Timeout >= v.Health.Interval {
				t.Fatalf("accepted a bad vip: %+v", v)
			}
			fam := v.Backends[0].Address.Is4()
			if v.Address.Is6() && fam || v.Forward == DSR && fam != v.Address.Is4() {
				t.Fatalf("accepted a vip with backends of the wrong family: %+v", v)
			}
			for _, b := range v.Backends {
				h := b.Health
				if b.Address.Is4() != fam || h.Kind != HealthNone && h.Port == 0 || h.Timeout >= h.Interval ||
					(h.Kind == HealthHTTP) != (h.Path != "") || b.EffectiveWeight() > b.Weight {
					t.Fatalf("accepted a bad backend of %v: %+v", v, b)
				}
			}
		}
		_ = c.Errorf("datapath.interface", "x").Error()
	})
}
