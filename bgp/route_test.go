package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func r(prefix string, med uint32, communities ...Community) Route {
	return Route{Prefix: netip.MustParsePrefix(prefix), MED: med, Communities: communities}
}

func TestDiff(t *testing.T) {
	a4, b4, a6 := "198.18.1.1/32", "198.18.1.2/32", "2001:db8:1::1/128"
	tests := []struct {
		name         string
		from, to     []Route
		add, removed string // prefixes, comma-separated, in order
	}{
		{"empty", nil, nil, "", ""},
		{"first announce", nil, []Route{r(a6, 0), r(b4, 0), r(a4, 0)}, a4 + "," + b4 + "," + a6, ""},
		{"same again", []Route{r(a4, 0), r(a6, 0)}, []Route{r(a6, 0), r(a4, 0)}, "", ""},
		{"withdraw one", []Route{r(a4, 0), r(b4, 0)}, []Route{r(a4, 0)}, "", b4},
		{"withdraw all", []Route{r(a4, 0), r(a6, 0)}, nil, "", a4 + "," + a6},
		{"med changed", []Route{r(a4, 0), r(b4, 0)}, []Route{r(a4, 5), r(b4, 0)}, a4, ""},
		{"community added", []Route{r(a4, 0, 1)}, []Route{r(a4, 0, 1, 2)}, a4, ""},
		{"community order counts", []Route{r(a4, 0, 1, 2)}, []Route{r(a4, 0, 2, 1)}, a4, ""},
		{"swap", []Route{r(a4, 0)}, []Route{r(b4, 0)}, b4, a4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, err := newRouteSet(tt.from)
			if err != nil {
				t.Fatal(err)
			}
			to, err := newRouteSet(tt.to)
			if err != nil {
				t.Fatal(err)
			}
			add, del := diff(from, to)
			var gotAdd, gotDel []string
			for _, x := range add {
				gotAdd = append(gotAdd, x.Prefix.String())
				if !x.equal(to[x.Prefix]) {
					t.Errorf("announces %+v, want %+v", x, to[x.Prefix])
				}
			}
			for _, p := range del {
				gotDel = append(gotDel, p.String())
			}
			if strings.Join(gotAdd, ",") != tt.add || strings.Join(gotDel, ",") != tt.removed {
				t.Errorf("diff = announce %v withdraw %v; want announce [%s] withdraw [%s]", gotAdd, gotDel, tt.add, tt.removed)
			}
			// Applying the diff to from gives to, and diffing again gives nothing.
			for _, p := range del {
				delete(from, p)
			}
			for _, x := range add {
				from[x.Prefix] = x
			}
			if add, del := diff(from, to); len(add)+len(del) != 0 {
				t.Errorf("after applying, diff is still %v %v", add, del)
			}
		})
	}
}

func TestNewRouteSetRejects(t *testing.T) {
	tests := []struct {
		routes []Route
		msg    string
	}{
		{[]Route{{}}, "want an IPv4 or IPv6 prefix"},
		{[]Route{r("198.18.1.1/24", 0)}, "host bits set"},
		{[]Route{r("::ffff:198.18.1.1/128", 0)}, "want an IPv4 or IPv6 prefix"},
		{[]Route{r("198.18.1.1/32", 0), r("198.18.1.1/32", 1)}, "listed twice"},
		{[]Route{r("198.18.1.1/32", 0, 7, 7)}, "community 0:7 listed twice"},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, err := newRouteSet(tt.routes)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.msg)
			}
		})
	}
}

func TestNewRouteSetCopies(t *testing.T) {
	in := []Route{r("198.18.1.1/32", 0, 1, 2)}
	set, err := newRouteSet(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Communities[0] = 9
	if got := set[in[0].Prefix].Communities; !slices.Equal(got, []Community{1, 2}) {
		t.Errorf("the set shares the caller's community slice: %v", got)
	}
}
