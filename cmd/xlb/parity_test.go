package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/bpf/decap"
	"github.com/xlbproject/xlb/engine"
)

// TestCheckNative: `xlb check` accepts in native mode what the lb program
// does (IPv6 VIPs and backends, GUE, per-VIP table sizes, echo off, the
// fragment policy), states how its flow tables expire and that the AF_XDP
// settings are unused, and applies the ICMP rate limit per CPU.
func TestCheckNative(t *testing.T) {
	text := `[datapath]
interface = "lo"
mode = "native"
source6 = "2001:db8::1"
flow_tcp_timeout = "1m"

[[vip]]
address = "198.18.100.1"
port = 80
forward = "gue"
gue_port = 6080
table_size = 257
  [[vip.backend]]
  address = "198.18.0.2"
  mac = "02:00:00:00:00:02"

[[vip]]
address = "2001:db8::100"
port = 53
protocol = "udp"
icmp_echo = false
fragments = "pass"
  [[vip.backend]]
  address = "2001:db8::2"
  mac = "02:00:00:00:00:02"
`
	file := filepath.Join(t.TempDir(), "native.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("check", "-c", file)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []string{
		"mode=native",
		"queues, cpus, umem, rings and polling are AF_XDP settings, unused",
		"flow tables: 262144 entries each (IPv4, IPv6), idle tcp 1m0s udp 30s: " + bpf.LBFlowExpiry,
		"icmp sent by the balancer: at most 1000/s per CPU, burst 50",
		"syn flood guard: past 125000 SYNs/s per CPU, a new flow's SYN goes by Maglev without a flow entry (its next packet makes one)",
		"vip 198.18.100.1:80/tcp forward=gue(port 6080) maglev_slots=257",
		"vip [2001:db8::100]:53/udp forward=ipip",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "umem:") {
		t.Errorf("check output shows AF_XDP settings in native mode:\n%s", stdout)
	}

	text = strings.Replace(text, "flow_tcp_timeout", "icmp_rate_limit = 100\nicmp_rate_burst = 7\nflow_tcp_timeout", 1)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCmd("check", "-c", file)
	if want := "icmp sent by the balancer: at most 100/s per CPU, burst 7"; code != exitOK || !strings.Contains(stdout, want) {
		t.Errorf("exit %d, stdout %q, stderr %q, want exit 0 and %q", code, stdout, stderr, want)
	}
}

// protoReload reloads the running protocol lab with settings that only
// matter per packet, and checks on the wire that each took effect: echo
// turned off on an IPv4 and an IPv6 VIP (requests dropped as
// echo_disabled), an IPv4 VIP switched from GUE to IPIP (the backends
// decapsulate IPIP), an IPv6 backend removed (it gets no new connection),
// the flow timeouts changed. In native mode every one of these is applied
// to the lb program's maps and settings.
func protoReload(t *testing.T, l *lbLab) {
	mode := stats(t, l).Mode
	vips := slices.Clone(protoVIPs)
	for i, v := range vips {
		switch v.name {
		case vipIPIP4.name, vipIP6IP6.name:
			vips[i].noEcho = true
			if v.v6 {
				vips[i].only = 2
			}
		case vipGUE4.name:
			vips[i].forward, vips[i].overhead = "ipip", 20
		}
	}
	out, err := reloadWith(t, l, protoConfigOf(l.socketPath(), mode, "flow_tcp_timeout = \"2m\"\nflow_udp_timeout = \"10s\"", vips))
	if err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	for _, want := range []string{
		"flow timeouts tcp 15m0s udp 30s -> tcp 2m0s udp 10s",
		"vip 198.18.100.1:80/tcp icmp_echo true -> false",
		"vip [2001:db8:100::1]:80/tcp icmp_echo true -> false",
		"vip 198.18.100.5:80/tcp forward gue (gue port 6635) -> ipip (gue port 0)",
		"vip [2001:db8:100::1]:80/tcp backend 2001:db8::13 removed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reload output lacks %q:\n%s", want, out)
		}
	}

	// Echo off: requests are dropped and counted, none answered.
	before := stats(t, l)
	const pings = 3
	pingVIPs(t, l, []netip.Addr{vipIPIP4.addr, vipIP6IP6.addr}, pings)
	var after engine.Stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after = stats(t, l)
		if dropsOf(after)["echo_disabled"]-dropsOf(before)["echo_disabled"] >= 2*pings || time.Now().After(deadline) {
			break
		}
	}
	if n, r := dropsOf(after)["echo_disabled"]-dropsOf(before)["echo_disabled"], eventsOf(after)["echo_reply"]-eventsOf(before)["echo_reply"]; n != 2*pings || r != 0 {
		t.Errorf("after turning echo off: echo_disabled +%d, echo_reply +%d, want +%d and 0", n, r, 2*pings)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// GUE -> IPIP: the backends decapsulate IPIP, no GUE.
	dBefore := settledDecapCounters(t, l)
	if served, failed, err := getMany(ctx, l, vipGUE4.url(), 30, 4); failed > 0 {
		t.Fatalf("%d of 30 connections to %s failed after the reload: %v (served %v)", failed, vipGUE4.addr, err, served)
	}
	dAfter := settledDecapCounters(t, l)
	var ipip, gue uint64
	for i := range dAfter {
		ipip += dAfter[i][decap.CounterIPIP] - dBefore[i][decap.CounterIPIP]
		gue += dAfter[i][decap.CounterGUE] - dBefore[i][decap.CounterGUE]
	}
	if ipip < 90 || gue != 0 {
		t.Errorf("30 connections to %s after switching it to ipip: backends decapsulated %d IPIP and %d GUE packets", vipGUE4.addr, ipip, gue)
	}
	// The removed IPv6 backend gets no new connection.
	served, failed, err := getMany(ctx, l, vipIP6IP6.url(), 60, 4)
	if failed > 0 || served["be3"] != 0 || served["be1"] == 0 || served["be2"] == 0 {
		t.Errorf("60 connections to %s without be3: %d failed (%v), served %v", vipIP6IP6.addr, failed, err, served)
	}
}

// pingVIPs sends n ICMP or ICMPv6 echo requests from the client to each
// address.
func pingVIPs(t *testing.T, l *lbLab, addrs []netip.Addr, n int) {
	t.Helper()
	msgs := make([][]byte, n)
	for seq := range n {
		msgs[seq] = ser(t, true, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 0x786c, Seq: uint16(seq + 1)})
	}
	err := l.client.Do(func() error {
		for _, a := range addrs {
			network, src := "ip4:icmp", labClient.Addr()
			if a.Is6() {
				network, src = "ip6:ipv6-icmp", protoClient6.Addr()
			}
			c, err := net.ListenPacket(network, src.String())
			if err != nil {
				return err
			}
			for _, msg := range msgs {
				if a.Is6() {
					// The kernel fills in the checksum of raw ICMPv6.
					msg = append([]byte{128, 0, 0, 0}, msg[4:]...)
				}
				if _, err := c.WriteTo(msg, &net.IPAddr{IP: a.AsSlice()}); err != nil {
					c.Close()
					return err
				}
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("echo requests: %v", err)
	}
}
