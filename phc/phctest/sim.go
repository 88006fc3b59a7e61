// Package phctest has a simulated PTP hardware clock, so that clock and
// synchronization code can be tested without hardware.
package phctest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/timed-project/timed/phc"
)

// Options describe a simulated PTP hardware clock.
type Options struct {
	// Name is the device's name (default "sim-ptp").
	Name string
	// Now is the true time that drives the oscillator: a simulated clock
	// the test advances, or time.Now. It must not go backwards.
	Now func() time.Time
	// System reads the system clock that Offset compares the device with
	// (default Now, a perfect system clock).
	System func() time.Time
	// Offset is how far the device starts ahead of true time (37 s for a
	// clock on TAI when true time is UTC).
	Offset time.Duration
	// FrequencyPPB is the oscillator's frequency error at start, in ppb
	// (positive: the clock runs fast).
	FrequencyPPB float64
	// WanderPPB is the random walk of the frequency error: the standard
	// deviation of its change over one second, in ppb (it grows with the
	// square root of time).
	WanderPPB float64
	// ReadDelay is the fixed part of an Offset reading's width, and
	// ReadJitter the mean of an exponentially distributed extra part. The
	// device is read at a uniformly random instant within that width around
	// the system-clock reading. Both zero: a perfect cross-timestamp.
	ReadDelay, ReadJitter time.Duration
	// MaxAdjPPB is the largest frequency adjustment the device accepts
	// (default 500000 ppb).
	MaxAdjPPB float64
	// Seed makes the wander and the jitter reproducible.
	Seed uint64
}

// Sim is a simulated PTP hardware clock; it implements phc.Device. Its time
// is true time plus an error that grows with the oscillator's frequency
// error (which wanders) plus the adjustment set with AdjFreq. It is safe for
// concurrent use.
type Sim struct {
	opts Options

	mu      sync.Mutex
	rng     *rand.Rand
	last    int64   // true time up to which the error is integrated, Unix ns
	errNs   float64 // device time − true time at last
	natPPB  float64 // the oscillator's own frequency error
	adjPPB  float64 // the adjustment set with AdjFreq
	fail    error
	closed  bool
	steps   int
	adjusts int
}

var _ phc.Device = (*Sim)(nil)

// NewSim returns a simulated clock; opts.Now is required.
func NewSim(opts Options) (*Sim, error) {
	if opts.Now == nil {
		return nil, errors.New("phctest: Options.Now is required")
	}
	if opts.System == nil {
		opts.System = opts.Now
	}
	if opts.Name == "" {
		opts.Name = "sim-ptp"
	}
	if opts.MaxAdjPPB <= 0 {
		opts.MaxAdjPPB = 500_000
	}
	for _, v := range []float64{opts.FrequencyPPB, opts.WanderPPB} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("phctest: invalid frequency %v ppb", v)
		}
	}
	if opts.WanderPPB < 0 || opts.ReadDelay < 0 || opts.ReadJitter < 0 {
		return nil, errors.New("phctest: wander, read delay and jitter must not be negative")
	}
	return &Sim{
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		last:   opts.Now().UnixNano(),
		errNs:  float64(opts.Offset),
		natPPB: opts.FrequencyPPB,
	}, nil
}

// advance integrates the error up to true time t in steps of at most one
// second, so that the wander does not depend on how often the clock is read.
func (s *Sim) advance(t int64) {
	for t > s.last {
		dt := min(t-s.last, int64(time.Second))
		s.errNs += float64(dt) * (s.natPPB + s.adjPPB) * 1e-9
		s.last += dt
		if s.opts.WanderPPB > 0 {
			s.natPPB += s.opts.WanderPPB * math.Sqrt(float64(dt)/1e9) * s.rng.NormFloat64()
		}
	}
}

// at returns the device's time at true time t (Unix ns), after advancing.
func (s *Sim) at(t int64) time.Time {
	s.advance(t)
	whole := math.Floor(s.errNs)
	ns := t + int64(whole)
	if s.errNs-whole >= 0.5 {
		ns++
	}
	return time.Unix(0, ns)
}

func (s *Sim) check(what string) error {
	if s.closed {
		return fmt.Errorf("phctest: %s: %s: device closed", s.opts.Name, what)
	}
	if s.fail != nil {
		return fmt.Errorf("phctest: %s: %s: %w", s.opts.Name, what, s.fail)
	}
	return nil
}

// Name returns Options.Name.
func (s *Sim) Name() string { return s.opts.Name }

// MaxAdj returns Options.MaxAdjPPB.
func (s *Sim) MaxAdj() float64 { return s.opts.MaxAdjPPB }

// Time reads the simulated clock.
func (s *Sim) Time() (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("read"); err != nil {
		return time.Time{}, err
	}
	return s.at(s.opts.Now().UnixNano()), nil
}

// Offset compares the clock with Options.System, with the read delay and
// jitter of the options: MethodPrecise when both are zero, else
// MethodExtended.
func (s *Sim) Offset() (phc.Offset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("read offset"); err != nil {
		return phc.Offset{}, err
	}
	sys := s.opts.System().Round(0)
	dev := s.at(s.opts.Now().UnixNano())
	width := s.opts.ReadDelay
	if s.opts.ReadJitter > 0 {
		width += time.Duration(s.rng.ExpFloat64() * float64(s.opts.ReadJitter))
	}
	off := phc.Offset{Offset: dev.Sub(sys), System: sys, Delay: width, Method: phc.MethodPrecise}
	if width > 0 {
		off.Method = phc.MethodExtended
		// The device was read somewhere within the bracket.
		off.Offset += time.Duration((s.rng.Float64() - 0.5) * float64(width))
	}
	return off, nil
}

// Frequency returns the adjustment last set with AdjFreq.
func (s *Sim) Frequency() (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("read frequency"); err != nil {
		return 0, err
	}
	return s.adjPPB, nil
}

// AdjFreq sets the frequency adjustment from now on; like the kernel, it
// refuses values beyond ±MaxAdj.
func (s *Sim) AdjFreq(ppb float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("set frequency"); err != nil {
		return err
	}
	if math.IsNaN(ppb) || math.Abs(ppb) > s.opts.MaxAdjPPB {
		return fmt.Errorf("phctest: %s: frequency %v ppb is beyond ±%.0f ppb", s.opts.Name, ppb, s.opts.MaxAdjPPB)
	}
	s.advance(s.opts.Now().UnixNano())
	s.adjPPB = ppb
	s.adjusts++
	return nil
}

// Step adds d to the clock.
func (s *Sim) Step(d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("step"); err != nil {
		return err
	}
	s.advance(s.opts.Now().UnixNano())
	s.errNs += float64(d)
	s.steps++
	return nil
}

// Close makes every later call fail.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Fail makes every later call fail with err until Fail(nil).
func (s *Sim) Fail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// TrueOffset is how far the clock is ahead of true time now, exactly.
func (s *Sim) TrueOffset() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now().UnixNano()
	return time.Duration(s.at(now).UnixNano() - now)
}

// FrequencyError is the oscillator's own frequency error now (without the
// adjustment), in ppb.
func (s *Sim) FrequencyError() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.opts.Now().UnixNano())
	return s.natPPB
}

// Counts returns how many steps and frequency adjustments were made.
func (s *Sim) Counts() (steps, adjustments int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.steps, s.adjusts
}
