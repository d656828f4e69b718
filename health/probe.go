package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// DialFunc opens a connection, as net.Dialer.DialContext does. The
// checker's dialer decides from which network namespace probes leave.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// maxHead bounds the status line and headers of an HTTP check's answer: a
// health endpoint's head is a few hundred bytes, and a backend gone wrong
// (or not an HTTP server) must not make the balancer read without end.
const maxHead = 64 << 10

// maxBody is how much of an HTTP check's response body is read (and
// discarded) before the connection is closed.
const maxBody = 4 << 10

var (
	// errStatus is wrapped by an HTTP check that got an answer with
	// another status than the one expected.
	errStatus = errors.New("unexpected status")
	// errHeadTooLarge is wrapped by an HTTP check whose answer's status
	// line and headers do not end within maxHead bytes.
	errHeadTooLarge = fmt.Errorf("status line and headers longer than %d bytes", maxHead)
)

// userAgent names the prober in backends' access logs.
const userAgent = "xlb-health/1"

// probe runs one check of t within ctx, whose deadline is the check's
// timeout. nil means success.
func probe(ctx context.Context, dial DialFunc, t Target) error {
	addr := netip.AddrPortFrom(t.Addr, t.Spec.Port).String()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health: %s check: %w", t.Spec.Kind, err)
	}
	defer conn.Close()
	if t.Spec.Kind == KindTCP {
		return nil
	}
	if err := getHTTP(ctx, conn, addr, t.Spec); err != nil {
		return fmt.Errorf("health: http check %s%s: %w", addr, t.Spec.Path, err)
	}
	return nil
}

// getHTTP sends one GET with "Connection: close" on conn and compares the
// answer's status with s.Expect. Cancelling ctx, or its deadline, ends
// reads and writes at once.
func getHTTP(ctx context.Context, conn net.Conn, addr string, s Spec) error {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+s.Path, nil)
	if err != nil {
		return err
	}
	if s.Host != "" {
		req.Host = s.Host
	}
	req.Close = true
	req.Header.Set("User-Agent", userAgent)
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	// Everything is read through lr: at most maxHead bytes for the head,
	// then at most maxBody more for the body.
	lr := &io.LimitedReader{R: conn, N: maxHead}
	resp, err := http.ReadResponse(bufio.NewReader(lr), req)
	if err != nil {
		if lr.N == 0 {
			return fmt.Errorf("read response: %w", errHeadTooLarge)
		}
		return fmt.Errorf("read response: %w", err)
	}
	// Drain a small body: closing a socket with unread data sends a RST
	// instead of a FIN, which backends log as a reset. Never read more
	// than maxBody, whatever the response claims; a longer body is not a
	// failure (the status decides), it is just not read.
	lr.N = maxBody
	io.CopyN(io.Discard, resp.Body, maxBody)
	resp.Body.Close()
	if resp.StatusCode != s.Expect {
		return fmt.Errorf("%w %d, want %d", errStatus, resp.StatusCode, s.Expect)
	}
	return nil
}
