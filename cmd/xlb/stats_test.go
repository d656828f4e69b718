package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/engine"
)

// statsSchema is docs/stats-schema.md's table: every documented key path
// (a[] for an array's elements, a.* for a map of names) and whether it is
// optional.
type statsSchema map[string]bool

var schemaRow = regexp.MustCompile("^\\| `([^`]+)` \\| [^|]+ \\| (.*) \\|$")

func loadStatsSchema(t *testing.T) statsSchema {
	t.Helper()
	b, err := os.ReadFile("../../docs/stats-schema.md")
	if err != nil {
		t.Fatal(err)
	}
	s := statsSchema{}
	for line := range strings.Lines(string(b)) {
		if m := schemaRow.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			s[m[1]] = strings.HasPrefix(m[2], "*optional*")
		}
	}
	if len(s) < 20 {
		t.Fatalf("docs/stats-schema.md: found %d keys in its table; has its format changed?", len(s))
	}
	return s
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkStatsJSON walks a decoded `xlb stats --json` and reports every key
// that is not snake_case or not in the schema. It returns the documented
// paths it saw.
func checkStatsJSON(t *testing.T, schema statsSchema, v any, path string, seen map[string]bool) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		_, names := schema[path+".*"]
		for k, child := range v {
			if !snakeCase.MatchString(k) {
				t.Errorf("key %q at %q is not snake_case", k, path)
			}
			p := k
			switch {
			case names:
				p = path + ".*"
			case path != "":
				p = path + "." + k
			}
			if _, isArray := child.([]any); isArray {
				p += "[]"
			} else if _, nullArray := schema[p+"[]"]; nullArray && child == nil {
				p += "[]" // a nil slice: null, not []
			}
			if _, ok := schema[p]; !ok {
				t.Errorf("key %q is not in docs/stats-schema.md", p)
				continue
			}
			seen[p] = true
			if a, _ := child.([]any); strings.HasSuffix(p, "[]") && len(a) == 0 {
				seen["empty:"+p] = true // nothing under it can be there
			}
			checkStatsJSON(t, schema, child, p, seen)
		}
	case []any:
		for _, child := range v {
			checkStatsJSON(t, schema, child, path, seen)
		}
	}
}

// missingKeys returns the documented keys absent from seen; with
// optionalToo false it skips optional keys and the keys under them.
func missingKeys(schema statsSchema, seen map[string]bool, optionalToo bool) []string {
	var out []string
	for k, optional := range schema {
		if seen[k] || (!optionalToo && (optional || underOptional(schema, k) || underEmpty(seen, k))) {
			continue
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// underEmpty reports whether k is under an array that was empty or null.
func underEmpty(seen map[string]bool, k string) bool {
	for s := range seen {
		if p, ok := strings.CutPrefix(s, "empty:"); ok && strings.HasPrefix(k, p+".") {
			return true
		}
	}
	return false
}

func underOptional(schema statsSchema, k string) bool {
	for p, optional := range schema {
		if optional && strings.HasPrefix(k, p+".") {
			return true
		}
	}
	return false
}

// fill sets every field reachable from v to a non-zero value (one element
// per slice, one entry per map), so that no omitempty key is left out.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("some_name")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Float64, reflect.Float32:
		v.SetFloat(1)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		v.SetUint(1)
	}
}

// TestStatsJSONSchema: engine.Stats with every field set marshals to
// snake_case keys only, each documented in docs/stats-schema.md, and every
// documented key is there: a field added without its line fails here.
func TestStatsJSONSchema(t *testing.T) {
	schema := loadStatsSchema(t)
	var st engine.Stats
	fill(reflect.ValueOf(&st).Elem())
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	checkStatsJSON(t, schema, v, "", seen)
	if m := missingKeys(schema, seen, true); len(m) > 0 {
		t.Errorf("documented in docs/stats-schema.md but not in engine.Stats: %v", m)
	}
	for k := range schema {
		if strings.HasSuffix(k, "_seconds") && !strings.Contains(string(b), `"`+k[strings.LastIndex(k, ".")+1:]+`":1`) {
			t.Errorf("%s is not a number of seconds", k)
		}
	}
}

// TestStatsLive runs the real `xlb stats --json` and `xlb stats` against a
// running instance in each mode after real traffic: the JSON has only
// documented snake_case keys and every documented key that is not optional
// (in native mode there are no queues); each backend shows its state (one
// is configured to drain) and the flows pinned to it, which sum to the
// connections just made.
func TestStatsLive(t *testing.T) {
	schema := loadStatsSchema(t)
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newLBLab("xlbst", xlbBin, dir)
	})
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			cfg := configText(l.socketPath(), 80, []int{1, 1, 1}) + "  state = \"drain\"\n"
			cfg = withMode(cfg, mode)
			if err := l.startXLB(cfg, logw); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := l.stopXLB(); err != nil {
					t.Error(err)
				}
			}()
			checkStatsLive(t, l, schema, mode)
		})
	}
}

func checkStatsLive(t *testing.T, l *lbLab, schema statsSchema, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const conns = 40
	if served, failed := sendRequests(ctx, l, conns, 4); failed > 0 || served["be3"] > 0 {
		t.Fatalf("served %v, %d failed; want none failed and none on the draining be3", served, failed)
	}

	run := func(args ...string) []byte {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := l.lb.Command(ctx, l.bin, append([]string{"stats", "--socket", l.socketPath()}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("xlb stats %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes()
	}
	raw := run("--json")
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode: %v\n%s", err, raw)
	}
	seen := map[string]bool{}
	checkStatsJSON(t, schema, v, "", seen)
	for _, k := range missingKeys(schema, seen, false) {
		// Native mode has no workers: no queues, nothing to sum.
		if mode == "native" && (strings.HasPrefix(k, "queues[]") || k == "drops.*" || k == "events.*") {
			continue
		}
		t.Errorf("documented key missing from the output: %s", k)
	}

	var st engine.Stats
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	var flows uint64
	for i, b := range st.VIPs[0].Backends {
		want := engine.BackendActive
		if i == 2 {
			want = engine.BackendDrain
		}
		if b.State != want || !b.FlowsKnown {
			t.Errorf("backend %s: state %q flows_known %t, want %q and true", b.Address, b.State, b.FlowsKnown, want)
		}
		flows += b.Flows
	}
	// A closed connection's flow stays until its idle timeout (15 min) or
	// the LRU's eviction: every connection just made is still there.
	if flows != conns || st.VIPs[0].Backends[2].Flows != 0 {
		t.Errorf("tracked flows %d (drained backend %d), want %d (and 0)", flows, st.VIPs[0].Backends[2].Flows, conns)
	}
	if st.Native != nil && st.Native.Flows != conns {
		t.Errorf("native.flows %d, want %d", st.Native.Flows, conns)
	}
	text := string(run())
	for _, want := range []string{"drain ", "active ", "flows "} {
		if !strings.Contains(text, want) {
			t.Errorf("xlb stats text lacks %q:\n%s", want, text)
		}
	}
	t.Logf("xlb stats:\n%s", text)
}
