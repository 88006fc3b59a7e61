package peers

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

// VethEnd is one end of a veth pair: the namespace it lives in, its
// interface name, its IPv4 and IPv6 addresses with prefix and its MAC
// address.
type VethEnd struct {
	Netns string
	Iface string
	Addr  netip.Prefix
	// Addr6 is a unique local address (fd99::/64), usable at once: it
	// skips duplicate address detection.
	Addr6 netip.Prefix
	MAC   net.HardwareAddr
}

// NewVethPair makes two network namespaces (NewNetns) joined by a veth
// pair, with 10.99.0.1/24 and fd99::1/64 on the first end and 10.99.0.2/24
// and fd99::2/64 on the second, both up (IPv6 addresses, link-local ones
// too, without duplicate address detection, so they are usable at once).
// It returns once both interfaces pass traffic: a fresh veth drops what is
// sent for up to about a second after it is set up, until the kernel's link
// watcher has given it its queueing discipline. Everything is removed when
// the test ends.
func NewVethPair(t testing.TB) (a, b VethEnd) {
	t.Helper()
	ip := testenv.LookPath(t, "ip", "/usr/sbin/ip", "/sbin/ip")
	a = VethEnd{Netns: NewNetns(t), Iface: "veth-a",
		Addr: netip.MustParsePrefix("10.99.0.1/24"), Addr6: netip.MustParsePrefix("fd99::1/64")}
	b = VethEnd{Netns: NewNetns(t), Iface: "veth-b",
		Addr: netip.MustParsePrefix("10.99.0.2/24"), Addr6: netip.MustParsePrefix("fd99::2/64")}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("link", "add", a.Iface, "netns", a.Netns, "type", "veth", "peer", "name", b.Iface, "netns", b.Netns)
	for _, e := range []VethEnd{a, b} {
		sysctl := exec.Command(ip, "netns", "exec", e.Netns, "sysctl", "-q", "-w", "net.ipv6.conf."+e.Iface+".accept_dad=0")
		if out, err := sysctl.CombinedOutput(); err != nil {
			t.Fatalf("sysctl accept_dad in %s: %v: %s", e.Netns, err, out)
		}
		run("-n", e.Netns, "addr", "add", e.Addr.String(), "dev", e.Iface)
		run("-n", e.Netns, "addr", "add", e.Addr6.String(), "dev", e.Iface, "nodad")
		run("-n", e.Netns, "link", "set", e.Iface, "up")
	}
	for _, e := range []*VethEnd{&a, &b} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			out := run("-n", e.Netns, "link", "show", "dev", e.Iface)
			if strings.Contains(out, "state UP") && !strings.Contains(out, "qdisc noop") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s did not come up within 5 s: %s", e.Iface, e.Netns, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		out := run("-n", e.Netns, "link", "show", "dev", e.Iface)
		m := linkEtherRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s in %s: no MAC address in %q", e.Iface, e.Netns, out)
		}
		mac, err := net.ParseMAC(m[1])
		if err != nil {
			t.Fatalf("%s in %s: %v", e.Iface, e.Netns, err)
		}
		e.MAC = mac
	}
	return a, b
}

// Ptp4l is a running ptp4l.
type Ptp4l struct {
	*Proc
	// UDS is its management socket, for pmc.
	UDS string
	dir string
}

// StartPtp4l runs linuxptp's ptp4l (without CAP_SYS_TIME, -m: its log on
// stdout) on iface inside netns with software timestamps, the transport
// flag given ("-4" UDPv4, "-6" UDPv6, "-2" Ethernet) and the [global]
// configuration lines given (e.g. "priority1 10", "free_running 1",
// "slaveOnly 1"); its management socket is private to the test. It is
// stopped when the test ends.
func StartPtp4l(t testing.TB, name, netns, iface, transport string, global ...string) *Ptp4l {
	t.Helper()
	ptp4l := testenv.LookPath(t, "ptp4l", "/usr/sbin/ptp4l")
	dir := t.TempDir()
	uds := filepath.Join(dir, "ptp4l.sock")
	conf := writeConf(t, dir, "ptp4l.cfg", append([]string{"[global]", "uds_address " + uds}, global...)...)
	p := Start(t, ProcOptions{Name: name, Dir: dir, Netns: netns}, ptp4l, "-f", conf, "-S", transport, "-i", iface, "-m")
	return &Ptp4l{Proc: p, UDS: uds, dir: dir}
}

// Pmc sends one management command (e.g. "GET PORT_DATA_SET") to the
// ptp4l over its management socket and returns pmc's output.
func (p *Ptp4l) Pmc(t testing.TB, command string) (string, error) {
	t.Helper()
	pmc := testenv.LookPath(t, "pmc", "/usr/sbin/pmc")
	own := filepath.Join(p.dir, fmt.Sprintf("pmc-%d.sock", pmcCounter.Add(1)))
	out, err := exec.Command(pmc, "-u", "-b", "0", "-i", own, "-s", p.UDS, command).CombinedOutput()
	return string(out), err
}

var pmcCounter atomic.Int32

var linkEtherRE = regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)

// PortState is the portState that `pmc GET PORT_DATA_SET` reports, or ""
// when it cannot be read.
func (p *Ptp4l) PortState(t testing.TB) string {
	t.Helper()
	out, err := p.Pmc(t, "GET PORT_DATA_SET")
	if err != nil {
		return ""
	}
	m := portStateRE.FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

var portStateRE = regexp.MustCompile(`portState\s+(\S+)`)

// ServoSample is one line of a ptp4l slave's servo log: its offset from
// the master, the servo state (s0 unlocked, s1 stepped, s2 locked, s3
// locked and stable) and the path delay, in seconds.
type ServoSample struct {
	Offset float64
	State  string
	Delay  float64
}

// Locked reports whether the servo was locked: s2, or s3 (locked and
// stable: servo_offset_threshold met servo_num_offset_values times in a
// row, as linuxptp's automotive-slave.cfg asks; it stays s3 after that).
func (s ServoSample) Locked() bool { return s.State == "s2" || s.State == "s3" }

var servoRE = regexp.MustCompile(`master offset\s+(-?\d+) (s\d) freq\s+[-+]?\d+ path delay\s+(-?\d+)`)

// ServoSamples parses the servo lines of a ptp4l log.
func ServoSamples(log string) []ServoSample {
	var out []ServoSample
	for _, m := range servoRE.FindAllStringSubmatch(log, -1) {
		off, err1 := strconv.ParseFloat(m[1], 64)
		delay, err2 := strconv.ParseFloat(m[3], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, ServoSample{Offset: off * 1e-9, State: m[2], Delay: delay * 1e-9})
	}
	return out
}

// LockedRMS is the RMS offset over the locked (s2, s3) samples, and how many
// there were.
func LockedRMS(samples []ServoSample) (rms float64, n int) {
	var sum float64
	for _, s := range samples {
		if s.Locked() {
			sum += s.Offset * s.Offset
			n++
		}
	}
	if n == 0 {
		return math.NaN(), 0
	}
	return math.Sqrt(sum / float64(n)), n
}
