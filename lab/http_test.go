package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func TestHTTP(t *testing.T) {
	l := newLab(t, testSpec(testPrefix()))
	b1, err := ServeHTTP(l.Hosts["b1"], netip.AddrPortFrom(b1A.Addr(), 80).String(), "b1")
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	// The VIP on b2's lo, reached through the client's route via b2.
	b2, err := ServeHTTP(l.Hosts["b2"], netip.AddrPortFrom(vip, 80).String(), "b2")
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	client := HTTPClient(l.Hosts["client"])
	ctx := ctxFor(t, 20*time.Second)

	const n = 5
	for i := range n {
		got, err := Get(ctx, client, "http://198.18.0.11/any/path")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got != "b1" {
			t.Fatalf("request %d answered by %q, want b1", i, got)
		}
	}
	if b1.Requests() != n || b1.Conns() != n {
		t.Errorf("b1 counted %d requests over %d connections, want %d over %d (keep-alives off)", b1.Requests(), b1.Conns(), n, n)
	}

	body := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(body)
	reply, err := Upload(ctx, client, "http://"+vip.String(), body)
	if err != nil {
		t.Fatal(err)
	}
	want := UploadReply{Backend: "b2", Bytes: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
	if reply != want {
		t.Errorf("upload reply %+v, want %+v", reply, want)
	}
	if b2.Requests() != 1 || b2.Conns() != 1 {
		t.Errorf("b2 counted %d requests over %d connections, want 1 over 1", b2.Requests(), b2.Conns())
	}

	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := Get(ctx, client, "http://198.18.0.11/"); err == nil {
		t.Fatal("closed backend still answers")
	}
}
