package clock

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/timed-project/timed/sources"
)

// VirtualOptions set up a virtual clock's simulated error against the
// system clock.
type VirtualOptions struct {
	// Offset is how far the virtual clock starts ahead of the system clock.
	Offset time.Duration
	// FrequencyPPM is how much faster than the system clock the virtual
	// clock runs until timed corrects it.
	FrequencyPPM float64
}

// maxVirtualPPM bounds the virtual clock's total rate error so that it
// always runs forwards.
const maxVirtualPPM = 500_000

// Virtual is a clock of timed's own, laid over the system clock: timed
// disciplines it exactly as it would the system clock, but no OS clock
// changes. Its time is
//
//	v0 + (s − s0) · (1 + (simulated error + correction) · 1e-6)
//
// for a system-clock reading s, where (s0, v0) is the anchor set at start
// and at every correction. It is safe for concurrent use.
type Virtual struct {
	sysNow func() time.Time

	mu    sync.Mutex // serializes corrections
	state atomic.Pointer[virtualState]
}

var _ Clock = (*Virtual)(nil)

// virtualState is immutable once published.
type virtualState struct {
	s0, v0 int64   // anchor: system and virtual time, Unix nanoseconds
	simPPM float64 // simulated frequency error
	corPPM float64 // frequency correction (what SetFrequency set)
	sync   sources.ClockSync
	// A pending leap second: from virtual time leapAt on (before the leap)
	// the clock is leapDelta further on (−1 s: 23:59:59 repeats; +1 s:
	// 23:59:59 is skipped). leapMid is the midnight of the last leap armed,
	// so that it is applied once.
	leapAt, leapDelta, leapMid int64
}

const dayNanos = int64(24 * time.Hour)

// base is the virtual time at system time s, before any pending leap.
func (st *virtualState) base(s int64) int64 {
	elapsed := s - st.s0
	return st.v0 + elapsed + int64(math.Round(float64(elapsed)*(st.simPPM+st.corPPM)*1e-6))
}

func (st *virtualState) at(s int64) int64 {
	v := st.base(s)
	if st.leapDelta != 0 && v >= st.leapAt {
		v += st.leapDelta
	}
	return v
}

// reanchor returns a copy of st anchored at system time s, with a leap that
// has happened by then folded into the anchor.
func (st *virtualState) reanchor(s int64) virtualState {
	next := *st
	next.s0, next.v0 = s, st.at(s)
	if st.leapDelta != 0 && st.base(s) >= st.leapAt {
		next.leapAt, next.leapDelta = 0, 0
	}
	return next
}

// NewVirtual returns a virtual clock that starts opts.Offset ahead of the
// system clock and runs opts.FrequencyPPM fast.
func NewVirtual(opts VirtualOptions) *Virtual {
	return newVirtual(opts, time.Now)
}

func newVirtual(opts VirtualOptions, sysNow func() time.Time) *Virtual {
	sim := opts.FrequencyPPM
	if math.IsNaN(sim) || math.IsInf(sim, 0) {
		sim = 0
	}
	sim = math.Max(-maxVirtualPPM, math.Min(maxVirtualPPM, sim))
	s := sysNow().UnixNano()
	v := &Virtual{sysNow: sysNow}
	v.state.Store(&virtualState{s0: s, v0: s + int64(opts.Offset), simPPM: sim})
	return v
}

// Name is "virtual".
func (v *Virtual) Name() string { return "virtual" }

// Now reads the virtual clock.
func (v *Virtual) Now() time.Time { return v.FromSystem(v.sysNow()) }

// FromSystem converts a system-clock reading into virtual time.
func (v *Virtual) FromSystem(sys time.Time) time.Time {
	return time.Unix(0, v.state.Load().at(sys.UnixNano()))
}

// OffsetFromSystem is how far the virtual clock is ahead of the system
// clock now.
func (v *Virtual) OffsetFromSystem() time.Duration {
	s := v.sysNow().UnixNano()
	return time.Duration(v.state.Load().at(s) - s)
}

// Frequency is the correction last set (the simulated error is not part of
// it).
func (v *Virtual) Frequency() (float64, error) { return v.state.Load().corPPM, nil }

// SetFrequency re-anchors the clock at the current instant, so that its
// time continues without a jump, and then runs it at the new rate.
func (v *Virtual) SetFrequency(ppm float64) error {
	if math.IsNaN(ppm) || math.IsInf(ppm, 0) {
		return fmt.Errorf("clock: virtual: invalid frequency %v ppm", ppm)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.state.Load()
	if total := old.simPPM + ppm; total > maxVirtualPPM || total < -maxVirtualPPM {
		return fmt.Errorf("clock: virtual: frequency %.3f ppm is beyond ±%d ppm", ppm, maxVirtualPPM)
	}
	next := old.reanchor(v.sysNow().UnixNano())
	next.corPPM = ppm
	v.state.Store(&next)
	return nil
}

// Step adds d to the virtual clock.
func (v *Virtual) Step(d time.Duration) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	next := *v.state.Load()
	next.v0 += int64(d)
	v.state.Store(&next)
	return nil
}

// SetSync records the synchronization status. A leap second (when
// synchronized) is applied at the next UTC midnight of the virtual time, as
// the kernel does for the system clock; a leap withdrawn before then is
// cancelled.
func (v *Virtual) SetSync(s sources.ClockSync) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	next := v.state.Load().reanchor(v.sysNow().UnixNano())
	next.sync = s
	delta := int64(0)
	if s.Synchronized {
		switch s.Leap {
		case sources.LeapInsert:
			delta = -int64(time.Second)
		case sources.LeapDelete:
			delta = int64(time.Second)
		}
	}
	mid := (next.v0/dayNanos + 1) * dayNanos
	switch {
	case delta == 0:
		next.leapAt, next.leapDelta = 0, 0
	case mid == next.leapMid && next.leapDelta == 0:
		// This midnight's leap has happened (the inserted second is
		// still running): once is enough.
	default:
		next.leapDelta, next.leapMid = delta, mid
		next.leapAt = mid
		if delta > 0 {
			next.leapAt = mid - int64(time.Second)
		}
	}
	v.state.Store(&next)
	return nil
}

// Sync returns the status last passed to SetSync.
func (v *Virtual) Sync() sources.ClockSync { return v.state.Load().sync }
