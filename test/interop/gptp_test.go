//go:build linux

package interop

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// linuxptpConfig reads one of linuxptp's shipped example configurations
// (/usr/share/doc/linuxptp/configs) as [global] lines, with the keys in
// override replaced by the values given there.
func linuxptpConfig(t *testing.T, name string, override map[string]string) []string {
	t.Helper()
	path := "/usr/share/doc/linuxptp/configs/" + name
	f, err := os.Open(path)
	if err != nil {
		testenv.Missing(t, "linuxptp's example configuration "+path)
	}
	defer f.Close()
	var lines []string
	done := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		key := strings.Fields(line)[0]
		if v, ok := override[key]; ok {
			line, done[key] = key+" "+v, true
		}
		lines = append(lines, line)
	}
	for k, v := range override {
		if !done[k] {
			lines = append(lines, k+" "+v)
		}
	}
	return lines
}

// gptpSoftware are the overrides every ptp4l of these tests takes: with
// software timestamps a veth's mean link delay (about 2 µs) is above
// 802.1AS's 800 ns asCapable threshold.
var gptpSoftware = map[string]string{"neighborPropDelayThresh": "100000"}

func withOverrides(base map[string]string, more ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(more); i += 2 {
		m[more[i]] = more[i+1]
	}
	return m
}

// gptpStatus is what the tests read of `timectl ptp -o json` for a gPTP
// port.
type gptpStatus struct {
	Ports []struct {
		Interface, State, Reason, Parent, Grandmaster string
		Measurements                                  uint64
		MeanPathDelay                                 float64 `json:"mean_path_delay_s"`
		Dropped                                       map[string]uint64
		GPTP                                          *struct {
			Profile           string
			ASCapable         bool    `json:"as_capable"`
			Neighbor          string  `json:"neighbor"`
			NeighborRateRatio float64 `json:"neighbor_rate_ratio"`
			LogSyncInterval   int8    `json:"log_sync_interval"`
			PdelayExchanges   uint64  `json:"pdelay_exchanges"`
			FirstSync         float64 `json:"first_sync_s"`
		}
	}
}

func gptpPort(t *testing.T, tp *timedProc) gptpStatus {
	t.Helper()
	var st gptpStatus
	if err := tp.query(t.Context(), &st, "ptp"); err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 1 || st.Ports[0].GPTP == nil {
		t.Fatalf("timectl ptp: %+v, want one gPTP port", st)
	}
	return st
}

// gptpEstimates are timed's estimates of its offset from the truth (the
// source's filtered offset plus the clock's offset from the system clock)
// after settle.
func gptpEstimates(samples []sample, settle time.Duration) []float64 {
	var est []float64
	for _, s := range samples {
		if s.Err != nil || s.At < settle || len(s.Status.Engine.Sources) != 1 {
			continue
		}
		est = append(est, s.Status.Engine.Sources[0].Offset+s.Status.Clock.OffsetFromSystem)
	}
	return est
}

// ptp4lLocked are a ptp4l slave's locked offsets logged after skip
// samples.
func ptp4lLocked(p *peers.Ptp4l, skip int) []float64 {
	var out []float64
	servo := peers.ServoSamples(p.Output())
	for _, s := range servo[min(skip, len(servo)):] {
		if s.Locked() {
			out = append(out, s.Offset)
		}
	}
	return out
}

// TestGPTP: 802.1AS with ptp4l over veth pairs between network namespaces,
// software timestamps, each case beside a ptp4l-to-ptp4l pair with the
// same configuration run at the same time (two slaves cannot share one
// gPTP link: each would answer the other's peer delay requests).
//
//   - "ptp4l gm, timed slave": ptp4l with linuxptp's gPTP.cfg as
//     grandmaster, timed's port not grandmaster-capable. timed's port is
//     asCapable and SLAVE, its clock within 1 ms of the truth within 20 s,
//     and its estimates no worse than the ptp4l slave's offsets (or below
//     0.5 µs RMS, the noise of software timestamps here).
//   - "timed gm, ptp4l slave": timed as grandmaster, a ptp4l slave with
//     gPTP.cfg: the ptp4l slave locks, and its offsets are no worse than
//     they are with ptp4l as grandmaster (or below 0.5 µs RMS).
//   - "automotive, ptp4l master": ptp4l with automotive-master.cfg, timed
//     with the automotive slave profile: no Announce, timed measures, asks
//     for the operational Sync interval (2^0 s) once synchronized, and its
//     estimates are no worse than a ptp4l automotive-slave.cfg slave's.
//   - "automotive, timed master": timed as automotive master, ptp4l with
//     automotive-slave.cfg: ptp4l locks to timed, its offsets no worse than
//     with ptp4l as master.
//
// The time from timed's start to its first measurement is logged.
func TestGPTP(t *testing.T) {
	// Not parallel with the other tests: the PTP tests measure µs, and
	// so do the NTP tests they would load.
	testenv.RequireRoot(t)
	binaries(t)
	// The goal is that timed's offsets be no worse than ptp4l's
	// in the same setup. Every run logs that comparison; it is not met in
	// every run (see below and the notes), so what fails the test is a
	// loss of more than regressionMargin against ptp4l: a regression
	// guard, with the goal itself open in issue 6.
	const regressionMargin = 1e-6
	// Shorter than the NTP tests' windows: at 8 Syncs a second these see
	// more samples in less time (the interop run must stay near 20 min).
	const settle, window = 20 * time.Second, 40 * time.Second
	// Both slaves carry the same bias of this link: ptp4l's Syncs leave on
	// a timer with the sender's transmit path cold (~2 µs from transmit
	// timestamp to receive timestamp on these veths, ~1 µs warm), and the
	// link delay that corrects them is half a cold request's leg and a
	// warm response's (see ptp.warm). Their RMS differ by noise and by
	// each one's estimate of the link delay: in 7 runs with warming,
	// timed's mean offset was -0.4 to -1.4 µs, the ptp4l slave's +0.7 to
	// +1.8 µs. Next to the automotive master (one cold Sync a second)
	// that makes a tie: timed was better in 4 of the 7.
	const slaveSlack = 1.25
	// As master, timed is compared by the spread of the ptp4l slave's
	// offsets (90th − 10th percentile) and their median, not their RMS:
	// 1-3% of timed's Syncs reached the slave 10-35 µs later than their
	// transmit timestamp says, also alone on a quiet machine. Traced with
	// perf: each had a local timer interrupt between the transmit
	// timestamp and the frame's delivery in the veth, from the threads that
	// wake with the timer that sends the Sync. Ethernet event messages now
	// wait 100 µs after that wake (ptp/settle_linux.go), which removed them
	// on a quiet machine; under load some remain, and those few set the
	// RMS. The RMS is logged. timed's Syncs also leave with the transmit
	// path warmed (ptp.warm): in 8 runs with it the ptp4l slave of timed
	// was 0.23–0.87 µs RMS (gPTP; 3.37 once, with two late Syncs) and
	// 0.19–0.55 µs (automotive, 7 runs), the ptp4l slave of ptp4l
	// 0.66–3.12 µs.
	// The median is each link's own bias (its Sync path against its peer
	// delay exchanges), which differs between pairs by about ±1 µs: it
	// must stay within maxBias.
	const masterSlack = 1.5
	const maxBias = 2e-6
	masterLimit := func(theirs float64) float64 { return max(masterSlack*theirs, theirs+regressionMargin) }
	gptpGM := linuxptpConfig(t, "gPTP.cfg", withOverrides(gptpSoftware, "priority1", "10", "free_running", "1"))
	// The slaves log every offset (summary_interval at the Sync rate), not
	// a summary a second.
	gptpSlave := linuxptpConfig(t, "gPTP.cfg", withOverrides(gptpSoftware, "slaveOnly", "1",
		"pi_proportional_const", "0.7", "pi_integral_const", "0.3", "summary_interval", "-3"))
	autoMaster := linuxptpConfig(t, "automotive-master.cfg", withOverrides(gptpSoftware, "free_running", "1"))
	autoSlave := linuxptpConfig(t, "automotive-slave.cfg", withOverrides(gptpSoftware,
		"pi_proportional_const", "0.7", "pi_integral_const", "0.3", "summary_interval", "-3"))

	// timedSlave runs the timed slave and, on another pair, the ptp4l
	// slave of the same kind of master, and compares them.
	timedSlave := func(t *testing.T, name string, master, slave []string, port string) {
		a, b := peers.NewVethPair(t)
		c, d := peers.NewVethPair(t)
		peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-2", master...)
		peers.StartPtp4l(t, "ptp4l-gm-ref", c.Netns, c.Iface, "-2", master...)
		ref := peers.StartPtp4l(t, "ptp4l-slave-ref", d.Netns, d.Iface, "-2", slave...)
		cfg := timedConfig{SimOffset: "0ms", NoSources: true, Name: "gptp-slave",
			Extra: "gptp:\n  ports:\n    - {interface: " + b.Iface + ", " + port + "}\n"}
		tp := startTimed(t, cfg, b.Netns)
		smp := tp.sample(time.Second)
		time.Sleep(settle)
		before := len(peers.ServoSamples(ref.Output()))
		time.Sleep(window)
		samples := smp.Stop()
		r := analyse(samples, settle, settle+window)
		if r.FirstSync < 0 || r.FirstSync > settle || r.N < int(window/time.Second)*3/4 || !(r.RMS < rmsLimit) {
			t.Errorf("%s: clock within 1 ms of the truth at %v (want within %v), then %.1f µs RMS over %d samples (want < %.0f µs over %d)",
				name, fmtAt(r.FirstSync), settle, r.RMS*1e6, r.N, rmsLimit*1e6, int(window/time.Second)*3/4)
		}
		est := gptpEstimates(samples, settle)
		theirs := ptp4lLocked(ref, before)
		em, es := meanSD(est)
		tm, ts := meanSD(theirs)
		st := gptpPort(t, tp)
		p := st.Ports[0]
		t.Logf("%s over %v: timed's estimates %.2f µs RMS (mean %+.2f, SD %.2f; clock %.2f µs; %d samples), ptp4l slave's offsets %.2f µs RMS (mean %+.2f, SD %.2f; %d locked samples); first Sync %.1f s after start; link delay %.2f µs, neighbor rate ratio %.9f, %d pdelay exchanges",
			name, window, rms(est)*1e6, em*1e6, es*1e6, r.RMS*1e6, len(est), rms(theirs)*1e6, tm*1e6, ts*1e6, len(theirs),
			p.GPTP.FirstSync, p.MeanPathDelay*1e6, p.GPTP.NeighborRateRatio, p.GPTP.PdelayExchanges)
		switch {
		case len(est) < 20 || len(theirs) < 10:
			t.Errorf("too few samples: timed %d, ptp4l %d\n%s\nptp4l slave:\n%s", len(est), len(theirs), tp.Tail(20), ref.Tail(20))
		case rms(est) > max(slaveSlack*rms(theirs), rms(theirs)+regressionMargin):
			t.Errorf("timed's estimates %.2f µs RMS, want no worse than %g× the ptp4l slave's %.2f µs (or %.1f µs more)",
				rms(est)*1e6, slaveSlack, rms(theirs)*1e6, regressionMargin*1e6)
		case rms(est) > rms(theirs):
			t.Logf("%s: issue 6's goal not met in this run: timed's estimates %.2f µs RMS, the ptp4l slave's %.2f µs", name, rms(est)*1e6, rms(theirs)*1e6)
		}
		if p.State != "SLAVE" || !p.GPTP.ASCapable || p.Measurements < 20 || p.GPTP.Neighbor == "" || p.MeanPathDelay <= 0 {
			t.Errorf("timectl ptp: %+v %+v, want an asCapable SLAVE with measurements and a measured link", p, *p.GPTP)
		}
		if out := runTimectl(t, tp, "ptp"); !strings.Contains(out, "gPTP:") || !strings.Contains(out, "neighbor rate ratio") {
			t.Errorf("timectl ptp does not show the gPTP port:\n%s", out)
		}
		if !strings.Contains(port, "automotive") {
			return
		}
		if p.GPTP.LogSyncInterval != 0 {
			t.Errorf("the automotive slave's Sync interval is 2^%d s, want the operational 2^0 s after it asked", p.GPTP.LogSyncInterval)
		}
	}

	// timedMaster runs timed as master of a ptp4l slave and, on another
	// pair, the ptp4l slave of a ptp4l master, and compares the slaves.
	timedMaster := func(t *testing.T, name string, master, slave []string, port string) {
		a, b := peers.NewVethPair(t)
		c, d := peers.NewVethPair(t)
		cfg := timedConfig{SimOffset: "0ms", NoSources: true, Name: "gptp-gm",
			Extra: "gptp:\n  ports:\n    - {interface: " + a.Iface + ", " + port + "}\n"}
		gm := startTimed(t, cfg, a.Netns)
		ours := peers.StartPtp4l(t, "ptp4l-slave", b.Netns, b.Iface, "-2", slave...)
		peers.StartPtp4l(t, "ptp4l-gm-ref", c.Netns, c.Iface, "-2", master...)
		ref := peers.StartPtp4l(t, "ptp4l-slave-ref", d.Netns, d.Iface, "-2", slave...)
		time.Sleep(settle)
		beforeOurs, beforeRef := len(peers.ServoSamples(ours.Output())), len(peers.ServoSamples(ref.Output()))
		time.Sleep(window)
		mine, theirs := ptp4lLocked(ours, beforeOurs), ptp4lLocked(ref, beforeRef)
		mm, ms := meanSD(mine)
		tm, ts := meanSD(theirs)
		st := gptpPort(t, gm)
		t.Logf("%s over %v: ptp4l slave of timed %.2f µs RMS (mean %+.2f, SD %.2f; %d locked samples), ptp4l slave of ptp4l %.2f µs RMS (mean %+.2f, SD %.2f; %d locked samples); timed: %s, %d pdelay exchanges answered as seen by it",
			name, window, rms(mine)*1e6, mm*1e6, ms*1e6, len(mine), rms(theirs)*1e6, tm*1e6, ts*1e6, len(theirs),
			st.Ports[0].State, st.Ports[0].GPTP.PdelayExchanges)
		t.Logf("%s: ptp4l slave of timed, offset percentiles %s; of ptp4l %s", name, percentiles(mine), percentiles(theirs))
		switch {
		case len(mine) < 10 || len(theirs) < 10:
			t.Errorf("too few locked samples: of timed %d, of ptp4l %d\nptp4l slave of timed:\n%s\n--- timed:\n%s", len(mine), len(theirs), ours.Tail(20), gm.Tail(20))
		case spread(mine) > masterLimit(spread(theirs)) || math.Abs(quantile(mine, 0.5)) > maxBias:
			t.Errorf("ptp4l's offsets from timed: spread (90th − 10th percentile) %.2f µs, median %+.2f µs; want a spread no worse than %g× (or 1 µs more than) ptp4l's from ptp4l, %.2f µs, and a median within ±%.0f µs",
				spread(mine)*1e6, quantile(mine, 0.5)*1e6, masterSlack, spread(theirs)*1e6, maxBias*1e6)
		case rms(mine) > rms(theirs):
			t.Logf("%s: issue 6's goal not met in this run: the ptp4l slave of timed %.2f µs RMS, of ptp4l %.2f µs", name, rms(mine)*1e6, rms(theirs)*1e6)
		}
		if p := st.Ports[0]; p.State != "MASTER" || !p.GPTP.ASCapable {
			t.Errorf("timectl ptp: %+v %+v, want an asCapable MASTER", p, *p.GPTP)
		}
		if math.IsNaN(rms(mine)) {
			t.Errorf("no offsets")
		}
	}

	t.Run("ptp4l gm, timed slave", func(t *testing.T) {
		t.Parallel()
		timedSlave(t, "gPTP, ptp4l gm", gptpGM, gptpSlave, "role: slave, neighbor_prop_delay_thresh: 100us")
	})
	t.Run("timed gm, ptp4l slave", func(t *testing.T) {
		t.Parallel()
		timedMaster(t, "gPTP, timed gm", gptpGM, gptpSlave, "priority1: 10, neighbor_prop_delay_thresh: 100us")
	})
	t.Run("automotive, ptp4l master", func(t *testing.T) {
		t.Parallel()
		timedSlave(t, "automotive, ptp4l master", autoMaster, autoSlave, "profile: automotive, role: slave")
	})
	t.Run("automotive, timed master", func(t *testing.T) {
		t.Parallel()
		timedMaster(t, "automotive, timed master", autoMaster, autoSlave, "profile: automotive, role: master")
	})
}

// percentiles shows the 1st, 10th, 50th, 90th and 99th percentiles of xs,
// in µs.
func percentiles(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var parts []string
	for _, p := range []float64{0.01, 0.1, 0.5, 0.9, 0.99} {
		parts = append(parts, fmt.Sprintf("p%g %+.2f", p*100, s[int(p*float64(len(s)-1))]*1e6))
	}
	return strings.Join(parts, ", ") + " µs"
}

// quantile is the q quantile of xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	a := slices.Clone(xs)
	slices.Sort(a)
	return a[int(q*float64(len(a)-1))]
}

// spread is the distance between the 90th and 10th percentiles of xs.
func spread(xs []float64) float64 { return quantile(xs, 0.9) - quantile(xs, 0.1) }

// TestGPTPAutomotiveRestart: the automotive profile keeps the link's
// measured delay and neighbor rate ratio next to the drift file, so that a
// restarted slave measures from its first Sync instead of waiting for its
// own peer delay exchanges. ptp4l with automotive-master.cfg; timed with
// the automotive slave profile and a drift file starts, synchronizes, is
// stopped and started again. The second start says it restored the link
// and measures within a second, and the time from each start to the first
// measurement is logged: the "time to first sync" figure, cold and
// with the kept link.
func TestGPTPAutomotiveRestart(t *testing.T) {
	testenv.RequireRoot(t)
	binaries(t)
	master := linuxptpConfig(t, "automotive-master.cfg", withOverrides(gptpSoftware, "free_running", "1"))
	a, b := peers.NewVethPair(t)
	peers.StartPtp4l(t, "ptp4l-gm", a.Netns, a.Iface, "-2", master...)
	state := t.TempDir()
	cfg := timedConfig{SimOffset: "0ms", NoSources: true, Name: "gptp-auto", DriftFile: filepath.Join(state, "drift"),
		Extra: "gptp:\n  ports:\n    - {interface: " + b.Iface + ", profile: automotive, role: slave}\n"}
	stateFile := filepath.Join(state, "gptp-"+b.Iface+".json")

	// firstSync waits for the port's first measurement and returns the
	// time from the port's start to it, and the port's status then.
	firstSync := func(tp *timedProc) (time.Duration, gptpStatus) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			st := gptpPort(t, tp)
			if g := st.Ports[0].GPTP; g.FirstSync > 0 {
				return time.Duration(g.FirstSync * float64(time.Second)), st
			}
		}
		t.Fatalf("no measurement within 20 s:\n%s", tp.Tail(20))
		return 0, gptpStatus{}
	}

	cold := startTimed(t, cfg, b.Netns)
	coldFirst, _ := firstSync(cold)
	// The link state is written after the first peer delay exchange, and
	// again when timed stops.
	for deadline := time.Now().Add(10 * time.Second); gptpPort(t, cold).Ports[0].GPTP.PdelayExchanges < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 2 peer delay exchanges in 10 s:\n%s", cold.Tail(20))
		}
	}
	cold.Stop()
	kept, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatalf("no link state kept after the stop: %v\n%s", err, cold.Tail(20))
	}

	warm := startTimed(t, cfg, b.Netns)
	warmFirst, st := firstSync(warm)
	restored := strings.Contains(warm.Output(), "gPTP link state restored")
	t.Logf("time from start to the first measurement: %v cold, %v with the kept link (%s)", coldFirst.Round(time.Millisecond),
		warmFirst.Round(time.Millisecond), strings.TrimSpace(string(kept)))
	if !restored {
		t.Errorf("the restarted timed did not restore the link state:\n%s", warm.Tail(20))
	}
	if p := st.Ports[0]; p.MeanPathDelay <= 0 || p.GPTP.NeighborRateRatio == 0 {
		t.Errorf("after the restart, at the first measurement: link delay %v s, rate ratio %v; want the kept ones", p.MeanPathDelay, p.GPTP.NeighborRateRatio)
	}
	// Both wait for a Sync (8 a second at start); cold, the first peer
	// delay exchange must also be done, which on this link takes no
	// longer, so which comes first is chance: the figures are logged.
	if warmFirst > time.Second {
		t.Errorf("with the kept link the first measurement came %v after start, want within a second", warmFirst)
	}
}
