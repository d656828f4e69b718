package config

import (
	"bytes"
	"errors"
	"os"
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
			if len(v.Backends) == 0 || !isPrime(v.TableSize) || !v.Address.Is4() {
				t.Fatalf("accepted a bad vip: %+v", v)
			}
		}
		_ = c.Errorf("datapath.interface", "x").Error()
	})
}
