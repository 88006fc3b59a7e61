package sources

import (
	"math"
	"testing"
)

// A change that took effect later than recorded: until then the raw
// time runs on the previous frequency, after it on the new one, with no
// jump at the moment it took effect.
func TestTimelineAppliedAt(t *testing.T) {
	const f0, f1 = 100e-6, 0.05 // a fast slew, as at start
	// rawAt is the raw time at local l of a clock that ran on f0 until
	// local time at (in the timescale after step) and on f1 after it.
	rawAt := func(l, step, at float64) float64 {
		r10 := 10 / (1 + f0) // raw time at the change, local 10
		if l <= at {
			return r10 + (l-step-10)/(1+f0)
		}
		return r10 + (at-step-10)/(1+f0) + (l-at)/(1+f1)
	}
	tests := []struct {
		name      string
		step      float64
		appliedAt float64 // 0: never told
		want      float64 // when it took effect
	}{
		{"at once", 0, 0, 10},
		{"2 ms later", 0, 10.002, 10.002},
		{"after a step", -0.1, 9.902, 9.902},
		{"a time before the change is ignored", 0, 9.5, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTimeline(0, f0)
			if !tl.change(10, tt.step, f1) {
				t.Fatal("change not recorded")
			}
			if tt.appliedAt != 0 {
				tl.appliedAt(tt.appliedAt)
			}
			for _, l := range []float64{tt.want - 0.001, tt.want, tt.want + 0.001, 20} {
				if l < 10+tt.step {
					continue
				}
				if got, want := tl.raw(l), rawAt(l, tt.step, tt.want); math.Abs(got-want) > 1e-12 {
					t.Errorf("raw(%v) = %.9f, want %.9f", l, got, want)
				}
			}
		})
	}
	tl := newTimeline(0, f0)
	if tl.change(10, 0, f0) {
		t.Error("a change to the same frequency reported as a change")
	}
}

// A round trip's delay read off the local clock is turned into raw time
// with the frequency the clock ran at then: during a slew of a twelfth
// (the fastest, as at start) 1 ms of local time is 1.091 ms of raw time.
func TestTimelineRawSpan(t *testing.T) {
	const slew = -1.0 / 12
	tl := newTimeline(0, 10e-6)
	tl.change(10, 0, slew)
	tl.change(20, 0, 10e-6)
	for _, tt := range []struct {
		l, want float64
	}{
		{5, 1e-3 / (1 + 10e-6)},
		{15, 1e-3 / (1 + slew)},
		{25, 1e-3 / (1 + 10e-6)},
	} {
		if got := tl.rawSpan(tt.l, 1e-3); math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("rawSpan(%v, 1 ms) = %.6f ms, want %.6f ms", tt.l, got*1e3, tt.want*1e3)
		}
	}
}
