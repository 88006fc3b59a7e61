package clock

import (
	"math"
	"sync"
	"time"

	"github.com/timed-project/timed/sources"
)

// none only observes: it reads the system clock and ignores every
// correction. It remembers the last frequency it was asked to set so that
// status shows what the engine wanted.
type none struct {
	mu   sync.Mutex
	freq float64
}

// NewNone returns the driver that never changes any clock: Now is the
// system clock, and SetFrequency, Step and SetSync do nothing.
func NewNone() Clock { return &none{} }

func (*none) Name() string                     { return "none" }
func (*none) Now() time.Time                   { return time.Now() }
func (*none) FromSystem(t time.Time) time.Time { return t }
func (*none) Step(time.Duration) error         { return nil }
func (*none) SetSync(sources.ClockSync) error  { return nil }

// Frequency returns the frequency last passed to SetFrequency (0 at first).
func (n *none) Frequency() (float64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.freq, nil
}

// SetFrequency records ppm and changes nothing.
func (n *none) SetFrequency(ppm float64) error {
	if math.IsNaN(ppm) || math.IsInf(ppm, 0) {
		return nil
	}
	n.mu.Lock()
	n.freq = ppm
	n.mu.Unlock()
	return nil
}
