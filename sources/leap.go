package sources

import (
	"math"
	"time"
)

// Leap seconds. The sources announce one for the end of the current month
// (NTP servers often raise the flag days or weeks ahead); the engine passes
// it to the clock only on the last day of a month, and the clock inserts or
// deletes the second at the following UTC midnight (the kernel does it for
// the system clock, the virtual clock does it itself).
//
// The engine need not model that step: the sources' time steps with the
// clock, so offsets stay continuous, and the raw-time mapping errs only by
// the difference between the oscillator's frequency and the correction
// applied, over one second. Measurements taken around the midnight are
// dropped, since their timestamps may straddle the step.
type leapState struct {
	at float64 // local time of the midnight of the last leap passed on (NaN: none)
}

// leapWindow: measurements taken this close (s) to a leap's midnight are
// dropped.
const leapWindow = 2.0

// leapMidnight is the UTC midnight that follows t, and whether a leap second
// may happen there (it ends a month).
func leapMidnight(t time.Time) (time.Time, bool) {
	mid := t.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	return mid, mid.Day() == 1
}

// nearLeap reports whether local time l is too close to the midnight of a
// leap second for a measurement to be trusted.
func (e *Engine) nearLeap(l float64) bool {
	return math.Abs(l-e.lp.at) < leapWindow
}

// clockLeap decides the leap the clock must prepare for at local time now,
// given the sources' vote.
func (e *Engine) clockLeap(now time.Time, vote Leap) Leap {
	if !e.synchronized || e.cfg.Observe || vote != LeapInsert && vote != LeapDelete {
		return LeapNone
	}
	mid, ok := leapMidnight(now)
	if !ok {
		return LeapNone
	}
	e.lp.at = e.sec(mid)
	return vote
}
