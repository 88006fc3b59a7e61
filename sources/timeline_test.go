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
