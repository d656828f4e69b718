package ecmp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/xlbproject/xlb/lab"
)

// BIRD is a bird (BIRD 2) process running in the router's namespace, with
// its configuration, log and control socket in its own temporary directory.
type BIRD struct {
	// Dir holds bird.conf, bird.log and the control socket bird.ctl.
	Dir    string
	router *lab.Host
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has been waited for

	closeOnce sync.Once
	closeErr  error
}

// ProtocolName is the BIRD protocol of balancer i (0-based) over IPv4
// transport, or IPv6 with v6: "lb1", "lb1_v6".
func ProtocolName(i int, v6 bool) string {
	if v6 {
		return fmt.Sprintf("lb%d_v6", i+1)
	}
	return fmt.Sprintf("lb%d", i+1)
}

var birdTemplate = template.Must(template.New("bird.conf").Parse(`# Written by xlb's lab/ecmp.
log "{{.Dir}}/bird.log" all;
router id {{.RouterID}};
# Seconds since the epoch, so "show protocols" has one field per column.
timeformat protocol "%s";

protocol device {
	scan time 10;
}

# merge paths: install every equally good BGP route as one multipath
# kernel route (ECMP); without it BIRD installs only the best one.
protocol kernel kernel4 {
	ipv4 { import none; export all; };
	merge paths on;
}
protocol kernel kernel6 {
	ipv6 { import none; export all; };
	merge paths on;
}

# The balancers dial the router (they do not listen), so the router
# waits for them.
template bgp balancer {
	local as {{.RouterASN}};
	hold time {{.HoldTime}};
	passive on;
	# After a session error (a wrong ASN, an expired hold time) BIRD
	# waits 60s to 300s by default before it accepts the peer again;
	# a lab that tests recovery wants seconds.
	error wait time 1, 5;
{{- if .Password}}
	password "{{.Password}}";
{{- end}}
	ipv4 { import all; export none; };
	ipv6 { import all; export none; };
}
{{range .Peers}}
protocol bgp {{.Name}} from balancer {
	neighbor {{.Addr}} as {{$.BalancerASN}};
}
{{- end}}
`))

type birdPeer struct {
	Name string
	Addr string
}

// birdConfig is the router's configuration: a passive eBGP session for
// every balancer over each transport.
func birdConfig(spec Spec, l *Lab) func(dir string) string {
	return func(dir string) string {
		data := struct {
			Dir, RouterID, Password          string
			RouterASN, BalancerASN, HoldTime uint32
			Peers                            []birdPeer
		}{dir, l.RouterAddr.String(), spec.Password, spec.RouterASN, spec.BalancerASN, uint32(spec.HoldTime / time.Second), nil}
		for i, h := range l.Balancers {
			data.Peers = append(data.Peers, birdPeer{ProtocolName(i, false), h.Addr.String()}, birdPeer{ProtocolName(i, true), h.Addr6.String()})
		}
		var b strings.Builder
		if err := birdTemplate.Execute(&b, data); err != nil {
			panic(err) // the template and its data are fixed
		}
		return b.String()
	}
}

// startBIRD writes the configuration made by conf (given the directory) and
// runs bird in the foreground in router's namespace, then waits until its
// control socket answers.
func startBIRD(router *lab.Host, conf func(dir string) string) (*BIRD, error) {
	dir, err := os.MkdirTemp("", "xlb-bird-")
	if err != nil {
		return nil, fmt.Errorf("ecmp: %w", err)
	}
	b := &BIRD{Dir: dir, router: router, done: make(chan struct{})}
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf(dir)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ecmp: %w", err)
	}
	// `ip netns exec` execs bird in place, so the PID is bird's own.
	b.cmd = router.Command(context.Background(), "bird", "-f", "-c", confPath, "-s", b.socket(), "-P", filepath.Join(dir, "bird.pid"))
	out, err := os.Create(filepath.Join(dir, "bird.out"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ecmp: %w", err)
	}
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		out.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ecmp: start bird: %w", err)
	}
	out.Close()
	go func() {
		b.cmd.Wait()
		close(b.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := b.Control("show status")
		if err == nil {
			return b, nil
		}
		select {
		case <-b.done:
			text, _ := os.ReadFile(filepath.Join(dir, "bird.out"))
			b.Close()
			return nil, fmt.Errorf("ecmp: bird exited (%v): %s", b.cmd.ProcessState, strings.TrimSpace(string(text)))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("ecmp: bird not answering on %s: %w", b.socket(), err), b.Close())
		}
	}
}

func (b *BIRD) socket() string { return filepath.Join(b.Dir, "bird.ctl") }

// Control runs a birdc command ("show protocols") on bird's socket and
// returns its output.
func (b *BIRD) Control(command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-s", b.socket()}, strings.Fields(command)...)
	out, err := exec.CommandContext(ctx, "birdc", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ecmp: birdc %s: %w: %s", command, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Log returns bird's log so far, for a failing test to show.
func (b *BIRD) Log() string {
	text, err := os.ReadFile(filepath.Join(b.Dir, "bird.log"))
	if err != nil {
		return err.Error()
	}
	return string(text)
}

// Protocol is one line of `birdc show protocols`.
type Protocol struct {
	Name, Proto, Table, State string
	// Since is when the protocol entered State.
	Since time.Time
	// Info is BIRD's summary, "Established" for an up BGP session.
	Info string
}

// Protocols returns bird's protocols by name.
func (b *BIRD) Protocols() (map[string]Protocol, error) {
	out, err := b.Control("show protocols")
	if err != nil {
		return nil, err
	}
	return parseProtocols(out)
}

// parseProtocols reads `show protocols` output written with timeformat
// protocol "%s":
//
//	BIRD 2.0.12 ready.
//	Name       Proto      Table      State  Since         Info
//	lb1        BGP        ---        up     1764745921    Established
func parseProtocols(out string) (map[string]Protocol, error) {
	protos := map[string]Protocol{}
	sc := bufio.NewScanner(strings.NewReader(out))
	header := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if !header {
			header = len(f) > 0 && f[0] == "Name"
			continue
		}
		if len(f) < 5 {
			continue
		}
		secs, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ecmp: show protocols: %q: since %q is not seconds: %w", sc.Text(), f[4], err)
		}
		protos[f[0]] = Protocol{Name: f[0], Proto: f[1], Table: f[2], State: f[3], Since: time.Unix(secs, 0), Info: strings.Join(f[5:], " ")}
	}
	if !header {
		return nil, fmt.Errorf("ecmp: show protocols: no header in %q", out)
	}
	return protos, nil
}

// Close kills bird by its PID, waits for it and removes its directory; the
// kernel routes it installed go with the router's namespace. Idempotent.
func (b *BIRD) Close() error {
	b.closeOnce.Do(func() {
		if b.cmd.Process != nil {
			select {
			case <-b.done:
			default:
				if err := b.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
					b.closeErr = fmt.Errorf("ecmp: kill bird %d: %w", b.cmd.Process.Pid, err)
				}
				<-b.done
			}
		}
		if err := os.RemoveAll(b.Dir); err != nil {
			b.closeErr = errors.Join(b.closeErr, err)
		}
	})
	return b.closeErr
}
