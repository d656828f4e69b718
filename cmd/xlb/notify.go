package main

import (
	"fmt"
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notify tells systemd (Type=notify, deploy/xlb.service) the service's
// state: READY=1 once the datapath forwards, RELOADING=1 and READY=1 around
// a reload, STOPPING=1 on shutdown. Without NOTIFY_SOCKET it does nothing.
// A failure is logged, never fatal: the datapath works without systemd.
func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
	}
}

// notifyReloading is RELOADING=1 with the CLOCK_MONOTONIC timestamp newer
// systemd versions (253+) expect beside it, so they can match the READY=1
// that ends the reload to this one.
func notifyReloading(log *slog.Logger) {
	var ts unix.Timespec
	state := daemon.SdNotifyReloading
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		state += fmt.Sprintf("\nMONOTONIC_USEC=%d", ts.Nano()/1000)
	}
	notify(log, state)
}
