package proxy

import (
	"net"
	"time"

	"github.com/xlbproject/xlb/splice"
)

// Graces after the end of a spliced pair before its entries go: after both
// FINs, so the last ACK and retransmitted FINs still get through; after a
// reset, so a reset lost once can be sent again. A straggler after that
// reaches the kernel, which answers it with a reset.
const (
	finGrace   = 10 * time.Second
	resetGrace = time.Second
)

// checkSpliced ends a spliced pair that both peers closed, that a peer
// reset, or that moved nothing for idle_timeout, from what the datapath
// recorded.
func (p *Proxy) checkSpliced(c *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	st, err := p.handoff.Table.Status(c.slot)
	if err != nil {
		p.log.Error("splice pair status", "slot", c.slot, "err", err)
		return
	}
	last := max(st.LastPacket, c.splicedAt)
	quiet := monotonic() - last
	switch {
	case st.Reset:
		if quiet >= resetGrace {
			c.route.SplicedResets.Add(1)
			p.unsplice(c, false)
		}
	case st.FinFromClient && st.FinFromBackend:
		if quiet >= finGrace {
			p.unsplice(c, false)
		}
	case quiet >= c.idle:
		c.route.IdleTimeouts.Add(1)
		p.unsplice(c, true)
	}
}

// unsplice removes a spliced pair from the datapath, resets both peers
// first if reset, and closes its sockets, which in repair mode say nothing
// to their peers. c.mu is held.
func (p *Proxy) unsplice(c *conn, reset bool) {
	c.ended = true
	st, err := p.handoff.Table.Status(c.slot)
	if err != nil {
		p.log.Error("splice pair status", "slot", c.slot, "err", err)
	}
	if reset {
		p.resetPeers(c, st)
	}
	if err := p.handoff.Table.Delete(c.slot); err != nil {
		p.log.Error("remove a spliced pair", "slot", c.slot, "client", c.pair.Client.Remote, "err", err)
	}
	for _, s := range []*net.TCPConn{c.client, c.backend} {
		s.Close()
	}
	c.final = st
	close(c.unspliced)
}

// resetPeers resets both peers of a spliced pair, each at the sequence
// number it expects: the acknowledgement of its last packet the datapath
// saw (untranslated, so in its own connection's numbers), or without one,
// what its socket would have sent next at the splice.
func (p *Proxy) resetPeers(c *conn, st splice.Status) {
	toClient := c.pair.Client.SndNxt
	if st.Packets[splice.ClientToBackend] > 0 {
		toClient = st.LastAck[splice.ClientToBackend]
	}
	toBackend := c.pair.Backend.SndNxt
	if st.Packets[splice.BackendToClient] > 0 {
		toBackend = st.LastAck[splice.BackendToClient]
	}
	if err := p.rst.send(c.pair.Client.Local, c.pair.Client.Remote, toClient); err != nil {
		p.log.Warn("reset the client of a spliced pair", "client", c.pair.Client.Remote, "err", err)
	}
	if err := p.rst.send(c.pair.Backend.Local, c.pair.Backend.Remote, toBackend); err != nil {
		p.log.Warn("reset the backend of a spliced pair", "backend", c.pair.Backend.Remote, "err", err)
	}
}
