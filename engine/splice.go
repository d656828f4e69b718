package engine

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/proxy"
	"github.com/xlbproject/xlb/splice"
)

// Handover is what the splice proxy needs to hand established pairs to the
// steering program: its splice table and the next hops toward the peers,
// found as the backends' are. nil in native mode or with splice_table_size
// 0: the proxy then copies every pair.
func (e *Engine) Handover() *proxy.Handover {
	if e.splice == nil {
		return nil
	}
	return &proxy.Handover{Table: e.splice, Hop: e.spliceHop}
}

func (e *Engine) spliceHop(peer netip.Addr) (splice.Hop, error) {
	mac, ok, err := nextHop(e.ifindex, peer)
	switch {
	case errors.Is(err, errNotRouted):
		return splice.Hop{}, fmt.Errorf("%w: %w", proxy.ErrOtherInterface, err)
	case err != nil:
		return splice.Hop{}, err
	case !ok:
		return splice.Hop{}, fmt.Errorf("%s: %w", peer, proxy.ErrNoNeighbor)
	}
	return splice.Hop{Ifindex: e.ifindex, Src: e.srcMAC, Dst: mac}, nil
}
