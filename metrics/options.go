package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Options configure the endpoint ([metrics] in the config file). The
// endpoint is off when Listen is empty.
type Options struct {
	// Listen is the TCP address to serve on, HOST:PORT with HOST an IP
	// address or "localhost" (an empty HOST means every address).
	Listen string
	// AllowRemote permits a Listen address that is not loopback.
	AllowRemote bool
}

// ErrNotLoopback is wrapped by Validate's error for a non-loopback Listen
// address without AllowRemote.
var ErrNotLoopback = errors.New("not a loopback address: the endpoint exposes backend addresses and traffic volumes and has no authentication; set allow_remote = true to serve other hosts (behind a firewall or an authenticating proxy)")

// Validate checks Listen and the loopback rule. Its errors name the address
// but not the config key: the caller adds FILE:LINE: KEY.
func (o Options) Validate() error {
	if o.Listen == "" {
		return errors.New("empty listen address")
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", o.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("listen address %q: port %q is not a number 0-65535", o.Listen, port)
	}
	loopback := host == "localhost"
	if !loopback && host != "" {
		// A host name could resolve to anything, and to something else
		// tomorrow: only addresses say where the endpoint is reachable.
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("listen address %q: host %q is not an IP address or localhost", o.Listen, host)
		}
		loopback = addr.Unmap().IsLoopback()
	}
	if !loopback && !o.AllowRemote {
		return fmt.Errorf("listen address %q: %w", o.Listen, ErrNotLoopback)
	}
	return nil
}
