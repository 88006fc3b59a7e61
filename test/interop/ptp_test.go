//go:build linux

package interop

import (
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// TestPTPClientPtp4l: ptp4l as grandmaster (software timestamps, UDPv4,
// free running on the system clock) in one namespace; timed, its virtual
// clock started 200 ms and +50 ppm off, with a slave-only PTP port in the
// other, across a veth pair. timed's port reaches SLAVE, its source is
// selected, and its clock follows the system clock (which is the
// grandmaster's) within 1 ms in 30 s; the offset RMS over the next 60 s is
// logged next to what a ptp4l slave reaches in the same setup.
func TestPTPClientPtp4l(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	binaries(t)
	a, b := peers.NewVethPair(t)
	gm := peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-4", "priority1 10", "free_running 1")
	cfg := simulatedStart
	cfg.NoSources = true
	cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: udp4}\n"
	tp := startTimed(t, cfg, b.Netns)

	smp := tp.sample(time.Second)
	time.Sleep(syncWithin + rmsWindow)
	samples := smp.Stop()
	r := checkSync(t, "ptp4l", samples)
	if r.FirstSync < 0 || r.FirstSync > syncWithin {
		t.Errorf("not within 1 ms of the grandmaster within %v (first at %v)", syncWithin, fmtAt(r.FirstSync))
	}
	if r.RMS > 50e-6 {
		t.Errorf("RMS offset %.1f µs over the last %v, want < 50 µs", r.RMS*1e6, rmsWindow)
	}
	last := lastGood(samples)
	if last == nil || len(last.Status.Engine.Sources) != 1 {
		t.Fatalf("no status with one source:\n%s", tp.Tail(30))
	}
	src := last.Status.Engine.Sources[0]
	t.Logf("source %s (%s): state %s, %s; delay %.1f µs", src.Name, src.Kind, src.State, src.Reason, src.Delay*1e6)
	if src.Kind != "ptp" || src.State != "selected" {
		t.Errorf("source %+v, want a selected ptp source", src)
	}
	if gm.Exited() {
		t.Errorf("ptp4l exited: %v\n%s", gm.Err(), gm.Tail(20))
	}
}
