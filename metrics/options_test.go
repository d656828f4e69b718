package metrics

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		listen string
		// local: accepted without allow_remote; remote: accepted only with
		// it; bad: refused either way.
		want string
	}{
		{"127.0.0.1:9350", "local"},
		{"127.1.2.3:0", "local"},
		{"[::1]:9350", "local"},
		{"[::ffff:127.0.0.1]:9350", "local"},
		{"localhost:9350", "local"},
		{"0.0.0.0:9350", "remote"},
		{":9350", "remote"},
		{"[::]:9350", "remote"},
		{"198.18.0.1:9350", "remote"},
		{"[2001:db8::1]:9350", "remote"},
		{"[fe80::1%eth0]:9350", "remote"},
		{"", "bad"},
		{"9350", "bad"},
		{"127.0.0.1", "bad"},
		{"127.0.0.1:http", "bad"},
		{"127.0.0.1:65536", "bad"},
		{"127.0.0.1:-1", "bad"},
		{"metrics.example:9350", "bad"},
		{"[::1:9350", "bad"},
	} {
		local := Options{Listen: tc.listen}.Validate()
		remote := Options{Listen: tc.listen, AllowRemote: true}.Validate()
		switch tc.want {
		case "local":
			if local != nil || remote != nil {
				t.Errorf("%q: %v / with allow_remote %v, want accepted", tc.listen, local, remote)
			}
		case "remote":
			if !errors.Is(local, ErrNotLoopback) || remote != nil {
				t.Errorf("%q: %v / with allow_remote %v, want refused as not loopback, accepted with allow_remote", tc.listen, local, remote)
			}
			// The refusal says why, so the operator can decide.
			for _, why := range []string{tc.listen, "backend addresses", "no authentication", "allow_remote"} {
				if local != nil && !strings.Contains(local.Error(), why) {
					t.Errorf("%q: error %q does not say %q", tc.listen, local, why)
				}
			}
		case "bad":
			if local == nil || remote == nil || errors.Is(local, ErrNotLoopback) {
				t.Errorf("%q: %v / with allow_remote %v, want a syntax error both ways", tc.listen, local, remote)
			}
		}
	}
}

// TestListenRefusesRemote: the rule holds at Listen too, before anything
// is bound.
func TestListenRefusesRemote(t *testing.T) {
	s, err := Listen(Options{Listen: "0.0.0.0:0"}, afxdpSnapshot(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, ErrNotLoopback) {
		if s != nil {
			s.Shutdown(t.Context())
		}
		t.Fatalf("Listen 0.0.0.0:0 without allow_remote = %v, want ErrNotLoopback", err)
	}
}

// FuzzValidate: any string is refused or accepted without a panic, and
// what is accepted without allow_remote is accepted with it.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9350", "[::1]:0", "localhost:1", ":9350", "[fe80::1%eth0]:1", "a:b:c", "[::ffff:127.0.0.1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, listen string) {
		local := Options{Listen: listen}.Validate()
		remote := Options{Listen: listen, AllowRemote: true}.Validate()
		if local == nil && remote != nil {
			t.Errorf("%q accepted as loopback but refused with allow_remote: %v", listen, remote)
		}
		if remote == nil && local != nil && !errors.Is(local, ErrNotLoopback) {
			t.Errorf("%q accepted with allow_remote but refused without for another reason: %v", listen, local)
		}
	})
}
