package ecmp

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseProtocols(t *testing.T) {
	out := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     1764745921    
kernel4    Kernel     master4    up     1764745921    
lb1        BGP        ---        up     1764745925    Established   
lb1_v6     BGP        ---        start  1764745921    Passive
lb2        BGP        ---        start  1764745930    Active        Socket: Connection closed
`
	got, err := parseProtocols(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d protocols, want 5: %v", len(got), got)
	}
	lb1 := got["lb1"]
	if lb1.Proto != "BGP" || lb1.State != "up" || lb1.Info != "Established" || !lb1.Since.Equal(time.Unix(1764745925, 0)) {
		t.Errorf("lb1 = %+v", lb1)
	}
	if lb2 := got["lb2"]; lb2.Info != "Active Socket: Connection closed" {
		t.Errorf("lb2 info %q", lb2.Info)
	}
	for _, bad := range []string{"", "BIRD 2.0.12 ready.\n", "Name Proto Table State Since Info\nlb1 BGP --- up 12:00:01 Established\n"} {
		if _, err := parseProtocols(bad); err == nil {
			t.Errorf("parseProtocols(%q) accepted", bad)
		}
	}
}

func FuzzParseProtocols(f *testing.F) {
	f.Add("Name Proto Table State Since Info\nlb1 BGP --- up 1764745925 Established\n")
	f.Add("BIRD ready.\nName\n\n x y z w 5\n")
	f.Fuzz(func(t *testing.T, s string) {
		protos, err := parseProtocols(s)
		if err != nil {
			return
		}
		for name, p := range protos {
			if name != p.Name || strings.ContainsAny(name, " \t\n") {
				t.Fatalf("protocol %q parsed as %+v", name, p)
			}
		}
	})
}

func TestAddrs(t *testing.T) {
	gw, c := clientLink(2)
	if got := fmt.Sprint(gw, c); got != "[198.18.1.9/30 2001:db8:1:2::1/64] [198.18.1.10/30 2001:db8:1:2::2/64]" {
		t.Errorf("client link 2: %s", got)
	}
	if got := hostAddr(FabricNet, 11).String(); got != "198.18.0.11/24" {
		t.Errorf("got %s", got)
	}
	if got := hostAddr(FabricNet6, 11).String(); got != "2001:db8::b/64" {
		t.Errorf("got %s", got)
	}
	for i := range maxHosts {
		gw, c := clientLink(i)
		for j := range 2 {
			if !ClientNet.Contains(gw[0].Addr()) || !ClientNet.Contains(c[0].Addr()) || !ClientNet6.Contains(gw[1].Addr()) || !ClientNet6.Contains(c[1].Addr()) ||
				gw[j].Masked() != c[j].Masked() || gw[j].Addr() == c[j].Addr() {
				t.Fatalf("client link %d: %v %v", i, gw, c)
			}
		}
	}
}
