package gptp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/ptp"
)

// MajorSdoID is 802.1AS's majorSdoId (transportSpecific) value.
const MajorSdoID = 1

// wireVersion is the versionPTP octet Encode writes: major version 2, minor
// version 0, as ptp4l (linuxptp 3.1.1) sends with gPTP.cfg and as
// 802.1AS-2011 (and the automotive profile built on it) wants it, with the
// reserved upper nibble zero. 802.1AS-2020 writes minorVersionPTP 1 (0x12);
// receivers look at the major version only (ptp4l 3.1.1 answers a Pdelay_Req
// of either form, tried here), and Decode accepts any minor version.
const wireVersion = 0x02

// Sizes of the fixed parts of the messages, in octets.
const (
	wireHeaderLen        = 34
	wireTimestampLen     = 10
	wirePortIdentityLen  = 10
	wireTLVHeaderLen     = 4
	wireSyncBodyLen      = 10 // two-step: reserved
	wireFollowUpBodyLen  = wireTimestampLen
	wireAnnounceBodyLen  = 30
	wireSignalingBodyLen = wirePortIdentityLen
	wirePdelayBodyLen    = 20

	// wireFollowUpInfoLen and wireIntervalRequestLen are the lengthField values of
	// the two organization extension TLVs 802.1AS defines here.
	wireFollowUpInfoLen    = 28
	wireIntervalRequestLen = 12
)

// TLV types and the 802.1 organization extension identifiers (802.1AS-2020
// 10.6.4, 11.4.4.3).
const (
	tlvTypeOrganizationExtension = 0x0003
	tlvTypePathTrace             = 0x0008
	subtypeFollowUpInfo          = 1
	subtypeIntervalRequest       = 2
	// The flags of the message interval request TLV: bits 1 and 2 of the
	// octet, bit 0 being the least significant as in every flag field of
	// 802.1AS and 1588 (Wireshark reads them so too; linuxptp sends 0).
	flagComputeNeighborRateRatio = 0x02
	flagComputeNeighborPropDelay = 0x04
)

// orgIEEE8021 is the organizationId of IEEE 802.1, 00-80-C2.
var orgIEEE8021 = [3]byte{0x00, 0x80, 0xc2}

// Control field values 802.1AS takes over from IEEE 1588-2008 (Table 10-7).
const (
	wireControlSync     = 0
	wireControlFollowUp = 2
	wireControlOther    = 5
)

// wireLogIntervalUnspecified is the logMessageInterval of messages that are not
// sent periodically (Signaling).
const wireLogIntervalUnspecified = 0x7f

// errMalformed is wrapped by every error Decode returns for bytes that are not
// a well-formed 802.1AS message.
var errMalformed = errors.New("malformed gPTP message")

// ScaledNs is a signed 96-bit count of 2^-16 ns (802.1AS ScaledNs).
// Its value is Hi·2^64 + Lo, in units of 2^-16 ns.
type ScaledNs struct {
	Hi int32
	Lo uint64
}

// ScaledNsOf returns d as a ScaledNs.
func ScaledNsOf(d time.Duration) ScaledNs {
	v := int64(d)
	return ScaledNs{Hi: int32(v >> 48), Lo: uint64(v) << 16}
}

// Duration returns s rounded down to whole nanoseconds, saturated to the
// range of time.Duration.
func (s ScaledNs) Duration() time.Duration {
	switch {
	case s.Hi >= 1<<15:
		return math.MaxInt64
	case s.Hi < -1<<15:
		return math.MinInt64
	}
	return time.Duration(int64(s.Hi)<<48 | int64(s.Lo>>16))
}

// FollowUpInfo is the Follow_Up information TLV (organization 00-80-C2,
// subtype 1) of 802.1AS-2020 11.4.4.3.
type FollowUpInfo struct {
	// CumulativeScaledRateOffset is (rateRatio − 1) × 2^41, rateRatio being
	// the grandmaster's frequency over that of the sender's local clock.
	CumulativeScaledRateOffset int32
	// GMTimeBaseIndicator is the grandmaster's timeBaseIndicator.
	GMTimeBaseIndicator uint16
	// LastGMPhaseChange is the grandmaster's last phase change.
	LastGMPhaseChange ScaledNs
	// ScaledLastGMFreqChange is the grandmaster's last frequency change,
	// as a fractional frequency offset × 2^41.
	ScaledLastGMFreqChange int32
}

// rateOffsetScale is 2^41, the scale of cumulativeScaledRateOffset.
const rateOffsetScale = 1 << 41

// RateOffset returns the cumulativeScaledRateOffset of a rate ratio:
// (ratio − 1) × 2^41, rounded and saturated to the range of an int32 (NaN
// gives 0).
func RateOffset(ratio float64) int32 {
	v := math.Round((ratio - 1) * rateOffsetScale)
	switch {
	case math.IsNaN(v):
		return 0
	case v >= math.MaxInt32:
		return math.MaxInt32
	case v <= math.MinInt32:
		return math.MinInt32
	}
	return int32(v)
}

// RateRatio returns the rate ratio CumulativeScaledRateOffset stands for.
func (f FollowUpInfo) RateRatio() float64 {
	return 1 + float64(f.CumulativeScaledRateOffset)/rateOffsetScale
}

// IntervalRequest is the message interval request TLV of a Signaling message
// (organization 00-80-C2, subtype 2; 802.1AS-2020 10.6.4.3).
type IntervalRequest struct {
	// LinkDelayInterval, TimeSyncInterval and AnnounceInterval are the
	// requested intervals as log2 seconds; 127 asks the sender to stop,
	// 126 to go back to its initial interval and -128 to leave it unchanged.
	LinkDelayInterval, TimeSyncInterval, AnnounceInterval int8
	// ComputeNeighborRateRatio and ComputeNeighborPropDelay ask the
	// receiver to compute the neighbor rate ratio and propagation delay.
	ComputeNeighborRateRatio, ComputeNeighborPropDelay bool
}

// Message is a gPTP message: one of *Sync, *FollowUp, *Announce, *Signaling,
// *protocol.PDelayReq, *protocol.PDelayResp and *protocol.PDelayRespFollowUp.
type Message interface {
	MessageType() protocol.MessageType
}

// Sync is a two-step Sync message; its body is 10 reserved octets.
type Sync struct {
	Header protocol.Header
}

// MessageType returns protocol.MessageSync.
func (*Sync) MessageType() protocol.MessageType { return protocol.MessageSync }

// FollowUp is a Follow_Up message with its Follow_Up information TLV.
type FollowUp struct {
	Header                 protocol.Header
	PreciseOriginTimestamp protocol.Timestamp
	Info                   FollowUpInfo
}

// MessageType returns protocol.MessageFollowUp.
func (*FollowUp) MessageType() protocol.MessageType { return protocol.MessageFollowUp }

// Announce is an Announce message. 802.1AS reserves its originTimestamp,
// which Encode writes as zeros.
type Announce struct {
	Header protocol.Header
	// AnnounceBody's OriginTimestamp and Reserved are written as zeros.
	protocol.AnnounceBody
	// PathTrace is the path trace TLV: the clock identities the
	// announcement went through, the grandmaster first. Nil means no TLV.
	PathTrace []protocol.ClockIdentity
}

// MessageType returns protocol.MessageAnnounce.
func (*Announce) MessageType() protocol.MessageType { return protocol.MessageAnnounce }

// Signaling is a Signaling message; Interval is its message interval request
// TLV, nil when it has none.
type Signaling struct {
	Header             protocol.Header
	TargetPortIdentity protocol.PortIdentity
	Interval           *IntervalRequest
}

// MessageType returns protocol.MessageSignaling.
func (*Signaling) MessageType() protocol.MessageType { return protocol.MessageSignaling }

// newWireHeader returns the common header fields 802.1AS fixes for a message of
// type t and length n.
func newWireHeader(t protocol.MessageType, n int, src protocol.PortIdentity, seq uint16, flags uint16, control uint8, logInterval int8) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, MajorSdoID),
		Version:            wireVersion,
		MessageLength:      uint16(n), //#nosec G115 -- lengths of fixed messages
		FlagField:          flags,
		SourcePortIdentity: src,
		SequenceID:         seq,
		ControlField:       control,
		LogMessageInterval: protocol.LogInterval(logInterval),
	}
}

// NewSync returns a two-step Sync from src with the flags twoStep and
// ptpTimescale set, in domain 0.
func NewSync(src protocol.PortIdentity, seq uint16, logInterval int8) *Sync {
	return &Sync{Header: newWireHeader(protocol.MessageSync, wireHeaderLen+wireSyncBodyLen, src, seq,
		protocol.FlagTwoStep|protocol.FlagPTPTimescale, wireControlSync, logInterval)}
}

// NewFollowUp returns the Follow_Up of a Sync: origin is the
// preciseOriginTimestamp (seconds since the PTP epoch), correction the
// correctionField (saturated to the largest value when it does not fit) and
// info the Follow_Up information TLV. The ptpTimescale flag is set.
func NewFollowUp(src protocol.PortIdentity, seq uint16, logInterval int8, origin time.Time, correction ptp.Interval, info FollowUpInfo) *FollowUp {
	h := newWireHeader(protocol.MessageFollowUp, wireHeaderLen+wireFollowUpBodyLen+wireTLVHeaderLen+wireFollowUpInfoLen, src, seq,
		protocol.FlagPTPTimescale, wireControlFollowUp, logInterval)
	h.CorrectionField = correctionOf(correction)
	return &FollowUp{Header: h, PreciseOriginTimestamp: protocol.NewTimestamp(origin), Info: info}
}

// correctionOf returns c as a correctionField, the largest positive value
// when it does not fit (IEEE 1588 says that value means "too big").
func correctionOf(c ptp.Interval) protocol.Correction {
	v, ok := c.Scaled()
	if !ok {
		return protocol.Correction(math.MaxInt64)
	}
	return protocol.Correction(v)
}

// NewAnnounce returns an Announce from src that tells about the grandmaster
// in parent (its identity, priorities, quality and this clock's
// stepsRemoved) with the time properties tp (flags, currentUtcOffset,
// timeSource) and the path trace TLV pathTrace (nil: none).
func NewAnnounce(src protocol.PortIdentity, seq uint16, logInterval int8, parent ptp.ParentDataset, tp ptp.TimeProperties, pathTrace []protocol.ClockIdentity) *Announce {
	n := wireHeaderLen + wireAnnounceBodyLen
	if pathTrace != nil {
		n += wireTLVHeaderLen + 8*len(pathTrace)
	}
	return &Announce{
		Header:       newWireHeader(protocol.MessageAnnounce, n, src, seq, tp.Flags(), wireControlOther, logInterval),
		AnnounceBody: ptp.AnnounceBodyOf(parent, tp, protocol.Timestamp{}), // originTimestamp: reserved
		PathTrace:    pathTrace,
	}
}

// NewSignaling returns a Signaling message from src carrying the message
// interval request req, addressed to all ports (target port identity all
// ones).
func NewSignaling(src protocol.PortIdentity, seq uint16, req IntervalRequest) *Signaling {
	return &Signaling{
		Header: newWireHeader(protocol.MessageSignaling, wireHeaderLen+wireSignalingBodyLen+wireTLVHeaderLen+wireIntervalRequestLen, src, seq,
			0, wireControlOther, wireLogIntervalUnspecified),
		TargetPortIdentity: protocol.DefaultTargetPortIdentity,
		Interval:           &req,
	}
}

// Encode returns the wire form of m. It writes the header as m's Header says
// except for four fields it sets itself: majorSdoId (MajorSdoID), the
// message type (that of m's Go type), versionPTP (2) and messageLength.
func Encode(m Message) ([]byte, error) {
	if isNilMessage(m) {
		return nil, errors.New("gptp: cannot encode a nil message")
	}
	var h *protocol.Header
	b := make([]byte, wireHeaderLen, 128)
	switch m := m.(type) {
	case *Sync:
		h = &m.Header
		b = append(b, make([]byte, wireSyncBodyLen)...)
	case *FollowUp:
		h = &m.Header
		b = appendTimestamp(b, m.PreciseOriginTimestamp)
		b = appendFollowUpInfo(b, m.Info)
	case *Announce:
		h = &m.Header
		if len(m.PathTrace) > (math.MaxUint16-wireHeaderLen-wireAnnounceBodyLen-wireTLVHeaderLen)/8 {
			return nil, fmt.Errorf("gptp: encode Announce: path trace of %d clock identities does not fit in a message", len(m.PathTrace))
		}
		body := m.AnnounceBody
		body.OriginTimestamp, body.Reserved = protocol.Timestamp{}, 0 // reserved in 802.1AS
		b = ptp.AppendAnnounceBody(b, body)
		if m.PathTrace != nil {
			b = binary.BigEndian.AppendUint16(b, tlvTypePathTrace)
			b = binary.BigEndian.AppendUint16(b, uint16(8*len(m.PathTrace))) //#nosec G115 -- checked above
			for _, id := range m.PathTrace {
				b = binary.BigEndian.AppendUint64(b, uint64(id))
			}
		}
	case *Signaling:
		h = &m.Header
		b = appendPortIdentity(b, m.TargetPortIdentity)
		if m.Interval != nil {
			b = appendIntervalRequest(b, *m.Interval)
		}
	case *protocol.PDelayReq:
		h = &m.Header
		b = appendTimestamp(b, m.OriginTimestamp)
		b = append(b, make([]byte, 10)...)
	case *protocol.PDelayResp:
		h = &m.Header
		b = appendTimestamp(b, m.RequestReceiptTimestamp)
		b = appendPortIdentity(b, m.RequestingPortIdentity)
	case *protocol.PDelayRespFollowUp:
		h = &m.Header
		b = appendTimestamp(b, m.ResponseOriginTimestamp)
		b = appendPortIdentity(b, m.RequestingPortIdentity)
	default:
		return nil, fmt.Errorf("gptp: cannot encode %T", m)
	}
	putHeader(b, h, m.MessageType())
	return b, nil
}

// isNilMessage tells whether m is nil or a nil pointer of a message type.
func isNilMessage(m Message) bool {
	switch m := m.(type) {
	case nil:
		return true
	case *Sync:
		return m == nil
	case *FollowUp:
		return m == nil
	case *Announce:
		return m == nil
	case *Signaling:
		return m == nil
	case *protocol.PDelayReq:
		return m == nil
	case *protocol.PDelayResp:
		return m == nil
	case *protocol.PDelayRespFollowUp:
		return m == nil
	}
	return false
}

// putHeader writes h into b[:wireHeaderLen] with majorSdoId, message type,
// version and messageLength (len(b)) set as Encode documents.
func putHeader(b []byte, h *protocol.Header, t protocol.MessageType) {
	b[0] = byte(protocol.NewSdoIDAndMsgType(t, MajorSdoID))
	b[1] = wireVersion
	binary.BigEndian.PutUint16(b[2:], uint16(len(b))) //#nosec G115 -- bounded by Encode
	b[4] = h.DomainNumber
	b[5] = h.MinorSdoID
	binary.BigEndian.PutUint16(b[6:], h.FlagField)
	binary.BigEndian.PutUint64(b[8:], uint64(h.CorrectionField))
	binary.BigEndian.PutUint32(b[16:], h.MessageTypeSpecific)
	binary.BigEndian.PutUint64(b[20:], uint64(h.SourcePortIdentity.ClockIdentity))
	binary.BigEndian.PutUint16(b[28:], h.SourcePortIdentity.PortNumber)
	binary.BigEndian.PutUint16(b[30:], h.SequenceID)
	b[32] = h.ControlField
	b[33] = byte(h.LogMessageInterval)
}

func appendTimestamp(b []byte, t protocol.Timestamp) []byte {
	b = append(b, t.Seconds[:]...)
	return binary.BigEndian.AppendUint32(b, t.Nanoseconds)
}

func appendPortIdentity(b []byte, p protocol.PortIdentity) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(p.ClockIdentity))
	return binary.BigEndian.AppendUint16(b, p.PortNumber)
}

// appendOrgTLV appends the header of an 802.1 organization extension TLV
// whose data after the organizationSubType is n octets long.
func appendOrgTLV(b []byte, subtype byte, length uint16) []byte {
	b = binary.BigEndian.AppendUint16(b, tlvTypeOrganizationExtension)
	b = binary.BigEndian.AppendUint16(b, length)
	b = append(b, orgIEEE8021[:]...)
	return append(b, 0, 0, subtype)
}

func appendFollowUpInfo(b []byte, f FollowUpInfo) []byte {
	b = appendOrgTLV(b, subtypeFollowUpInfo, wireFollowUpInfoLen)
	b = binary.BigEndian.AppendUint32(b, uint32(f.CumulativeScaledRateOffset))
	b = binary.BigEndian.AppendUint16(b, f.GMTimeBaseIndicator)
	b = binary.BigEndian.AppendUint32(b, uint32(f.LastGMPhaseChange.Hi))
	b = binary.BigEndian.AppendUint64(b, f.LastGMPhaseChange.Lo)
	return binary.BigEndian.AppendUint32(b, uint32(f.ScaledLastGMFreqChange))
}

func appendIntervalRequest(b []byte, r IntervalRequest) []byte {
	b = appendOrgTLV(b, subtypeIntervalRequest, wireIntervalRequestLen)
	var flags byte
	if r.ComputeNeighborRateRatio {
		flags |= flagComputeNeighborRateRatio
	}
	if r.ComputeNeighborPropDelay {
		flags |= flagComputeNeighborPropDelay
	}
	return append(b, byte(r.LinkDelayInterval), byte(r.TimeSyncInterval), byte(r.AnnounceInterval), flags, 0, 0)
}

// Decode parses one gPTP message from b, which may hold padding after it
// (an Ethernet frame's minimum size). It checks that majorSdoId is
// MajorSdoID, that the major version is 2 (any minor version is accepted),
// that messageLength covers the message's fixed part and fits in b, and that
// the type is one 802.1AS uses. TLVs it does not know are skipped; a TLV
// that overruns messageLength, a Follow_Up information, interval request or
// path trace TLV of the wrong length, and a Follow_Up without its
// information TLV are errors wrapping errMalformed.
func Decode(b []byte) (Message, error) {
	if len(b) < wireHeaderLen {
		return nil, errMalformedf("%d octets, shorter than the %d-octet header", len(b), wireHeaderLen)
	}
	var h protocol.Header
	h.SdoIDAndMsgType = protocol.SdoIDAndMsgType(b[0])
	h.Version = b[1]
	h.MessageLength = binary.BigEndian.Uint16(b[2:])
	h.DomainNumber = b[4]
	h.MinorSdoID = b[5]
	h.FlagField = binary.BigEndian.Uint16(b[6:])
	h.CorrectionField = protocol.Correction(binary.BigEndian.Uint64(b[8:]))
	h.MessageTypeSpecific = binary.BigEndian.Uint32(b[16:])
	h.SourcePortIdentity = portIdentityAt(b[20:])
	h.SequenceID = binary.BigEndian.Uint16(b[30:])
	h.ControlField = b[32]
	h.LogMessageInterval = protocol.LogInterval(b[33])

	if sdo := b[0] >> 4; sdo != MajorSdoID {
		return nil, errMalformedf("majorSdoId %d, want %d (not an 802.1AS message)", sdo, MajorSdoID)
	}
	if v := b[1] & protocol.MajorVersionMask; v != protocol.MajorVersion {
		return nil, errMalformedf("versionPTP %d, want %d", v, protocol.MajorVersion)
	}
	t := h.MessageType()
	n := int(h.MessageLength)
	if n > len(b) {
		return nil, errMalformedf("%s: messageLength %d, but only %d octets", t, n, len(b))
	}
	var body int
	switch t {
	case protocol.MessageSync:
		body = wireSyncBodyLen
	case protocol.MessageFollowUp:
		body = wireFollowUpBodyLen
	case protocol.MessageAnnounce:
		body = wireAnnounceBodyLen
	case protocol.MessageSignaling:
		body = wireSignalingBodyLen
	case protocol.MessagePDelayReq, protocol.MessagePDelayResp, protocol.MessagePDelayRespFollowUp:
		body = wirePdelayBodyLen
	default:
		return nil, errMalformedf("message type %s (0x%x) is not used by 802.1AS", t, uint8(t))
	}
	if n < wireHeaderLen+body {
		return nil, errMalformedf("%s: messageLength %d, shorter than the %d octets of its header and body", t, n, wireHeaderLen+body)
	}
	p := b[wireHeaderLen:n]
	tlvs := p[body:]

	switch t {
	case protocol.MessageSync:
		if err := walkTLVs(t, tlvs, wireHeaderLen+body, nil); err != nil {
			return nil, err
		}
		return &Sync{Header: h}, nil
	case protocol.MessageFollowUp:
		m := &FollowUp{Header: h, PreciseOriginTimestamp: timestampAt(p)}
		found := false
		err := walkTLVs(t, tlvs, wireHeaderLen+body, func(typ uint16, v []byte) error {
			sub, ok := orgSubtype(typ, v)
			if !ok || sub != subtypeFollowUpInfo || found {
				return nil
			}
			if len(v) != wireFollowUpInfoLen {
				return fmt.Errorf("Follow_Up information TLV length %d, want %d", len(v), wireFollowUpInfoLen)
			}
			found = true
			m.Info = FollowUpInfo{
				CumulativeScaledRateOffset: int32(binary.BigEndian.Uint32(v[6:])),
				GMTimeBaseIndicator:        binary.BigEndian.Uint16(v[10:]),
				LastGMPhaseChange: ScaledNs{
					Hi: int32(binary.BigEndian.Uint32(v[12:])),
					Lo: binary.BigEndian.Uint64(v[16:]),
				},
				ScaledLastGMFreqChange: int32(binary.BigEndian.Uint32(v[24:])),
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, errMalformedf("%s: no Follow_Up information TLV", t)
		}
		return m, nil
	case protocol.MessageAnnounce:
		ab, err := ptp.DecodeAnnounceBody(p)
		if err != nil {
			return nil, errMalformedf("%s: %v", t, err)
		}
		m := &Announce{Header: h, AnnounceBody: ab}
		found := false
		err = walkTLVs(t, tlvs, wireHeaderLen+body, func(typ uint16, v []byte) error {
			if typ != tlvTypePathTrace || found {
				return nil
			}
			if len(v)%8 != 0 {
				return fmt.Errorf("path trace TLV length %d, not a multiple of 8", len(v))
			}
			found = true
			m.PathTrace = make([]protocol.ClockIdentity, len(v)/8)
			for i := range m.PathTrace {
				m.PathTrace[i] = protocol.ClockIdentity(binary.BigEndian.Uint64(v[8*i:]))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	case protocol.MessageSignaling:
		m := &Signaling{Header: h, TargetPortIdentity: portIdentityAt(p)}
		err := walkTLVs(t, tlvs, wireHeaderLen+body, func(typ uint16, v []byte) error {
			sub, ok := orgSubtype(typ, v)
			if !ok || sub != subtypeIntervalRequest || m.Interval != nil {
				return nil
			}
			if len(v) != wireIntervalRequestLen {
				return fmt.Errorf("message interval request TLV length %d, want %d", len(v), wireIntervalRequestLen)
			}
			m.Interval = &IntervalRequest{
				LinkDelayInterval:        int8(v[6]),
				TimeSyncInterval:         int8(v[7]),
				AnnounceInterval:         int8(v[8]),
				ComputeNeighborRateRatio: v[9]&flagComputeNeighborRateRatio != 0,
				ComputeNeighborPropDelay: v[9]&flagComputeNeighborPropDelay != 0,
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	}

	if err := walkTLVs(t, tlvs, wireHeaderLen+body, nil); err != nil {
		return nil, err
	}
	switch t {
	case protocol.MessagePDelayReq:
		m := &protocol.PDelayReq{Header: h}
		m.OriginTimestamp = timestampAt(p)
		copy(m.Reserved[:], p[wireTimestampLen:wirePdelayBodyLen])
		return m, nil
	case protocol.MessagePDelayResp:
		m := &protocol.PDelayResp{Header: h}
		m.RequestReceiptTimestamp = timestampAt(p)
		m.RequestingPortIdentity = portIdentityAt(p[wireTimestampLen:])
		return m, nil
	default: // protocol.MessagePDelayRespFollowUp
		m := &protocol.PDelayRespFollowUp{Header: h}
		m.ResponseOriginTimestamp = timestampAt(p)
		m.RequestingPortIdentity = portIdentityAt(p[wireTimestampLen:])
		return m, nil
	}
}

func errMalformedf(format string, args ...any) error {
	return fmt.Errorf("gptp: %w: %s", errMalformed, fmt.Sprintf(format, args...))
}

func timestampAt(b []byte) protocol.Timestamp {
	var t protocol.Timestamp
	copy(t.Seconds[:], b[:6])
	t.Nanoseconds = binary.BigEndian.Uint32(b[6:])
	return t
}

func portIdentityAt(b []byte) protocol.PortIdentity {
	return protocol.PortIdentity{
		ClockIdentity: protocol.ClockIdentity(binary.BigEndian.Uint64(b)),
		PortNumber:    binary.BigEndian.Uint16(b[8:]),
	}
}

// walkTLVs calls f (when not nil) with the type and value of each TLV in b,
// the part of a message of type t after its body, which starts at offset
// base of the message. A TLV must fit in b whole.
func walkTLVs(t protocol.MessageType, b []byte, base int, f func(typ uint16, value []byte) error) error {
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < wireTLVHeaderLen {
			return errMalformedf("%s: %d stray octets after the TLVs at offset %d", t, len(rest), base+off)
		}
		typ := binary.BigEndian.Uint16(rest)
		n := int(binary.BigEndian.Uint16(rest[2:]))
		if n > len(rest)-wireTLVHeaderLen {
			return errMalformedf("%s: TLV type 0x%04x at offset %d: length %d overruns the message by %d octets",
				t, typ, base+off, n, n-(len(rest)-wireTLVHeaderLen))
		}
		if f != nil {
			if err := f(typ, rest[wireTLVHeaderLen:wireTLVHeaderLen+n]); err != nil {
				return errMalformedf("%s: TLV at offset %d: %v", t, base+off, err)
			}
		}
		off += wireTLVHeaderLen + n
	}
	return nil
}

// orgSubtype returns the organizationSubType of an 802.1 organization
// extension TLV; ok is false for any other TLV.
func orgSubtype(typ uint16, v []byte) (sub uint32, ok bool) {
	if typ != tlvTypeOrganizationExtension || len(v) < 6 || [3]byte(v[:3]) != orgIEEE8021 {
		return 0, false
	}
	return uint32(v[3])<<16 | uint32(v[4])<<8 | uint32(v[5]), true
}
