package peers

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

func TestCheckNoSysTime(t *testing.T) {
	if err := CheckNoSysTime(999999999); err == nil {
		t.Error("no error for a process that does not exist")
	}
	err := CheckNoSysTime(os.Getpid())
	t.Logf("this test process: %v", err)
}

func TestStartChronyServer(t *testing.T) {
	c := StartChronyServer(t, ChronyOptions{})
	if !c.Addr.IsValid() || c.Pid() == 0 {
		t.Fatalf("%+v", c)
	}
	if err := CheckNoSysTime(c.Pid()); err != nil {
		t.Fatal(err)
	}
}

// TestCapabilityCheck makes sure the check that guards every peer would
// notice a process that can still change the clock.
func TestCapabilityCheck(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.LookPath(t, "capsh", "/usr/sbin/capsh", "/sbin/capsh")
	p := Start(t, ProcOptions{Name: "sleep"}, "/bin/sleep", "30")
	if err := CheckNoSysTime(p.Pid()); err != nil {
		t.Errorf("under capsh --drop=cap_sys_time: %v", err)
	}
	for _, tc := range []struct {
		status string
		ok     bool
	}{
		{"CapPrm:\t0000003ffdffffff\nCapEff:\t0000003ffdffffff\nCapBnd:\t0000003ffdffffff\n", true},
		{"CapPrm:\t0000003ffdffffff\nCapEff:\t0000000002000000\nCapBnd:\t0000003ffdffffff\n", false},
		{"CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n", false},
		{"CapEff:\t0000000000000000\n", false},
	} {
		if err := noSysTime(tc.status); (err == nil) != tc.ok {
			t.Errorf("noSysTime(%q) = %v, want ok=%v", tc.status, err, tc.ok)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "with space", "it's", `"$HOME" \n`} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh -c printf %%s %s = %q, %v; want %q", shellQuote(s), out, err, s)
		}
	}
}

// TestProc checks Start's bookkeeping: the pid is the program's own,
// output lands in the log, Stop ends it and Err then says how.
func TestProc(t *testing.T) {
	testenv.RequireRoot(t)
	p := Start(t, ProcOptions{}, "/bin/sh", "-c", `echo "it's up"; while :; do sleep 1; done`)
	if p.Name() != "sh" || p.Exited() || p.Err() != nil {
		t.Fatalf("name %q exited %v err %v", p.Name(), p.Exited(), p.Err())
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid()))
	if err != nil || !strings.HasPrefix(string(comm), "/bin/sh\x00") {
		t.Errorf("pid %d runs %q (%v), want /bin/sh", p.Pid(), comm, err)
	}
	// Start returns once the shell runs, maybe before it has written.
	for deadline := time.Now().Add(5 * time.Second); p.Tail(1) != "it's up" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop()
	if !p.Exited() || p.Err() == nil {
		t.Errorf("after Stop: exited %v, err %v; want a signal", p.Exited(), p.Err())
	}
	if got := p.Tail(1); got != "it's up" {
		t.Errorf("Tail(1) = %q, want %q (log %s)", got, "it's up", p.LogPath())
	}
}

// TestCommand runs a one-shot program without CAP_SYS_TIME.
func TestCommand(t *testing.T) {
	testenv.RequireRoot(t)
	out, err := Command(t, "/bin/sh", "-c", `grep CapBnd /proc/self/status; echo "$0"`, "it's").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[1] != "it's" {
		t.Fatalf("output %q", out)
	}
	if err := noSysTime(lines[0] + "\nCapEff:\t0\nCapPrm:\t0\n"); err != nil {
		t.Error(err)
	}
}

func TestStartChronyClient(t *testing.T) {
	srv := StartChronyServer(t, ChronyOptions{})
	c := StartChronyClient(t, fmt.Sprintf("server %s port %d iburst", srv.Addr.Addr(), srv.Addr.Port()))
	if c.Name() != "chronyd-client" || c.Exited() {
		t.Fatalf("client %q exited %v: %v", c.Name(), c.Exited(), c.Err())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := c.Chronyc(t, "sources")
		if err == nil && strings.Contains(out, srv.Addr.Addr().String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chronyc sources does not list the server: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNtpsec starts ntpsec's ntpd in a namespace of its own and checks
// that the namespace is gone afterwards.
func TestNtpsec(t *testing.T) {
	NtpsecPaths(t)
	var ns string
	t.Run("server", func(t *testing.T) {
		ns = NewNetns(t)
		p := StartNtpsecServer(t, ns)
		if p.Exited() {
			t.Fatal(p.Err())
		}
	})
	if ns == "" {
		return
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if f == ns {
			t.Errorf("namespace %s still there after the test", ns)
		}
	}
}

// TestPtp4lPair: the PTP harness works — ptp4l as grandmaster in one
// namespace and ptp4l as slave in the other, over UDPv4 on a veth pair,
// with software timestamps; the slave locks (s2) and pmc reports SLAVE. It
// logs the slave's own offset RMS, the figure timed's PTP client is
// compared with.
func TestPtp4lPair(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := NewVethPair(t)
	gm := StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-4", "priority1 10", "free_running 1")
	slave := StartPtp4l(t, "ptp4l-slave", b.Netns, b.Iface, "-4", "slaveOnly 1",
		"pi_proportional_const 0.7", "pi_integral_const 0.3")
	deadline := time.Now().Add(60 * time.Second)
	for {
		samples := ServoSamples(slave.Output())
		if rms, n := LockedRMS(samples); n >= 10 {
			t.Logf("ptp4l slave: %d locked samples, offset RMS %.0f ns; last path delay %.0f ns", n, rms*1e9, samples[len(samples)-1].Delay*1e9)
			break
		}
		if time.Now().After(deadline) || slave.Exited() || gm.Exited() {
			t.Fatalf("the ptp4l slave did not lock within 60 s:\n%s", slave.Tail(20))
		}
		time.Sleep(time.Second)
	}
	if st := slave.PortState(t); st != "SLAVE" {
		t.Errorf("pmc: slave's portState %q, want SLAVE", st)
	}
	if st := gm.PortState(t); st != "MASTER" {
		t.Errorf("pmc: grandmaster's portState %q, want MASTER", st)
	}
}
