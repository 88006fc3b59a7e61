//go:build linux

package interop

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// The interleaved-mode run: shorter than TestChrony's, since only the
// difference between the two modes is judged.
const (
	xleaveSettle = 20 * time.Second // from start to the measuring window
	xleaveWindow = 30 * time.Second
)

// TestXleave runs two timed processes (virtual clock, 200 ms and +50 ppm
// off, minpoll = maxpoll = -2) side by side against one chronyd server on
// loopback: one with `xleave: true` on its server entry, one without. The
// first must measure in interleaved mode (RFC 9769): its debug log says so
// for every measurement. Both must synchronize, and the interleaved one must
// do at least about as well: the offsets of the server from the system
// clock it measures (chronyd serves the system clock) and of its clock from
// the system clock, and lower round-trip delays, since the server's true
// transmit times take the server's own send latency out of them.
func TestXleave(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.LookPath(t, "chronyd", "/usr/sbin/chronyd")
	binaries(t)
	srv := peers.StartChronyServer(t, peers.ChronyOptions{})
	cfg := simulatedStart
	cfg.Port = int(srv.Addr.Port())
	cfg.LogLevel = "debug" // for the per-measurement log lines

	runs := []*xleaveRun{{name: "basic"}, {name: "xleave", xleave: true}}
	for _, r := range runs {
		c := cfg
		c.Name, c.XLeave = r.name, r.xleave
		r.tp = startTimed(t, c, "")
		r.smp = r.tp.sample(time.Second)
	}
	start := time.Now()
	for _, r := range runs {
		waitUntil(t, r.tp.Proc, start, xleaveSettle+xleaveWindow)
	}
	for _, r := range runs {
		r.samples = r.smp.Stop()
		r.analyse(t)
	}
	basic, xl := runs[0], runs[1]
	for _, r := range runs {
		t.Logf("%-6s: %d measurements in the window (%d interleaved); server offset from the system clock as measured: median %+.2f µs, RMS %.2f µs, RMS around the median %.2f µs (%d measurements); delay median %.2f µs, min %.2f µs; clock offset from the system clock: RMS %.2f µs, max %.2f µs",
			r.name, len(r.meas), r.interleaved, r.medOffset*1e6, r.rmsOffset*1e6, rmsAround(r.offsets, r.medOffset)*1e6, len(r.offsets), r.medDelay*1e6, r.minDelay*1e6, r.clock.RMS*1e6, r.clock.Max*1e6)
	}

	t.Run("interleaved", func(t *testing.T) {
		if len(xl.meas) == 0 || float64(xl.interleaved) < 0.9*float64(len(xl.meas)) || !xl.meas[len(xl.meas)-1].interleaved {
			t.Errorf("xleave: %d of %d measurements in the window interleaved, want ≥ 90%% and the last one", xl.interleaved, len(xl.meas))
		}
		if !strings.Contains(xl.tp.Output(), "the server answers in interleaved mode") {
			t.Error("xleave: timed did not log that the server answers in interleaved mode")
		}
		if basic.interleaved != 0 {
			t.Errorf("basic: %d interleaved measurements without xleave", basic.interleaved)
		}
	})

	t.Run("sane", func(t *testing.T) {
		for _, r := range runs {
			if r.clock.N < int(xleaveWindow/time.Second)*3/4 || !(r.clock.RMS < rmsLimit) {
				t.Errorf("%s: clock offset from the system clock RMS %.1f µs over %d samples, want < %.0f µs", r.name, r.clock.RMS*1e6, r.clock.N, rmsLimit*1e6)
			}
			if len(r.offsets) < len(r.meas)*3/4 || len(r.meas) < 60 || !(math.Abs(r.medOffset) < agreeLimit) {
				t.Errorf("%s: measured server offset median %+.1f µs over %d measurements, want within %.0f µs of 0", r.name, r.medOffset*1e6, len(r.offsets), agreeLimit*1e6)
			}
		}
		// Similar or better: the interleaved figures may exceed the basic
		// ones only by noise.
		const slack = 5e-6
		if !(xl.trimmedOffset < basic.trimmedOffset+slack) {
			t.Errorf("measured server offset RMS without the worst 5%%: xleave %.2f µs, basic %.2f µs (all: %.2f and %.2f µs)",
				xl.trimmedOffset*1e6, basic.trimmedOffset*1e6, xl.rmsOffset*1e6, basic.rmsOffset*1e6)
		}
		if !(xl.clock.RMS < basic.clock.RMS+slack) {
			t.Errorf("clock offset RMS: xleave %.2f µs, basic %.2f µs", xl.clock.RMS*1e6, basic.clock.RMS*1e6)
		}
		if !(xl.medDelay < basic.medDelay) {
			t.Errorf("median delay: xleave %.2f µs, basic %.2f µs; the true transmit times should shorten it", xl.medDelay*1e6, basic.medDelay*1e6)
		}
	})
}

// xleaveRun is one timed of TestXleave and what it showed.
type xleaveRun struct {
	name    string
	xleave  bool
	tp      *timedProc
	smp     *sampler
	samples []sample

	meas                 []measLine // in the window
	interleaved          int
	offsets              []float64 // server offsets from the system clock, as measured (one per measurement)
	medOffset, rmsOffset float64
	// trimmedOffset is the RMS without the worst 5% of the measurements:
	// on a machine busy with other tests a few scheduling spikes would
	// otherwise decide the comparison.
	trimmedOffset      float64
	medDelay, minDelay float64
	clock              syncResult
}

// measLine is one "measurement" line of timed's debug log.
type measLine struct {
	at            time.Time
	offset, delay float64 // seconds
	interleaved   bool
}

func (r *xleaveRun) analyse(t *testing.T) {
	from, to := xleaveSettle, xleaveSettle+xleaveWindow
	r.clock = analyse(r.samples, from, to)
	start := r.tp.Started()
	var delays []float64
	for _, l := range logLines(r.tp.Output()) {
		if l["msg"] != "measurement" {
			continue
		}
		m, err := parseMeasLine(l)
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
			continue
		}
		if at := m.at.Sub(start); at < from || at > to {
			continue
		}
		r.meas = append(r.meas, m)
		delays = append(delays, m.delay)
		if ofs, ok := clockOffsetAt(r.samples, m.at.Sub(start)); ok {
			r.offsets = append(r.offsets, m.offset+ofs)
		}
		if m.interleaved {
			r.interleaved++
		}
	}
	r.medOffset, r.rmsOffset = median(r.offsets), rms(r.offsets)
	r.trimmedOffset = trimmedRMS(r.offsets, 0.05)
	r.medDelay, r.minDelay = median(delays), math.NaN()
	if len(delays) > 0 {
		r.minDelay = slices.Min(delays)
	}
}

// clockOffsetAt is the virtual clock's offset from the system clock at
// time at (since timed started), interpolated between the status samples
// around it. A measurement's offset (server minus virtual clock) plus this
// is the server's offset from the system clock as timed measured it; the
// clock's offset changes by well under a microsecond between the
// measurement and its log line.
func clockOffsetAt(samples []sample, at time.Duration) (float64, bool) {
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if a.Err != nil || b.Err != nil || a.At > at || b.At < at || b.At <= a.At {
			continue
		}
		f := float64(at-a.At) / float64(b.At-a.At)
		return a.Status.Clock.OffsetFromSystem + f*(b.Status.Clock.OffsetFromSystem-a.Status.Clock.OffsetFromSystem), true
	}
	return 0, false
}

// parseMeasLine reads a "measurement" log line: durations are in seconds.
func parseMeasLine(l map[string]any) (measLine, error) {
	var m measLine
	ts, _ := l["time"].(string)
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return m, fmt.Errorf("measurement log line without a time: %v", l)
	}
	offset, ok1 := l["offset"].(float64)
	delay, ok2 := l["delay"].(float64)
	inter, ok3 := l["interleaved"].(bool)
	if !ok1 || !ok2 || !ok3 {
		return m, fmt.Errorf("measurement log line without offset, delay or interleaved: %v", l)
	}
	return measLine{at: at, offset: offset, delay: delay, interleaved: inter}, nil
}

// trimmedRMS is the RMS of xs without the fraction drop of the largest
// absolute values.
func trimmedRMS(xs []float64, drop float64) float64 {
	a := make([]float64, len(xs))
	for i, x := range xs {
		a[i] = math.Abs(x)
	}
	sort.Float64s(a)
	return rms(a[:len(a)-int(float64(len(a))*drop)])
}
