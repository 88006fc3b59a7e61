package ntpload

import (
	"encoding/binary"
	"fmt"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/csptp"
)

// The protocols a load can speak (Options.Protocol).
const (
	// ProtocolNTP sends NTPv4 client requests.
	ProtocolNTP = "ntp"
	// ProtocolSPTP sends SPTP requests (a Delay_Req with the unicast and
	// profile-specific-1 flags, as csptp's client sends): an answer is
	// complete when its Sync and its Announce have both come.
	ProtocolSPTP = "sptp"
	// ProtocolCSPTP sends CSPTP requests (a Sync with the request TLV): an
	// answer is its one Sync with the response TLV.
	ProtocolCSPTP = "csptp"
)

// ptpSeqOffset is where sequenceId lies in the PTP common header (IEEE
// 1588-2019, 13.3.1); every request is its source's template with this
// field set.
const ptpSeqOffset = 30

// ptpSourcePort is the portNumber of every request's sourcePortIdentity:
// above 10, so that servers send an SPTP Announce back to the requesting
// port rather than to the general port 320.
const ptpSourcePort = 0x100

// Parts of a PTP answer, as bits of the pending mask kept for a request.
const (
	partSync     = 1 << 0
	partAnnounce = 1 << 1
	// partsMask covers the bits of a ring slot's cookie that hold the
	// parts still missing.
	partsMask = 0xffff
)

// ptpProtocol is the csptp wire form for name, or 0 for NTP.
func ptpProtocol(name string) (csptp.Protocol, error) {
	switch name {
	case "", ProtocolNTP:
		return 0, nil
	case ProtocolSPTP:
		return csptp.SPTP, nil
	case ProtocolCSPTP:
		return csptp.CSPTP, nil
	}
	return 0, fmt.Errorf("ntpload: protocol %q: want %s, %s or %s", name, ProtocolNTP, ProtocolSPTP, ProtocolCSPTP)
}

// ptpParts is the mask of the parts that make up a complete answer.
func ptpParts(p csptp.Protocol) uint64 {
	if p == csptp.SPTP {
		return partSync | partAnnounce
	}
	return partSync
}

// ptpPadding is the PAD TLV length (head included) that makes a request of
// protocol p as long as its answer, or 0 when it is already.
func ptpPadding(p csptp.Protocol) (int, error) {
	plain, err := (&csptp.Request{Protocol: p}).AppendBinary(nil)
	if err != nil {
		return 0, fmt.Errorf("ntpload: %w", err)
	}
	pad := csptp.AnswerLen(p) - len(plain)
	if pad <= 0 {
		return 0, nil
	}
	return max(pad+pad%2, 4), nil
}

// ptpClockIdentity is the clock identity a request from source address a
// carries: distinct per address, as real clients' are (servers that keep
// a subscription per client, such as ptp4u, see one client per address).
func ptpClockIdentity(a [4]byte) protocol.ClockIdentity {
	return protocol.ClockIdentity(uint64(binary.BigEndian.Uint32(a[:]))<<32 | 0xfffe0000)
}

// ptpTemplate is the request of protocol p from source address a, padded
// by pad octets (a PAD TLV, 0 for none), with sequence id 0.
func ptpTemplate(p csptp.Protocol, a [4]byte, pad int) ([]byte, error) {
	r := csptp.Request{Protocol: p, Padding: pad,
		Source: protocol.PortIdentity{ClockIdentity: ptpClockIdentity(a), PortNumber: ptpSourcePort}}
	b, err := r.AppendBinary(nil)
	if err != nil {
		return nil, fmt.Errorf("ntpload: %s request: %w", p, err)
	}
	return b, nil
}

// ptpRequest writes the request of template tmpl with sequence id seq into
// b[:len(tmpl)].
func ptpRequest(b, tmpl []byte, seq uint16) {
	copy(b, tmpl)
	binary.BigEndian.PutUint16(b[ptpSeqOffset:], seq)
}

// ptpKey is what a ring slot's cookie holds for a PTP request, but for the
// parts still missing: the source address and the sequence id.
func ptpKey(a [4]byte, seq uint16) uint64 {
	return uint64(binary.BigEndian.Uint32(a[:]))<<32 | uint64(seq)<<16
}

// parsePTPResponse classifies datagram b as one part of an answer of
// protocol p: the part and the sequence id, or ok false when it is not.
func parsePTPResponse(p csptp.Protocol, b []byte) (part uint64, seq uint16, ok bool) {
	r, err := csptp.ParseResponse(b)
	if err != nil || r.Protocol != p {
		return 0, 0, false
	}
	switch r.Header.MessageType() {
	case protocol.MessageSync:
		part = partSync
	case protocol.MessageAnnounce:
		part = partAnnounce
	}
	return part, r.Header.SequenceID, true
}
