//go:build linux

package interop

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// failoverPort is the part of a port in `timectl ptp -o json` that
// TestPTPFailover reads.
type failoverPort struct {
	State        string  `json:"state"`
	Reason       string  `json:"reason"`
	SinceAgo     float64 `json:"since_ago_s"`
	Parent       string  `json:"parent"`
	Grandmaster  string  `json:"grandmaster"`
	Offset       float64 `json:"offset_s"`
	Measurements uint64  `json:"measurements"`
}

// failoverStatus is the part of `timectl status -o json` (which `timectl
// sources` prints too) that TestPTPFailover reads.
type failoverStatus struct {
	Engine struct {
		Synchronized bool           `json:"synchronized"`
		Holdover     bool           `json:"holdover"`
		Message      string         `json:"message"`
		Sources      []sourceStatus `json:"sources"`
	} `json:"engine"`
	Clock struct {
		OffsetFromSystem float64 `json:"offset_from_system_s"`
	} `json:"clock"`
}

// TestPTPFailover: two ptp4l grandmasters (UDPv4, free running on the
// system clock, priority1 10 and 20, clock identities 0a0a0a.fffe.000010 and
// 0a0a0a.fffe.000020) and timed with a slave-only port, on one Ethernet
// segment (a bridge). Announces every second, Syncs four times a second,
// announce receipt timeout 3.
//
//   - timed reaches SLAVE following the priority1 10 grandmaster.
//   - That ptp4l is stopped: timed follows the priority1 20 one (which takes
//     over as master after its own announce receipt timeout) within 15 s,
//     reaches SLAVE again, and its offset stays within 1 ms (the
//     grandmasters share the system clock). The failover time, from
//     stopping the first grandmaster to timed's parent being the second, is
//     logged.
//   - That one is stopped too: within the announce receipt timeout plus a
//     margin the port leaves SLAVE for LISTENING, and `timectl ptp` says
//     "announce receipt timeout" naming the lost master; `timectl sources`
//     shows the ptp source not in use with that reason, and the engine in
//     holdover.
func TestPTPFailover(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	lan := bridgedLAN(t, 3)
	const (
		gm1ID = "0a0a0a.fffe.000010"
		gm2ID = "0a0a0a.fffe.000020"
	)
	gm := func(name string, end peers.VethEnd, prio int, id string) *peers.Ptp4l {
		return peers.StartPtp4l(t, name, end.Netns, end.Iface, "-4", fmt.Sprintf("priority1 %d", prio),
			"clockIdentity "+id, "free_running 1", "logAnnounceInterval 0", "logSyncInterval -2")
	}
	gm1 := gm("ptp4l-gm1", lan[0], 10, gm1ID)
	gm2 := gm("ptp4l-gm2", lan[1], 20, gm2ID)
	cfg := timedConfig{SimOffset: "0s", NoSources: true, Name: "failover",
		Extra: "ptp:\n  ports:\n    - {interface: " + lan[2].Iface + ", role: slave_only, transport: udp4, " +
			"announce_interval: 0, sync_interval: -2, announce_receipt_timeout: 3}\n"}
	tp := startTimed(t, cfg, lan[2].Netns)
	// The last Announce before a grandmaster stops came up to one
	// announce interval (1 s) earlier: the timeout expires 2 to 3 s after
	// the stop, checked every 100 ms.
	const (
		receiptTimeout = 3 * time.Second
		earliestLoss   = receiptTimeout - time.Second - 200*time.Millisecond
	)

	port := func() failoverPort {
		t.Helper()
		var r struct{ Ports []failoverPort }
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := tp.query(ctx, &r, "ptp"); err != nil {
			t.Fatal(err)
		}
		if len(r.Ports) != 1 {
			t.Fatalf("timectl ptp: %d ports, want 1", len(r.Ports))
		}
		return r.Ports[0]
	}
	status := func() failoverStatus {
		t.Helper()
		var r failoverStatus
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := tp.query(ctx, &r, "sources"); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// waitPort polls `timectl ptp` until ok holds and returns the port and
	// how long it took.
	waitPort := func(what string, within time.Duration, ok func(failoverPort) bool) (failoverPort, time.Duration) {
		t.Helper()
		start := time.Now()
		for {
			p := port()
			if ok(p) {
				return p, time.Since(start)
			}
			if time.Since(start) > within || tp.Exited() {
				t.Fatalf("%s: not within %v; last port %+v\n--- timed:\n%s", what, within, p, tp.Tail(20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	slaveOf := func(id string) func(failoverPort) bool {
		return func(p failoverPort) bool {
			return p.State == "SLAVE" && p.Grandmaster == id && strings.HasPrefix(p.Parent, id+"-")
		}
	}
	saneOffsets := func(when string) {
		t.Helper()
		p, st := port(), status()
		if math.Abs(p.Offset) > 1e-3 || math.Abs(st.Clock.OffsetFromSystem) > 1e-3 {
			t.Errorf("%s: port offset %.1f µs, clock %.1f µs from the system clock; want both within 1 ms",
				when, p.Offset*1e6, st.Clock.OffsetFromSystem*1e6)
		}
		if len(st.Engine.Sources) != 1 || st.Engine.Sources[0].State != "selected" || !st.Engine.Synchronized {
			t.Errorf("%s: sources %+v (synchronized %t), want the ptp source selected", when, st.Engine.Sources, st.Engine.Synchronized)
		}
		t.Logf("%s: port offset %+.2f µs, clock %+.2f µs from the system clock", when, p.Offset*1e6, st.Clock.OffsetFromSystem*1e6)
	}

	// 1. SLAVE of the priority1 10 grandmaster.
	waitPort("SLAVE of "+gm1ID, 45*time.Second, slaveOf(gm1ID))
	t.Logf("SLAVE of %s %v after the start", gm1ID, time.Since(tp.Started()).Round(100*time.Millisecond))
	// Let the engine select the source.
	time.Sleep(2 * time.Second)
	saneOffsets("following " + gm1ID)

	// 2. The first grandmaster goes: timed follows the second.
	gm1.Stop()
	p, failover := waitPort("parent "+gm2ID, 15*time.Second, func(p failoverPort) bool {
		return p.Grandmaster == gm2ID && strings.HasPrefix(p.Parent, gm2ID+"-")
	})
	t.Logf("failover: %v from stopping %s to timed's parent being %s (port %s: %s)",
		failover.Round(10*time.Millisecond), gm1ID, gm2ID, p.State, p.Reason)
	if failover < earliestLoss {
		t.Errorf("parent changed %v after the first grandmaster stopped, before the announce receipt timeout (%v)", failover, receiptTimeout)
	}
	_, took := waitPort("SLAVE of "+gm2ID, 10*time.Second, slaveOf(gm2ID))
	t.Logf("SLAVE of %s %v after stopping %s", gm2ID, (failover + took).Round(10*time.Millisecond), gm1ID)
	time.Sleep(2 * time.Second)
	saneOffsets("following " + gm2ID)

	// 3. The second goes too: LISTENING after the announce receipt
	// timeout, and the reason in words.
	gm2.Stop()
	p, lost := waitPort("LISTENING", receiptTimeout+3*time.Second, func(p failoverPort) bool { return p.State != "SLAVE" })
	t.Logf("port left SLAVE %v after stopping %s: %s: %s", lost.Round(10*time.Millisecond), gm2ID, p.State, p.Reason)
	if p.State != "LISTENING" {
		t.Errorf("port in %s after its last master went, want LISTENING", p.State)
	}
	if lost < earliestLoss {
		t.Errorf("port left SLAVE %v after the grandmaster stopped, before the announce receipt timeout (%v)", lost, receiptTimeout)
	}
	for _, want := range []string{"announce receipt timeout", gm2ID} {
		if !strings.Contains(p.Reason, want) {
			t.Errorf("timectl ptp: reason %q, want it to name %q", p.Reason, want)
		}
	}
	if p.Parent != "" || p.Grandmaster != "" {
		t.Errorf("timectl ptp: parent %q, grandmaster %q in LISTENING, want none", p.Parent, p.Grandmaster)
	}

	// The engine: the source is set aside with the port's reason and the
	// clock holds over. The engine's view follows at its next update (at
	// least once a second); before the port gives up, the missed Syncs
	// already show it unreachable.
	var st failoverStatus
	deadline := time.Now().Add(5 * time.Second)
	for {
		st = status()
		if st.Engine.Holdover && len(st.Engine.Sources) == 1 && st.Engine.Sources[0].State == "fault" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(st.Engine.Sources) != 1 {
		t.Fatalf("timectl sources: %+v, want one source", st.Engine.Sources)
	}
	src := st.Engine.Sources[0]
	t.Logf("timectl sources: %s %s: %q; engine: holdover %t, synchronized %t: %q",
		src.Name, src.State, src.Reason, st.Engine.Holdover, st.Engine.Synchronized, st.Engine.Message)
	if src.State == "selected" || src.State == "combined" || !strings.Contains(src.Reason, "announce receipt timeout") ||
		!strings.Contains(src.Reason, gm2ID) {
		t.Errorf("timectl sources: the ptp source %s: %q, want it not used, saying the announce receipt timeout from %s",
			src.State, src.Reason, gm2ID)
	}
	if !st.Engine.Holdover || st.Engine.Synchronized || !strings.Contains(st.Engine.Message, "holdover") {
		t.Errorf("engine: holdover %t, synchronized %t, message %q; want holdover, not synchronized",
			st.Engine.Holdover, st.Engine.Synchronized, st.Engine.Message)
	}
	if math.Abs(st.Clock.OffsetFromSystem) > 1e-3 {
		t.Errorf("clock %.1f µs from the system clock in holdover, want within 1 ms", st.Clock.OffsetFromSystem*1e6)
	}
	// What an operator sees.
	for _, cmd := range []string{"ptp", "sources", "status"} {
		out, err := exec.CommandContext(t.Context(), tp.timectl, "-s", tp.socket, cmd).CombinedOutput()
		if err != nil {
			t.Errorf("timectl %s: %v\n%s", cmd, err, out)
		}
		t.Logf("timectl %s:\n%s", cmd, out)
	}
}
