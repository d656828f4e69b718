package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	xcapture "github.com/xlbproject/xlb/capture"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/metrics"
	"github.com/xlbproject/xlb/privilege"
	"github.com/xlbproject/xlb/proxy"
)

func cmdRun(e *env, args []string) int {
	fs := newFlags(e, "run", "-c FILE [--log-json]")
	file := fs.String("c", "", "config file (TOML)")
	logJSON := fs.Bool("log-json", false, "log as JSON lines instead of text")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	log := newLogger(e.stderr, *logJSON)
	cfg, code := loadChecked(e, *file)
	if cfg == nil {
		return code
	}
	// Subscribe before attaching, so a signal that arrives while the
	// datapath comes up still detaches it.
	sigs := e.signals
	if sigs == nil {
		sigs = make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
	}
	eng, err := engine.Start(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		var ce *config.Error
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitFail
	}
	// The splice VIPs' proxy listens before capabilities are dropped: a
	// VIP port below 1024 needs CAP_NET_BIND_SERVICE.
	px, err := proxy.Start(cfg, log, eng.Handover())
	if err != nil {
		log.Error("start splice proxy", "err", err)
		if cerr := eng.Close(); cerr != nil {
			log.Error("detach", "err", cerr)
		}
		var ce *config.Error
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitFail
	}
	closeAll := func() error { return errors.Join(px.Close(), eng.Close()) }
	// Before the capabilities go: a listen_port below 1024 needs them.
	spk, err := startSpeaker(cfg, eng, log)
	if err != nil {
		log.Error("bgp", "err", err)
		if cerr := closeAll(); cerr != nil {
			log.Error("detach", "err", cerr)
		}
		return exitFail
	}
	// The datapath is up: from here on only what the package doc of
	// privilege lists is needed, on every thread. Dropped before the control
	// socket listens, so an instance that answers holds no more (a cmdRun
	// run in-process by a test would drop the test's own capabilities:
	// tests run the binary).
	if err := privilege.Drop(); err != nil {
		log.Error("drop capabilities", "err", err)
		spk.shutdown(eng, false)
		if cerr := closeAll(); cerr != nil {
			log.Error("detach", "err", cerr)
		}
		return exitFail
	}
	log.Info("capabilities dropped", "kept", privilege.Current())
	var reloads metrics.Reloads
	reloads.Record(nil, time.Now())
	// SIGHUP and `xlb reload` both read the file again; a file that fails
	// validation changes nothing and the reason goes back to the caller.
	reload := func() (_ []string, err error) {
		defer func() { reloads.Record(err, time.Now()) }()
		notifyReloading(log)
		defer notify(log, daemon.SdNotifyReady)
		next, err := config.Load(*file)
		if err == nil {
			err = eng.CheckHost(next)
		}
		if err != nil {
			return nil, err
		}
		// The proxy's part is prepared first and committed only if the
		// datapath's succeeds: a failed reload changes nothing.
		pending, err := px.Prepare(next)
		if err != nil {
			return nil, err
		}
		changes, err := eng.Reload(next)
		if err != nil {
			pending.Abort()
			return nil, err
		}
		pending.Commit()
		// After the datapath and the proxy: theirs is the part that can be
		// refused whole (restart keys included), and the peers in next
		// passed validation with it.
		if err := spk.reconfigure(next); err != nil {
			return changes, fmt.Errorf("datapath reloaded, but the bgp peers were not: %w", err)
		}
		return changes, nil
	}
	handlers := map[string]control.Handler{
		"stats": func(context.Context, json.RawMessage) (any, error) {
			st := eng.Stats()
			st.Splice = px.Stats()
			return runStats{Stats: st, BGP: spk.status()}, nil
		},
		"bgp": func(context.Context, json.RawMessage) (any, error) {
			if st := spk.status(); st != nil {
				return st, nil
			}
			return nil, errNoBGP
		},
		"capture": func(_ context.Context, args json.RawMessage) (any, error) {
			f, err := xcapture.ParseRequest(args)
			if err != nil {
				return nil, err
			}
			s, err := eng.Capture(f)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		"reload": func(context.Context, json.RawMessage) (any, error) {
			changes, err := reload()
			if err != nil {
				log.Error("reload refused; the running config stays", "err", err)
				return nil, err
			}
			return changes, nil
		},
	}
	maps.Copy(handlers, firewallHandlers(eng))
	srv, err := control.Listen(cfg.Control.Socket, handlers, log)
	if err != nil {
		code := exitFail
		// What sits at the path or its directory is the host disagreeing
		// with the file, as a missing interface is: a config error.
		if errors.Is(err, control.ErrNotSocket) || errors.Is(err, control.ErrUnsafeDir) {
			err, code = cfg.Errorf("control.socket", "%v", err), exitConfig
		}
		log.Error("control socket", "err", err)
		spk.shutdown(eng, false)
		if cerr := closeAll(); cerr != nil {
			log.Error("detach", "err", cerr)
		}
		return code
	}
	var msrv *metrics.Server
	if cfg.Metrics.Listen != "" {
		if msrv, err = metrics.Listen(metricsOptions(cfg), newMetricsSource(eng, px, spk, &reloads), log); err != nil {
			log.Error("metrics endpoint", "err", err)
			if cerr := srv.Close(); cerr != nil {
				log.Error("close control socket", "err", cerr)
			}
			spk.shutdown(eng, false)
			if cerr := closeAll(); cerr != nil {
				log.Error("detach", "err", cerr)
			}
			return exitFail
		}
		log.Info("metrics endpoint", "addr", msrv.Addr().String())
	}
	notify(log, daemon.SdNotifyReady)
	log.Info("xlb running", "config", cfg.File, "control", srv.Path(), "vips", len(cfg.VIPs), "queues", cfg.Datapath.Queues)
	code = exitOK
	forwarding := true
wait:
	for {
		select {
		case <-eng.Failed():
			// Logged by the engine; a dead datapath is no clean exit.
			log.Error("stopping: the datapath failed", "err", eng.Err())
			code, forwarding = exitFail, false
			break wait
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if _, err := reload(); err != nil {
					log.Error("reload refused; the running config stays", "err", err)
				}
				continue
			}
			log.Info("signal received, detaching", "signal", sig.String())
			break wait
		}
	}
	notify(log, daemon.SdNotifyStopping)
	// Routes first, while still forwarding: routers move the flows to the
	// other balancers during the drain, and only then does xlb detach. The
	// control socket and the metrics endpoint still answer meanwhile.
	spk.shutdown(eng, forwarding)
	if stopMetrics(msrv, log) != nil {
		code = exitFail
	}
	if err := srv.Close(); err != nil {
		log.Error("close control socket", "err", err)
		code = exitFail
	}
	if err := closeAll(); err != nil {
		log.Error("detach", "err", err)
		code = exitFail
	}
	log.Info("xlb stopped")
	return code
}

// loadChecked loads the file and checks it against this network namespace.
// On failure it prints the error and returns a nil config and the exit code.
func loadChecked(e *env, file string) (*config.Config, int) {
	if file == "" {
		fmt.Fprintln(e.stderr, "xlb: -c FILE is required")
		return nil, exitUsage
	}
	cfg, err := config.Load(file)
	if err == nil {
		err = checkMetrics(cfg)
	}
	if err == nil {
		err = cfg.CheckHost()
	}
	if err == nil {
		err = checkSocket(cfg)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return nil, exitConfig
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(e.stderr, "xlb: warning: %v\n", w)
	}
	return cfg, exitOK
}
