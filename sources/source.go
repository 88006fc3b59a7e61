// Package sources is timed's engine: it keeps a filter per time source,
// selects the sources that agree, combines them and decides what the clock
// must do. It does no I/O and never reads the wall clock: every method that
// needs the time is given it.
package sources

import (
	"context"
	"time"
)

// Leap is the leap-second warning a source announces (NTP's LI field).
type Leap uint8

const (
	LeapNone    Leap = 0 // no leap second pending
	LeapInsert  Leap = 1 // the last minute of the day has 61 seconds
	LeapDelete  Leap = 2 // the last minute of the day has 59 seconds
	LeapUnknown Leap = 3 // the source is not synchronized
)

func (l Leap) String() string {
	switch l {
	case LeapNone:
		return "none"
	case LeapInsert:
		return "insert"
	case LeapDelete:
		return "delete"
	default:
		return "unsynchronized"
	}
}

// Stamping says where a measurement's timestamps were taken; the engine
// trusts kernel and hardware timestamps more than user-space ones.
type Stamping uint8

const (
	StampUser     Stamping = iota // read in user space around the syscall
	StampKernel                   // kernel software timestamps (SO_TIMESTAMPING)
	StampHardware                 // NIC hardware timestamps
)

func (s Stamping) String() string {
	switch s {
	case StampKernel:
		return "kernel"
	case StampHardware:
		return "hardware"
	default:
		return "user"
	}
}

// Measurement is one comparison of the local (disciplined) clock with a
// source.
type Measurement struct {
	// Local is the local clock's reading at which Offset applies: for a
	// two-way exchange, the midpoint of the local send and receive times.
	// It is in the disciplined clock's timescale (Timebase.Now), not the
	// system clock's.
	Local time.Time
	// Offset is the source's time minus the local clock's time: positive
	// when the local clock is behind.
	Offset time.Duration
	// Delay is the round-trip path delay (for one-way sources such as a GNSS
	// receiver, zero).
	Delay time.Duration
	// RootDelay and RootDispersion are the source's own distance from its
	// reference (NTP's root delay and dispersion; zero for a reference
	// clock).
	RootDelay      time.Duration
	RootDispersion time.Duration
	// Precision is the resolution of the timestamps on both ends combined.
	Precision time.Duration
	// Stratum of the source (1 for a server with a reference clock).
	Stratum uint8
	// Leap is what the source announces.
	Leap Leap
	// RefID is the source's reference identifier (NTP's refid).
	RefID uint32
	// Authenticated is true when the exchange was cryptographically
	// authenticated (NTS).
	Authenticated bool
	// Stamping says where the local timestamps came from.
	Stamping Stamping
}

// Timebase is the disciplined clock as a source sees it. Sources take their
// local timestamps from it, so that with the virtual clock they measure the
// virtual time, not the system clock.
type Timebase interface {
	// Now reads the disciplined clock.
	Now() time.Time
	// FromSystem converts a CLOCK_REALTIME reading (a kernel packet
	// timestamp) into the disciplined clock's timescale.
	FromSystem(sys time.Time) time.Time
}

// Reporter is how a running source talks to the engine. The daemon gives
// every source its own Reporter; its methods are safe for concurrent use.
type Reporter interface {
	// Polled records that a request went out (it shifts the reach register).
	Polled()
	// Measured delivers one measurement.
	Measured(m Measurement)
	// Fault reports in words why the source cannot currently be used (a
	// kiss code, an unreachable address, an authentication failure). An
	// empty reason clears it.
	Fault(reason string)
	// PollInterval is the interval the engine wants between requests now;
	// it lies within the source's configured poll limits.
	PollInterval() time.Duration
}

// Source is a time source the daemon runs: an NTP association, a PTP port,
// a gpsd device.
type Source interface {
	// Name identifies the source in status, logs and metrics, such as
	// "192.0.2.1:123" or "ptp vB". It is unique within the daemon.
	Name() string
	// Run takes measurements until ctx is done and reports them to r. It
	// returns nil when ctx is done, or an error if the source cannot go on
	// (a DENY kiss, for example).
	Run(ctx context.Context, r Reporter) error
}

// Registry lets a source that manages others (an NTP pool) add and remove
// sources at run time.
type Registry interface {
	// Add starts src with the given options. It fails if a source of the
	// same name is already running.
	Add(src Source, opts SourceOptions) error
	// Remove stops the named source and forgets its state.
	Remove(name string)
}

// SourceOptions are the per-source settings the engine honours.
type SourceOptions struct {
	// Kind is the protocol, for status: "ntp", "nts", "ptp", "gpsd", ...
	Kind string
	// Address is what the source talks to, for status.
	Address string
	// MinPoll and MaxPoll bound the poll interval as log2 seconds (-6..17).
	MinPoll, MaxPoll int
	// Prefer: among the survivors of selection, prefer this source.
	Prefer bool
	// NoSelect: measure and show, never use for synchronization.
	NoSelect bool
	// Trust: the source is assumed correct; it can only be a falseticker if
	// other trusted sources disagree with it.
	Trust bool
	// Require: the clock is updated only while at least one required source
	// is selectable.
	Require bool
	// BoundedByAuthenticated: the source (unauthenticated, such as a PTP
	// port) is used only while its confidence interval overlaps the
	// authenticated sources' (NTS): it can make the clock more precise,
	// never move it outside what authenticated time allows.
	BoundedByAuthenticated bool
}
