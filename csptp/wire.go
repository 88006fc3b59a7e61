package csptp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/ptp"
)

// Protocol is the wire form of an exchange.
type Protocol uint8

const (
	// SPTP is Meta's simplified unicast PTP: Delay_Req, answered by Sync
	// and Announce.
	SPTP Protocol = iota + 1
	// CSPTP is client-server PTP with request and response TLVs: Sync,
	// answered by Sync.
	CSPTP
)

func (p Protocol) String() string {
	switch p {
	case SPTP:
		return "sptp"
	case CSPTP:
		return "csptp"
	default:
		return fmt.Sprintf("protocol(%d)", uint8(p))
	}
}

// TLV types of CSPTP, as ntpd-rs's experimental implementation numbers them,
// and the PAD TLV of IEEE 1588-2019 (clause 14.4) used to make a request as
// long as its answer.
const (
	TLVCSPTPRequest  protocol.TLVType = 0xFF00
	TLVCSPTPResponse protocol.TLVType = 0xFF01
	TLVPad           protocol.TLVType = 0x8008
)

// Errors a parser returns, wrapped with the details.
var (
	// ErrMalformed: the datagram is not a well-formed PTP message.
	ErrMalformed = errors.New("malformed message")
	// ErrUnexpected: a well-formed PTP message that is not the request or
	// response this package speaks.
	ErrUnexpected = errors.New("unexpected message")
)

const (
	headerLen     = 34
	syncLen       = headerLen + 10 // Sync and Delay_Req
	announceLen   = headerLen + 30
	tlvHeadLen    = 4
	csptpReqLen   = tlvHeadLen + 4  // request TLV: 4 octets of flags
	csptpRespLen  = tlvHeadLen + 18 // response TLV: timestamp and correction
	csptpMajorSdo = 3
	// maxAnswer bounds one message a server sends: a CSPTP answer, an
	// SPTP Sync or Announce.
	maxAnswer = max(syncLen+csptpRespLen, announceLen)
	// maxMessage bounds what an encoder writes and a reader accepts.
	maxMessage = 1500
)

// Request is a client's request.
type Request struct {
	// Protocol is the wire form: an SPTP Delay_Req or a CSPTP Sync.
	Protocol Protocol
	// Domain is the PTP domainNumber.
	Domain uint8
	// SequenceID identifies the exchange; answers carry it.
	SequenceID uint16
	// Source is the requesting port (sourcePortIdentity).
	Source protocol.PortIdentity
	// Correction is the request's correctionField (transparent clocks add
	// their residence time to it on the way).
	Correction protocol.Correction
	// Flags are the CSPTP request TLV's flags (CSPTP only).
	Flags uint32
	// Padding is the length of a PAD TLV (head included, at least 4 and
	// even) added to the request, 0 for none; parsed requests report it.
	Padding int
	// Length is the length of the parsed message (messageLength).
	Length int
}

// Response is one datagram of a server's answer: for SPTP a Sync or an
// Announce, for CSPTP a Sync with the response TLV.
type Response struct {
	// Protocol is the form the datagram belongs to.
	Protocol Protocol
	// Header is the message's common header (type, sequence id, flags,
	// correctionField, the server's port identity).
	Header protocol.Header
	// Origin is the originTimestamp: for an SPTP Sync the request's receive
	// time, for an SPTP Announce the Sync's transmit time, for CSPTP the
	// response's own transmit time.
	Origin protocol.Timestamp
	// RequestReceipt and RequestCorrection are the CSPTP response TLV: the
	// request's receive time and correctionField.
	RequestReceipt    protocol.Timestamp
	RequestCorrection protocol.Correction
	// Announce is the body of an SPTP Announce (its OriginTimestamp is also
	// in Origin).
	Announce protocol.AnnounceBody
}

// header fills in a header for message type t of the given length.
func header(t protocol.MessageType, sdo uint8, length int, domain uint8, flags uint16, seq uint16, src protocol.PortIdentity, cf protocol.Correction, control uint8) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, sdo),
		Version:            protocol.Version,
		MessageLength:      uint16(length), //#nosec G115 -- bounded by maxMessage
		DomainNumber:       domain,
		FlagField:          flags,
		CorrectionField:    cf,
		SourcePortIdentity: src,
		SequenceID:         seq,
		ControlField:       control,
		LogMessageInterval: protocol.MgmtLogMessageInterval,
	}
}

// appendTLV appends a TLV head of type t and value length n, and n zero
// octets for the value, returning the extended slice and the value.
func appendTLV(b []byte, t protocol.TLVType, n int) ([]byte, []byte) {
	b = binary.BigEndian.AppendUint16(b, uint16(t))
	b = binary.BigEndian.AppendUint16(b, uint16(n)) //#nosec G115 -- callers bound n
	start := len(b)
	b = append(b, make([]byte, n)...)
	return b, b[start:]
}

// appendSync appends a Sync or Delay_Req with the given header. It
// encodes into b's spare capacity (a buffer on the stack would escape to
// the heap through the codec: one allocation per answer).
func appendSync(b []byte, h protocol.Header, origin protocol.Timestamp) ([]byte, error) {
	start := len(b)
	b = slices.Grow(b, syncLen)[:start+syncLen]
	m := protocol.SyncDelayReq{Header: h, SyncDelayReqBody: protocol.SyncDelayReqBody{OriginTimestamp: origin}}
	n, err := m.MarshalBinaryTo(b[start:])
	if err != nil {
		return b[:start], fmt.Errorf("csptp: encoding %s: %w", h.MessageType(), err)
	}
	return b[:start+n], nil
}

// AppendBinary appends the request's wire form to b.
func (r *Request) AppendBinary(b []byte) ([]byte, error) {
	if r.Padding != 0 && (r.Padding < tlvHeadLen || r.Padding%2 != 0 || r.Padding > maxMessage-syncLen-csptpReqLen) {
		return b, fmt.Errorf("csptp: request padding %d: want 0 or an even length of 4..%d", r.Padding, maxMessage-syncLen-csptpReqLen)
	}
	length := syncLen + r.Padding
	var h protocol.Header
	switch r.Protocol {
	case SPTP:
		h = header(protocol.MessageDelayReq, 0, length, r.Domain, protocol.FlagUnicast|protocol.FlagProfileSpecific1, r.SequenceID, r.Source, r.Correction, 1)
	case CSPTP:
		length += csptpReqLen
		h = header(protocol.MessageSync, csptpMajorSdo, length, r.Domain, protocol.FlagUnicast|protocol.FlagPTPTimescale, r.SequenceID, r.Source, r.Correction, 0)
	default:
		return b, fmt.Errorf("csptp: encoding request: unknown protocol %d", r.Protocol)
	}
	b, err := appendSync(b, h, protocol.Timestamp{})
	if err != nil {
		return b, err
	}
	if r.Protocol == CSPTP {
		var v []byte
		b, v = appendTLV(b, TLVCSPTPRequest, 4)
		binary.BigEndian.PutUint32(v, r.Flags)
	}
	if r.Padding != 0 {
		b, _ = appendTLV(b, TLVPad, r.Padding-tlvHeadLen)
	}
	return b, nil
}

// tlv is one TLV of a parsed message.
type tlv struct {
	typ   protocol.TLVType
	value []byte
}

// parseHeader checks the common header of b and returns it.
func parseHeader(b []byte, what string) (protocol.Header, error) {
	var h protocol.Header
	if len(b) < headerLen {
		return h, fmt.Errorf("csptp: %s: %w: %d octets, shorter than a PTP header", what, ErrMalformed, len(b))
	}
	if len(b) > maxMessage {
		return h, fmt.Errorf("csptp: %s: %w: %d octets, longer than %d", what, ErrMalformed, len(b), maxMessage)
	}
	h.SdoIDAndMsgType = protocol.SdoIDAndMsgType(b[0])
	h.Version = b[1]
	h.MessageLength = binary.BigEndian.Uint16(b[2:])
	h.DomainNumber = b[4]
	h.MinorSdoID = b[5]
	h.FlagField = binary.BigEndian.Uint16(b[6:])
	h.CorrectionField = protocol.Correction(binary.BigEndian.Uint64(b[8:]))
	h.MessageTypeSpecific = binary.BigEndian.Uint32(b[16:])
	h.SourcePortIdentity.ClockIdentity = protocol.ClockIdentity(binary.BigEndian.Uint64(b[20:]))
	h.SourcePortIdentity.PortNumber = binary.BigEndian.Uint16(b[28:])
	h.SequenceID = binary.BigEndian.Uint16(b[30:])
	h.ControlField = b[32]
	h.LogMessageInterval = protocol.LogInterval(b[33])
	if v := h.Version & protocol.MajorVersionMask; v != protocol.MajorVersion {
		return h, fmt.Errorf("csptp: %s: %w: PTP version %d", what, ErrMalformed, v)
	}
	if int(h.MessageLength) > len(b) || h.MessageLength < headerLen {
		return h, fmt.Errorf("csptp: %s: %w: messageLength %d of a %d-octet datagram", what, ErrMalformed, h.MessageLength, len(b))
	}
	return h, nil
}

// bodyLen is the length, header included, of the fixed part of message
// type t, or 0 for a type this package does not speak.
func bodyLen(t protocol.MessageType) int {
	switch t {
	case protocol.MessageSync, protocol.MessageDelayReq:
		return syncLen
	case protocol.MessageAnnounce:
		return announceLen
	}
	return 0
}

// walkTLVs calls f for every TLV in b (the octets after the body up to
// messageLength); it fails on a TLV that does not fit or has an odd length.
func walkTLVs(b []byte, what string, f func(tlv) error) error {
	for len(b) > 0 {
		if len(b) < tlvHeadLen {
			return fmt.Errorf("csptp: %s: %w: %d stray octets after the TLVs", what, ErrMalformed, len(b))
		}
		t := tlv{typ: protocol.TLVType(binary.BigEndian.Uint16(b)), value: b[tlvHeadLen:]}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n > len(t.value) || n%2 != 0 {
			return fmt.Errorf("csptp: %s: %w: TLV %#04x of length %d with %d octets left", what, ErrMalformed, uint16(t.typ), n, len(t.value))
		}
		t.value = t.value[:n]
		if err := f(t); err != nil {
			return err
		}
		b = b[tlvHeadLen+n:]
	}
	return nil
}

// parseBody checks that b holds the fixed part of h's message type and
// returns its originTimestamp and the TLV octets.
func parseBody(b []byte, h protocol.Header, what string) (protocol.Timestamp, []byte, error) {
	var ts protocol.Timestamp
	n := bodyLen(h.MessageType())
	if n == 0 {
		return ts, nil, fmt.Errorf("csptp: %s: %w: %s", what, ErrUnexpected, h.MessageType())
	}
	if int(h.MessageLength) < n {
		return ts, nil, fmt.Errorf("csptp: %s: %w: %s of messageLength %d, shorter than %d", what, ErrMalformed, h.MessageType(), h.MessageLength, n)
	}
	copy(ts.Seconds[:], b[headerLen:headerLen+6])
	ts.Nanoseconds = binary.BigEndian.Uint32(b[headerLen+6:])
	if ts.Nanoseconds >= 1e9 {
		return ts, nil, fmt.Errorf("csptp: %s: %w: originTimestamp nanoseconds %d", what, ErrMalformed, ts.Nanoseconds)
	}
	return ts, b[n:h.MessageLength], nil
}

// ParseRequest decodes a request: an SPTP Delay_Req (unicast and
// profile-specific-1 flags set) or a Sync with a CSPTP request TLV.
// Octets after messageLength (such as the two that PTP over UDPv6 appends)
// are ignored, and so are TLVs of other types.
func ParseRequest(b []byte) (Request, error) {
	const what = "request"
	h, err := parseHeader(b, what)
	if err != nil {
		return Request{}, err
	}
	if t := h.MessageType(); t != protocol.MessageSync && t != protocol.MessageDelayReq {
		return Request{}, fmt.Errorf("csptp: %s: %w: %s", what, ErrUnexpected, t)
	}
	_, tlvs, err := parseBody(b, h, what)
	if err != nil {
		return Request{}, err
	}
	r := Request{Domain: h.DomainNumber, SequenceID: h.SequenceID, Source: h.SourcePortIdentity,
		Correction: h.CorrectionField, Length: int(h.MessageLength)}
	csptp := false
	err = walkTLVs(tlvs, what, func(t tlv) error {
		switch t.typ {
		case TLVCSPTPRequest:
			if len(t.value) < 4 {
				return fmt.Errorf("csptp: %s: %w: CSPTP request TLV of %d octets", what, ErrMalformed, len(t.value))
			}
			csptp = true
			r.Flags = binary.BigEndian.Uint32(t.value)
		case TLVPad:
			r.Padding += tlvHeadLen + len(t.value)
		}
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	switch t := h.MessageType(); {
	case t == protocol.MessageDelayReq:
		const want = protocol.FlagUnicast | protocol.FlagProfileSpecific1
		if h.FlagField&want != want {
			return Request{}, fmt.Errorf("csptp: %s: %w: Delay_Req with flags %#04x, not an SPTP request", what, ErrUnexpected, h.FlagField)
		}
		r.Protocol = SPTP
	case t == protocol.MessageSync && csptp:
		r.Protocol = CSPTP
	default:
		return Request{}, fmt.Errorf("csptp: %s: %w: %s without a CSPTP request TLV", what, ErrUnexpected, t)
	}
	return r, nil
}

// ParseResponse decodes one datagram of an answer: an SPTP Sync or
// Announce, or a CSPTP Sync with its response TLV.
func ParseResponse(b []byte) (Response, error) {
	const what = "response"
	h, err := parseHeader(b, what)
	if err != nil {
		return Response{}, err
	}
	t := h.MessageType()
	if t != protocol.MessageSync && t != protocol.MessageAnnounce {
		return Response{}, fmt.Errorf("csptp: %s: %w: %s", what, ErrUnexpected, t)
	}
	origin, tlvs, err := parseBody(b, h, what)
	if err != nil {
		return Response{}, err
	}
	r := Response{Protocol: SPTP, Header: h, Origin: origin}
	if t == protocol.MessageAnnounce {
		if r.Announce, err = ptp.DecodeAnnounceBody(b[headerLen:]); err != nil {
			return Response{}, fmt.Errorf("csptp: %s: %w: %v", what, ErrMalformed, err)
		}
	}
	err = walkTLVs(tlvs, what, func(v tlv) error {
		if v.typ != TLVCSPTPResponse || t != protocol.MessageSync {
			return nil
		}
		if len(v.value) < csptpRespLen-tlvHeadLen {
			return fmt.Errorf("csptp: %s: %w: CSPTP response TLV of %d octets", what, ErrMalformed, len(v.value))
		}
		r.Protocol = CSPTP
		copy(r.RequestReceipt.Seconds[:], v.value[:6])
		r.RequestReceipt.Nanoseconds = binary.BigEndian.Uint32(v.value[6:])
		if r.RequestReceipt.Nanoseconds >= 1e9 {
			return fmt.Errorf("csptp: %s: %w: CSPTP response TLV nanoseconds %d", what, ErrMalformed, r.RequestReceipt.Nanoseconds)
		}
		r.RequestCorrection = protocol.Correction(binary.BigEndian.Uint64(v.value[10:]))
		return nil
	})
	if err != nil {
		return Response{}, err
	}
	return r, nil
}

// appendSPTPSync appends the Sync that answers the SPTP request req from
// server port self: the request's sequence id, and its receive time rx in
// originTimestamp.
func appendSPTPSync(b []byte, req *Request, self protocol.PortIdentity, rx protocol.Timestamp) ([]byte, error) {
	h := header(protocol.MessageSync, 0, syncLen, req.Domain, protocol.FlagUnicast|protocol.FlagTwoStep, req.SequenceID, self, 0, 0)
	return appendSync(b, h, rx)
}

// appendSPTPAnnounce appends the Announce that completes the answer to the
// SPTP request req: the Sync's transmit time tx in originTimestamp, the
// request's correctionField, and the server's quality q.
func appendSPTPAnnounce(b []byte, req *Request, self protocol.PortIdentity, tx protocol.Timestamp, q Quality) ([]byte, error) {
	flags := protocol.FlagUnicast | protocol.FlagPTPTimescale | timeFlags(q)
	h := header(protocol.MessageAnnounce, 0, announceLen, req.Domain, flags, req.SequenceID, self, req.Correction, 5)
	m := protocol.Announce{Header: h, AnnounceBody: protocol.AnnounceBody{
		OriginTimestamp:         tx,
		CurrentUTCOffset:        q.UTCOffset,
		GrandmasterPriority1:    128,
		GrandmasterClockQuality: q.ClockQuality,
		GrandmasterPriority2:    128,
		GrandmasterIdentity:     self.ClockIdentity,
		StepsRemoved:            q.StepsRemoved,
		TimeSource:              q.TimeSource,
	}}
	start := len(b)
	b = slices.Grow(b, announceLen)[:start+announceLen]
	n, err := m.MarshalBinaryTo(b[start:])
	if err != nil {
		return b[:start], fmt.Errorf("csptp: encoding Announce: %w", err)
	}
	return b[:start+n], nil
}

// appendCSPTPResponse appends the one-step Sync that answers the CSPTP
// request req that arrived at rx: tx, its own transmit time, in
// originTimestamp, and the response TLV.
func appendCSPTPResponse(b []byte, req *Request, self protocol.PortIdentity, rx, tx protocol.Timestamp, q Quality) ([]byte, error) {
	flags := protocol.FlagUnicast | protocol.FlagPTPTimescale | timeFlags(q)
	h := header(protocol.MessageSync, csptpMajorSdo, syncLen+csptpRespLen, req.Domain, flags, req.SequenceID, self, 0, 0)
	b, err := appendSync(b, h, tx)
	if err != nil {
		return b, err
	}
	var v []byte
	b, v = appendTLV(b, TLVCSPTPResponse, csptpRespLen-tlvHeadLen)
	copy(v, rx.Seconds[:])
	binary.BigEndian.PutUint32(v[6:], rx.Nanoseconds)
	binary.BigEndian.PutUint64(v[10:], uint64(req.Correction)) //#nosec G115 -- the wire form of a signed field
	return b, nil
}

// timeFlags are the timePropertiesDS flags of q for a flagField.
func timeFlags(q Quality) uint16 {
	return ptp.TimeProperties{Leap61: q.Leap61, Leap59: q.Leap59, CurrentUTCOffsetValid: q.UTCOffsetValid,
		TimeTraceable: q.TimeTraceable, FrequencyTraceable: q.FrequencyTraceable}.Flags()
}

// AnswerLen is the number of octets a Server sends in answer to a request
// of protocol p (for SPTP, its Sync and Announce together): the least
// length of a request, padding included, that a server which refuses to
// amplify answers.
func AnswerLen(p Protocol) int {
	if p == CSPTP {
		return syncLen + csptpRespLen
	}
	return syncLen + announceLen
}
