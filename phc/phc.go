// Package phc reads and steers PTP hardware clocks (/dev/ptpN): it finds the
// clock of a network interface, compares it with the system clock and
// adjusts its frequency and phase.
//
// Device is the small interface the clock driver and the system-clock tie use.
// Open gives the real one on Linux; phc/phctest has a simulated one for tests
// that must run without hardware.
package phc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Device is a PTP hardware clock. Frequencies are in parts per billion
// (ppb), positive making the clock run faster. Implementations are safe for
// concurrent use.
type Device interface {
	// Name is the device's path (such as "/dev/ptp0") or another name that
	// identifies it in logs and errors.
	Name() string
	// Time reads the clock.
	Time() (time.Time, error)
	// Offset compares the clock with the system clock (CLOCK_REALTIME).
	Offset() (Offset, error)
	// Frequency is the frequency adjustment currently applied.
	Frequency() (ppb float64, err error)
	// AdjFreq sets the absolute frequency adjustment. The device refuses
	// values beyond ±MaxAdj.
	AdjFreq(ppb float64) error
	// Step adds d to the clock at once.
	Step(d time.Duration) error
	// MaxAdj is the largest frequency adjustment the device accepts, in ppb.
	MaxAdj() float64
	// Close releases the device.
	Close() error
}

// Method is how an Offset was measured.
type Method uint8

const (
	// MethodPrecise is a hardware cross-timestamp (PTP_SYS_OFFSET_PRECISE):
	// both clocks are read at the same instant.
	MethodPrecise Method = iota + 1
	// MethodExtended brackets each device reading between two system-clock
	// readings in the kernel (PTP_SYS_OFFSET_EXTENDED) and keeps the
	// narrowest of several.
	MethodExtended
	// MethodBasic brackets one clock_gettime of the device between two
	// system-clock readings in user space.
	MethodBasic
)

func (m Method) String() string {
	switch m {
	case MethodPrecise:
		return "precise"
	case MethodExtended:
		return "extended"
	case MethodBasic:
		return "basic"
	default:
		return fmt.Sprintf("method(%d)", uint8(m))
	}
}

// Offset is one comparison of a PTP hardware clock with the system clock.
type Offset struct {
	// Offset is the device's time minus the system clock's time at System.
	Offset time.Duration
	// Delay is how long the reading took: the device was read somewhere
	// within ±Delay/2 of System (zero for a cross-timestamp).
	Delay time.Duration
	// System is the system clock's reading at which Offset applies.
	System time.Time
	// Method says how the comparison was made.
	Method Method
}

// ErrNotSupported is what an offset reader returns (wrapped) when the
// device or the kernel does not support its method.
var ErrNotSupported = errors.New("not supported")

// offsetReader reads the offset of a device from the system clock with one
// method; it returns an error wrapping ErrNotSupported when the method is
// not available.
type offsetReader func() (Offset, error)

// offsetChain tries the best method first and falls back for good to the
// next one once a method turns out to be unsupported: PRECISE, then
// EXTENDED, then basic. Other errors are returned as they are.
type offsetChain struct {
	name    string
	readers []offsetReader // best first

	mu   sync.Mutex
	next int // index of the best method not known to be unsupported
}

func (c *offsetChain) offset() (Offset, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var reasons []error
	for c.next < len(c.readers) {
		off, err := c.readers[c.next]()
		if err == nil {
			return off, nil
		}
		if !errors.Is(err, ErrNotSupported) {
			return Offset{}, fmt.Errorf("phc: %s: read offset: %w", c.name, err)
		}
		reasons = append(reasons, err)
		c.next++
	}
	if len(reasons) == 0 {
		return Offset{}, fmt.Errorf("phc: %s: read offset: no method left: %w", c.name, ErrNotSupported)
	}
	return Offset{}, fmt.Errorf("phc: %s: read offset: %w", c.name, errors.Join(reasons...))
}
