package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/engine"
)

// runStats is the answer to the "stats" request: the engine's counters and,
// with [bgp], the speaker's status. Embedding keeps engine.Stats' JSON
// fields at the top level, so readers of the old answer still decode it.
type runStats struct {
	engine.Stats
	BGP *bgpStatus `json:"bgp,omitempty"`
}

// bgpStatus is the speaker's status, or why it could not be read.
type bgpStatus struct {
	bgp.Status
	Error string `json:"error,omitempty"`
}

// errNoBGP answers "bgp" requests of an instance without [bgp].
var errNoBGP = errors.New("no [bgp] in the running config: nothing is announced")

// speaker is xlb run's BGP side: the speaker of the config's [bgp], if any.
type speaker struct {
	sp *bgp.Speaker // nil without [bgp]
	// drain is bgp.drain of the config in force; a reload (on a control
	// socket goroutine) may change it while a stop reads it.
	drain atomic.Int64
	log   *slog.Logger
}

// startSpeaker starts the [bgp] speaker (nothing without one) and makes eng
// announce through it. Sessions come up in the background: an unreachable
// peer is logged and counted, never an error here.
func startSpeaker(cfg *config.Config, eng *engine.Engine, log *slog.Logger) (*speaker, error) {
	s := &speaker{log: log}
	s.drain.Store(int64(cfg.BGP.Drain))
	if !cfg.BGP.Enabled() {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp, err := bgp.Start(ctx, cfg.BGP.Speaker, log)
	if err != nil {
		return nil, err
	}
	s.sp = sp
	eng.AnnounceTo(sp)
	return s, nil
}

// reconfigure applies a reloaded config's peers (the engine has applied
// the rest, and re-announces the routes of its new VIPs itself). Peers
// whose settings did not change keep their sessions.
func (s *speaker) reconfigure(cfg *config.Config) error {
	if s.sp == nil {
		return nil
	}
	if err := s.sp.Reconfigure(cfg.BGP.Speaker); err != nil {
		return err
	}
	s.drain.Store(int64(cfg.BGP.Drain))
	return nil
}

// status is the speaker's status for the "stats" and "bgp" requests.
func (s *speaker) status() *bgpStatus {
	if s.sp == nil {
		return nil
	}
	st, err := s.sp.Status()
	if err != nil {
		return &bgpStatus{Error: err.Error()}
	}
	return &bgpStatus{Status: st}
}

// shutdown is the first step of a stop, while the datapath still forwards:
// stop following the engine, withdraw every route, wait the drain if the
// datapath still forwards (routers move the flows to other balancers),
// then close the sessions.
func (s *speaker) shutdown(eng *engine.Engine, forwarding bool) {
	if s.sp == nil {
		return
	}
	if err := eng.StopAnnouncing(); err != nil {
		s.log.Error("withdraw routes", "err", err)
	}
	if !forwarding {
		if err := s.sp.Close(); err != nil {
			s.log.Error("close bgp sessions", "err", err)
		}
		return
	}
	drain := time.Duration(s.drain.Load())
	s.log.Info("routes withdrawn; forwarding while routers converge", "drain", drain)
	if err := s.sp.Shutdown(context.Background(), drain); err != nil {
		s.log.Error("bgp shutdown", "err", err)
	}
}

func cmdBGP(e *env, args []string) int {
	var st bgpStatus
	if code, text := askInstance(e, "bgp", args, &st); !text {
		return code
	}
	printBGP(e.stdout, &st)
	return exitOK
}

// printBGP writes one line per peer and the announced routes.
func printBGP(w io.Writer, st *bgpStatus) {
	if st.Error != "" {
		fmt.Fprintf(w, "bgp: status unreadable: %s\n", st.Error)
		return
	}
	for _, p := range st.Peers {
		fmt.Fprintf(w, "peer %-16s as %-10d %-11s", p.Address, p.ASN, p.State)
		if p.State == bgp.StateEstablished {
			fmt.Fprintf(w, " up %-8s hold %s", p.Uptime.Round(time.Second), p.HoldTime)
		}
		fmt.Fprintf(w, "  advertised %d  received %d  established %d  drops %d  errors %d", p.Advertised, p.Received, p.Established, p.Drops, p.Errors)
		if p.LastError != "" {
			fmt.Fprintf(w, "  last error: %s", p.LastError)
		}
		fmt.Fprintln(w)
	}
	routes := make([]string, 0, len(st.Announced))
	for _, r := range st.Announced {
		s := r.Prefix.String()
		if len(r.Communities) > 0 {
			cs := make([]string, len(r.Communities))
			for i, c := range r.Communities {
				cs[i] = c.String()
			}
			s += " communities " + strings.Join(cs, ",")
		}
		if r.MED != 0 {
			s += fmt.Sprintf(" med %d", r.MED)
		}
		routes = append(routes, s)
	}
	fmt.Fprintf(w, "announced %d: %s\n", len(routes), strings.Join(routes, "; "))
}
