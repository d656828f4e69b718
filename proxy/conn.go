package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/sni"
	"github.com/xlbproject/xlb/splice"
)

// conn is one client connection, and once routed, its backend connection.
type conn struct {
	p      *Proxy
	client *net.TCPConn

	mu      sync.Mutex
	backend *net.TCPConn // nil until connected
	route   *RouteCounters
	back    *BackendCounters
	idle    time.Duration
	ended   bool

	// Once handed to the datapath (both sockets then in repair mode):
	spliced   bool
	slot      splice.Slot
	pair      splice.Pair
	splicedAt time.Duration // monotonic
	unspliced chan struct{} // closed when the entries are removed
	final     splice.Status // the datapath's counters then

	// Only the sweeper reads and writes these.
	lastBytes  uint64
	lastChange time.Time
}

// connSet is every connection the proxy serves, for the idle sweeper and
// Close.
type connSet struct {
	mu     sync.Mutex
	m      map[*conn]struct{}
	closed bool
}

func (s *connSet) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c *conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) snapshot() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.m))
	for c := range s.m {
		out = append(out, c)
	}
	return out
}

// abortAll resets every connection, and every one added later.
func (s *connSet) abortAll() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, c := range s.snapshot() {
		c.end(true)
	}
}

// setBackend records the routed backend connection; false if the
// connection was ended meanwhile (Close), and be is then reset.
func (c *conn) setBackend(be *net.TCPConn, route *RouteCounters, back *BackendCounters, idle time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		be.SetLinger(0)
		be.Close()
		return false
	}
	c.backend, c.route, c.back, c.idle = be, route, back, idle
	return true
}

// end closes both connections, once; reset closes them with SO_LINGER 0,
// which sends RST instead of FIN and leaves no socket in FIN_WAIT or
// TIME_WAIT behind. A spliced pair is removed from the datapath, and its
// peers reset (by the resetter: its sockets can say nothing).
func (c *conn) end(reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if c.spliced {
		c.p.unsplice(c, reset)
		return
	}
	c.ended = true
	for _, s := range []*net.TCPConn{c.client, c.backend} {
		if s == nil {
			continue
		}
		if reset {
			s.SetLinger(0)
		}
		s.Close()
	}
}

// refuse resets a connection that cannot be routed and counts why.
func (p *Proxy) refuse(l *listener, c *conn, r Reason, err error) {
	l.refused[r].Add(1)
	p.log.Debug("splice connection refused", "vip", l.addr, "client", c.client.RemoteAddr().String(), "reason", r.String(), "err", err)
	c.end(true)
}

// serve routes one accepted connection and proxies it until it ends.
func (p *Proxy) serve(l *listener, client *net.TCPConn) {
	defer p.serving.Done()
	c := &conn{p: p, client: client}
	if !p.conns.add(c) {
		client.SetLinger(0)
		client.Close()
		return
	}
	defer p.conns.remove(c)
	l.active.Add(1)
	defer l.active.Add(-1)

	st := l.state.Load()
	set := st.cfg.Splice
	buf := make([]byte, set.HelloMaxBytes)
	client.SetReadDeadline(time.Now().Add(set.HelloTimeout))
	hello, n, r, err := readHello(client, buf)
	if err != nil {
		p.refuse(l, c, r, err)
		return
	}
	name := hello.ServerName()
	ri, bi := st.pick(name, addrPort(client.RemoteAddr()), addrPort(client.LocalAddr()))
	if ri < 0 {
		r := UnknownSNI
		if len(name) == 0 {
			r = NoSNI
		}
		p.refuse(l, c, r, errors.New("no route for server name "+string(name)))
		return
	}
	rs := &st.routes[ri]
	if bi < 0 {
		rs.counters.NoBackend.Add(1)
		p.refuse(l, c, NoBackend, errors.New("route "+rs.cfg.Name()+" has no backend up with a weight"))
		return
	}
	b, bc := rs.cfg.Backends[bi], rs.backends[bi]
	d := net.Dialer{Timeout: set.ConnectTimeout}
	if p.handoff != nil {
		d.Control = clampMSS(client)
	}
	bconn, err := d.DialContext(p.ctx, "tcp", netip.AddrPortFrom(b.Address, st.cfg.Port).String())
	if err != nil {
		bc.ConnectFailed.Add(1)
		rs.counters.ConnectFailed.Add(1)
		p.refuse(l, c, BackendConnectFailed, err)
		return
	}
	be := bconn.(*net.TCPConn)
	if !c.setBackend(be, rs.counters, bc, set.IdleTimeout) {
		return
	}
	client.SetReadDeadline(time.Time{})
	for _, a := range []*activeCounters{&rs.counters.activeCounters, &bc.activeCounters} {
		a.Connections.Add(1)
		a.Active.Add(1)
		defer a.Active.Add(-1)
	}

	var up, down int64
	if _, err := be.Write(buf[:n]); err != nil {
		c.failed()
	} else {
		up, down = p.pipe(c, n)
	}
	up += int64(n)
	for _, a := range []*activeCounters{&rs.counters.activeCounters, &bc.activeCounters} {
		a.BytesUp.Add(uint64(up))
		a.BytesDown.Add(uint64(down))
	}
	if c.unspliced == nil {
		return
	}
	<-c.unspliced
	for _, a := range []*activeCounters{&rs.counters.activeCounters, &bc.activeCounters} {
		a.Spliced.Add(-1)
		a.SplicedPacketsUp.Add(c.final.Packets[splice.ClientToBackend])
		a.SplicedPacketsDown.Add(c.final.Packets[splice.BackendToClient])
		a.SplicedBytesUp.Add(c.final.Bytes[splice.ClientToBackend])
		a.SplicedBytesDown.Add(c.final.Bytes[splice.BackendToClient])
	}
}

// readHello reads until buf holds a ClientHello, within the read deadline
// already set. It returns the hello, the bytes read (the hello and any that
// followed it in the same reads), and on error the reason to count.
func readHello(c *net.TCPConn, buf []byte) (sni.Hello, int, Reason, error) {
	n := 0
	for {
		h, need, err := sni.Parse(buf[:n], len(buf))
		if err == nil {
			return h, n, 0, nil
		}
		if !errors.Is(err, sni.ErrIncomplete) {
			var se *sni.Error
			errors.As(err, &se)
			return h, n, reasonOf(se.Reason), err
		}
		for n < need {
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return h, n, Timeout, err
				}
				return h, n, ClientClosed, err
			}
		}
	}
}

func reasonOf(r sni.Reason) Reason {
	switch r {
	case sni.NotTLS:
		return NotTLS
	case sni.TooLarge:
		return TooLarge
	}
	return Malformed
}

func addrPort(a net.Addr) netip.AddrPort {
	ta, _ := a.(*net.TCPAddr)
	if ta == nil {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// copyEnd is how one direction's copy ended.
type copyEnd struct {
	up  bool // client to backend
	n   int64
	err error
}

// pipe copies both directions until both have ended, and returns the
// bytes copied each way. With a Handover it hands the pair to the datapath
// once it is quiescent: it interrupts both copies (a read deadline in the
// past: a copy that read bytes has written them when it returns), tries
// (handover), and on success returns with the copies stopped and the pair
// spliced; else it resumes the copies.
func (p *Proxy) pipe(c *conn, hello int) (up, down int64) {
	done := make(chan copyEnd, 2)
	start := func(isUp bool) {
		dst, src := c.client, c.backend
		if isUp {
			dst, src = c.backend, c.client
		}
		go func() {
			n, err := io.Copy(dst, src)
			done <- copyEnd{isUp, n, err}
		}()
	}
	add := func(e copyEnd) {
		if e.up {
			up += e.n
		} else {
			down += e.n
		}
	}
	// ended handles a copy that ended by itself: src's FIN, passed on as
	// dst's (a half-close: the other direction goes on), or an error.
	ended := func(e copyEnd) {
		if e.err != nil {
			c.failed()
			return
		}
		if e.up {
			c.backend.CloseWrite()
		} else {
			c.client.CloseWrite()
		}
	}
	start(true)
	start(false)
	running := 2

	var tickC <-chan time.Time
	var tick *time.Timer
	watch := quietWatch{hello: uint64(hello)}
	tries := 0
	keep := func(k Kept, err error) {
		c.route.Kept[k].Add(1)
		c.back.Kept[k].Add(1)
		if k == HandoverFailed {
			p.log.Warn("splice hand-over failed; the pair stays copied", "client", addrPort(c.client.RemoteAddr()), "err", err)
		}
		tickC = nil
	}
	if p.handoff != nil {
		tick = time.NewTimer(watch.interval(c.client, c.backend))
		defer tick.Stop()
		tickC = tick.C
	}
	for running > 0 {
		select {
		case e := <-done:
			running--
			add(e)
			ended(e)
			if tickC != nil {
				keep(ClosedFirst, nil)
			}
		case <-tickC:
			if !watch.idle(c.client, c.backend) {
				tick.Reset(watch.interval(c.client, c.backend))
				continue
			}
			past := time.Unix(1, 0)
			c.client.SetReadDeadline(past)
			c.backend.SetReadDeadline(past)
			var stopped []bool // directions interrupted, not ended
			for ; running > 0; running-- {
				e := <-done
				add(e)
				if errors.Is(e.err, os.ErrDeadlineExceeded) {
					stopped = append(stopped, e.up)
				} else {
					ended(e)
				}
			}
			c.client.SetReadDeadline(time.Time{})
			c.backend.SetReadDeadline(time.Time{})
			if len(stopped) == 2 {
				err := p.handover(c)
				if err == nil {
					return up, down
				}
				var ke *keptError
				switch {
				case errors.As(err, &ke):
					keep(ke.kept, ke.err)
				case errors.Is(err, errNotQuiet):
					if tries++; tries >= maxTries {
						keep(NotQuiescent, err)
					}
				}
			} else {
				keep(ClosedFirst, nil)
			}
			for _, isUp := range stopped {
				start(isUp)
				running++
			}
			if tickC != nil {
				tick.Reset(watch.interval(c.client, c.backend))
			}
		}
	}
	c.end(false)
	return up, down
}

// failed ends a pair whose copy failed: a peer reset its connection (the
// socket is then in TCP_CLOSE), and the other peer gets a reset too; or
// the proxy ended the pair itself (idle, Close), which has reset both.
func (c *conn) failed() {
	c.mu.Lock()
	ended, route := c.ended, c.route
	c.mu.Unlock()
	if ended {
		return
	}
	switch {
	case tcpState(c.client) == tcpClose:
		route.ClientResets.Add(1)
	case tcpState(c.backend) == tcpClose:
		route.BackendResets.Add(1)
	}
	c.end(true)
}

// tcpInfo reads a socket's TCP_INFO; false once it is closed.
func tcpInfo(s *net.TCPConn) (*unix.TCPInfo, bool) {
	rc, err := s.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return nil, false
	}
	return info, true
}

func tcpState(s *net.TCPConn) uint8 {
	info, ok := tcpInfo(s)
	if !ok {
		return 0
	}
	return info.State
}

// sweep resets connections idle for longer than their VIP's idle_timeout.
// It reads the byte counters of the sockets (TCP_INFO) rather than counting
// in the copy, so that the copy can stay in the kernel (splice).
func (p *Proxy) sweep() {
	defer p.serving.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			for _, c := range p.conns.snapshot() {
				c.checkIdle(now)
			}
		}
	}
}

func (c *conn) checkIdle(now time.Time) {
	c.mu.Lock()
	be, idle, route, ended, spliced := c.backend, c.idle, c.route, c.ended, c.spliced
	c.mu.Unlock()
	if spliced {
		c.p.checkSpliced(c)
		return
	}
	if be == nil || ended {
		return
	}
	ci, ok1 := tcpInfo(c.client)
	bi, ok2 := tcpInfo(be)
	if !ok1 || !ok2 {
		return
	}
	moved := ci.Bytes_received + ci.Bytes_acked + bi.Bytes_received + bi.Bytes_acked
	if moved != c.lastBytes || c.lastChange.IsZero() {
		c.lastBytes, c.lastChange = moved, now
		return
	}
	if now.Sub(c.lastChange) >= idle {
		route.IdleTimeouts.Add(1)
		c.end(true)
	}
}

// tcpClose is the kernel's TCP_CLOSE state (include/net/tcp_states.h),
// where a socket is after it received a reset.
const tcpClose = unix.BPF_TCP_CLOSE
