package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	xcapture "github.com/xlbproject/xlb/capture"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
)

// stopGrace bounds how long `xlb capture` waits for the summary once it
// asked the instance to stop.
const stopGrace = 10 * time.Second

func cmdCapture(e *env, args []string) int {
	fs := newFlags(e, "capture", "[-c FILE | --socket PATH] [--vip ADDR:PORT/PROTO] [--backend ADDR] [--queue N] [--direction rx|tx|both] [--snaplen N] [--count N] [--duration D] -w FILE|-")
	file := fs.String("c", "", "config file of the running instance (to find its control socket)")
	socket := fs.String("socket", config.DefaultSocket, "control socket of the running instance")
	vip := fs.String("vip", "", "only frames to this VIP, ADDR:PORT/PROTO (port 0: the every-port VIP)")
	backend := fs.String("backend", "", "only frames sent to (or received for) this backend address")
	queue := fs.Int("queue", -1, "only this NIC queue (-1: every queue)")
	direction := fs.String("direction", "both", "rx (as received), tx (as sent, encapsulated) or both")
	snaplen := fs.Int("snaplen", xcapture.DefaultSnaplen, fmt.Sprintf("bytes kept of each frame (64 to %d)", xcapture.MaxSnaplen))
	count := fs.Uint64("count", 0, "stop after this many frames (0: no limit)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	out := fs.String("w", "", "pcapng file to write, or - for standard output")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(e.stderr, "xlb: capture: -w FILE or -w - is required")
		fs.Usage()
		return exitUsage
	}
	req := xcapture.Request{VIP: *vip, Backend: *backend, Direction: *direction, Snaplen: *snaplen, Count: *count}
	if *queue >= 0 {
		req.Queue = queue
	}
	if *duration != 0 {
		req.Duration = duration.String()
	}
	if _, err := req.Filter(); err != nil {
		fmt.Fprintf(e.stderr, "xlb: capture: %v\n", err)
		return exitUsage
	}
	path, code := socketPath(e, *file, *socket)
	if path == "" {
		return code
	}
	sigs := e.signals
	if sigs == nil {
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sigs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	var hdr xcapture.Header
	st, err := control.Open(ctx, path, "capture", req, &hdr)
	cancel()
	if err != nil {
		if errors.Is(err, control.ErrNoAnswer) {
			err = fmt.Errorf("no answer from %s within 10s", path)
		}
		fmt.Fprintf(e.stderr, "xlb: %v\n", clientError(err, "capture"))
		return exitFail
	}
	defer st.Close()

	var w io.Writer = e.stdout
	if *out != "-" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			fmt.Fprintf(e.stderr, "xlb: capture: %v\n", err)
			return exitFail
		}
		defer f.Close()
		w = f
	}
	pw, err := xcapture.NewWriter(w, hdr)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	// As tcpdump does: the capture is running from here on.
	fmt.Fprintf(e.stderr, "xlb: capturing on %s queues %v, snaplen %d\n", hdr.Interface, hdr.Queues, hdr.Snaplen)
	sum, err := receive(st, pw, *out == "-", sigs)
	if ferr := pw.Finish(sum); err == nil {
		err = ferr
	}
	var lost uint64
	for _, n := range sum.Lost {
		lost += n
	}
	fmt.Fprintf(e.stderr, "xlb: capture: %d frames captured, %d lost to a slow reader (forwarded all the same)\n", sum.Captured, lost)
	switch {
	case err != nil:
		fmt.Fprintf(e.stderr, "xlb: capture: %v\n", err)
		return exitFail
	case sum.Error != "":
		fmt.Fprintf(e.stderr, "xlb: capture ended early: %s\n", sum.Error)
		return exitFail
	}
	return exitOK
}

// receive writes the stream's frames with pw until its summary. A signal
// asks the instance to stop, which then sends what it holds and the
// summary; a second signal, or none within stopGrace, gives up waiting.
// With flush, every frame is flushed at once, for a reader on a pipe.
func receive(st *control.Stream, pw *xcapture.Writer, flush bool, sigs <-chan os.Signal) (xcapture.Summary, error) {
	type result struct {
		sum xcapture.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		r := xcapture.NewReader(bufio.NewReaderSize(st, 256<<10))
		for {
			rec, err := r.Next()
			if err != nil {
				done <- result{err: err}
				return
			}
			if rec.End {
				done <- result{sum: rec.Summary}
				return
			}
			if err := pw.Write(&rec); err != nil {
				done <- result{err: err}
				return
			}
			if flush {
				if err := pw.Flush(); err != nil {
					done <- result{err: err}
					return
				}
			}
		}
	}()
	var grace <-chan time.Time
	for {
		select {
		case r := <-done:
			return r.sum, r.err
		case <-sigs:
			if grace != nil {
				st.Close()
				return xcapture.Summary{}, errors.New("interrupted twice: summary not received")
			}
			_ = st.Stop()
			grace = time.After(stopGrace)
		case <-grace:
			st.Close()
			return xcapture.Summary{}, fmt.Errorf("no summary within %s of asking the instance to stop", stopGrace)
		}
	}
}
