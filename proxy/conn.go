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
)

// conn is one client connection, and once routed, its backend connection.
type conn struct {
	client *net.TCPConn

	mu      sync.Mutex
	backend *net.TCPConn // nil until connected
	route   *RouteCounters
	idle    time.Duration
	ended   bool

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
func (c *conn) setBackend(be *net.TCPConn, route *RouteCounters, idle time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		be.SetLinger(0)
		be.Close()
		return false
	}
	c.backend, c.route, c.idle = be, route, idle
	return true
}

// end closes both connections, once; reset closes them with SO_LINGER 0,
// which sends RST instead of FIN and leaves no socket in FIN_WAIT or
// TIME_WAIT behind.
func (c *conn) end(reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
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
	c := &conn{client: client}
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
	bconn, err := d.DialContext(p.ctx, "tcp", netip.AddrPortFrom(b.Address, st.cfg.Port).String())
	if err != nil {
		bc.ConnectFailed.Add(1)
		rs.counters.ConnectFailed.Add(1)
		p.refuse(l, c, BackendConnectFailed, err)
		return
	}
	be := bconn.(*net.TCPConn)
	if !c.setBackend(be, rs.counters, set.IdleTimeout) {
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
		up, down = c.pipe()
	}
	up += int64(n)
	for _, a := range []*activeCounters{&rs.counters.activeCounters, &bc.activeCounters} {
		a.BytesUp.Add(uint64(up))
		a.BytesDown.Add(uint64(down))
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

// pipe copies both directions until both have ended, and returns the
// bytes copied each way.
func (c *conn) pipe() (up, down int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		up = c.copy(c.backend, c.client)
	}()
	down = c.copy(c.client, c.backend)
	wg.Wait()
	c.end(false)
	return up, down
}

// copy copies src to dst until src's FIN, which it passes on as dst's
// (a half-close: the other direction goes on), or an error.
func (c *conn) copy(dst, src *net.TCPConn) int64 {
	n, err := io.Copy(dst, src)
	if err == nil {
		dst.CloseWrite()
		return n
	}
	c.failed()
	return n
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
	be, idle, route, ended := c.backend, c.idle, c.route, c.ended
	c.mu.Unlock()
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
