package clock

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/sources"
)

// The kernel's frequency field is in "scaled ppm": ppm with a 16-bit
// binary fraction, and it accepts at most ±500 ppm.
const (
	scaledPPM        = 1 << 16
	maxKernelFreqPPM = 500.0
)

// atClkTck is the auxiliary-vector entry carrying USER_HZ.
const atClkTck = 17

// adjtimer is the one system call the system driver makes. The real one
// calls clock_adjtime(CLOCK_REALTIME); tests use a fake so that they never
// touch the machine's clock.
type adjtimer interface {
	adjtime(tx *unix.Timex) (int, error)
}

type realtimeAdjtimer struct{}

func (realtimeAdjtimer) adjtime(tx *unix.Timex) (int, error) {
	return unix.ClockAdjtime(unix.CLOCK_REALTIME, tx)
}

// system disciplines CLOCK_REALTIME through clock_adjtime.
type system struct {
	log *zap.Logger
	adj adjtimer
	// nominalTick is the length of a USER_HZ tick in µs with no frequency
	// correction (10000 for USER_HZ=100); ppmPerTick is how many ppm one µs
	// of tick is worth (100 for USER_HZ=100).
	nominalTick int64
	ppmPerTick  float64
	// minTick and maxTick are the kernel's limits (±10 % of nominal).
	minTick, maxTick int64

	mu sync.Mutex
}

// NewSystem returns the driver that disciplines the system clock
// (CLOCK_REALTIME) with clock_adjtime. Creating it only reads the kernel's
// state; steering it needs CAP_SYS_TIME (see CanSetTime).
func NewSystem(log *zap.Logger) (Clock, error) {
	return newSystem(log, realtimeAdjtimer{}, userHZ())
}

func newSystem(log *zap.Logger, adj adjtimer, hz int64) (*system, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if hz <= 0 {
		hz = 100
	}
	nominal := (1_000_000 + hz/2) / hz
	s := &system{
		log:         log,
		adj:         adj,
		nominalTick: nominal,
		ppmPerTick:  1e6 / float64(nominal),
		// The kernel refuses ticks outside [900000/USER_HZ, 1100000/USER_HZ].
		minTick: 900_000 / hz,
		maxTick: 1_100_000 / hz,
	}
	var tx unix.Timex
	if _, err := s.call(&tx, "read the kernel clock state"); err != nil {
		return nil, err
	}
	return s, nil
}

// userHZ is the kernel's USER_HZ (the unit of the timex tick field), from
// the auxiliary vector; 100 when it cannot be found, as on every Linux
// architecture Go supports.
func userHZ() int64 {
	auxv, err := unix.Auxv()
	if err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 && kv[1] < 100000 {
				return int64(kv[1])
			}
		}
	}
	return 100
}

func (s *system) Name() string { return "system" }

// Now reads the system clock.
func (s *system) Now() time.Time { return time.Now() }

// FromSystem is the identity: this driver's timescale is the system clock.
func (s *system) FromSystem(t time.Time) time.Time { return t }

// call makes one clock_adjtime call and wraps its error.
func (s *system) call(tx *unix.Timex, what string) (int, error) {
	state, err := s.adj.adjtime(tx)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return state, fmt.Errorf("clock: system: %s: clock_adjtime: %w (steering the system clock needs CAP_SYS_TIME; run timed as root or use driver: virtual)", what, err)
		}
		return state, fmt.Errorf("clock: system: %s: clock_adjtime: %w", what, err)
	}
	return state, nil
}

// splitFrequency turns an absolute frequency correction in ppm into the
// kernel's tick (µs per USER_HZ tick) and freq (scaled ppm) fields. Within
// ±500 ppm the tick stays nominal; beyond, whole µs of tick carry the bulk
// and freq the rest. Corrections beyond what the kernel can do are clamped
// and reported with an error.
//
// clamped is true when ppm was beyond the kernel's reach; ppm must be
// finite.
func (s *system) splitFrequency(ppm float64) (tick, freq int64, clamped bool) {
	limit := s.maxFrequency()
	if ppm > limit || ppm < -limit {
		clamped = true
		ppm = math.Max(-limit, math.Min(limit, ppm))
	}
	tick = s.nominalTick
	if math.Abs(ppm) > maxKernelFreqPPM {
		delta := int64(math.Round(ppm / s.ppmPerTick))
		delta = max(s.minTick-s.nominalTick, min(s.maxTick-s.nominalTick, delta))
		tick += delta
		ppm -= float64(delta) * s.ppmPerTick
	}
	freq = int64(math.Round(ppm * scaledPPM))
	freq = max(-maxKernelFreqPPM*scaledPPM, min(maxKernelFreqPPM*scaledPPM, freq))
	return tick, freq, clamped
}

// maxFrequency is the largest correction tick and freq together can make.
func (s *system) maxFrequency() float64 {
	return float64(s.maxTick-s.nominalTick)*s.ppmPerTick + maxKernelFreqPPM
}

// frequencyOf is the inverse of splitFrequency.
func (s *system) frequencyOf(tick, freq int64) float64 {
	return float64(tick-s.nominalTick)*s.ppmPerTick + float64(freq)/scaledPPM
}

// Frequency reads the correction back from the kernel's tick and freq.
func (s *system) Frequency() (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tx unix.Timex
	if _, err := s.call(&tx, "read frequency"); err != nil {
		return 0, err
	}
	return s.frequencyOf(int64(tx.Tick), int64(tx.Freq)), nil
}

// SetFrequency sets the absolute frequency correction. It also turns off the
// kernel's PLL and FLL if something turned them on, so that the kernel does
// not steer the clock against timed.
func (s *system) SetFrequency(ppm float64) error {
	if math.IsNaN(ppm) || math.IsInf(ppm, 0) {
		return fmt.Errorf("clock: system: invalid frequency %v ppm", ppm)
	}
	tick, freq, clamped := s.splitFrequency(ppm)
	var clampErr error
	if clamped {
		clampErr = fmt.Errorf("clock: system: frequency %.3f ppm is beyond the kernel's limit of ±%.0f ppm; set %.3f ppm",
			ppm, s.maxFrequency(), s.frequencyOf(tick, freq))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var tx unix.Timex
	tx.Modes = unix.ADJ_FREQUENCY | unix.ADJ_TICK
	setInt(&tx.Freq, freq)
	setInt(&tx.Tick, tick)
	if _, err := s.call(&tx, fmt.Sprintf("set frequency %.3f ppm", ppm)); err != nil {
		return err
	}
	// The kernel returns its state after the change: make sure its own
	// loops are off.
	if tx.Status&(unix.STA_PLL|unix.STA_FLL) != 0 {
		s.log.Warn("the kernel PLL/FLL was on (another time daemon?); turning it off")
		status := tx.Status &^ (unix.STA_PLL | unix.STA_FLL)
		var st unix.Timex
		st.Modes = unix.ADJ_STATUS
		st.Status = status
		if _, err := s.call(&st, "turn off the kernel PLL"); err != nil {
			return err
		}
	}
	return clampErr
}

// Step adds d to the clock at once (ADJ_SETOFFSET).
func (s *system) Step(d time.Duration) error {
	if d == 0 {
		return nil
	}
	sec := int64(d / time.Second)
	nsec := int64(d % time.Second)
	if nsec < 0 { // the kernel wants 0 <= nsec < 1e9
		sec--
		nsec += int64(time.Second)
	}
	var tx unix.Timex
	tx.Modes = unix.ADJ_SETOFFSET | unix.ADJ_NANO
	if !setInt(&tx.Time.Sec, sec) {
		return fmt.Errorf("clock: system: step %v is too large for this platform", d)
	}
	setInt(&tx.Time.Usec, nsec) // nanoseconds with ADJ_NANO
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.call(&tx, fmt.Sprintf("step %v", d)); err != nil {
		return err
	}
	s.log.Info("stepped the system clock", zap.Duration("step", d))
	return nil
}

// maxErrorUS is the kernel's cap on maxerror (NTP_PHASE_LIMIT, 16 s).
const maxErrorUS = 16_000_000

// SetSync hands the synchronization status to the kernel: STA_UNSYNC,
// the pending leap second (STA_INS/STA_DEL) and the error estimates in µs.
// It keeps the kernel's other status bits but turns off its PLL and FLL.
func (s *system) SetSync(cs sources.ClockSync) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur unix.Timex
	if _, err := s.call(&cur, "read status"); err != nil {
		return err
	}
	status := cur.Status &^ (unix.STA_PLL | unix.STA_FLL | unix.STA_UNSYNC | unix.STA_INS | unix.STA_DEL)
	if !cs.Synchronized {
		status |= unix.STA_UNSYNC
	}
	// A leap second is only announced by a synchronized clock.
	if cs.Synchronized {
		switch cs.Leap {
		case sources.LeapInsert:
			status |= unix.STA_INS
		case sources.LeapDelete:
			status |= unix.STA_DEL
		}
	}
	var tx unix.Timex
	tx.Modes = unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR
	tx.Status = status
	setInt(&tx.Maxerror, errorUS(cs.MaxError))
	setInt(&tx.Esterror, errorUS(cs.EstError))
	if _, err := s.call(&tx, "set status"); err != nil {
		return err
	}
	return nil
}

// errorUS converts an error estimate to the kernel's µs, rounded up and
// kept within [0, 16 s].
func errorUS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	us := (int64(d) + 999) / 1000
	return min(us, maxErrorUS)
}

// setInt stores v in a timex field, whose width depends on the platform. It
// reports false if v does not fit.
func setInt[T ~int32 | ~int64](p *T, v int64) bool {
	*p = T(v)
	return int64(*p) == v
}
