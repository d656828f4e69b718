package lab

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"sync"
)

// HalfCloser is a connection whose write half closes alone, as TCP and TLS
// connections' do.
type HalfCloser interface {
	io.Writer
	CloseWrite() error
}

// EchoRoundTrip checks a connection to an echo server end to end: it sends
// size bytes (whole MiB) of a pattern to w and then closes w's write half,
// while it reads from r (w's connection, or a reader over it) until the
// end; the same bytes must come back, compared by SHA-256. The caller sets
// the connection's deadline.
func EchoRoundTrip(w HalfCloser, r io.Reader, size int) error {
	const chunkSize = 1 << 20
	if size%chunkSize != 0 {
		return fmt.Errorf("lab: echo of %d bytes: not whole MiB", size)
	}
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		chunk := make([]byte, chunkSize)
		for i := range size / chunkSize {
			for j := range chunk {
				chunk[j] = byte(i*31 + j*7)
			}
			sent.Write(chunk)
			if _, err := w.Write(chunk); err != nil {
				errc <- fmt.Errorf("lab: echo: write: %w", err)
				return
			}
		}
		errc <- w.CloseWrite()
	}()
	got := sha256.New()
	// A reader that stops early returns at once: the writer ends when the
	// caller closes the connection or its deadline passes.
	if n, err := io.Copy(got, r); err != nil || n != int64(size) {
		return fmt.Errorf("lab: echo: read back %d of %d bytes: %v", n, size, err)
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return fmt.Errorf("lab: echo: the %d bytes that came back differ from those sent", size)
	}
	return nil
}

// Serve accepts connections on ln until ln is closed and runs handle on
// each in a goroutine of its own, closing the connection when handle
// returns. The returned wait blocks until the accept loop and every
// handler have returned (call it after closing ln).
func Serve(ln net.Listener, handle func(net.Conn)) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return wg.Wait
}

// Echo is a handler for Serve that sends back what it reads.
func Echo(c net.Conn) { io.Copy(c, c) }
