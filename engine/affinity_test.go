package engine

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReserveWorkerCPUs runs in a child process (it changes the affinity of
// every thread): with CPU 0 given to a worker, every thread of the process,
// and any thread made afterwards, runs on the other CPUs only.
func TestReserveWorkerCPUs(t *testing.T) {
	if os.Getenv("XLB_AFFINITY_CHILD") == "1" {
		var allowed unix.CPUSet
		if err := unix.SchedGetaffinity(0, &allowed); err != nil {
			t.Fatal(err)
		}
		reserved, err := reserveWorkerCPUs(allowed, []int{0})
		if err != nil || !reserved {
			t.Fatalf("reserve: %v %v", reserved, err)
		}
		// New OS threads must inherit the reservation.
		done := make(chan struct{})
		go func() { defer close(done); threadSpin() }()
		<-done
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &set); err != nil {
				continue
			}
			if set.IsSet(0) {
				t.Errorf("thread %d may still run on the worker's CPU 0", tid)
			}
		}
		return
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil || !allowed.IsSet(0) || allowed.Count() < 2 {
		t.Skip("needs CPU 0 and another CPU")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReserveWorkerCPUs$", "-test.v")
	cmd.Env = append(os.Environ(), "XLB_AFFINITY_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	// Nothing to reserve when the workers take every CPU.
	var cpus []int
	for c := range 1024 {
		if allowed.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if reserved, err := reserveWorkerCPUs(allowed, cpus); err != nil || reserved {
		t.Errorf("workers on every CPU: reserved %v, err %v", reserved, err)
	}
}

// threadSpin makes the runtime start more OS threads: goroutines blocked in
// system calls each hold one while the others need threads to run on.
func threadSpin() {
	ch := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { ch <- struct{}{} }()
			var ts unix.Timespec
			ts.Nsec = 2e6
			_ = unix.Nanosleep(&ts, nil)
		}()
	}
	for range 4 {
		<-ch
	}
}
