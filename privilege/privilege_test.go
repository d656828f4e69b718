package privilege

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"

	"github.com/xlbproject/xlb/internal/testenv"
)

// childEnv marks the re-executed test binary that drops its capabilities:
// a drop cannot be undone, so it never happens in the test process itself.
const childEnv = "XLB_PRIVILEGE_CHILD"

// TestDrop runs the drop in a child process built as this test binary is
// (cgo or not) and in one built the other way, so both psx mechanisms
// (libpsx and syscall.AllThreadsSyscall) are exercised.
func TestDrop(t *testing.T) {
	testenv.Root(t, "drops capabilities in a child process started with all of them")
	t.Run(cgoName(builtWithCgo), func(t *testing.T) { runChild(t, os.Args[0]) })
	t.Run(cgoName(!builtWithCgo), func(t *testing.T) {
		gobin := testenv.Tool(t, "go")
		if !builtWithCgo { // CGO_ENABLED=0 needs no C compiler, 1 does
			testenv.Tool(t, "gcc")
		}
		bin := filepath.Join(t.TempDir(), "privilege.test")
		cmd := exec.Command(gobin, "test", "-c", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "0", false: "1"}[builtWithCgo])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test -c: %v\n%s", err, out)
		}
		runChild(t, bin)
	})
}

func cgoName(cgo bool) string {
	if cgo {
		return "cgo"
	}
	return "nocgo"
}

func runChild(t *testing.T, bin string) {
	cmd := exec.Command(bin, "-test.run=^TestDropChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestDropChild is the child's half of TestDrop: it starts threads locked
// to goroutines (as the datapath's workers are), drops, and checks every
// thread of the process.
func TestDropChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("run by TestDrop in a child process")
	}
	const locked = 4
	type report struct {
		caps string
		nnp  int
		err  error
	}
	check, reports, release := make(chan struct{}), make(chan report), make(chan struct{})
	for range locked {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-check
			nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
			reports <- report{cap.GetProc().String(), nnp, err}
			<-release
		}()
	}
	defer close(release)

	if err := Drop(); err != nil {
		t.Fatal(err)
	}
	want := "cap_net_bind_service,cap_net_admin=ep"
	if got := Current(); got != want {
		t.Errorf("after Drop: %q, want %q", got, want)
	}
	close(check)
	for range locked {
		r := <-reports
		if r.caps != want || r.nnp != 1 || r.err != nil {
			t.Errorf("locked thread after Drop: caps %q no_new_privs %d (%v), want %q and 1", r.caps, r.nnp, r.err, want)
		}
	}

	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d threads", len(tids))
	if len(tids) <= locked {
		t.Errorf("only %d threads: the locked goroutines did not get threads of their own", len(tids))
	}
	for _, d := range tids {
		tid, err := strconv.Atoi(d.Name())
		if err != nil {
			t.Fatal(err)
		}
		set, err := cap.GetPID(tid)
		if err != nil {
			t.Fatal(err)
		}
		iab, err := cap.IABGetPID(tid)
		if err != nil {
			t.Fatal(err)
		}
		// The IAB text lists what is inheritable, ambient (^) or out of the
		// bounding set (!): everything but Kept is out, nothing is
		// inheritable or ambient.
		if set.String() != want {
			t.Errorf("thread %d: %q, want %q", tid, set, want)
		}
		for v := range cap.MaxBits() {
			inh, _ := iab.GetVector(cap.Inh, v)
			amb, _ := iab.GetVector(cap.Amb, v)
			notBound, _ := iab.GetVector(cap.Bound, v)
			if inh || amb || notBound == slices.Contains(Kept, v) {
				t.Errorf("thread %d: %s inheritable %v ambient %v dropped from bounding set %v", tid, v, inh, amb, notBound)
			}
		}
	}

	// What was dropped is really gone: an AF_XDP socket needs CAP_NET_RAW.
	if fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0); err != unix.EPERM {
		unix.Close(fd)
		t.Errorf("AF_XDP socket after Drop: %v, want EPERM", err)
	}
}
