package tcpbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on a single connection's operations, so every loop ends even if
// the balancer stops forwarding.
const (
	dialWait = 2 * time.Second
	ioWait   = 2 * time.Second
	// slack lets a window's connections outlive it while they are closed.
	slack = 10 * time.Second
	// settlePause is how long every SNI-routed datapath's long-lived
	// connections stay quiet after their opening, before the load starts:
	// room for xlb to hand them to the datapath (it checks a pair every two
	// RTTs, and hands it over at the second quiet check). The pause is the
	// same for all, so that none starts its load later than the others.
	settlePause = 200 * time.Millisecond
	// spliceWait bounds how much longer xlb-splice's connections may take
	// to be spliced on a loaded machine; those that are not by then are
	// measured as they are, and the report says how many.
	spliceWait = 3 * time.Second
)

// warmup is the part of a load's run before its window opens: connections
// are up and past slow start when counting begins.
func warmup(d time.Duration) time.Duration { return min(d/10, 500*time.Millisecond) }

// window is one measured window: how long, the CPU figures of it and,
// for xlb-splice, what became of the test's connections.
type window struct {
	secs   float64
	cpu    CPU
	splice SpliceCount
}

// measure samples the CPU counters, sleeps d, samples again, and returns
// count's delta with the window. count is read right after each sample.
func (b *benchLab) measure(d time.Duration, count func() uint64) (uint64, window, error) {
	c0, err := sampleCPU(b.lbNetns)
	if err != nil {
		return 0, window{}, err
	}
	n0 := count()
	time.Sleep(d)
	c1, err := sampleCPU(b.lbNetns)
	if err != nil {
		return 0, window{}, err
	}
	n1 := count()
	return n1 - n0, window{secs: c1.at.Sub(c0.at).Seconds(), cpu: cpuDelta(c0, c1)}, nil
}

// dialAll opens n connections from the client to ep's port, each going
// through ep's opening (open).
func (b *benchLab) dialAll(ep endpoint, port uint16, n int) ([]net.Conn, error) {
	addr := netip.AddrPortFrom(ep.addr, port).String()
	var conns []net.Conn
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), dialWait)
		c, err := b.client.Dial(ctx, "tcp4", addr)
		cancel()
		if err == nil {
			err = open(c, ep)
		}
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("tcpbench: %w", err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// open plays the client's side of the opening of an SNI-routed
// connection, as a TLS client's handshake goes: the ClientHello, the
// backend's answer, the client's finishing record (skipHello is the
// backend's side). It does nothing for the other datapaths.
func open(c net.Conn, ep endpoint) error {
	if ep.hello == nil {
		return nil
	}
	c.SetDeadline(time.Now().Add(ioWait))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(ep.hello); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, make([]byte, len(serverFlight))); err != nil {
		return fmt.Errorf("server's answer to the hello: %w", err)
	}
	_, err := c.Write(clientFinished)
	return err
}

// settle lets the long-lived connections of a test, just opened, stay
// quiet for settlePause on every SNI-routed datapath; on xlb-splice it
// then waits, within spliceWait, until n more connections than before are
// spliced.
func settle(ep endpoint, before SpliceCount, n int) error {
	if ep.hello == nil {
		return nil
	}
	time.Sleep(settlePause)
	if ep.splice == nil {
		return nil
	}
	deadline := time.Now().Add(spliceWait)
	for {
		now, err := ep.splice()
		if err != nil {
			return err
		}
		if now.Spliced-before.Spliced >= uint64(n) || !time.Now().Before(deadline) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spliceCount is ep's splice counters now, zero for a datapath without.
func (ep endpoint) spliceCount() (SpliceCount, error) {
	if ep.splice == nil {
		return SpliceCount{}, nil
	}
	return ep.splice()
}

// spliceSince is what became of the connections routed since before.
func (ep endpoint) spliceSince(before SpliceCount) (SpliceCount, error) {
	now, err := ep.spliceCount()
	if err != nil {
		return SpliceCount{}, err
	}
	return now.sub(before), nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// streams measures n bulk streams to the sinks, in Gbit/s of payload the
// backends received.
func (b *benchLab) streams(target endpoint, n int, d time.Duration) (float64, window, error) {
	before, err := target.spliceCount()
	if err != nil {
		return 0, window{}, err
	}
	conns, err := b.dialAll(target, target.sink, n)
	if err != nil {
		return 0, window{}, err
	}
	if err := settle(target, before, n); err != nil {
		closeAll(conns)
		return 0, window{}, err
	}
	end := time.Now().Add(warmup(d) + d + slack)
	var wg sync.WaitGroup
	for _, c := range conns {
		c.SetDeadline(end)
		wg.Go(func() {
			buf := make([]byte, 128<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return // closed at the end of the window
				}
			}
		})
	}
	time.Sleep(warmup(d))
	bytes, w, err := b.measure(d, b.sinkBytes)
	if err == nil {
		w.splice, err = target.spliceSince(before)
	}
	closeAll(conns)
	wg.Wait()
	if err != nil {
		return 0, window{}, err
	}
	if bytes == 0 {
		return 0, w, errors.New("tcpbench: no bytes reached the backends")
	}
	return float64(bytes) * 8 / w.secs / 1e9, w, nil
}

// request sends one request on c and reads the bytes of each buffer in
// turn: its reply, or what came before it and its reply.
func request(c net.Conn, req []byte, reply ...[]byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	for _, r := range reply {
		if _, err := io.ReadFull(c, r); err != nil {
			return err
		}
	}
	return nil
}

// connRate measures short connections per second: clients loops of
// connect, one request, its reply, close. It also returns how many
// attempts failed in the window. On the SNI-routed datapaths a
// connection's opening is sent with its request, without waiting for the
// backend's answer (read with the reply), so that it costs no round trip
// more than on the others; such a short connection is never spliced.
func (b *benchLab) connRate(target endpoint, clients int, d time.Duration) (float64, uint64, window, error) {
	addr := netip.AddrPortFrom(target.addr, target.rr).String()
	var first []byte
	if target.hello != nil {
		first = slices.Concat(target.hello, clientFinished)
	}
	before, err := target.spliceCount()
	if err != nil {
		return 0, 0, window{}, err
	}
	var done, failed atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range clients {
		// The whole loop runs on a thread inside the client's namespace,
		// so each dial needs no namespace switch of its own.
		wg.Go(func() {
			_ = b.client.Do(func() error {
				var req [reqSize]byte
				var reply [replySize]byte
				var answer []byte // to serverFlight, read before the reply
				if first != nil {
					answer = make([]byte, len(serverFlight))
				}
				dialer := net.Dialer{Timeout: dialWait}
				for !stop.Load() {
					c, err := dialer.Dial("tcp4", addr)
					if err != nil {
						failed.Add(1)
						continue
					}
					c.SetDeadline(time.Now().Add(ioWait))
					if len(first) > 0 {
						_, err = c.Write(first)
					}
					if err == nil {
						err = request(c, req[:], answer, reply[:])
					}
					c.Close()
					if err != nil {
						failed.Add(1)
						continue
					}
					done.Add(1)
				}
				return nil
			})
		})
	}
	time.Sleep(warmup(d))
	f0 := failed.Load()
	n, w, err := b.measure(d, done.Load)
	f1 := failed.Load()
	stop.Store(true)
	wg.Wait()
	if err == nil {
		w.splice, err = target.spliceSince(before)
	}
	if err != nil {
		return 0, 0, window{}, err
	}
	if n == 0 {
		return 0, f1 - f0, w, fmt.Errorf("tcpbench: no connection completed (%d failed)", f1-f0)
	}
	return float64(n) / w.secs, f1 - f0, w, nil
}

// latencyResult is one latency window.
type latencyResult struct {
	hist   *Histogram
	rate   float64 // requests per second completed
	failed uint64
}

// latency paces rate requests per second over LatencyConns persistent
// connections and records each round trip.
func (b *benchLab) latency(target endpoint, rate float64, d time.Duration) (latencyResult, window, error) {
	before, err := target.spliceCount()
	if err != nil {
		return latencyResult{}, window{}, err
	}
	conns, err := b.dialAll(target, target.rr, LatencyConns)
	if err != nil {
		return latencyResult{}, window{}, err
	}
	defer closeAll(conns)
	if err := settle(target, before, len(conns)); err != nil {
		return latencyResult{}, window{}, err
	}
	var req [reqSize]byte
	var reply [replySize]byte
	for _, c := range conns {
		// The first request of each connection opens it end to end (a
		// proxy without an opening may connect to its backend only now).
		c.SetDeadline(time.Now().Add(ioWait))
		if err := request(c, req[:], reply[:]); err != nil {
			return latencyResult{}, window{}, fmt.Errorf("tcpbench: first request: %w", err)
		}
	}
	start := time.Now().Add(warmup(d))
	end := start.Add(d)
	perConn := rate / float64(len(conns))
	hists := make([]*Histogram, len(conns))
	var failed atomic.Uint64
	var wg sync.WaitGroup
	for i, c := range conns {
		hists[i] = NewHistogram()
		// Connections take turns: their schedules are offset evenly.
		p := newPacer(start.Add(time.Duration(float64(i)/rate*float64(time.Second))), perConn)
		c.SetDeadline(end.Add(slack))
		wg.Go(func() {
			var req [reqSize]byte
			var reply [replySize]byte
			for {
				intended, from := p.await(time.Now, time.Sleep)
				if !intended.Before(end) {
					return
				}
				if err := request(c, req[:], reply[:]); err != nil {
					failed.Add(1)
					return
				}
				hists[i].Record(time.Since(from))
			}
		})
	}
	time.Sleep(time.Until(start))
	_, w, err := b.measure(d, func() uint64 { return 0 })
	wg.Wait()
	if err == nil {
		w.splice, err = target.spliceSince(before)
	}
	if err != nil {
		return latencyResult{}, window{}, err
	}
	h := NewHistogram()
	for _, x := range hists {
		h.Merge(x)
	}
	if h.Count() == 0 {
		return latencyResult{}, w, fmt.Errorf("tcpbench: no request answered (%d connections failed)", failed.Load())
	}
	return latencyResult{hist: h, rate: float64(h.Count()) / d.Seconds(), failed: failed.Load()}, w, nil
}

// probe waits until a request through target is answered and target's
// splice counters, if it has them, can be read (xlb may open its control
// socket after its listeners), the process exits, or readyWait passes.
func (b *benchLab) probe(p *process, target endpoint) error {
	deadline := time.Now().Add(readyWait)
	var last error
	for time.Now().Before(deadline) {
		if done, err := p.exited(); done {
			return fmt.Errorf("tcpbench: %s exited before it was ready (%v): %s", p.name, err, p.log)
		}
		conns, err := b.dialAll(target, target.rr, 1)
		if err == nil {
			var req [reqSize]byte
			var reply [replySize]byte
			conns[0].SetDeadline(time.Now().Add(ioWait))
			err = request(conns[0], req[:], reply[:])
			closeAll(conns)
			if err == nil {
				_, err = target.spliceCount()
			}
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("tcpbench: %s not forwarding after %s: %v: %s", p.name, readyWait, last, p.log)
}
