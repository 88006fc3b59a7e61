package phctest

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/phc"
)

type fakeTime struct{ ns int64 }

func (f *fakeTime) now() time.Time { return time.Unix(0, f.ns) }

func newTestSim(t *testing.T, opts Options) (*Sim, *fakeTime) {
	t.Helper()
	ft := &fakeTime{ns: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	opts.Now = ft.now
	s, err := NewSim(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, ft
}

func TestSimOscillator(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		adjPPB  float64
		step    time.Duration
		elapsed time.Duration
		want    time.Duration // device − true time after elapsed
	}{
		{"perfect", Options{}, 0, 0, time.Hour, 0},
		{"TAI", Options{Offset: 37 * time.Second}, 0, 0, time.Hour, 37 * time.Second},
		{"20 ppm fast", Options{FrequencyPPB: 20_000}, 0, 0, 100 * time.Second, 2 * time.Millisecond},
		{"corrected", Options{FrequencyPPB: 20_000}, -20_000, 0, 100 * time.Second, 0},
		{"over-corrected", Options{FrequencyPPB: 1}, -3, 0, 1000 * time.Second, -2 * time.Microsecond},
		{"stepped", Options{Offset: time.Second}, 0, -time.Second, time.Minute, 0},
		{"sub-ns rate", Options{FrequencyPPB: 0.001}, 0, 0, 1000 * time.Second, time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ft := newTestSim(t, tt.opts)
			if err := s.AdjFreq(tt.adjPPB); err != nil {
				t.Fatal(err)
			}
			if err := s.Step(tt.step); err != nil {
				t.Fatal(err)
			}
			ft.ns += int64(tt.elapsed)
			if got := s.TrueOffset(); got != tt.want {
				t.Errorf("TrueOffset = %v, want %v", got, tt.want)
			}
			dev, err := s.Time()
			if err != nil || dev.Sub(ft.now()) != tt.want {
				t.Errorf("Time − true = %v (%v), want %v", dev.Sub(ft.now()), err, tt.want)
			}
			off, err := s.Offset()
			if err != nil || off.Offset != tt.want || off.Delay != 0 || off.Method != phc.MethodPrecise || !off.System.Equal(ft.now()) {
				t.Errorf("Offset = %+v, %v; want a precise %v", off, err, tt.want)
			}
			if f, _ := s.Frequency(); f != tt.adjPPB {
				t.Errorf("Frequency = %v, want %v", f, tt.adjPPB)
			}
		})
	}
}

func TestSimReadJitter(t *testing.T) {
	s, _ := newTestSim(t, Options{ReadDelay: 300 * time.Nanosecond, ReadJitter: 200 * time.Nanosecond, Seed: 3})
	var sumDelay time.Duration
	const n = 10000
	for range n {
		off, err := s.Offset()
		if err != nil {
			t.Fatal(err)
		}
		if off.Method != phc.MethodExtended || off.Delay < 300*time.Nanosecond {
			t.Fatalf("Offset = %+v, want an extended reading at least 300 ns wide", off)
		}
		if 2*absDur(off.Offset) > off.Delay {
			t.Fatalf("Offset = %+v: error beyond half the delay", off)
		}
		sumDelay += off.Delay
	}
	if mean := sumDelay / n; mean < 480*time.Nanosecond || mean > 520*time.Nanosecond {
		t.Errorf("mean delay %v, want about 500 ns", mean)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestSimWander(t *testing.T) {
	// The frequency error's random walk over an hour has a standard
	// deviation of wander·√3600 = 60 ppb for 1 ppb/√s, whether the clock is
	// read every 500 ms or once at the end.
	for _, every := range []time.Duration{500 * time.Millisecond, time.Hour} {
		var sum2 float64
		const runs = 200
		for seed := range uint64(runs) {
			s, ft := newTestSim(t, Options{WanderPPB: 1, Seed: seed})
			for elapsed := time.Duration(0); elapsed < time.Hour; elapsed += every {
				ft.ns += int64(every)
				_, _ = s.Time()
			}
			f := s.FrequencyError()
			sum2 += f * f
		}
		if sd := math.Sqrt(sum2 / runs); sd < 50 || sd > 70 {
			t.Errorf("reading every %v: frequency error's spread after 1 h = %.1f ppb, want about 60", every, sd)
		}
	}
	a, fa := newTestSim(t, Options{WanderPPB: 1, Seed: 9})
	b, fb := newTestSim(t, Options{WanderPPB: 1, Seed: 9})
	fa.ns += int64(time.Minute)
	fb.ns += int64(time.Minute)
	if a.TrueOffset() != b.TrueOffset() {
		t.Error("the same seed gave different clocks")
	}
}

func TestSimLimitsAndFailures(t *testing.T) {
	s, _ := newTestSim(t, Options{MaxAdjPPB: 1000, Name: "ptp9"})
	if s.MaxAdj() != 1000 || s.Name() != "ptp9" {
		t.Errorf("MaxAdj %v, Name %q", s.MaxAdj(), s.Name())
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"beyond MaxAdj", func() error { return s.AdjFreq(1001) }, "beyond ±1000 ppb"},
		{"NaN", func() error { return s.AdjFreq(math.NaN()) }, "beyond"},
		{"failing", func() error { s.Fail(errors.New("gone")); _, err := s.Time(); return err }, "ptp9: read: gone"},
		{"recovered", func() error { s.Fail(nil); _, err := s.Offset(); return err }, ""},
		{"closed", func() error { s.Close(); return s.Step(time.Second) }, "device closed"},
	}
	for _, tt := range tests {
		err := tt.call()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	if steps, adj := s.Counts(); steps != 0 || adj != 0 {
		t.Errorf("Counts = %d, %d after refused calls, want 0, 0", steps, adj)
	}
	bad := []Options{
		{},
		{Now: time.Now, FrequencyPPB: math.Inf(1)},
		{Now: time.Now, WanderPPB: -1},
		{Now: time.Now, ReadJitter: -time.Second},
	}
	for i, o := range bad {
		if _, err := NewSim(o); err == nil {
			t.Errorf("NewSim(bad options %d) succeeded", i)
		}
	}
}
