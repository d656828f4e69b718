package tcpbench

import (
	"reflect"
	"testing"
)

func TestParseSpliceStats(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want SpliceCount
		err  bool
	}{
		{"no splice VIP", `{"state":"running"}`, SpliceCount{}, false},
		{"routes summed", `{"splice":[
			{"address":"198.18.100.2","port":5011,"routes":[{"sni":"a","connections":3,"spliced":2,"stayed_copied":{"closed_first":1,"not_quiescent":0}}]},
			{"address":"198.18.100.2","port":5012,"routes":[{"sni":"a","connections":4,"spliced":4,"stayed_copied":{"closed_first":0}},
				{"sni":"default","connections":1,"spliced":0}]}]}`,
			SpliceCount{Connections: 8, Spliced: 6, StayedCopied: map[string]uint64{"closed_first": 1, "not_quiescent": 0}}, false},
		{"not json", `xlb: no such socket`, SpliceCount{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSpliceStats([]byte(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSpliceCountSub(t *testing.T) {
	before := SpliceCount{Connections: 5, Spliced: 3, StayedCopied: map[string]uint64{"closed_first": 2, "not_quiescent": 0}}
	now := SpliceCount{Connections: 14, Spliced: 11, StayedCopied: map[string]uint64{"closed_first": 2, "not_quiescent": 1}}
	got := now.sub(before)
	want := SpliceCount{Connections: 9, Spliced: 8, StayedCopied: map[string]uint64{"not_quiescent": 1}}
	if !reflect.DeepEqual(got, want) || got.Copied() != 1 {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if d := now.sub(now); !reflect.DeepEqual(d, SpliceCount{}) {
		t.Errorf("no change gives %+v", d)
	}
	if s := got.add(got); s.Connections != 18 || s.StayedCopied["not_quiescent"] != 2 || got.StayedCopied["not_quiescent"] != 1 {
		t.Errorf("add gives %+v (and %+v)", s, got)
	}
}

// FuzzParseSpliceStats feeds arbitrary `xlb stats --json` output: an error
// or counters, never a panic.
func FuzzParseSpliceStats(f *testing.F) {
	f.Add([]byte(`{"splice":[{"routes":[{"connections":3,"spliced":2,"stayed_copied":{"closed_first":1}}]}]}`))
	f.Add([]byte(`{"splice":null}`))
	f.Add([]byte(`{"splice":[{"routes":[{"connections":-1}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseSpliceStats(b)
		if err != nil && !reflect.DeepEqual(c, SpliceCount{}) {
			t.Errorf("error %v with counters %+v", err, c)
		}
	})
}
