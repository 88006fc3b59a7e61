package clock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/phc"
	"github.com/timed-project/timed/sources"
)

// PHCOptions configure the phc driver.
type PHCOptions struct {
	// UTCOffset is TAI − UTC, PTP's currentUtcOffset (37 s since 2017). A
	// PHC runs on TAI in PTP; the driver presents UTC, its time minus
	// UTCOffset, because the engine and every source work in UTC like the
	// system clock. Zero for a PHC kept on UTC. Leap seconds passed to
	// SetSync change the offset at UTC midnight; the PHC itself never
	// leaps.
	UTCOffset time.Duration
	// SampleAge is how old the comparison of the PHC with the system clock
	// that FromSystem uses may be before it is taken again (default
	// 100 ms). Over that age the error is the two clocks' relative
	// frequency times the age (nothing when the system clock is tied to the
	// PHC, 5 µs at 50 ppm).
	SampleAge time.Duration
}

// PHC drives a PTP hardware clock (/dev/ptpN through phc.Device): the
// engine's frequency corrections in ppm become the device's ppb, clamped to
// what the device accepts, steps are ADJ_SETOFFSET, and the status is only
// kept (a PHC has none in the kernel). It is safe for concurrent use.
type PHC struct {
	log       *zap.Logger
	dev       phc.Device
	sampleAge time.Duration
	sysNow    func() time.Time

	mu       sync.Mutex // serializes corrections and sampling
	utc      atomic.Pointer[phcUTC]
	sync     sources.ClockSync
	freqPPM  atomic.Uint64 // math.Float64bits of the last frequency set
	sample   phc.Offset    // the cached comparison, valid when sampled
	sampled  bool
	readFail atomic.Bool // a read failure was logged and has not cleared
}

var _ Clock = (*PHC)(nil)

// phcUTC is how the PHC's time becomes UTC; immutable once published.
type phcUTC struct {
	offset int64 // TAI − UTC, ns
	// A pending leap second: from PHC time leapAt on, the offset is
	// leapDelta larger (+1 s for an inserted second). leapMid is the UTC
	// midnight of the last leap armed, so that it is applied once.
	leapAt, leapDelta, leapMid int64
}

func (u *phcUTC) at(p int64) int64 {
	if u.leapDelta != 0 && p >= u.leapAt {
		return p - u.offset - u.leapDelta
	}
	return p - u.offset
}

// NewPHC returns the driver for dev. It reads the device's current
// frequency adjustment, so a restart continues where the clock was.
func NewPHC(log *zap.Logger, dev phc.Device, opts PHCOptions) (*PHC, error) {
	return newPHC(log, dev, opts, time.Now)
}

func newPHC(log *zap.Logger, dev phc.Device, opts PHCOptions, sysNow func() time.Time) (*PHC, error) {
	if dev == nil {
		return nil, errors.New("clock: phc: no device")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if opts.UTCOffset < 0 || opts.UTCOffset > time.Hour {
		return nil, fmt.Errorf("clock: phc: UTC offset %v is out of range [0, 1h]", opts.UTCOffset)
	}
	if opts.SampleAge <= 0 {
		opts.SampleAge = 100 * time.Millisecond
	}
	ppb, err := dev.Frequency()
	if err != nil {
		return nil, fmt.Errorf("clock: phc: %w", err)
	}
	p := &PHC{log: log.With(zap.String("phc", dev.Name())), dev: dev, sampleAge: opts.SampleAge, sysNow: sysNow}
	p.utc.Store(&phcUTC{offset: int64(opts.UTCOffset)})
	p.sync = sources.ClockSync{Leap: sources.LeapUnknown, MaxError: 16 * time.Second}
	p.freqPPM.Store(math.Float64bits(ppb / 1000))
	return p, nil
}

// Name is "phc".
func (p *PHC) Name() string { return "phc" }

// Device returns the device the driver steers.
func (p *PHC) Device() phc.Device { return p.dev }

// UTCOffset is TAI − UTC now, with the leap seconds applied since start.
func (p *PHC) UTCOffset() time.Duration {
	t, err := p.dev.Time()
	u := p.utc.Load()
	if err != nil || u.leapDelta == 0 || t.UnixNano() < u.leapAt {
		return time.Duration(u.offset)
	}
	return time.Duration(u.offset + u.leapDelta)
}

// toUTC converts a PHC reading to UTC.
func (p *PHC) toUTC(t time.Time) time.Time {
	return time.Unix(0, p.utc.Load().at(t.UnixNano()))
}

// Now reads the PHC (one clock_gettime) and returns its time in UTC. If the
// device cannot be read, it falls back to the system clock converted with
// the last comparison, and logs the failure once.
func (p *PHC) Now() time.Time {
	t, err := p.dev.Time()
	if err != nil {
		p.readFailed(err)
		return p.FromSystem(p.sysNow())
	}
	p.readFail.Store(false)
	return p.toUTC(t)
}

func (p *PHC) readFailed(err error) {
	if !p.readFail.Swap(true) {
		p.log.Warn("cannot read the PTP hardware clock", zap.Error(err))
	}
}

// FromHardware converts a reading of the PHC itself, such as a network
// card's hardware timestamp of a packet, into the driver's timescale (UTC):
// the reading minus the UTC offset. It reads no device.
func (p *PHC) FromHardware(t time.Time) time.Time { return p.toUTC(t) }

// FromSystem converts a system-clock reading into the PHC's time in UTC,
// with a comparison of the two clocks (phc.Device.Offset) that is at most
// SampleAge old, taken again after every correction.
func (p *PHC) FromSystem(sys time.Time) time.Time {
	p.mu.Lock()
	if !p.sampled || absDuration(sys.Sub(p.sample.System)) > p.sampleAge {
		off, err := p.dev.Offset()
		if err != nil {
			p.readFailed(err)
		} else {
			p.sample, p.sampled = off, true
		}
	}
	off := p.sample.Offset
	p.mu.Unlock()
	return p.toUTC(sys.Add(off).Round(0))
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Frequency reads the device's frequency adjustment, in ppm.
func (p *PHC) Frequency() (float64, error) {
	ppb, err := p.dev.Frequency()
	if err != nil {
		return 0, fmt.Errorf("clock: phc: %w", err)
	}
	return ppb / 1000, nil
}

// appliedPPM is the frequency last set (the tie follows its changes).
func (p *PHC) appliedPPM() float64 { return math.Float64frombits(p.freqPPM.Load()) }

// SetFrequency sets the device's frequency adjustment to ppm·1000 ppb.
// Beyond the device's MaxAdj the adjustment is clamped, set, and reported
// with an error.
func (p *PHC) SetFrequency(ppm float64) error {
	if math.IsNaN(ppm) || math.IsInf(ppm, 0) {
		return fmt.Errorf("clock: phc: invalid frequency %v ppm", ppm)
	}
	maxPPB := p.dev.MaxAdj()
	ppb := math.Max(-maxPPB, math.Min(maxPPB, ppm*1000))
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.dev.AdjFreq(ppb); err != nil {
		return fmt.Errorf("clock: phc: %w", err)
	}
	p.freqPPM.Store(math.Float64bits(ppb / 1000))
	p.sampled = false
	if ppb != ppm*1000 {
		return fmt.Errorf("clock: phc: frequency %.3f ppm is beyond %s's limit of ±%.3f ppm; set %.3f ppm",
			ppm, p.dev.Name(), maxPPB/1000, ppb/1000)
	}
	return nil
}

// Step adds d to the PHC (ADJ_SETOFFSET).
func (p *PHC) Step(d time.Duration) error {
	if d == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.dev.Step(d); err != nil {
		return fmt.Errorf("clock: phc: %w", err)
	}
	p.sampled = false
	p.log.Info("stepped the PTP hardware clock", zap.Duration("step", d))
	return nil
}

// SetSync keeps the status (the kernel has none for a PHC; Sync returns
// it). A leap second passed while synchronized changes the UTC offset at
// the next UTC midnight, once; one withdrawn before then is cancelled.
func (p *PHC) SetSync(s sources.ClockSync) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sync = s
	t, err := p.dev.Time()
	if err != nil {
		return fmt.Errorf("clock: phc: leap second: %w", err)
	}
	now := t.UnixNano()
	next := *p.utc.Load()
	if next.leapDelta != 0 && now >= next.leapAt { // the leap has happened
		next.offset += next.leapDelta
		next.leapAt, next.leapDelta = 0, 0
	}
	delta := int64(0)
	if s.Synchronized {
		switch s.Leap {
		case sources.LeapInsert:
			delta = int64(time.Second)
		case sources.LeapDelete:
			delta = -int64(time.Second)
		}
	}
	mid := (next.at(now)/dayNanos + 1) * dayNanos
	switch {
	case delta == 0:
		next.leapAt, next.leapDelta = 0, 0
	case mid == next.leapMid && next.leapDelta == 0:
		// This midnight's leap has happened (the inserted second is
		// still running): once is enough.
	default:
		next.leapDelta, next.leapMid = delta, mid
		next.leapAt = mid + next.offset // the PHC's time at UTC midnight
		if delta < 0 {
			next.leapAt -= int64(time.Second)
		}
	}
	p.utc.Store(&next)
	return nil
}

// Sync returns the status last passed to SetSync.
func (p *PHC) Sync() sources.ClockSync {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sync
}

// TieOptions configure how the system clock is tied to a PHC.
type TieOptions struct {
	// Interval between measurements (default 125 ms: 8 Hz).
	Interval time.Duration
	// FirstStep: at the first measurement, an offset larger than this is
	// stepped (default 20 µs).
	FirstStep time.Duration
	// StepThreshold: later, an offset larger than this is stepped rather
	// than slewed (default 1 ms, as after the PHC itself was stepped);
	// negative: never step after the first measurement.
	StepThreshold time.Duration
	// MaxFrequencyPPM bounds the system clock's frequency correction
	// (default 500 ppm).
	MaxFrequencyPPM float64
	// Unsynchronized ties the system clock even while the PHC driver has
	// never been synchronized. By default the tie waits until the engine
	// first reports the PHC synchronized (SetSync), so that a free-running
	// PHC never drags the system clock away; from then on it keeps tying,
	// through holdover too.
	Unsynchronized bool
}

// The tie's PI constants, per measurement. With x the system clock's offset
// from the PHC and T the interval, the frequency set is I − kp·x/T and the
// integral I moves by −ki·x/T each time. The loop x(k+1) = x(k) + T·(error +
// frequency) then has the characteristic polynomial z² − (2 − kp)·z +
// (1 − kp + ki), whose two roots coincide at z = r for kp = 2 − 2r and
// ki = (1 − r)²: critically damped, each measurement leaving r of the
// error. r = 0.7 settles a step in frequency within about 20 measurements
// (2.5 s at 8 Hz) while passing on a little over half of a measurement's
// noise.
const (
	tieRoot = 0.7
	tieKP   = 2 - 2*tieRoot
	tieKI   = (1 - tieRoot) * (1 - tieRoot)
)

// The tie drops a measurement whose read delay is more than
// tieDelayFactor times the smallest of the last tieDelayWindow (dropped ones
// included, so that the tie adapts when reads become slower for good) plus
// tieDelaySlack: the reading was interrupted.
const (
	tieDelayWindow = 16
	tieDelayFactor = 3
	tieDelaySlack  = 500 * time.Nanosecond
)

// TieStatus is what the tie did last.
type TieStatus struct {
	// Offset is the system clock's offset from the PHC (in UTC) at the
	// last measurement: positive when the system clock is ahead.
	Offset time.Duration
	// Delay is that measurement's read delay.
	Delay time.Duration
	// FrequencyPPM is the system clock's frequency correction.
	FrequencyPPM float64
	// Updates counts measurements used, Dropped those dropped for their
	// delay, Steps the steps of the system clock.
	Updates, Dropped, Steps int
	// Waiting is true while the tie waits for the PHC to synchronize.
	Waiting bool
}

// Tie keeps the system clock on a PHC, as linuxptp's phc2sys does: it
// compares the two clocks at a fixed rate (phc.Device.Offset) and steers the
// system clock with a PI loop (see tieKP, tieKI), following the frequency
// changes the engine makes on the PHC at once. It hands the PHC driver's
// synchronization status, widened by the tie's own offset, to the system
// clock.
type Tie struct {
	log  *zap.Logger
	src  *PHC
	sys  Clock
	opts TieOptions

	mu       sync.Mutex
	status   TieStatus
	integral float64 // ppm
	srcPPM   float64 // the PHC's frequency at the last update
	started  bool
	delays   [tieDelayWindow]time.Duration
	nDelays  int
}

// NewTie returns a tie of the system clock sys (the system driver; any
// Clock in tests) to the PHC driven by src. It reads sys's current
// frequency correction, so that it starts from it.
func NewTie(log *zap.Logger, src *PHC, sys Clock, opts TieOptions) (*Tie, error) {
	if src == nil || sys == nil {
		return nil, errors.New("clock: tie: a PHC and a system clock are needed")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if opts.Interval <= 0 {
		opts.Interval = 125 * time.Millisecond
	}
	if opts.FirstStep <= 0 {
		opts.FirstStep = 20 * time.Microsecond
	}
	if opts.StepThreshold == 0 {
		opts.StepThreshold = time.Millisecond
	}
	if opts.MaxFrequencyPPM <= 0 || math.IsNaN(opts.MaxFrequencyPPM) {
		opts.MaxFrequencyPPM = 500
	}
	f, err := sys.Frequency()
	if err != nil {
		return nil, fmt.Errorf("clock: tie: %w", err)
	}
	t := &Tie{log: log.With(zap.String("tie", src.dev.Name()+" → "+sys.Name())), src: src, sys: sys, opts: opts}
	t.integral = math.Max(-opts.MaxFrequencyPPM, math.Min(opts.MaxFrequencyPPM, f))
	t.status.FrequencyPPM = t.integral
	return t, nil
}

// Run measures and corrects every Interval until ctx is done. Errors are
// logged (once until the tie works again) and the tie goes on.
func (t *Tie) Run(ctx context.Context) error {
	tick := time.NewTicker(t.opts.Interval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := t.Update(); err != nil {
			if !failing {
				t.log.Warn("cannot tie the system clock to the PHC", zap.Error(err))
			}
			failing = true
		} else if failing {
			t.log.Info("the system clock is tied to the PHC again")
			failing = false
		}
	}
}

// Status returns what the tie did last.
func (t *Tie) Status() TieStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Update takes one measurement and corrects the system clock; Run calls it
// every Interval.
func (t *Tie) Update() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	srcSync := t.src.Sync()
	if !srcSync.Synchronized && !t.opts.Unsynchronized && !t.started {
		t.status.Waiting = true
		return nil
	}
	t.status.Waiting = false
	m, err := t.src.dev.Offset()
	if err != nil {
		return fmt.Errorf("clock: tie: %w", err)
	}
	if t.dropDelay(m.Delay) {
		// The proportional part of the last correction was meant for one
		// interval: run on the integral alone until the next measurement.
		t.status.Dropped++
		if !t.started {
			return nil
		}
		if err := t.sys.SetFrequency(t.integral); err != nil {
			return fmt.Errorf("clock: tie: %w", err)
		}
		t.status.FrequencyPPM = t.integral
		return nil
	}
	// x: the system clock's offset from the PHC's UTC.
	x := m.System.Sub(t.src.toUTC(m.System.Add(m.Offset)))
	t.status.Offset, t.status.Delay = x, m.Delay

	// The engine's changes to the PHC's frequency are the system clock's
	// to follow at once.
	srcPPM := t.src.appliedPPM()
	if t.started {
		t.integral += srcPPM - t.srcPPM
	}
	t.srcPPM = srcPPM

	threshold := t.opts.StepThreshold
	if !t.started {
		threshold = t.opts.FirstStep
	}
	t.started = true
	if threshold >= 0 && absDuration(x) > threshold {
		if err := t.sys.Step(-x); err != nil {
			return fmt.Errorf("clock: tie: %w", err)
		}
		t.status.Steps++
		t.log.Info("stepped the system clock to the PHC", zap.Duration("offset", x))
		x = 0
	}

	// x/interval in ppm is the frequency that would remove x by the next
	// measurement.
	rate := x.Seconds() / t.opts.Interval.Seconds() * 1e6
	limit := t.opts.MaxFrequencyPPM
	t.integral = math.Max(-limit, math.Min(limit, t.integral-tieKI*rate))
	freq := math.Max(-limit, math.Min(limit, t.integral-tieKP*rate))
	if err := t.sys.SetFrequency(freq); err != nil {
		return fmt.Errorf("clock: tie: %w", err)
	}
	t.status.FrequencyPPM = freq
	t.status.Updates++

	cs := srcSync
	cs.EstError += absDuration(x)
	cs.MaxError += absDuration(x) + m.Delay
	if err := t.sys.SetSync(cs); err != nil {
		return fmt.Errorf("clock: tie: %w", err)
	}
	return nil
}

// dropDelay records a measurement's read delay and reports whether the
// measurement should be dropped for it.
func (t *Tie) dropDelay(d time.Duration) bool {
	n := min(t.nDelays, tieDelayWindow)
	least := time.Duration(math.MaxInt64)
	for _, v := range t.delays[:n] {
		least = min(least, v)
	}
	t.delays[t.nDelays%tieDelayWindow] = d
	t.nDelays++
	return n > 0 && d > tieDelayFactor*least+tieDelaySlack
}
