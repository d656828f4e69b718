package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/xlbproject/xlb/capture"
	"github.com/xlbproject/xlb/datapath"
)

// ErrCaptureBusy: another capture holds a queue the filter names.
var ErrCaptureBusy = errors.New("another capture is running on that queue; one capture per queue at a time")

// ErrCaptureNativeBusy: native mode runs one capture at a time.
var ErrCaptureNativeBusy = errors.New("another capture is running; in native mode one capture runs at a time")

// capturePoll is how often a capture drains the workers' rings: a ring of
// capture.DefaultSlots holds about a millisecond of a busy queue, the poll
// keeps it far from full while the client keeps up.
const capturePoll = time.Millisecond

// captureSettle is how long a capture waits, once its rings are taken
// back, for a worker that loaded a ring just before to finish its batch.
const captureSettle = 20 * time.Millisecond

// CaptureSession is a running capture: the control socket sends its Header
// as the capture command's answer, then runs Stream (it is a
// control.Streamer).
type CaptureSession struct {
	capture.Header
	filter  capture.Filter
	workers []*datapath.Worker
	rings   []*capture.Ring
	native  *nativeCapture // native mode: the lb program's capture
}

// Capture starts a capture of the frames f matches on every queue it
// admits: from now on those workers copy matching frames into a ring each.
// Stream sends them and gives the rings back.
func (e *Engine) Capture(f capture.Filter) (*CaptureSession, error) {
	if e.steer == nil {
		return e.captureNative(f)
	}
	s := &CaptureSession{Header: capture.Header{Interface: e.ifname, Snaplen: f.Snaplen}, filter: f}
	for _, w := range e.workers {
		if !f.Wants(w.Queue) {
			continue
		}
		r, err := capture.NewRing(f, capture.DefaultSlots)
		if err != nil {
			s.stop()
			return nil, err
		}
		if !w.StartCapture(r) {
			s.stop()
			return nil, fmt.Errorf("queue %d: %w", w.Queue, ErrCaptureBusy)
		}
		s.workers, s.rings = append(s.workers, w), append(s.rings, r)
		s.Queues = append(s.Queues, w.Queue)
	}
	if len(s.rings) == 0 {
		return nil, fmt.Errorf("queue %d is not served by this instance", f.Queue)
	}
	return s, nil
}

func (s *CaptureSession) stop() {
	if s.native != nil {
		s.native.stop()
	}
	for i, w := range s.workers {
		w.StopCapture(s.rings[i])
	}
}

// Stream sends the captured frames to w as capture records until ctx ends
// (the client asked to stop), the filter's count or duration is reached,
// or w fails; then it takes the rings back, sends what they still hold and
// the summary.
func (s *CaptureSession) Stream(ctx context.Context, w io.Writer) error {
	stopped := false
	defer func() {
		if !stopped {
			s.stop()
		}
		if s.native != nil {
			s.native.close()
		}
	}()
	bw := bufio.NewWriterSize(w, 256<<10)
	var sum capture.Summary
	var rec []byte
	// emit sends one frame; note is added to its comment.
	emit := func(m *capture.Meta, note string, data []byte) error {
		if s.filter.Count > 0 && sum.Captured >= s.filter.Count {
			return errCountReached
		}
		rec = capture.AppendFrame(rec[:0], m, comment(m)+note, data)
		if _, err := bw.Write(rec); err != nil {
			return err
		}
		sum.Captured++
		return nil
	}
	send := func(m *capture.Meta, data []byte) error { return emit(m, "", data) }
	drain := func() error {
		if s.native != nil {
			n, err := s.native.drain(&s.filter, emit)
			if err == nil && n > 0 {
				err = bw.Flush()
			}
			return err
		}
		n := 0
		for _, r := range s.rings {
			k, err := r.Drain(send)
			n += k
			if err != nil {
				return err
			}
		}
		if n > 0 {
			return bw.Flush()
		}
		return nil
	}
	var deadline <-chan time.Time
	if s.filter.Duration > 0 {
		t := time.NewTimer(s.filter.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(capturePoll)
	defer tick.Stop()
	var err error
loop:
	for {
		if err = drain(); err != nil {
			break
		}
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case <-tick.C:
		}
	}
	s.stop()
	stopped = true
	if err == nil {
		time.Sleep(captureSettle)
		err = drain()
	}
	if errors.Is(err, errCountReached) {
		err = nil
	}
	sum.Lost = map[int]uint64{}
	for i, r := range s.rings {
		sum.Lost[s.workers[i].Queue] = r.Lost()
	}
	if s.native != nil {
		lost, lerr := s.native.lost(s.Queues)
		sum.Lost, err = lost, errors.Join(err, lerr)
	}
	if err != nil {
		sum.Error = err.Error()
	}
	if rec, err = capture.AppendEnd(rec[:0], sum); err != nil {
		return err
	}
	if _, werr := bw.Write(rec); werr != nil {
		return errors.Join(err, werr)
	}
	return errors.Join(err, bw.Flush())
}

var errCountReached = errors.New("count reached")

// comment says what the balancer did with a captured frame, for the
// packet's pcapng comment.
func comment(m *capture.Meta) string {
	v := &m.Verdict
	var what string
	switch v.Kind {
	case capture.Forwarded:
		what = "backend " + v.BackendAddr().String()
	case capture.Dropped:
		what = "dropped: " + datapath.Drop(v.Drop).String()
	default:
		what = "answered by the balancer"
	}
	return fmt.Sprintf("queue %d %s: %s", m.Queue, m.Dir, what)
}
