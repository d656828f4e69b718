package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// ticker is a Streamer: its header, then a line every millisecond until
// its context ends, then a last line.
type ticker struct {
	Name string `json:"name"`
}

func (tk ticker) Stream(ctx context.Context, w io.Writer) error {
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			_, err := fmt.Fprintln(w, "end")
			return err
		case <-time.After(time.Millisecond):
		}
		if _, err := fmt.Fprintln(w, "tick", i); err != nil {
			return err
		}
	}
}

// TestStream: a Streamer's answer is its header, then its stream on the
// same connection; Stop ends the handler's context, which sends its last
// words before the server closes. An error answer is still an error.
func TestStream(t *testing.T) {
	_, path := listen(t, map[string]Handler{
		"ticks": func(context.Context, json.RawMessage) (any, error) { return ticker{Name: "t"}, nil },
		"fail":  func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("no stream") },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var hdr ticker
	st, err := Open(ctx, path, "ticks", nil, &hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if hdr.Name != "t" {
		t.Fatalf("header %+v", hdr)
	}
	var b [64]byte
	if _, err := io.ReadAtLeast(st, b[:], 7); err != nil {
		t.Fatal(err)
	}
	if err := st.Stop(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) < 4 || string(rest[len(rest)-4:]) != "end\n" {
		t.Fatalf("stream ended with %q, want the handler's last line", rest)
	}
	var re *RemoteError
	if _, err := Open(ctx, path, "fail", nil, nil); !errors.As(err, &re) || re.Message != "no stream" {
		t.Fatalf("failed stream: %v", err)
	}
	if _, err := Open(ctx, path+".none", "ticks", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no server: %v", err)
	}
}
