package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
)

// captureRun is an `xlb capture` running in the balancer's namespace.
type captureRun struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan error
}

// startCapture runs `xlb capture` with args, its standard output to out,
// and waits (bounded) until it says it is capturing. It is interrupted and
// reaped when the test ends, if the test has not done so.
func startCapture(t *testing.T, l *lbLab, out io.Writer, args ...string) *captureRun {
	t.Helper()
	c := &captureRun{stderr: &lockedBuffer{}, done: make(chan error, 1)}
	c.cmd = l.lb.Command(context.Background(), xlbBin, append([]string{"capture", "--socket", l.socketPath()}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = out, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(c.stderr.String(), "capturing on"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-c.done:
			t.Fatalf("xlb capture exited before capturing: %v: %s", err, c.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xlb capture not capturing after 20s: %s", c.stderr.String())
		}
	}
	return c
}

// stop interrupts the capture as ^C does and waits for it; it returns the
// frames captured and lost it reported.
func (c *captureRun) stop(t *testing.T) (captured, lost int) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	return c.wait(t)
}

func (c *captureRun) wait(t *testing.T) (captured, lost int) {
	t.Helper()
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("xlb capture: %v: %s", err, c.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("xlb capture did not exit: %s", c.stderr.String())
	}
	m := regexp.MustCompile(`(\d+) frames captured, (\d+) lost`).FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("xlb capture printed no summary: %s", c.stderr.String())
	}
	captured, _ = strconv.Atoi(m[1])
	lost, _ = strconv.Atoi(m[2])
	return captured, lost
}

// tsharkFrame is one frame as tshark decodes it.
type tsharkFrame struct {
	iface, dir, comment string
	srcs, dsts, protos  []string // per IP layer, outer first
	tcpDst              string
	tcpFlags            string
}

// readPcapng decodes file with tshark.
func readPcapng(t *testing.T, tshark, file string) []tsharkFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tshark, "-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "frame.comment",
		"-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto", "-e", "tcp.dstport", "-e", "tcp.flags").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("tshark -r %s: %v: %s", file, err, stderr)
	}
	var frames []tsharkFrame
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		if len(f) != 8 {
			t.Fatalf("tshark line %q: %d fields", sc.Text(), len(f))
		}
		frames = append(frames, tsharkFrame{iface: f[0], dir: f[1], comment: f[2],
			srcs: strings.Split(f[3], ","), dsts: strings.Split(f[4], ","), protos: strings.Split(f[5], ","), tcpDst: f[6], tcpFlags: f[7]})
	}
	return frames
}

// TestCapture: `xlb capture` during real HTTP traffic writes pcapng that
// tshark reads: every frame to the VIP as received (one IPv4 header, TCP to
// port 80) and as sent (IPIP from the balancer to the backend the comment
// names, around the same TCP segment), as many sent as received, a SYN per
// connection; --backend keeps one backend's frames; --count stops by
// itself; and `xlb capture -w - | tshark -r -` works. In both modes: the
// AF_XDP workers' rings, the native program's ring buffer.
func TestCapture(t *testing.T) {
	l := startLab(t, nil)
	tshark := testenv.Tool(t, "tshark")
	inEachMode(t, l, func(t *testing.T) { captureFrames(t, l, tshark) })
}

func captureFrames(t *testing.T, l *lbLab, tshark string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	file := filepath.Join(t.TempDir(), "vip.pcapng")
	c := startCapture(t, l, io.Discard, "--vip", fmt.Sprintf("%s:80/tcp", labVIP), "-w", file)
	const conns = 30
	if _, failed := sendRequests(ctx, l, conns, 3); failed > 0 {
		t.Fatalf("%d of %d connections failed", failed, conns)
	}
	time.Sleep(200 * time.Millisecond) // the last ACKs and FINs
	captured, lost := c.stop(t)
	if lost != 0 {
		t.Errorf("%d frames lost with a reader that keeps up", lost)
	}
	frames := readPcapng(t, tshark, file)
	if out, err := exec.CommandContext(ctx, tshark, "-r", file, "-c", "4", "-T", "fields", "-e", "frame.number", "-e", "frame.interface_name",
		"-e", "frame.packet_flags_direction", "-e", "ip.src", "-e", "ip.dst", "-e", "_ws.col.Info", "-e", "frame.comment").Output(); err == nil {
		t.Logf("%s (%s): tshark -r, first frames:\n%s", file, c.stderr.String(), out)
	}
	if len(frames) != captured {
		t.Errorf("tshark reads %d frames, xlb capture reported %d", len(frames), captured)
	}
	backendSet := map[string]bool{}
	for _, b := range labBackends {
		backendSet[b.Addr().String()] = true
	}
	var rx, tx, syns int
	perBackend := map[string]int{}
	for i, f := range frames {
		dir, _ := strconv.ParseUint(f.dir, 0, 32) // tshark prints the flags word
		switch dir & 3 {
		case 1: // inbound: as received
			rx++
			if len(f.dsts) != 1 || f.dsts[0] != labVIP.String() || f.protos[0] != "6" || f.tcpDst != "80" {
				t.Errorf("frame %d received: want one IPv4 header to %s, TCP port 80: %+v", i, labVIP, f)
			}
			if f.tcpFlags == "0x0002" {
				syns++
			}
			if !strings.HasPrefix(f.comment, "queue 0 rx: backend ") {
				t.Errorf("frame %d received: comment %q", i, f.comment)
			}
		case 2: // outbound: as sent
			tx++
			if len(f.dsts) != 2 || f.protos[0] != "4" || f.srcs[0] != labLB.Addr().String() || !backendSet[f.dsts[0]] ||
				f.dsts[1] != labVIP.String() || f.protos[1] != "6" || f.tcpDst != "80" {
				t.Errorf("frame %d sent: want IPIP %s -> a backend around TCP to %s:80: %+v", i, labLB.Addr(), labVIP, f)
				continue
			}
			// Native mode adds the CPU: "... (cpu N)".
			if want := "queue 0 tx: backend " + f.dsts[0]; f.comment != want && !strings.HasPrefix(f.comment, want+" (cpu ") {
				t.Errorf("frame %d sent to %s: comment %q, want %q", i, f.dsts[0], f.comment, want)
			}
			perBackend[f.dsts[0]]++
		default:
			t.Errorf("frame %d: direction %q", i, f.dir)
		}
		if f.iface != lab.HostLink+":q0" {
			t.Errorf("frame %d: interface %q", i, f.iface)
		}
	}
	t.Logf("%d frames: %d received, %d sent, %d SYNs, sent per backend %v", len(frames), rx, tx, syns, perBackend)
	if rx != tx || syns != conns || len(perBackend) != len(labBackends) {
		t.Errorf("received %d, sent %d, SYNs %d (want %d), backends %d (want %d)", rx, tx, syns, conns, len(perBackend), len(labBackends))
	}

	// --backend keeps only what went to that backend.
	be := labBackends[0].Addr().String()
	file = filepath.Join(t.TempDir(), "backend.pcapng")
	c = startCapture(t, l, io.Discard, "--backend", be, "--direction", "tx", "-w", file)
	if _, failed := sendRequests(ctx, l, 15, 3); failed > 0 {
		t.Fatalf("%d of 15 connections failed", failed)
	}
	c.stop(t)
	frames = readPcapng(t, tshark, file)
	for i, f := range frames {
		if dir, _ := strconv.ParseUint(f.dir, 0, 32); dir&3 != 2 || len(f.dsts) != 2 || f.dsts[0] != be {
			t.Errorf("--backend %s --direction tx: frame %d is %+v", be, i, f)
		}
	}
	if len(frames) == 0 {
		t.Errorf("--backend %s: no frames in 15 connections", be)
	}

	// --count stops by itself; -w - streams to tshark reading a pipe, as
	// in xlb capture -w - | tshark -r -.
	tsh := exec.CommandContext(ctx, tshark, "-r", "-", "-T", "fields", "-e", "frame.number")
	var tout, terr bytes.Buffer
	tsh.Stdout, tsh.Stderr = &tout, &terr
	pipe, err := tsh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tsh.Start(); err != nil {
		t.Fatal(err)
	}
	c = startCapture(t, l, pipe, "--count", "10", "--direction", "rx", "-w", "-")
	go sendRequests(ctx, l, 10, 1)
	if captured, _ := c.wait(t); captured != 10 {
		t.Errorf("--count 10 captured %d", captured)
	}
	pipe.Close()
	if err := tsh.Wait(); err != nil {
		t.Fatalf("tshark -r -: %v: %s", err, terr.String())
	}
	if n := strings.Count(tout.String(), "\n"); n != 10 {
		t.Errorf("tshark -r - read %d frames from xlb capture -w -, want 10:\n%s", n, tout.String())
	}
}

// TestCaptureSlowReader: a capture whose reader stops reading loses
// capture frames (counted and reported) while every upload through the
// balancer arrives intact and nothing is dropped; in both modes.
func TestCaptureSlowReader(t *testing.T) {
	l := startLab(t, nil)
	tshark := testenv.Tool(t, "tshark")
	inEachMode(t, l, func(t *testing.T) { captureSlowReader(t, l, tshark) })
}

func captureSlowReader(t *testing.T, l *lbLab, tshark string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	c := startCapture(t, l, pw, "-w", "-")
	pw.Close() // the child holds it

	// Nobody reads the pipe: a few MB of frames fill the pipe and the
	// socket, then the ring.
	client := lab.HTTPClient(l.client)
	body := make([]byte, 1<<20)
	for range 4 {
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		r, err := lab.Upload(ctx, client, "http://"+labVIP.String(), body)
		if err != nil {
			t.Fatalf("upload while the capture reader stalls: %v", err)
		}
		if r.Bytes != int64(len(body)) {
			t.Fatalf("upload arrived as %d bytes, sent %d", r.Bytes, len(body))
		}
	}
	file := filepath.Join(t.TempDir(), "slow.pcapng")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan error, 1)
	go func() { _, err := io.Copy(f, pr); copied <- err }()
	captured, lost := c.stop(t)
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("slow reader: %d frames captured, %d lost", captured, lost)
	if lost == 0 {
		t.Errorf("a reader that stalled through 4 MB of uploads lost no capture frames")
	}
	if frames := readPcapng(t, tshark, file); len(frames) != captured {
		t.Errorf("tshark reads %d frames, xlb capture reported %d", len(frames), captured)
	}
	st := stats(t, l)
	drops := st.Drops
	if st.Native != nil {
		drops = st.Native.Drops
	}
	for reason, n := range drops {
		if n != 0 {
			t.Errorf("drop %s = %d while the capture reader stalled", reason, n)
		}
	}
}
