package ptp

import (
	"encoding/binary"
	"fmt"

	"github.com/facebook/time/ptp/protocol"
)

// AnnounceBodyLen is the length of an Announce's body: the octets between
// the common header and the first TLV (IEEE 1588-2019 13.5.1).
const AnnounceBodyLen = 30

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
