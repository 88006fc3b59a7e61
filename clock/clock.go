// Package clock carries out the engine's corrections on a clock: the system
// clock, a PTP hardware clock, a virtual clock of timed's own, or none.
package clock

import (
	"time"

	"github.com/timed-project/timed/sources"
)

// Clock is a clock timed disciplines. It is a sources.Timebase, so sources
// read it for their local timestamps.
type Clock interface {
	sources.Timebase
	// Name is the driver's name: "system", "virtual", "none", "phc".
	Name() string
	// Frequency is the frequency correction currently applied, in ppm.
	Frequency() (float64, error)
	// SetFrequency sets the absolute frequency correction in ppm (positive
	// makes the clock run faster).
	SetFrequency(ppm float64) error
	// Step adds d to the clock at once.
	Step(d time.Duration) error
	// SetSync tells the OS whether the clock is synchronized, the leap
	// second pending and the error estimates. A leap second passed while
	// synchronized is applied by the driver at the next UTC midnight (the
	// kernel does it for the system clock), once; the engine passes one
	// only on the last day of a month.
	SetSync(s sources.ClockSync) error
}
