package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/sources"
)

// Epoch is true time zero: the simulated clocks read Epoch plus their
// reading in seconds.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Oscillator describes the local clock's raw (uncorrected) rate error.
type Oscillator struct {
	// FrequencyPPM is the initial frequency error in ppm (positive: the
	// clock runs fast).
	FrequencyPPM float64
	// Wander is the random walk of the frequency: at every whole second of
	// true time the frequency takes a step of Wander·Normal(0,1), as a
	// fraction (1e-9 is 0.001 ppm).
	Wander float64
	// SwingPPM and SwingPeriod make a temperature-like sinusoidal swing
	// SwingPPM·sin(2πt/SwingPeriod) of the frequency (seconds; zero period:
	// no swing).
	SwingPPM    float64
	SwingPeriod float64
}

// Clock is the simulated local clock. It implements clock.Clock, so the
// engine's corrections reach it exactly as they reach a real clock driver.
//
// Its error E(t) = L(t) − t obeys dE/dt = (oscillator error + F)·1e-6, where
// F is the frequency correction last set; it is integrated exactly between
// the whole seconds at which the wander steps. The simulator owns the
// advance of true time; the clock.Clock methods act at the current instant.
type Clock struct {
	osc    Oscillator
	rng    *rand.Rand
	t      float64 // true time the state refers to
	err    float64 // E(t) = L(t) − t, seconds (with errc)
	errc   float64 // compensation of the sum in err (Neumaier)
	walk   float64 // accumulated wander, ppm
	nextW  float64 // next whole second at which the wander steps
	freq   float64 // F, ppm
	steps  []StepRecord
	sync   sources.ClockSync
	nFreqs int
}

// StepRecord is one step the engine commanded.
type StepRecord struct {
	At   float64 // true time, s
	Step float64 // s
}

var _ clock.Clock = (*Clock)(nil)

// NewClock makes a clock that reads initialOffset seconds ahead of true time
// at t = 0 (negative: behind), with the oscillator osc whose wander draws
// from rng.
func NewClock(osc Oscillator, initialOffset float64, rng *rand.Rand) *Clock {
	return &Clock{osc: osc, rng: rng, err: initialOffset, nextW: 1}
}

// rawPPM is the oscillator's own rate error at true time t with the current
// wander.
func (c *Clock) rawPPM(t float64) float64 {
	e := c.osc.FrequencyPPM + c.walk
	if c.osc.SwingPeriod > 0 {
		e += c.osc.SwingPPM * math.Sin(2*math.Pi*t/c.osc.SwingPeriod)
	}
	return e
}

// integrate adds the phase the clock gains over [t0, t1] with the wander
// constant.
func (c *Clock) integrate(t0, t1 float64) {
	if t1 <= t0 {
		return
	}
	d := (c.osc.FrequencyPPM + c.walk + c.freq) * (t1 - t0)
	if c.osc.SwingPeriod > 0 && c.osc.SwingPPM != 0 {
		w := 2 * math.Pi / c.osc.SwingPeriod
		d += c.osc.SwingPPM / w * (math.Cos(w*t0) - math.Cos(w*t1))
	}
	c.add(d * 1e-6)
}

// add adds v to the error with compensated (Neumaier) summation, so that
// a long run of small increments loses nothing to rounding.
func (c *Clock) add(v float64) {
	s := c.err + v
	if math.Abs(c.err) >= math.Abs(v) {
		c.errc += (c.err - s) + v
	} else {
		c.errc += (v - s) + c.err
	}
	c.err = s
}

// Advance moves the clock forward to true time t (no-op if t is not later).
func (c *Clock) Advance(t float64) {
	for t >= c.nextW {
		c.integrate(c.t, c.nextW)
		c.t = c.nextW
		if c.osc.Wander != 0 {
			c.walk += c.osc.Wander * 1e6 * c.rng.NormFloat64()
		}
		c.nextW++
	}
	if t > c.t {
		c.integrate(c.t, t)
		c.t = t
	}
}

// True is the current true time, in seconds since Epoch.
func (c *Clock) True() float64 { return c.t }

// Error is L − t now, in seconds (positive: the clock is ahead).
func (c *Clock) Error() float64 { return c.err + c.errc }

// Reading is L now, in seconds since Epoch.
func (c *Clock) Reading() float64 { return c.t + c.Error() }

// RateError is the clock's total rate error now in ppm: the oscillator's
// error plus the frequency correction.
func (c *Clock) RateError() float64 { return c.rawPPM(c.t) + c.freq }

// OscillatorPPM is the oscillator's own rate error now, in ppm.
func (c *Clock) OscillatorPPM() float64 { return c.rawPPM(c.t) }

// Steps lists the steps applied so far.
func (c *Clock) Steps() []StepRecord { return c.steps }

// Sync is the synchronization status last set.
func (c *Clock) Sync() sources.ClockSync { return c.sync }

// FrequencySets counts the calls to SetFrequency.
func (c *Clock) FrequencySets() int { return c.nFreqs }

// Now reads the clock.
func (c *Clock) Now() time.Time { return toTime(c.Reading()) }

// FromSystem is the identity: in the simulation the "system clock" is the
// simulated clock.
func (c *Clock) FromSystem(sys time.Time) time.Time { return sys }

// Name is "sim".
func (c *Clock) Name() string { return "sim" }

// Frequency is the frequency correction F now applied, in ppm.
func (c *Clock) Frequency() (float64, error) { return c.freq, nil }

// SetFrequency sets F from the current instant on.
func (c *Clock) SetFrequency(ppm float64) error {
	c.freq = ppm
	c.nFreqs++
	return nil
}

// Step adds d to the clock now.
func (c *Clock) Step(d time.Duration) error {
	c.add(d.Seconds())
	c.steps = append(c.steps, StepRecord{At: c.t, Step: d.Seconds()})
	return nil
}

// SetSync records s.
func (c *Clock) SetSync(s sources.ClockSync) error {
	c.sync = s
	return nil
}

// toTime turns seconds since Epoch into a time.Time (rounded to the
// nanosecond).
func toTime(s float64) time.Time {
	return Epoch.Add(time.Duration(math.Round(s * 1e9)))
}
