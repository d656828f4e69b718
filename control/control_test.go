package control

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCallRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "xlb.sock")
	srv, err := Listen(path, map[string]Handler{
		"echo": func(_ context.Context, args json.RawMessage) (any, error) {
			var s string
			if err := json.Unmarshal(args, &s); err != nil {
				return nil, err
			}
			return strings.ToUpper(s), nil
		},
		"fail": func(context.Context, json.RawMessage) (any, error) {
			return nil, errors.New("boom")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %o, want 600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode = %o, want 700", perm)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got string
	if err := Call(ctx, path, "echo", "hello", &got); err != nil {
		t.Fatal(err)
	}
	if got != "HELLO" {
		t.Errorf("echo = %q, want HELLO", got)
	}
	tests := []struct {
		command string
		want    string
	}{
		{"fail", "control: fail: boom"},
		{"nope", `unknown command "nope"`},
	}
	for _, tt := range tests {
		err := Call(ctx, path, tt.command, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Call(%s) error = %v, want %q", tt.command, err, tt.want)
		}
	}
}

func TestListenRefusesLiveSocketAndReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.sock")
	srv, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen error = %v, want ErrInUse", err)
	}
	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	// A stale file (nobody listening) is replaced.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err = Listen(path, nil)
	if err != nil {
		t.Fatalf("Listen over stale file: %v", err)
	}
	srv.Close()
}

func TestListenRejectsRelativePath(t *testing.T) {
	if _, err := Listen("xlb.sock", nil); err == nil {
		t.Fatal("relative path accepted")
	}
}

func TestCallWithoutServer(t *testing.T) {
	err := Call(context.Background(), filepath.Join(t.TempDir(), "none.sock"), "stats", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "is xlb running?") {
		t.Fatalf("error = %v", err)
	}
}
