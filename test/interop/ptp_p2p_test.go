//go:build linux

package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// p2pComplaints are what a ptp4l port with the peer delay mechanism logs
// when its neighbour does not take part: a Delay_Req on its P2P port, a
// fault (its Pdelay_Req unanswered), more than one responder.
var p2pComplaints = []string{"delay request on P2P port", "FAULT", "fault", "multiple", "peer delay"}

// TestPTPPeerToPeerPtp4l: ptp4l as grandmaster with the peer delay
// mechanism (UDPv4, software timestamps, free running) in one namespace;
// in the other, across a veth pair, timed with a slave-only port using
// the peer delay mechanism too, its virtual clock starting on the system
// clock. timed selects the PTP source and its clock stays within 1 ms of
// the grandmaster (the system clock) for 30 s; timectl ptp shows a SLAVE
// port with a measured mean link delay; ptp4l stays MASTER and logs no
// complaint: it gets answers to its Pdelay_Req and no Delay_Req.
func TestPTPPeerToPeerPtp4l(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	a, b := peers.NewVethPair(t)
	gm := peers.StartPtp4l(t, "ptp4l-gm-p2p", a.Netns, a.Iface, "-4", "priority1 10", "free_running 1",
		"delay_mechanism P2P", "logMinPdelayReqInterval -1")
	cfg := timedConfig{SimOffset: "0ms", NoSources: true}
	cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: udp4, delay_mechanism: p2p, delay_req_interval: -1}\n"
	tp := startTimed(t, cfg, b.Netns)
	smp := tp.sample(time.Second)
	time.Sleep(30 * time.Second)
	samples := smp.Stop()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		t.Logf("ptp4l:\n%s\ntimed:\n%s", gm.Tail(30), tp.Tail(30))
	}

	r := analyse(samples, 0, 30*time.Second)
	t.Logf("offset from the system clock over 30 s: RMS %.1f µs, max %.1f µs, %d samples", r.RMS*1e6, r.Max*1e6, r.N)
	if r.N < 20 || r.Max > 1e-3 {
		fail("clock off by up to %.1f µs (%d samples), want within 1 ms", r.Max*1e6, r.N)
	}
	last := lastGood(samples)
	if last == nil || len(last.Status.Engine.Sources) != 1 {
		t.Fatalf("no status with one source:\n%s", tp.Tail(30))
	}
	if src := last.Status.Engine.Sources[0]; src.Kind != "ptp" || src.State != "selected" {
		fail("source %+v, want a selected ptp source", src)
	}
	var ports struct {
		Ports []struct {
			State, Grandmaster, Timestamps string
			MeanPathDelay                  float64 `json:"mean_path_delay_s"`
			Measurements                   uint64
			Dropped                        map[string]uint64
		}
	}
	if err := tp.query(t.Context(), &ports, "ptp"); err != nil {
		t.Fatal(err)
	}
	if p := ports.Ports; len(p) != 1 || p[0].State != "SLAVE" || p[0].MeanPathDelay <= 0 || p[0].Measurements < 15 {
		fail("timectl ptp: %+v, want one SLAVE port with a mean link delay and measurements", p)
	} else {
		t.Logf("timectl ptp: %+v (mean link delay %.1f µs)", p[0], p[0].MeanPathDelay*1e6)
	}
	if st := gm.PortState(t); st != "MASTER" {
		fail("ptp4l is %q, want MASTER", st)
	}
	for _, l := range strings.Split(gm.Output(), "\n") {
		for _, c := range p2pComplaints {
			if strings.Contains(l, c) {
				fail("ptp4l complains: %s", l)
			}
		}
	}
	if gm.Exited() {
		fail("ptp4l exited: %v", gm.Err())
	}
}
