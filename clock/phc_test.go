package clock

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/phc/phctest"
	"github.com/timed-project/timed/sources"
)

const taiUTC = 37 * time.Second

// newTestPHC returns a PHC driver on a simulated device that runs on TAI
// (37 s ahead of true UTC, plus extra), the true time that drives it, and
// the device.
func newTestPHC(t *testing.T, extra time.Duration, opts phctest.Options) (*PHC, *fakeSystemTime, *phctest.Sim) {
	t.Helper()
	return newTestPHCAt(t, time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), extra, opts)
}

func newTestPHCAt(t *testing.T, start time.Time, extra time.Duration, opts phctest.Options) (*PHC, *fakeSystemTime, *phctest.Sim) {
	t.Helper()
	truth := &fakeSystemTime{}
	truth.ns.Store(start.UnixNano())
	opts.Now = truth.now
	if opts.System == nil {
		opts.System = truth.now
	}
	opts.Offset = taiUTC + extra
	dev, err := phctest.NewSim(opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPHC(nil, dev, PHCOptions{UTCOffset: taiUTC}, truth.now)
	if err != nil {
		t.Fatal(err)
	}
	return p, truth, dev
}

func TestPHCTimescale(t *testing.T) {
	tests := []struct {
		name      string
		extra     time.Duration // the PHC's error beyond TAI
		sysErr    time.Duration // the system clock's error
		elapsed   time.Duration
		freqPPB   float64
		wantAhead time.Duration // Now − true UTC after elapsed
	}{
		{"exact", 0, 0, time.Second, 0, 0},
		{"PHC 5 µs ahead", 5 * time.Microsecond, 0, time.Second, 0, 5 * time.Microsecond},
		{"system 3 ms behind", 0, -3 * time.Millisecond, time.Second, 0, 0},
		{"PHC 100 ppb fast", 0, 0, 10 * time.Second, 100, time.Microsecond},
		{"PHC 2 ms behind, system ahead", -2 * time.Millisecond, 7 * time.Millisecond, 0, 0, -2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var truth *fakeSystemTime
			sys := func() time.Time { return truth.now().Add(tt.sysErr) }
			p, tr, _ := newTestPHC(t, tt.extra, phctest.Options{System: sys, FrequencyPPB: tt.freqPPB})
			truth = tr
			truth.advance(tt.elapsed)
			if got := p.Now().Sub(truth.now()); got != tt.wantAhead {
				t.Errorf("Now − true UTC = %v, want %v", got, tt.wantAhead)
			}
			// A packet stamped by the system clock 20 ms ago.
			stamp := sys().Add(-20 * time.Millisecond)
			want := truth.now().Add(-20 * time.Millisecond).Add(tt.wantAhead)
			if got := p.FromSystem(stamp); absDuration(got.Sub(want)) > 2*time.Nanosecond+time.Duration(math.Abs(tt.freqPPB)*0.02) {
				t.Errorf("FromSystem = %v, want %v", got, want)
			}
			if got := p.UTCOffset(); got != taiUTC {
				t.Errorf("UTCOffset = %v, want %v", got, taiUTC)
			}
		})
	}
}

func TestPHCFromSystemSampleAge(t *testing.T) {
	p, truth, dev := newTestPHC(t, 0, phctest.Options{})
	base := p.FromSystem(truth.now()).Sub(truth.now())
	if base != 0 {
		t.Fatalf("FromSystem − truth = %v at start, want 0", base)
	}
	// A step is seen at once: the comparison is taken again.
	if err := p.Step(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := p.FromSystem(truth.now()).Sub(truth.now()); got != time.Millisecond {
		t.Errorf("after a 1 ms step: FromSystem − truth = %v, want 1ms", got)
	}
	// A change behind the driver's back is seen once the sample is older
	// than SampleAge (100 ms).
	if err := dev.Step(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	truth.advance(50 * time.Millisecond)
	if got := p.FromSystem(truth.now()).Sub(truth.now()); got != time.Millisecond {
		t.Errorf("50 ms later: FromSystem − truth = %v, want the cached 1ms", got)
	}
	truth.advance(60 * time.Millisecond)
	if got := p.FromSystem(truth.now()).Sub(truth.now()); got != 2*time.Millisecond {
		t.Errorf("110 ms later: FromSystem − truth = %v, want 2ms", got)
	}
}

func TestPHCSetFrequency(t *testing.T) {
	tests := []struct {
		name    string
		maxAdj  float64
		ppm     float64
		wantPPB float64
		wantErr string
	}{
		{"zero", 0, 0, 0, ""},
		{"positive", 0, 12.5, 12500, ""},
		{"negative sub-ppb", 0, -0.0004, -0.4, ""},
		{"at the limit", 62_499_999, 62_499.999, 62_499_999, ""},
		{"clamped high", 100_000, 150, 100_000, "beyond sim-ptp's limit of ±100.000 ppm; set 100.000 ppm"},
		{"clamped low", 100_000, -1e6, -100_000, "set -100.000 ppm"},
		{"NaN", 0, math.NaN(), 0, "invalid frequency"},
		{"infinite", 0, math.Inf(1), 0, "invalid frequency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, dev := newTestPHC(t, 0, phctest.Options{MaxAdjPPB: tt.maxAdj})
			err := p.SetFrequency(tt.ppm)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("SetFrequency(%v): %v", tt.ppm, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("SetFrequency(%v) error = %v, want %q", tt.ppm, err, tt.wantErr)
			}
			got, _ := dev.Frequency()
			if math.Abs(got-tt.wantPPB) > 1e-9 {
				t.Errorf("device frequency = %v ppb, want %v", got, tt.wantPPB)
			}
			ppm, err := p.Frequency()
			if err != nil || math.Abs(ppm-tt.wantPPB/1000) > 1e-12 {
				t.Errorf("Frequency = %v, %v; want %v ppm", ppm, err, tt.wantPPB/1000)
			}
		})
	}
}

func TestPHCDeviceFailures(t *testing.T) {
	broken := errors.New("device gone")
	tests := []struct {
		name string
		call func(p *PHC) error
	}{
		{"Frequency", func(p *PHC) error { _, err := p.Frequency(); return err }},
		{"SetFrequency", func(p *PHC) error { return p.SetFrequency(1) }},
		{"Step", func(p *PHC) error { return p.Step(time.Second) }},
		{"SetSync", func(p *PHC) error { return p.SetSync(sources.ClockSync{Synchronized: true}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, dev := newTestPHC(t, 0, phctest.Options{})
			dev.Fail(broken)
			err := tt.call(p)
			if !errors.Is(err, broken) || !strings.HasPrefix(err.Error(), "clock: phc: ") {
				t.Errorf("error = %v, want one wrapping %q under clock: phc:", err, broken)
			}
		})
	}
	t.Run("Now falls back to the last comparison", func(t *testing.T) {
		p, truth, dev := newTestPHC(t, time.Millisecond, phctest.Options{})
		_ = p.FromSystem(truth.now()) // takes a comparison
		dev.Fail(broken)
		truth.advance(time.Second)
		if got := p.Now().Sub(truth.now()); got != time.Millisecond {
			t.Errorf("Now − truth = %v with the device failing, want the last 1ms", got)
		}
	})
	t.Run("NewPHC", func(t *testing.T) {
		dev, err := phctest.NewSim(phctest.Options{Now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		dev.Fail(broken)
		if _, err := NewPHC(nil, dev, PHCOptions{}); !errors.Is(err, broken) {
			t.Errorf("NewPHC error = %v, want %v", err, broken)
		}
		if _, err := NewPHC(nil, nil, PHCOptions{}); err == nil {
			t.Error("NewPHC(nil device) succeeded")
		}
		if _, err := NewPHC(nil, dev, PHCOptions{UTCOffset: -time.Second}); err == nil {
			t.Error("NewPHC with a negative UTC offset succeeded")
		}
	})
}

func TestPHCLeapSecond(t *testing.T) {
	// UTC times (hh:mm:ss.s) read after each step of true time, starting
	// at 23:59:58.5 on 31 December.
	tests := []struct {
		name  string
		leap  sources.Leap
		sync  bool
		want  []string // readings 1 s apart
		after time.Duration
	}{
		{"insert", sources.LeapInsert, true, []string{"23:59:58.5", "23:59:59.5", "23:59:59.5", "00:00:00.5", "00:00:01.5"}, 38 * time.Second},
		{"delete", sources.LeapDelete, true, []string{"23:59:58.5", "00:00:00.5", "00:00:01.5", "00:00:02.5", "00:00:03.5"}, 36 * time.Second},
		{"none", sources.LeapNone, true, []string{"23:59:58.5", "23:59:59.5", "00:00:00.5", "00:00:01.5", "00:00:02.5"}, taiUTC},
		{"not synchronized", sources.LeapInsert, false, []string{"23:59:58.5", "23:59:59.5", "00:00:00.5", "00:00:01.5", "00:00:02.5"}, taiUTC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, truth, _ := newTestPHCAt(t, time.Date(2026, 12, 31, 23, 59, 58, 500e6, time.UTC), 0, phctest.Options{})
			cs := sources.ClockSync{Synchronized: tt.sync, Leap: tt.leap}
			var got []string
			for range tt.want {
				// The engine passes the status at every update.
				if err := p.SetSync(cs); err != nil {
					t.Fatal(err)
				}
				got = append(got, p.Now().UTC().Format("15:04:05.0"))
				truth.advance(time.Second)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("readings %v, want %v", got, tt.want)
			}
			if off := p.UTCOffset(); off != tt.after {
				t.Errorf("UTCOffset after = %v, want %v", off, tt.after)
			}
			if s := p.Sync(); s != cs {
				t.Errorf("Sync = %+v, want %+v", s, cs)
			}
		})
	}
	t.Run("withdrawn", func(t *testing.T) {
		p, truth, _ := newTestPHCAt(t, time.Date(2026, 12, 31, 23, 59, 58, 500e6, time.UTC), 0, phctest.Options{})
		if err := p.SetSync(sources.ClockSync{Synchronized: true, Leap: sources.LeapInsert}); err != nil {
			t.Fatal(err)
		}
		if err := p.SetSync(sources.ClockSync{Synchronized: true}); err != nil {
			t.Fatal(err)
		}
		truth.advance(3 * time.Second)
		if got := p.Now().UTC().Format("15:04:05.0"); got != "00:00:01.5" {
			t.Errorf("after a withdrawn leap: %s, want 00:00:01.5", got)
		}
	})
}

// tieScenario is a PHC and a system clock, both simulated, and the tie
// between them, run in simulated time.
type tieScenario struct {
	name        string
	sysOffset   time.Duration // the system clock's start offset from UTC
	sysPPM      float64       // its frequency error
	phcExtra    time.Duration // the PHC's error beyond TAI
	phcPPB      float64       // its frequency error
	wanderPPB   float64       // its random walk per √s
	readDelay   time.Duration
	readJitter  time.Duration
	engineEvery time.Duration // how often the "engine" changes the PHC's frequency (0: never)
	engineStep  float64       // by up to ± this many ppb
	// limits asserted
	syncBelow  time.Duration // |offset| < syncBelow (default 1 µs) ...
	syncWithin time.Duration // ... from this time on ...
	maxAfter   time.Duration // ... and below this over the hold period
}

type tieResult struct {
	syncedAt  time.Duration // last time |offset| was ≥ syncBelow, before the hold period
	rms, peak time.Duration // over the hold period
	steps     int
}

// run simulates the tie for 10 s to converge and hold for the hold period,
// sampling the true offset after every update.
func (sc tieScenario) run(t *testing.T, hold time.Duration) tieResult {
	t.Helper()
	truth := &fakeSystemTime{}
	truth.ns.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	sys := newVirtual(VirtualOptions{Offset: sc.sysOffset, FrequencyPPM: sc.sysPPM}, truth.now)
	dev, err := phctest.NewSim(phctest.Options{
		Now: truth.now, System: sys.Now, Offset: taiUTC + sc.phcExtra,
		FrequencyPPB: sc.phcPPB, WanderPPB: sc.wanderPPB,
		ReadDelay: sc.readDelay, ReadJitter: sc.readJitter, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	src, err := newPHC(nil, dev, PHCOptions{UTCOffset: taiUTC}, sys.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetSync(sources.ClockSync{Synchronized: true, EstError: 50 * time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	tie, err := NewTie(nil, src, sys, TieOptions{})
	if err != nil {
		t.Fatal(err)
	}
	trueOffset := func() time.Duration { // system − PHC in UTC, exactly
		return sys.OffsetFromSystem() - (dev.TrueOffset() - taiUTC)
	}
	const interval = 125 * time.Millisecond
	converge := 10 * time.Second
	var res tieResult
	var sum float64
	n := 0
	rng := uint64(12345)
	engineFreq := 0.0
	for k := 1; time.Duration(k)*interval <= converge+hold; k++ {
		at := time.Duration(k) * interval
		truth.advance(interval)
		if sc.engineEvery > 0 && at%sc.engineEvery == 0 {
			rng = rng*6364136223846793005 + 1442695040888963407
			engineFreq = (float64(rng>>11)/(1<<53)*2 - 1) * sc.engineStep
			if err := src.SetFrequency(engineFreq / 1000); err != nil {
				t.Fatal(err)
			}
		}
		if err := tie.Update(); err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		off := trueOffset()
		if at <= converge {
			if absDuration(off) >= sc.syncBelow {
				res.syncedAt = at
			}
			continue
		}
		sum += float64(off) * float64(off)
		n++
		res.peak = max(res.peak, absDuration(off))
	}
	res.rms = time.Duration(math.Sqrt(sum / float64(n)))
	res.steps = tie.Status().Steps
	if s := sys.Sync(); !s.Synchronized || s.EstError < 50*time.Nanosecond {
		t.Errorf("the system clock's status = %+v, want synchronized with at least the PHC's error", s)
	}
	return res
}

func TestTieConverges(t *testing.T) {
	hold := 10 * time.Minute
	tests := []tieScenario{
		{name: "quiet", sysOffset: 3 * time.Millisecond, sysPPM: 40, phcPPB: -20_000,
			syncWithin: 3 * time.Second, maxAfter: 100 * time.Nanosecond},
		{name: "wander and read jitter", sysOffset: -250 * time.Millisecond, sysPPM: -120, phcExtra: 4 * time.Microsecond,
			phcPPB: 35_000, wanderPPB: 2, readDelay: 300 * time.Nanosecond, readJitter: 200 * time.Nanosecond,
			syncWithin: 5 * time.Second, maxAfter: time.Microsecond},
		{name: "engine steering the PHC", sysOffset: time.Second, sysPPM: 15, phcPPB: 8_000, wanderPPB: 2,
			readDelay: 300 * time.Nanosecond, readJitter: 200 * time.Nanosecond,
			engineEvery: time.Second, engineStep: 200,
			syncWithin: 5 * time.Second, maxAfter: time.Microsecond},
		{name: "slow noisy reads", sysOffset: 10 * time.Microsecond, sysPPM: 80, phcPPB: -3_000, wanderPPB: 5,
			readDelay: time.Microsecond, readJitter: 2 * time.Microsecond,
			syncBelow: 3 * time.Microsecond, syncWithin: 5 * time.Second, maxAfter: 3 * time.Microsecond},
	}
	for _, sc := range tests {
		if sc.syncBelow == 0 {
			sc.syncBelow = time.Microsecond
		}
		t.Run(sc.name, func(t *testing.T) {
			r := sc.run(t, hold)
			t.Logf("|offset| < %v after %v; over the next %v: RMS %v, max %v; %d step(s)",
				sc.syncBelow, r.syncedAt, hold, r.rms, r.peak, r.steps)
			if r.syncedAt > sc.syncWithin {
				t.Errorf("offset ≥ %v until %v, want within %v", sc.syncBelow, r.syncedAt, sc.syncWithin)
			}
			if r.peak > sc.maxAfter {
				t.Errorf("max |offset| over %v = %v, want < %v", hold, r.peak, sc.maxAfter)
			}
			if r.steps != 1 && sc.sysOffset > 20*time.Microsecond {
				t.Errorf("%d steps, want 1 (the first)", r.steps)
			}
		})
	}
}

// newTestTie ties a simulated system clock (a virtual clock over true time,
// sysOffset and sysPPM off) to a simulated PHC.
func newTestTie(t *testing.T, sync bool, sysOffset time.Duration, opts TieOptions) (*Tie, *PHC, *Virtual, *fakeSystemTime, *phctest.Sim) {
	t.Helper()
	truth := &fakeSystemTime{}
	truth.ns.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	sys := newVirtual(VirtualOptions{Offset: sysOffset, FrequencyPPM: 10}, truth.now)
	dev, err := phctest.NewSim(phctest.Options{Now: truth.now, System: sys.Now, Offset: taiUTC})
	if err != nil {
		t.Fatal(err)
	}
	src, err := newPHC(nil, dev, PHCOptions{UTCOffset: taiUTC}, sys.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetSync(sources.ClockSync{Synchronized: sync}); err != nil {
		t.Fatal(err)
	}
	tie, err := NewTie(nil, src, sys, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tie, src, sys, truth, dev
}

func TestTieWaitsForSynchronizedPHC(t *testing.T) {
	tests := []struct {
		name           string
		synchronized   bool
		unsynchronized bool // TieOptions.Unsynchronized
		wantTied       bool
	}{
		{"synchronized", true, false, true},
		{"free-running PHC", false, false, false},
		{"free-running PHC, tied anyway", false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tie, _, sys, truth, _ := newTestTie(t, tt.synchronized, 2*time.Second, TieOptions{Unsynchronized: tt.unsynchronized})
			for range 8 {
				truth.advance(125 * time.Millisecond)
				if err := tie.Update(); err != nil {
					t.Fatal(err)
				}
			}
			st := tie.Status()
			tied := absDuration(sys.OffsetFromSystem()) < time.Millisecond
			if tied != tt.wantTied || st.Waiting == tt.wantTied {
				t.Errorf("system offset %v, status %+v; want tied = %v", sys.OffsetFromSystem(), st, tt.wantTied)
			}
			if tt.wantTied && (st.Steps != 1 || st.Updates != 8) {
				t.Errorf("status %+v, want 1 step and 8 updates", st)
			}
		})
	}
}

func TestTieFollowsPHCStep(t *testing.T) {
	tests := []struct {
		name      string
		threshold time.Duration
		phcStep   time.Duration
		wantSteps int // the system clock starts on time: no first step
	}{
		{"large step followed", 0, 50 * time.Millisecond, 1},
		{"small step slewed", 0, 200 * time.Microsecond, 0},
		{"never step", -1, 50 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tie, src, sys, truth, dev := newTestTie(t, true, 0, TieOptions{StepThreshold: tt.threshold})
			update := func() {
				t.Helper()
				truth.advance(125 * time.Millisecond)
				if err := tie.Update(); err != nil {
					t.Fatal(err)
				}
			}
			for range 40 {
				update()
			}
			if err := src.Step(tt.phcStep); err != nil {
				t.Fatal(err)
			}
			update()
			st := tie.Status()
			if st.Steps != tt.wantSteps {
				t.Errorf("%d steps, want %d", st.Steps, tt.wantSteps)
			}
			off := sys.OffsetFromSystem() - (dev.TrueOffset() - taiUTC)
			if tt.wantSteps == 1 && absDuration(off) > time.Microsecond {
				t.Errorf("offset after the step = %v, want < 1 µs", off)
			}
			if tt.wantSteps == 0 && (absDuration(off) < tt.phcStep/2 || math.Abs(st.FrequencyPPM) < 10) {
				t.Errorf("offset %v, frequency %v ppm: want a slew under way", off, st.FrequencyPPM)
			}
		})
	}
}

func TestTieFollowsPHCFrequency(t *testing.T) {
	tie, src, _, truth, _ := newTestTie(t, true, 0, TieOptions{})
	for range 40 {
		truth.advance(125 * time.Millisecond)
		if err := tie.Update(); err != nil {
			t.Fatal(err)
		}
	}
	before := tie.Status().FrequencyPPM
	if err := src.SetFrequency(7); err != nil {
		t.Fatal(err)
	}
	if err := tie.Update(); err != nil { // no time passed: the offset is unchanged
		t.Fatal(err)
	}
	if got := tie.Status().FrequencyPPM - before; math.Abs(got-7) > 0.01 {
		t.Errorf("system frequency moved by %v ppm after the PHC's +7 ppm, want +7", got)
	}
}

func TestTieDropsSlowReads(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		name   string
		delays []time.Duration
		want   string // d: dropped, u: used
	}{
		{"steady", []time.Duration{us, us, us, us}, "uuuu"},
		{"one interrupted", []time.Duration{us, us, 10 * us, us}, "uudu"},
		{"just under the limit", []time.Duration{us, 3*us + 500*time.Nanosecond, us}, "uuu"},
		{"reads slower for good", append([]time.Duration{us}, repeat(10*us, 17)...), "u" + strings.Repeat("d", 16) + "u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tie := &Tie{}
			var got strings.Builder
			for _, d := range tt.delays {
				if tie.dropDelay(d) {
					got.WriteByte('d')
				} else {
					got.WriteByte('u')
				}
			}
			if got.String() != tt.want {
				t.Errorf("got %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func TestTieErrors(t *testing.T) {
	broken := errors.New("device gone")
	tie, _, _, truth, dev := newTestTie(t, true, 0, TieOptions{})
	dev.Fail(broken)
	truth.advance(time.Second)
	if err := tie.Update(); !errors.Is(err, broken) || !strings.HasPrefix(err.Error(), "clock: tie: ") {
		t.Errorf("Update error = %v, want one wrapping %q", err, broken)
	}
	if _, err := NewTie(nil, nil, NewNone(), TieOptions{}); err == nil {
		t.Error("NewTie without a PHC succeeded")
	}
}

func TestTieRun(t *testing.T) {
	// Real time drives both simulated clocks; nothing touches an OS clock.
	sys := newVirtual(VirtualOptions{Offset: 5 * time.Millisecond}, time.Now)
	dev, err := phctest.NewSim(phctest.Options{Now: time.Now, System: sys.Now, Offset: taiUTC})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewPHC(nil, dev, PHCOptions{UTCOffset: taiUTC})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetSync(sources.ClockSync{Synchronized: true}); err != nil {
		t.Fatal(err)
	}
	tie, err := NewTie(nil, src, sys, TieOptions{Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tie.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for tie.Status().Updates < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if st := tie.Status(); st.Updates < 5 || st.Steps != 1 {
		t.Errorf("status %+v, want at least 5 updates and the first step", st)
	}
	if off := sys.OffsetFromSystem(); absDuration(off) > time.Millisecond {
		t.Errorf("virtual system clock %v off after the tie stepped it, want near 0", off)
	}
}
