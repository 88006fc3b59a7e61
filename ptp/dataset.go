package ptp

import (
	"fmt"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

// DefaultDataset is the part of an ordinary clock's defaultDS (clause 8.2.1)
// that the best master clock algorithm uses.
type DefaultDataset struct {
	// ClockIdentity identifies this clock.
	ClockIdentity protocol.ClockIdentity
	// Priority1 is the first, user-set priority; lower wins.
	Priority1 uint8
	// ClockQuality is this clock's class, accuracy and offsetScaledLogVariance.
	ClockQuality protocol.ClockQuality
	// Priority2 is the second, user-set priority; lower wins.
	Priority2 uint8
	// DomainNumber is the PTP domain this clock works in.
	DomainNumber uint8
	// SlaveOnly forbids the clock to become a master; its clock class is
	// then 255 whatever ClockQuality says (clause 9.2.2.1).
	SlaveOnly bool
}

// effectiveQuality is the clock quality used in comparisons: a slave-only
// clock always has class 255.
func (d DefaultDataset) effectiveQuality() protocol.ClockQuality {
	q := d.ClockQuality
	if d.SlaveOnly {
		q.ClockClass = protocol.ClockClassSlaveOnly
	}
	return q
}

// Candidate returns the dataset D0 of clause 9.3.4 that the local clock
// offers to the comparison: itself as grandmaster, zero steps removed, and
// sender and receiver identity equal to the clock identity with port number 0.
func (d DefaultDataset) Candidate() ForeignMaster {
	self := protocol.PortIdentity{ClockIdentity: d.ClockIdentity}
	return ForeignMaster{
		GrandmasterIdentity:     d.ClockIdentity,
		GrandmasterPriority1:    d.Priority1,
		GrandmasterClockQuality: d.effectiveQuality(),
		GrandmasterPriority2:    d.Priority2,
		StepsRemoved:            0,
		SenderPortIdentity:      self,
		ReceiverPortIdentity:    self,
		DomainNumber:            d.DomainNumber,
	}
}

// TimeProperties is the timePropertiesDS of clause 8.2.4, as announced by the
// grandmaster.
type TimeProperties struct {
	// CurrentUTCOffset is TAI − UTC in seconds.
	CurrentUTCOffset int16
	// CurrentUTCOffsetValid says whether CurrentUTCOffset is known to be right.
	CurrentUTCOffsetValid bool
	// Leap59 says that the last minute of the current UTC day has 59 seconds.
	Leap59 bool
	// Leap61 says that the last minute of the current UTC day has 61 seconds.
	Leap61 bool
	// TimeTraceable says the time is traceable to a primary reference.
	TimeTraceable bool
	// FrequencyTraceable says the frequency is traceable to a primary reference.
	FrequencyTraceable bool
	// PTPTimescale says the timescale is PTP (TAI); otherwise it is arbitrary.
	PTPTimescale bool
	// TimeSource is the grandmaster's immediate source of time.
	TimeSource protocol.TimeSource
}

// timePropertiesFromAnnounce reads the flags and fields of an Announce.
func timePropertiesFromAnnounce(a *protocol.Announce) TimeProperties {
	return TimePropertiesOf(a.FlagField, a.CurrentUTCOffset, a.TimeSource)
}

// TimePropertiesOf reads the time properties an Announce carries: its
// header's flags, currentUtcOffset and timeSource.
func TimePropertiesOf(flags uint16, currentUTCOffset int16, src protocol.TimeSource) TimeProperties {
	return TimeProperties{
		CurrentUTCOffset:      currentUTCOffset,
		CurrentUTCOffsetValid: flags&protocol.FlagCurrentUtcOffsetValid != 0,
		Leap59:                flags&protocol.FlagLeap59 != 0,
		Leap61:                flags&protocol.FlagLeap61 != 0,
		TimeTraceable:         flags&protocol.FlagTimeTraceable != 0,
		FrequencyTraceable:    flags&protocol.FlagFrequencyTraceable != 0,
		PTPTimescale:          flags&protocol.FlagPTPTimescale != 0,
		TimeSource:            src,
	}
}

// DefaultUTCOffset is TAI − UTC since 1 January 2017, used when the
// grandmaster does not announce a valid offset.
const DefaultUTCOffset = 37 * time.Second

// UTCOffset returns TAI − UTC and a sentence saying where it comes from: the
// announced currentUtcOffset when it is valid, otherwise DefaultUTCOffset.
// On an arbitrary (non-PTP) timescale there is no offset to apply and it
// returns 0.
func (tp TimeProperties) UTCOffset() (time.Duration, string) {
	switch {
	case !tp.PTPTimescale:
		return 0, "arbitrary timescale: timestamps are taken as they are, no UTC offset applied"
	case tp.CurrentUTCOffsetValid:
		return time.Duration(tp.CurrentUTCOffset) * time.Second,
			fmt.Sprintf("UTC offset %d s announced by the grandmaster", tp.CurrentUTCOffset)
	default:
		return DefaultUTCOffset, fmt.Sprintf("grandmaster's UTC offset (%d s) is not marked valid: using the built-in %d s",
			tp.CurrentUTCOffset, int(DefaultUTCOffset/time.Second))
	}
}

// ToUTC converts a time read from a PTP timestamp (seconds since the PTP
// epoch, as protocol.Timestamp.Time returns them) to UTC, and says which
// offset it used (see UTCOffset). It does not smear or insert leap seconds:
// during a leap second the result is off by that second, as the Leap59 and
// Leap61 flags tell.
func (tp TimeProperties) ToUTC(ptpTime time.Time) (time.Time, string) {
	off, reason := tp.UTCOffset()
	return ptpTime.Add(-off), reason
}

// ForeignMaster is what an Announce message tells about the master that sent
// it and its grandmaster: one entry of a port's foreign master table and one
// side of the dataset comparison of clause 9.3.4.
type ForeignMaster struct {
	// GrandmasterIdentity identifies the grandmaster.
	GrandmasterIdentity protocol.ClockIdentity
	// GrandmasterPriority1 is the grandmaster's priority1.
	GrandmasterPriority1 uint8
	// GrandmasterClockQuality is the grandmaster's clock quality.
	GrandmasterClockQuality protocol.ClockQuality
	// GrandmasterPriority2 is the grandmaster's priority2.
	GrandmasterPriority2 uint8
	// StepsRemoved is the number of boundary clocks between the grandmaster
	// and the sender.
	StepsRemoved uint16
	// SenderPortIdentity is the sourcePortIdentity of the Announce.
	SenderPortIdentity protocol.PortIdentity
	// ReceiverPortIdentity is the identity of the port that received it.
	ReceiverPortIdentity protocol.PortIdentity
	// DomainNumber is the domain of the Announce.
	DomainNumber uint8
	// LogAnnounceInterval is the sender's announce interval (log2 seconds).
	LogAnnounceInterval protocol.LogInterval
	// TimeProperties are the grandmaster's time properties.
	TimeProperties TimeProperties
}

// ForeignMasterFromAnnounce builds the record of clause 9.3.2.4 from an
// Announce message received on the port receiver.
func ForeignMasterFromAnnounce(a *protocol.Announce, receiver protocol.PortIdentity) ForeignMaster {
	return ForeignMaster{
		GrandmasterIdentity:     a.GrandmasterIdentity,
		GrandmasterPriority1:    a.GrandmasterPriority1,
		GrandmasterClockQuality: a.GrandmasterClockQuality,
		GrandmasterPriority2:    a.GrandmasterPriority2,
		StepsRemoved:            a.StepsRemoved,
		SenderPortIdentity:      a.SourcePortIdentity,
		ReceiverPortIdentity:    receiver,
		DomainNumber:            a.DomainNumber,
		LogAnnounceInterval:     a.LogMessageInterval,
		TimeProperties:          timePropertiesFromAnnounce(a),
	}
}

// ParentDataset is the parentDS of clause 8.2.3 together with the
// stepsRemoved of currentDS: who this clock follows.
type ParentDataset struct {
	// ParentPortIdentity is the port of the master this clock synchronizes
	// to; for a clock that is its own grandmaster it is the clock's identity
	// with port number 0.
	ParentPortIdentity protocol.PortIdentity
	// GrandmasterIdentity identifies the grandmaster.
	GrandmasterIdentity protocol.ClockIdentity
	// GrandmasterClockQuality is the grandmaster's clock quality.
	GrandmasterClockQuality protocol.ClockQuality
	// GrandmasterPriority1 is the grandmaster's priority1.
	GrandmasterPriority1 uint8
	// GrandmasterPriority2 is the grandmaster's priority2.
	GrandmasterPriority2 uint8
	// StepsRemoved is currentDS.stepsRemoved: 0 for a grandmaster, the
	// master's stepsRemoved + 1 for a slave.
	StepsRemoved uint16
}

// parentFromMaster is the parent dataset of a clock that is slave to m
// (update S1 of clause 9.3.5).
func parentFromMaster(m ForeignMaster) ParentDataset {
	return ParentDataset{
		ParentPortIdentity:      m.SenderPortIdentity,
		GrandmasterIdentity:     m.GrandmasterIdentity,
		GrandmasterClockQuality: m.GrandmasterClockQuality,
		GrandmasterPriority1:    m.GrandmasterPriority1,
		GrandmasterPriority2:    m.GrandmasterPriority2,
		StepsRemoved:            m.StepsRemoved + 1,
	}
}

// parentFromDefault is the parent dataset of a clock that is its own
// grandmaster (updates M1 and M2 of clause 9.3.5).
func parentFromDefault(d DefaultDataset) ParentDataset {
	return ParentDataset{
		ParentPortIdentity:      protocol.PortIdentity{ClockIdentity: d.ClockIdentity},
		GrandmasterIdentity:     d.ClockIdentity,
		GrandmasterClockQuality: d.effectiveQuality(),
		GrandmasterPriority1:    d.Priority1,
		GrandmasterPriority2:    d.Priority2,
	}
}
