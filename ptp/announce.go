package ptp

import (
	"encoding/binary"
	"fmt"

	"github.com/facebook/time/ptp/protocol"
)

// AnnounceBodyLen is the length of an Announce's body: the octets between
// the common header and the first TLV (IEEE 1588-2019 13.5.1).
const AnnounceBodyLen = 30

// AnnounceBodyOf returns the body of an Announce from a grandmaster
// described by parent (identity, priorities, quality and this clock's
// stepsRemoved) with the time properties tp (currentUtcOffset,
// timeSource), originTimestamp origin.
func AnnounceBodyOf(parent ParentDataset, tp TimeProperties, origin protocol.Timestamp) protocol.AnnounceBody {
	return protocol.AnnounceBody{
		OriginTimestamp:         origin,
		CurrentUTCOffset:        tp.CurrentUTCOffset,
		GrandmasterPriority1:    parent.GrandmasterPriority1,
		GrandmasterClockQuality: parent.GrandmasterClockQuality,
		GrandmasterPriority2:    parent.GrandmasterPriority2,
		GrandmasterIdentity:     parent.GrandmasterIdentity,
		StepsRemoved:            parent.StepsRemoved,
		TimeSource:              tp.TimeSource,
	}
}

// Flags returns the flagField bits of an Announce that carry tp: leap61,
// leap59, currentUtcOffsetValid, ptpTimescale, timeTraceable and
// frequencyTraceable.
func (tp TimeProperties) Flags() uint16 {
	var f uint16
	for _, b := range []struct {
		on   bool
		flag uint16
	}{
		{tp.Leap61, protocol.FlagLeap61}, {tp.Leap59, protocol.FlagLeap59},
		{tp.CurrentUTCOffsetValid, protocol.FlagCurrentUtcOffsetValid}, {tp.PTPTimescale, protocol.FlagPTPTimescale},
		{tp.TimeTraceable, protocol.FlagTimeTraceable}, {tp.FrequencyTraceable, protocol.FlagFrequencyTraceable},
	} {
		if b.on {
			f |= b.flag
		}
	}
	return f
}

// DecodeAnnounceBody decodes the body of an Announce from b, which starts
// right after the common header. Octets after the body are not looked at.
func DecodeAnnounceBody(b []byte) (protocol.AnnounceBody, error) {
	if len(b) < AnnounceBodyLen {
		return protocol.AnnounceBody{}, fmt.Errorf("ptp: announce body of %d octets, want %d", len(b), AnnounceBodyLen)
	}
	var a protocol.AnnounceBody
	copy(a.OriginTimestamp.Seconds[:], b[:6])
	a.OriginTimestamp.Nanoseconds = binary.BigEndian.Uint32(b[6:])
	a.CurrentUTCOffset = int16(binary.BigEndian.Uint16(b[10:])) //#nosec G115 -- a signed wire field
	a.Reserved = b[12]
	a.GrandmasterPriority1 = b[13]
	a.GrandmasterClockQuality = protocol.ClockQuality{
		ClockClass:              protocol.ClockClass(b[14]),
		ClockAccuracy:           protocol.ClockAccuracy(b[15]),
		OffsetScaledLogVariance: binary.BigEndian.Uint16(b[16:]),
	}
	a.GrandmasterPriority2 = b[18]
	a.GrandmasterIdentity = protocol.ClockIdentity(binary.BigEndian.Uint64(b[19:]))
	a.StepsRemoved = binary.BigEndian.Uint16(b[27:])
	a.TimeSource = protocol.TimeSource(b[29])
	return a, nil
}

// AppendAnnounceBody appends the wire form of a (AnnounceBodyLen octets)
// to b.
func AppendAnnounceBody(b []byte, a protocol.AnnounceBody) []byte {
	b = append(b, a.OriginTimestamp.Seconds[:]...)
	b = binary.BigEndian.AppendUint32(b, a.OriginTimestamp.Nanoseconds)
	b = binary.BigEndian.AppendUint16(b, uint16(a.CurrentUTCOffset)) //#nosec G115 -- a signed wire field
	b = append(b, a.Reserved, a.GrandmasterPriority1, byte(a.GrandmasterClockQuality.ClockClass),
		byte(a.GrandmasterClockQuality.ClockAccuracy))
	b = binary.BigEndian.AppendUint16(b, a.GrandmasterClockQuality.OffsetScaledLogVariance)
	b = append(b, a.GrandmasterPriority2)
	b = binary.BigEndian.AppendUint64(b, uint64(a.GrandmasterIdentity))
	b = binary.BigEndian.AppendUint16(b, a.StepsRemoved)
	return append(b, byte(a.TimeSource))
}
