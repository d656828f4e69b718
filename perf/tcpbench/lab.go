package tcpbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/lab"
)

// The lab's addressing, all inside 198.18.0.0/15.
var (
	// vip is xlb's VIP: on the backends' lo (they receive it
	// decapsulated), never on the balancer, whose XDP program takes it.
	vip = netip.MustParseAddr("198.18.100.1")
	// proxyVIP is where the proxies listen: on the balancer's lo, as a
	// proxy's service address is. A separate address keeps the kernel of
	// the balancer from ever answering for xlb's VIP.
	proxyVIP = netip.MustParseAddr("198.18.100.2")
	vipNet   = netip.MustParsePrefix("198.18.100.0/24")
	beAddrs  = []netip.Prefix{lab.BalancerBackend(0), lab.BalancerBackend(1)}
)

// Ports of the servers every backend runs on all its addresses.
const (
	sinkPort = 5001 // reads and discards, counting bytes
	rrPort   = 5002 // answers each reqSize-byte request with replySize bytes
	// The same two behind the TLS-like opening that each connection of
	// an SNI-routed datapath starts with (skipHello).
	sniSinkPort = 5011
	sniRRPort   = 5012
	// sniName is the server name the SNI-routed datapaths route by.
	sniName = "bench.example.com"
	reqSize = 64
	// replySize is small on purpose: the test measures the balancer's
	// per-connection and per-request cost, not bandwidth.
	replySize = 64
)

// benchLab is the running lab: client, lb and two backends on one bridge,
// each backend with `xlb decap` attached and the sink and request/response
// servers on every address.
type benchLab struct {
	*lab.Lab
	client, lb *lab.Host
	backends   []*lab.Host
	servers    []*server
	lbNetns    string // netnsID of the balancer's namespace
	hello      []byte // a ClientHello for sniName
}

// newBenchLab builds the lab; xlb is the binary whose `decap attach` runs
// on the backends. On error it removes what it made.
func newBenchLab(prefix, xlb string) (_ *benchLab, err error) {
	if err := lab.Cleanup(prefix); err != nil {
		return nil, fmt.Errorf("tcpbench: %w", err)
	}
	// A short connection's closer keeps a TIME_WAIT entry for 60 s: reuse
	// them (timestamps make it safe) and widen the ephemeral range, on the
	// client and on the balancer, which dials the backends for the proxies.
	manyConns := map[string]string{
		"net.ipv4.tcp_tw_reuse":        "1",
		"net.ipv4.ip_local_port_range": "1024 65535",
	}
	spec := lab.BalancerSpec(prefix, vip, len(beAddrs))
	client, lb := &spec.Hosts[0], &spec.Hosts[1]
	// The client reaches the proxies' VIP through the balancer too.
	client.Routes = []lab.Route{{Dst: vipNet, Via: lb.Addr.Addr()}}
	client.Sysctls, lb.Sysctls = manyConns, manyConns
	lb.LoAddrs = []netip.Prefix{netip.PrefixFrom(proxyVIP, 32)}
	l, err := lab.New(spec)
	if err != nil {
		return nil, fmt.Errorf("tcpbench: %w", err)
	}
	b := &benchLab{Lab: l, client: l.Hosts["client"], lb: l.Hosts["lb"]}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
		}
	}()
	if b.hello, err = lab.ClientHello(sniName); err != nil {
		return nil, fmt.Errorf("tcpbench: %w", err)
	}
	err = b.lb.Do(func() error {
		b.lbNetns, err = netnsID("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range beAddrs {
		h := l.Hosts[fmt.Sprintf("be%d", i+1)]
		b.backends = append(b.backends, h)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := h.Run(ctx, xlb, "decap", "attach", "--interface", lab.HostLink, "--allow-source", lb.Addr.Addr().String())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("tcpbench: %w", err)
		}
		// 0.0.0.0: the VIP for xlb's decapsulated traffic, the backend's
		// own address for the proxies.
		s, err := startServer(h)
		if err != nil {
			return nil, err
		}
		b.servers = append(b.servers, s)
	}
	return b, nil
}

// Close stops the servers and deletes the namespaces.
func (b *benchLab) Close() error {
	var errs []error
	for _, s := range b.servers {
		errs = append(errs, s.close())
	}
	errs = append(errs, b.Lab.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tcpbench: close lab: %w", err)
	}
	return nil
}

// sinkBytes is what the backends' sinks have received so far.
func (b *benchLab) sinkBytes() uint64 {
	var n uint64
	for _, s := range b.servers {
		n += s.sunk.Load()
	}
	return n
}

// endpoint is where a datapath's clients connect, and what each of their
// connections sends first.
type endpoint struct {
	addr     netip.Addr
	sink, rr uint16
	// hello is a TLS ClientHello for sniName for the SNI-routed datapaths
	// (the start of the opening skipHello answers), nil for the others.
	hello []byte
	// splice reads xlb's splice counters, summed over its splice VIPs;
	// nil for the datapaths that have none.
	splice func() (SpliceCount, error)
}

// plain is the endpoint of a datapath that forwards by address and port.
func plain(addr netip.Addr) endpoint { return endpoint{addr: addr, sink: sinkPort, rr: rrPort} }

// server is a backend's listeners and their connections.
type server struct {
	lns      []net.Listener
	sunk     atomic.Uint64 // bytes the sink read
	answered atomic.Uint64 // replies the rr server wrote

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startServer(h *lab.Host) (*server, error) {
	s := &server{conns: map[net.Conn]struct{}{}}
	for port, handle := range map[int]func(net.Conn){
		sinkPort: s.discard, rrPort: s.answer,
		sniSinkPort: skipHello(s.discard), sniRRPort: skipHello(s.answer),
	} {
		ln, err := h.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("tcpbench: %w", err), s.close())
		}
		s.lns = append(s.lns, ln)
		s.wg.Add(1)
		go s.accept(ln, handle)
	}
	return s, nil
}

// The rest of the TLS-like opening of an SNI-routed connection, after the
// client's ClientHello: the backend answers it with serverFlight (as a
// server's hello flight) and the client then sends clientFinished (its
// last handshake flight). They are opaque TLS records of the sizes named:
// no cryptography, only the shape of a handshake, which is what a
// passthrough balancer sees and what xlb's splice waits for (the backend
// has answered and the client sent more than its hello).
var (
	serverFlight   = tlsRecord(0x16, 128)
	clientFinished = tlsRecord(0x16, 64)
)

// tlsRecord is a record of type typ with n zero bytes of payload.
func tlsRecord(typ byte, n int) []byte {
	r := make([]byte, 5+n)
	r[0], r[1], r[2] = typ, 3, 3
	binary.BigEndian.PutUint16(r[3:], uint16(n))
	return r
}

// skipRecord reads one TLS record and discards it.
func skipRecord(c net.Conn) error {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(hdr[3:])))
	return err
}

// skipHello plays the backend's side of the opening: it reads the
// client's ClientHello (passed through by an SNI-routed datapath), answers
// serverFlight, reads the client's finishing record, then hands the
// connection to handle.
func skipHello(handle func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		if skipRecord(c) != nil {
			return
		}
		if _, err := c.Write(serverFlight); err != nil {
			return
		}
		if skipRecord(c) != nil {
			return
		}
		handle(c)
	}
}

func (s *server) accept(ln net.Listener, handle func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.conns == nil { // closing
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *server) discard(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		s.sunk.Add(uint64(n))
		if err != nil {
			return
		}
	}
}

func (s *server) answer(c net.Conn) {
	var req [reqSize]byte
	var reply [replySize]byte
	for {
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		if _, err := c.Write(reply[:]); err != nil {
			return
		}
		s.answered.Add(1)
	}
}

// close stops the listeners, closes every connection and waits.
func (s *server) close() error {
	var errs []error
	for _, ln := range s.lns {
		errs = append(errs, ln.Close())
	}
	err := errors.Join(errs...)
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("tcpbench: close server: %w", err)
	}
	return nil
}
