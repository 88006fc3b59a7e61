//go:build linux

package interop

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// ptp4lSlave are the [global] lines of a ptp4l slave that locks quickly on
// software timestamps (as in internal/peers TestPtp4lPair).
var ptp4lSlave = []string{"slaveOnly 1", "pi_proportional_const 0.7", "pi_integral_const 0.3"}

// TestPTPMaster: timed as grandmaster (virtual clock at the system clock's
// time, no source, so clockClass 248) with a master_only PTP port in one
// namespace, a ptp4l slave (slaveOnly, free_running off, without
// CAP_SYS_TIME) in the other, over UDPv4 and over Ethernet. ptp4l reaches
// SLAVE, pmc shows timed's clock identity as its grandmaster, and the
// offsets the slave measures once locked (timed's and ptp4l's clocks are
// the same system clock) stay small: RMS < 20 µs. The two transports run
// one after the other, so that they do not load each other's timestamps.
func TestPTPMaster(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	for _, tc := range []struct{ name, transport, flag string }{{"udp4", "udp4", "-4"}, {"l2", "l2", "-2"}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := peers.NewVethPair(t)
			cfg := timedConfig{SimOffset: "0s", NoSources: true, Name: "gm-" + tc.name,
				Extra: fmt.Sprintf("ptp:\n  priority1: 10\n  ports:\n    - {interface: %s, role: master_only, transport: %s, "+
					"announce_interval: 0, sync_interval: 0}\n", a.Iface, tc.transport)}
			gm := startTimed(t, cfg, a.Netns)
			slave := peers.StartPtp4l(t, "ptp4l-slave-"+tc.name, b.Netns, b.Iface, tc.flag, ptp4lSlave...)

			samples := waitLocked(t, slave, gm.Proc, 20, 90*time.Second)
			rms, n := peers.LockedRMS(samples)
			worst, delay := 0.0, samples[len(samples)-1].Delay
			for _, s := range samples {
				if s.Locked() {
					worst = math.Max(worst, math.Abs(s.Offset))
				}
			}
			t.Logf("ptp4l slave of timed over %s: %d locked samples, offset RMS %.2f µs, max %.2f µs; path delay %.1f µs",
				tc.name, n, rms*1e6, worst*1e6, delay*1e6)
			if rms > 20e-6 {
				t.Errorf("ptp4l slave's offset RMS %.1f µs, want < 20 µs; its servo:\n%s", rms*1e6, servoLines(slave.Output()))
			}
			if st := slave.PortState(t); st != "SLAVE" {
				t.Errorf("pmc: slave's portState %q, want SLAVE", st)
			}
			checkGrandmaster(t, slave, a, "248")
			if !hasLog(gm.Output(), "port state", "to", "MASTER") {
				t.Errorf("timed never logged its port going MASTER:\n%s", gm.Tail(20))
			}
		})
	}
}

// TestPTPMasterBMCA: two timeds with ports in the auto role, priority1 20
// and 10, and a ptp4l that may be master too, priority1 15, on one
// Ethernet segment (a bridge); all three have clock class 248. By the
// standard's dataset comparison priority1 decides: ptp4l follows the
// priority1 10 timed, and the other timed gives up MASTER and follows it
// too, not ptp4l. When the priority1 10 timed stops, ptp4l is the best
// clock left: it takes over as master and the priority1 20 timed follows
// it.
func TestPTPMasterBMCA(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	lan := bridgedLAN(t, 3)
	var timeds []*timedProc
	for i, prio := range []int{20, 10} {
		cfg := timedConfig{SimOffset: "0s", NoSources: true, Name: fmt.Sprintf("prio%d", prio),
			Extra: fmt.Sprintf("ptp:\n  priority1: %d\n  ports:\n    - {interface: %s, role: auto, transport: udp4, "+
				"announce_interval: 0, sync_interval: 0}\n", prio, lan[i].Iface)}
		timeds = append(timeds, startTimed(t, cfg, lan[i].Netns))
	}
	slave := peers.StartPtp4l(t, "ptp4l-bmca", lan[2].Netns, lan[2].Iface, "-4", "priority1 15",
		"pi_proportional_const 0.7", "pi_integral_const 0.3")
	samples := waitLocked(t, slave, timeds[1].Proc, 10, 90*time.Second)
	rms, n := peers.LockedRMS(samples)
	t.Logf("ptp4l slave of the priority1 10 timed: %d locked samples, offset RMS %.2f µs", n, rms*1e6)
	if st := slave.PortState(t); st != "SLAVE" {
		t.Errorf("pmc: slave's portState %q, want SLAVE", st)
	}
	checkGrandmaster(t, slave, lan[1], "248")
	out, _ := slave.Pmc(t, "GET PARENT_DATA_SET")
	if m := regexp.MustCompile(`grandmasterPriority1\s+(\d+)`).FindStringSubmatch(out); m == nil || m[1] != "10" {
		t.Errorf("pmc: grandmaster's priority1 %v, want 10:\n%s", m, out)
	}
	if !hasLog(timeds[1].Output(), "port state", "to", "MASTER") {
		t.Errorf("the priority1 10 timed never went MASTER:\n%s", timeds[1].Tail(20))
	}
	if !hasLog(timeds[0].Output(), "port state", "to", "UNCALIBRATED") {
		t.Errorf("the priority1 20 timed never took the other as its master:\n%s", timeds[0].Tail(20))
	}
	// The priority1 20 timed follows the priority1 10 one, not ptp4l.
	waitGrandmaster(t, timeds[0], clockID(lan[1]), 10*time.Second)

	// The best clock stops: ptp4l (priority1 15) is the best one left.
	timeds[1].Stop()
	stopped := time.Now()
	waitGrandmaster(t, timeds[0], clockID(lan[2]), 20*time.Second)
	t.Logf("the priority1 20 timed follows ptp4l %v after the priority1 10 timed stopped", time.Since(stopped).Round(100*time.Millisecond))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		st := slave.PortState(t)
		if st == "MASTER" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pmc: ptp4l's portState %q, want MASTER once the priority1 10 timed is gone:\n%s", st, slave.Tail(20))
		}
	}
}

// clockID is the clock identity timed and ptp4l make from the MAC address
// of end's interface, as pmc and timectl print it.
func clockID(end peers.VethEnd) string {
	mac := end.MAC
	return fmt.Sprintf("%02x%02x%02x.fffe.%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
}

// waitGrandmaster waits until tp's only PTP port is SLAVE with the
// grandmaster gm.
func waitGrandmaster(t *testing.T, tp *timedProc, gm string, within time.Duration) {
	t.Helper()
	var last failoverPort
	for start := time.Now(); time.Since(start) < within; time.Sleep(200 * time.Millisecond) {
		var r struct{ Ports []failoverPort }
		if err := tp.query(t.Context(), &r, "ptp"); err != nil {
			t.Fatal(err)
		}
		if len(r.Ports) == 1 {
			last = r.Ports[0]
			if last.State == "SLAVE" && last.Grandmaster == gm {
				return
			}
		}
	}
	t.Fatalf("%s: port %+v, want SLAVE with grandmaster %s within %v\n%s", tp.Name(), last, gm, within, tp.Tail(20))
}

// waitLocked waits until the ptp4l slave has logged at least n locked (s2)
// servo samples and returns its samples.
func waitLocked(t *testing.T, slave *peers.Ptp4l, master *peers.Proc, n int, within time.Duration) []peers.ServoSample {
	t.Helper()
	start := time.Now()
	for {
		samples := peers.ServoSamples(slave.Output())
		if _, locked := peers.LockedRMS(samples); locked >= n {
			t.Logf("ptp4l: %d locked samples after %v", locked, time.Since(start).Round(time.Second))
			return samples
		}
		if time.Since(start) > within || slave.Exited() || master.Exited() {
			t.Fatalf("the ptp4l slave did not lock within %v:\n%s\n--- timed:\n%s", within, slave.Tail(20), master.Tail(20))
		}
		time.Sleep(time.Second)
	}
}

// servoLines are the servo lines of a ptp4l log.
func servoLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "master offset") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// checkGrandmaster checks that pmc shows the clock of end (its identity
// made from its MAC address, as timed makes it) as the slave's
// grandmaster, with clock class class.
func checkGrandmaster(t *testing.T, slave *peers.Ptp4l, end peers.VethEnd, class string) {
	t.Helper()
	out, err := slave.Pmc(t, "GET PARENT_DATA_SET")
	if err != nil {
		t.Fatalf("pmc GET PARENT_DATA_SET: %v\n%s", err, out)
	}
	want := clockID(end)
	gm := regexp.MustCompile(`grandmasterIdentity\s+(\S+)`).FindStringSubmatch(out)
	cls := regexp.MustCompile(`gm\.ClockClass\s+(\d+)`).FindStringSubmatch(out)
	if gm == nil || gm[1] != want || cls == nil || cls[1] != class {
		t.Errorf("pmc: grandmaster %v class %v, want %s class %s:\n%s", gm, cls, want, class, out)
	}
}

// hasLog reports whether timed logged a line with message msg and field
// key equal to value.
func hasLog(output, msg, key, value string) bool {
	for _, l := range logLines(output) {
		if l["msg"] == msg && l[key] == value {
			return true
		}
	}
	return false
}

// bridgedLAN makes n network namespaces, each with one veth interface
// (lan0, lan1, ...; 10.99.1.1/24, 10.99.1.2/24, ...) plugged into a bridge
// in a namespace of its own: one Ethernet segment for several PTP clocks.
// The bridge floods multicast (no snooping) and forwards at once (no STP).
// PTP repeats every message, so what a fresh veth drops in its first second
// does no harm.
//
// bridgeCmds are more ip commands run in the bridge's namespace once the
// ports are plugged in (port0, port1, ... on the bridge br0).
func bridgedLAN(t *testing.T, n int, bridgeCmds ...string) []peers.VethEnd {
	t.Helper()
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	batch := func(netns string, lines ...string) string { return ipBatch(t, ip, netns, lines...) }
	hub := peers.NewNetns(t)
	cmds := []string{"link add br0 type bridge stp_state 0 mcast_snooping 0", "link set br0 up"}
	ends := make([]peers.VethEnd, n)
	for i := range ends {
		ends[i] = peers.VethEnd{Netns: peers.NewNetns(t), Iface: fmt.Sprintf("lan%d", i),
			Addr: netip.MustParsePrefix(fmt.Sprintf("10.99.1.%d/24", i+1))}
		cmds = append(cmds, fmt.Sprintf("link add port%d type veth peer name %s netns %s", i, ends[i].Iface, ends[i].Netns),
			fmt.Sprintf("link set port%d master br0 up", i))
	}
	batch(hub, append(cmds, bridgeCmds...)...)
	macRE := regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)
	for i := range ends {
		e := &ends[i]
		out := batch(e.Netns, "addr add "+e.Addr.String()+" dev "+e.Iface, "link set "+e.Iface+" up", "link show dev "+e.Iface)
		m := macRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no MAC address on %s in %s: %s", e.Iface, e.Netns, out)
		}
		e.MAC, _ = net.ParseMAC(m[1])
	}
	return ends
}

// ipBatch runs ip commands, one a line, in netns, and returns their output.
func ipBatch(t *testing.T, ip, netns string, lines ...string) string {
	t.Helper()
	cmd := exec.Command(ip, "-n", netns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s -batch: %v: %s\n%s", netns, err, out, strings.Join(lines, "\n"))
	}
	return string(out)
}
