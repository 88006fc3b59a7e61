//go:build linux

package interop

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// TestPTPClientPtp4l: ptp4l as grandmaster (software timestamps, free
// running on the system clock) in one namespace; in the other, across a
// veth pair, timed with a slave-only PTP port.
//
// "from 200 ms off": timed's virtual clock starts 200 ms and +50 ppm off,
// the grandmaster sends 8 Syncs a second; timed comes within 1 ms of the
// grandmaster in 30 s and then stays within 50 µs RMS over 60 s.
//
// "next to ptp4l" (UDPv4 and Ethernet): timed's clock starts on the system
// clock, and next to it, on the same link in the same run, runs a ptp4l
// slave (without CAP_SYS_TIME, so its clock stays the system clock: its
// true offset is zero and the offsets it reports are its measurement
// error). Both reach SLAVE; the RMS of timed's offset estimates and of
// ptp4l's offsets over 60 s are logged side by side, and timed's must be
// no worse than ptp4l's on Ethernet, at most 3× ptp4l's on UDPv4 (or below
// 0.5 µs either way).
func TestPTPClientPtp4l(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	t.Run("from 200 ms off", func(t *testing.T) {
		t.Parallel()
		a, b := peers.NewVethPair(t)
		// Syncs and delay requests 8 times a second, as telecom profiles
		// send them: the frequency error is learned within seconds.
		peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-4", "priority1 10", "free_running 1", "logSyncInterval -3", "logMinDelayReqInterval -3")
		cfg := simulatedStart
		cfg.NoSources = true
		cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: udp4, sync_interval: -3, delay_req_interval: -3}\n"
		tp := startTimed(t, cfg, b.Netns)
		smp := tp.sample(time.Second)
		time.Sleep(syncWithin + rmsWindow)
		r := checkSync(t, "ptp4l", smp.Stop())
		if r.FirstSync < 0 || r.FirstSync > syncWithin {
			t.Errorf("not within 1 ms of the grandmaster within %v (first at %v)", syncWithin, fmtAt(r.FirstSync))
		}
		if r.RMS > 50e-6 {
			t.Errorf("RMS offset %.1f µs over %v, want < 50 µs", r.RMS*1e6, rmsWindow)
		}
	})
	for _, tc := range []struct {
		name, transport, flag string
		// slack is how much worse than ptp4l's timed's RMS may be, a
		// guard against regressions: the goal (no worse) is
		// logged when missed. On these veths a frame's time from its
		// transmit timestamp to the peer's receive timestamp depends on
		// the sender's caches: ~2.4 µs when its path has been idle, ~1 µs
		// right after another send. ptp4l's Syncs are mostly cold; timed
		// warms its event messages first (ptp.warm). timed's estimate
		// rests on the shortest round trips, which pair ptp4l's fast
		// Syncs with timed's fast Delay_Reqs: in 7 runs each over UDPv4
		// and Ethernet (one CI) it sat +0.13 to +0.41 µs off (0.18–0.41
		// µs RMS) where ptp4l's slave was 0.48–0.72 µs RMS (3.96 once,
		// with a late Sync). Before warming, timed's cold Delay_Reqs
		// put it +0.6 to +1.2 µs off over UDPv4 and it lost half the runs.
		slack float64
		// floor: below this RMS timed passes whatever ptp4l reached.
		// Below 1 µs both are at the noise of software timestamps on a
		// loaded machine, and which is better is chance.
		floor float64
	}{
		{"next to ptp4l, udp4", "udp4", "-4", 1.5, 1e-6},
		{"next to ptp4l, l2", "l2", "-2", 1.5, 1e-6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := peers.NewVethPair(t)
			gm := peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, tc.flag, "priority1 10", "free_running 1")
			// The clocks are one: timed's virtual clock starts on the
			// system clock, as the ptp4l slave's clock is it.
			cfg := timedConfig{SimOffset: "0ms", NoSources: true}
			cfg.Extra = "ptp:\n  ports:\n    - {interface: " + b.Iface + ", role: slave_only, transport: " + tc.transport + "}\n"
			// The ptp4l slave shares timed's interface, so it needs a clock
			// identity of its own. It starts first, so that the two see the
			// link in the same conditions from their first exchange (the
			// path's delays rose by about 2 µs when it joined after timed,
			// and timed's oldest, shorter delays then stood for the path
			// for minutes).
			slave := peers.StartPtp4l(t, "ptp4l-slave", b.Netns, b.Iface, tc.flag, "slaveOnly 1",
				"clockIdentity 02aaaa.fffe.000001", "pi_proportional_const 0.7", "pi_integral_const 0.3")
			tp := startTimed(t, cfg, b.Netns)

			smp := tp.sample(time.Second)
			time.Sleep(syncWithin)
			before := len(peers.ServoSamples(slave.Output()))
			time.Sleep(rmsWindow)
			samples := smp.Stop()
			r := checkSync(t, "ptp4l "+tc.name, samples)

			// timed's offset estimates against the truth: the source's
			// filtered offset and its raw last offset, each plus the
			// virtual clock's own offset from the system clock.
			var est, raw []float64
			for _, s := range samples {
				if s.Err != nil || s.At < syncWithin || len(s.Status.Engine.Sources) != 1 {
					continue
				}
				src, d := s.Status.Engine.Sources[0], s.Status.Clock.OffsetFromSystem
				est = append(est, src.Offset+d)
				raw = append(raw, src.LastOffset+d)
			}
			theirs := ptp4lLocked(slave, before)
			em, es := meanSD(est)
			tm, ts := meanSD(theirs)
			t.Logf("%s, same link, same run, over %v: timed's estimates %.2f µs RMS (mean %+.2f, SD %.2f; raw measurements %.2f µs, clock %.2f µs; %d samples), ptp4l slave's offsets %.2f µs RMS (mean %+.2f, SD %.2f; %d locked samples)",
				tc.name, rmsWindow, rms(est)*1e6, em*1e6, es*1e6, rms(raw)*1e6, r.RMS*1e6, len(est), rms(theirs)*1e6, tm*1e6, ts*1e6, len(theirs))
			if tracePTP(t, samples) {
				servo := peers.ServoSamples(slave.Output())
				for _, s := range servo[min(before, len(servo)):] {
					t.Logf("ptp4l %.0f %s %.0f", s.Offset*1e9, s.State, s.Delay*1e9)
				}
			}
			switch {
			case len(est) < 30 || len(theirs) < 30:
				t.Errorf("too few samples: timed %d, ptp4l %d\nptp4l slave:\n%s", len(est), len(theirs), slave.Tail(20))
			case rms(est) > max(tc.slack*rms(theirs), tc.floor):
				t.Errorf("timed's estimates %.2f µs RMS, want at most %g× the ptp4l slave's %.2f µs (or %.1f µs)",
					rms(est)*1e6, tc.slack, rms(theirs)*1e6, tc.floor*1e6)
			case rms(est) > rms(theirs) && rms(est) > 0.5e-6:
				t.Logf("issue 5's goal not met in this run: timed's estimates %.2f µs RMS, the ptp4l slave's %.2f µs", rms(est)*1e6, rms(theirs)*1e6)
			}
			last := lastGood(samples)
			if last == nil || len(last.Status.Engine.Sources) != 1 {
				t.Fatalf("no status with one source:\n%s", tp.Tail(30))
			}
			if src := last.Status.Engine.Sources[0]; src.Kind != "ptp" || src.State != "selected" {
				t.Errorf("source %+v, want a selected ptp source", src)
				n := 0
				for _, l := range strings.Split(tp.Output(), "\n") {
					if n < 40 && !strings.Contains(l, "no master selected") {
						t.Log(l)
						n++
					}
				}
			}
			var ports struct {
				Ports []struct {
					State, Grandmaster, Timestamps string
					MeanPathDelay                  float64 `json:"mean_path_delay_s"`
					Measurements                   uint64
				}
			}
			if err := tp.query(t.Context(), &ports, "ptp"); err != nil {
				t.Fatal(err)
			}
			if p := ports.Ports; len(p) != 1 || p[0].State != "SLAVE" || p[0].Grandmaster == "" || p[0].Timestamps != "kernel" ||
				p[0].MeanPathDelay <= 0 || p[0].Measurements < 30 {
				t.Errorf("timectl ptp: %+v, want one SLAVE port with its grandmaster, kernel timestamps, a path delay and measurements", p)
			} else {
				t.Logf("timectl ptp: %+v", p[0])
			}
			if st := slave.PortState(t); st != "SLAVE" {
				t.Errorf("the ptp4l slave is %q, want SLAVE", st)
			}
			if gm.Exited() {
				t.Errorf("ptp4l exited: %v\n%s", gm.Err(), gm.Tail(20))
			}
		})
	}
}

// tracePTP logs timed's source per status sample (filtered and raw offset,
// the virtual clock's offset from the system clock, delay, minimum delay
// and asymmetry, in ns) when TIMED_PTP_TRACE is set, and reports whether
// it is.
func tracePTP(t *testing.T, samples []sample) bool {
	t.Helper()
	if os.Getenv("TIMED_PTP_TRACE") == "" {
		return false
	}
	for _, s := range samples {
		if s.Err == nil && len(s.Status.Engine.Sources) == 1 {
			src := s.Status.Engine.Sources[0]
			t.Logf("trace %.1f off %.0f last %.0f d %.0f delay %.0f min %.0f asym %.3f", s.At.Seconds(), src.Offset*1e9, src.LastOffset*1e9,
				s.Status.Clock.OffsetFromSystem*1e9, src.Delay*1e9, src.MinDelay*1e9, src.Asymmetry)
		}
	}
	return true
}
