//go:build linux

package interop

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// ptpUnicastPorts is what the tests read of `timectl ptp -o json`.
type ptpUnicastPorts struct {
	Ports []struct {
		State, Reason, Grandmaster, Timestamps string
		Measurements                           uint64
		Dropped                                map[string]uint64
		UnicastMasters                         []struct {
			Address, Identity string
			Selected          bool
			Grants            []struct {
				Message, State string
				LogInterval    int8    `json:"log_interval"`
				Left           float64 `json:"left_s"`
			}
		} `json:"unicast_masters"`
	}
}

// TestPTPUnicast: ptp4l as grandmaster over UDPv4 in one namespace; in the
// other, across a veth pair, timed with a slave-only port that has the
// grandmaster's address as its one unicast master.
//
// "unicast_listen": ptp4l serves unicast (unicast_listen 1). timed is
// granted Announce, Sync and Delay_Resp, reaches SLAVE on unicast messages
// alone (it does not use the grandmaster's multicast ones), and its
// offset estimates stay within 3 µs RMS over 60 s after 30 s (timed's
// clock starts on the system clock, which is ptp4l's: the true offset is
// zero).
//
// "no unicast_listen": ptp4l only multicasts and does not answer requests.
// timectl ptp shows the master as "no answer", the port never leaves
// LISTENING, and the multicast messages are counted as not used.
func TestPTPUnicast(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	t.Run("unicast_listen", func(t *testing.T) {
		t.Parallel()
		a, b := peers.NewVethPair(t)
		gm := peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-4", "priority1 10", "free_running 1", "unicast_listen 1")
		cfg := timedConfig{SimOffset: "0ms", NoSources: true}
		cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: udp4, unicast_masters: [" +
			a.Addr.Addr().String() + "]}\n"
		tp := startTimed(t, cfg, b.Netns)
		smp := tp.sample(time.Second)
		time.Sleep(syncWithin + rmsWindow)
		samples := smp.Stop()
		r := checkSync(t, "ptp4l unicast", samples)
		var est []float64
		for _, s := range samples {
			if s.Err != nil || s.At < syncWithin || len(s.Status.Engine.Sources) != 1 {
				continue
			}
			est = append(est, s.Status.Engine.Sources[0].Offset+s.Status.Clock.OffsetFromSystem)
		}
		tracePTP(t, samples)
		em, es := meanSD(est)
		t.Logf("unicast over %v: timed's estimates %.2f µs RMS (mean %+.2f, SD %.2f; clock %.2f µs; %d samples)",
			rmsWindow, rms(est)*1e6, em*1e6, es*1e6, r.RMS*1e6, len(est))
		switch {
		case len(est) < 30:
			t.Errorf("too few samples: %d\n%s", len(est), tp.Tail(30))
		case rms(est) > 3e-6:
			t.Errorf("timed's estimates %.2f µs RMS, want at most 3 µs", rms(est)*1e6)
		}

		var ports ptpUnicastPorts
		if err := tp.query(t.Context(), &ports, "ptp"); err != nil {
			t.Fatal(err)
		}
		if len(ports.Ports) != 1 {
			t.Fatalf("timectl ptp: %+v, want one port", ports)
		}
		p := ports.Ports[0]
		t.Logf("timectl ptp: %+v", p)
		if p.State != "SLAVE" || p.Grandmaster == "" || p.Measurements < 30 {
			t.Errorf("port %s (%s), grandmaster %q, %d measurements: want SLAVE with a grandmaster", p.State, p.Reason, p.Grandmaster, p.Measurements)
		}
		if p.Dropped["not_unicast_master"] == 0 {
			t.Errorf("no multicast message counted as not used (not_unicast_master), though ptp4l multicasts too: %v", p.Dropped)
		}
		if len(p.UnicastMasters) != 1 {
			t.Fatalf("unicast masters %+v, want one", p.UnicastMasters)
		}
		m := p.UnicastMasters[0]
		if m.Address != a.Addr.Addr().String() || !m.Selected || m.Identity == "" || !strings.HasPrefix(m.Identity, p.Grandmaster) {
			t.Errorf("unicast master %+v, want %s selected, with the grandmaster's identity %s", m, a.Addr.Addr(), p.Grandmaster)
		}
		granted := map[string]bool{}
		for _, g := range m.Grants {
			granted[g.Message] = g.State == "granted" && g.Left > 0 && g.Left <= 60
		}
		for _, msg := range []string{"announce", "sync", "delay_resp"} {
			if !granted[msg] {
				t.Errorf("%s not granted: %+v", msg, m.Grants)
			}
		}
		out := runTimectl(t, tp, "ptp")
		for _, want := range []string{"Unicast masters:", a.Addr.Addr().String() + ", identity", "(selected)", "announce     every 2^1 s: granted",
			"sync         every 2^0 s: granted", "delay_resp   every 2^0 s: granted"} {
			if !strings.Contains(out, want) {
				t.Errorf("timectl ptp lacks %q:\n%s", want, out)
			}
		}
		if gm.Exited() {
			t.Errorf("ptp4l exited: %v\n%s", gm.Err(), gm.Tail(20))
		}
	})
	t.Run("no unicast_listen", func(t *testing.T) {
		t.Parallel()
		a, b := peers.NewVethPair(t)
		gm := peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-4", "priority1 10", "free_running 1")
		cfg := timedConfig{SimOffset: "0ms", NoSources: true}
		cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: udp4, unicast_masters: [" +
			a.Addr.Addr().String() + "]}\n"
		tp := startTimed(t, cfg, b.Netns)
		// ptp4l is master after about 7 s and multicasts from then on;
		// a multicast client would be SLAVE within about 15 s.
		deadline := time.Now().Add(25 * time.Second)
		var ports ptpUnicastPorts
		for time.Now().Before(deadline) {
			time.Sleep(time.Second)
			if err := tp.query(t.Context(), &ports, "ptp"); err != nil {
				t.Fatal(err)
			}
			if len(ports.Ports) == 1 && (ports.Ports[0].State == "SLAVE" || ports.Ports[0].State == "UNCALIBRATED") {
				t.Fatalf("port %s without unicast service: %+v", ports.Ports[0].State, ports.Ports[0])
			}
		}
		if len(ports.Ports) != 1 || len(ports.Ports[0].UnicastMasters) != 1 {
			t.Fatalf("timectl ptp: %+v, want one port with one unicast master", ports)
		}
		p := ports.Ports[0]
		t.Logf("timectl ptp: %+v", p)
		m := p.UnicastMasters[0]
		if p.State != "LISTENING" || m.Selected || len(m.Grants) != 1 || m.Grants[0].Message != "announce" || m.Grants[0].State != "no answer" {
			t.Errorf("port %s, unicast master %+v: want LISTENING with announce asked for and no answer", p.State, m)
		}
		if p.Dropped["not_unicast_master"] == 0 {
			t.Errorf("ptp4l's multicast messages not counted as not used: %v", p.Dropped)
		}
		if out := runTimectl(t, tp, "ptp"); !strings.Contains(out, "announce     every 2^1 s: no answer") {
			t.Errorf("timectl ptp does not say no answer:\n%s", out)
		}
		if !strings.Contains(gm.Output(), "assuming the grand master role") {
			t.Errorf("ptp4l never became grandmaster:\n%s", gm.Tail(20))
		}
	})
}

// runTimectl runs `timectl -s SOCKET ARGS...` and returns its plain text
// output.
func runTimectl(t *testing.T, tp *timedProc, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), tp.timectl, append([]string{"-s", tp.socket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("timectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
