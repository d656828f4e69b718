package engine

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/config"
)

// reserveWorkerCPUs keeps xlb's own other threads (the control plane:
// reloads, table builds, health checks, the garbage collector) off the
// workers' CPUs when the process may use other CPUs: a table build then
// never takes a worker's core. It sets the affinity of every thread the
// process has now to the allowed CPUs minus the workers'; threads created
// later inherit it (Go creates them from threads that are not locked
// workers), and each worker then pins its own thread to its CPU. When the
// workers use every allowed CPU there is nothing to reserve and it returns
// false.
func reserveWorkerCPUs(allowed unix.CPUSet, workers []int) (bool, error) {
	control := allowed
	for _, c := range workers {
		control.Clear(c)
	}
	if control.Count() == 0 {
		return false, nil
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false, fmt.Errorf("engine: list threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that exited meanwhile is no error.
		if err := unix.SchedSetaffinity(tid, &control); err != nil && err != unix.ESRCH {
			return false, fmt.Errorf("engine: set affinity of thread %d: %w", tid, err)
		}
	}
	return true, nil
}

// CheckHost checks a config for this engine's host (a reload), resolving
// default CPUs against the CPUs the process had when it started.
func (e *Engine) CheckHost(cfg *config.Config) error {
	return cfg.CheckHostCPUs(e.allowed)
}
