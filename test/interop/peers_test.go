//go:build linux

package interop

import (
	"fmt"
	"math"
	"os/exec"
	"testing"

	"github.com/timed-project/timed/internal/testenv"
)

// TestPeers checks the harness on its own, without timed: chronyd serves on
// loopback without CAP_SYS_TIME, `chronyd -Q` measures it, and ntpsec's ntpd
// answers inside a namespace made for it. When this fails, the other tests'
// failures say nothing about timed.
func TestPeers(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("chronyd", func(t *testing.T) {
		chronyd := testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
		port := freeUDPPort(t)
		startChronyServer(t, port)
		out, err := exec.Command("capsh", "--drop=cap_sys_time", "--", "-c",
			"exec "+shellQuote(chronyd)+" -Q -t 10 "+shellQuote(fmt.Sprintf("server 127.0.0.1 port %d iburst", port))).CombinedOutput()
		if err != nil {
			t.Fatalf("chronyd -Q: %v\n%s", err, out)
		}
		off, err := parseChronydQ(string(out))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("chronyd -Q against chronyd on loopback: %+.1f µs", off*1e6)
		// Both ends read the same system clock.
		if math.Abs(off) > 1e-3 {
			t.Errorf("chronyd -Q measured %+.6f s against a server on the same clock", off)
		}
	})
	t.Run("ntpsec", func(t *testing.T) {
		ntpsecPaths(t)
		ns := newNetns(t)
		startNtpsecServer(t, ns)
	})
}

// TestCapabilityCheck makes sure the check that guards every peer would
// notice a process that can still change the clock.
func TestCapabilityCheck(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.LookPath(t, "capsh", "/usr/sbin/capsh", "/sbin/capsh")
	p := startProc(t, "sleep", t.TempDir(), "", true, "/bin/sleep", "30")
	if err := checkNoSysTime(p.pid()); err != nil {
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
