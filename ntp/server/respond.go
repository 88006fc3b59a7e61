package server

import (
	"encoding/binary"
	"time"

	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/sources"
)

// Offsets of the fields of the 48-byte NTP header.
const (
	offStratum   = 1
	offPoll      = 2
	offPrecision = 3
	offRootDelay = 4
	offRootDisp  = 8
	offRefID     = 12
	offRefTime   = 16
	offOrigin    = 24
	offReceive   = 32
	offTransmit  = 40
)

// Drop reasons: why a datagram got no answer (the keys of Stats.Dropped).
const (
	DropShort       = "shorter than an NTP header"
	DropOversized   = "oversized"
	DropVersion     = "unsupported version"
	DropMode        = "not a client request"
	DropDenied      = "denied"
	DropRateLimited = "rate limited"
	DropNoTimestamp = "no receive timestamp"
	DropSendFailed  = "send failed"
)

// verdict is what the server does with one request.
type verdict uint8

const (
	answer verdict = iota
	answerInterleaved
	kissRate
	kissDeny
	drop
)

// wire is the part of every response that depends only on the server's
// state, precomputed when the state changes.
type wire struct {
	leap       sources.Leap
	stratum    uint8
	precision  int8
	refID      uint32
	rootDelay  ntp.Short
	rootDisp   time.Duration // at refTime
	dispRate   float64       // growth of the root dispersion, s/s
	refTime    time.Time     // disciplined clock
	refTimeNTP ntp.Timestamp
}

// Flags kept in the lowest bit of the timestamps the server sends (a
// quarter of a nanosecond, far below any clock's precision): receive
// timestamps have it set, transmit timestamps clear. A request whose origin
// timestamp has it set echoes a receive timestamp of ours, which only an
// interleaved client does, so the server knows to capture the kernel's
// transmit timestamp of its reply to that client.
const rxFlag = 1

func receiveStamp(t time.Time) ntp.Timestamp  { return ntp.TimestampOf(t) | rxFlag }
func transmitStamp(t time.Time) ntp.Timestamp { return ntp.TimestampOf(t) &^ rxFlag }

// wantsInterleaved reports whether a request's origin timestamp looks like
// one of our receive timestamps.
func wantsInterleaved(req []byte) bool {
	org := binary.BigEndian.Uint64(req[offOrigin:])
	return org != 0 && org&rxFlag != 0
}

// checkRequest decides whether req (a whole datagram) is a request the
// server answers, and why not.
func checkRequest(req []byte) (reason string, ok bool) {
	if len(req) < ntp.HeaderLen {
		return DropShort, false
	}
	vn := req[0] >> 3 & 7
	if vn < 1 || vn > 4 {
		return DropVersion, false
	}
	mode := ntp.Mode(req[0] & 7)
	// NTPv1 had no modes: its clients send mode 0.
	if mode != ntp.ModeClient && !(vn == 1 && mode == 0) {
		return DropMode, false
	}
	return "", true
}

// fillResponse writes the 48-byte answer to req into out: a basic response
// with receive time rx and transmit time tx, or an interleaved one when
// prevTx is not zero (the transmit time of our previous reply to this
// client, RFC 9769). The transmit field may be patched later (patchTransmit).
func fillResponse(out, req []byte, w *wire, rx ntp.Timestamp, now time.Time, prevTx ntp.Timestamp) {
	vn := req[0] >> 3 & 7
	out[0] = byte(w.leap)<<6 | vn<<3 | byte(ntp.ModeServer)
	out[offStratum] = w.stratum
	out[offPoll] = clampPoll(int8(req[offPoll]))
	out[offPrecision] = byte(w.precision)
	binary.BigEndian.PutUint32(out[offRootDelay:], uint32(w.rootDelay))
	binary.BigEndian.PutUint32(out[offRootDisp:], uint32(w.dispersionAt(now)))
	binary.BigEndian.PutUint32(out[offRefID:], w.refID)
	binary.BigEndian.PutUint64(out[offRefTime:], uint64(w.refTimeNTP))
	if prevTx != 0 {
		// Interleaved: the origin echoes the request's receive field,
		// which is how the client tells this answer from a basic one.
		copy(out[offOrigin:offOrigin+8], req[offReceive:offReceive+8])
		binary.BigEndian.PutUint64(out[offTransmit:], uint64(prevTx))
	} else {
		copy(out[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8])
	}
	binary.BigEndian.PutUint64(out[offReceive:], uint64(rx))
}

// patchTransmit sets the transmit timestamp of a basic response.
func patchTransmit(out []byte, tx ntp.Timestamp) {
	binary.BigEndian.PutUint64(out[offTransmit:], uint64(tx))
}

// fillKiss writes a kiss-of-death with the given code (RFC 5905, section
// 7.4): stratum 0, leap "unsynchronized", the code in the reference ID and
// no usable time (receive and transmit repeat the request's transmit).
func fillKiss(out, req []byte, code uint32) {
	vn := req[0] >> 3 & 7
	clear(out[:ntp.HeaderLen])
	out[0] = byte(sources.LeapUnknown)<<6 | vn<<3 | byte(ntp.ModeServer)
	out[offPoll] = clampPoll(int8(req[offPoll]))
	binary.BigEndian.PutUint32(out[offRefID:], code)
	copy(out[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8])
	copy(out[offReceive:offReceive+8], req[offTransmit:offTransmit+8])
	copy(out[offTransmit:offTransmit+8], req[offTransmit:offTransmit+8])
}

// Kiss codes as reference IDs.
const (
	codeRATE = 'R'<<24 | 'A'<<16 | 'T'<<8 | 'E'
	codeDENY = 'D'<<24 | 'E'<<16 | 'N'<<8 | 'Y'
)

// clampPoll keeps the poll field echoed from a request within the range the
// protocol uses.
func clampPoll(p int8) byte {
	return byte(min(max(p, ntp.MinPollLimit), ntp.MaxPollLimit))
}

// phi is NTP's bound on the frequency error of a clock between updates
// (RFC 5905: 15 ppm), by which the root dispersion grows.
const phi = 15e-6

// dispersionAt is the root dispersion served at time now: the dispersion at
// the last update plus what the clock may have drifted since.
func (w *wire) dispersionAt(now time.Time) ntp.Short {
	d := w.rootDisp
	if el := now.Sub(w.refTime); el > 0 && !w.refTime.IsZero() {
		d += time.Duration(float64(el) * w.dispRate)
	}
	return ntp.ShortOf(d)
}
