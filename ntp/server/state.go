package server

import (
	"crypto/md5"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/sources"
)

// State is what the server tells its clients about its clock. The daemon
// sets it on every clock update.
type State struct {
	// Synchronized: a source is selected and the clock follows it.
	Synchronized bool
	Leap         sources.Leap
	// Stratum is the selected source's stratum + 1.
	Stratum uint8
	// RefID identifies the selected source (RefIDOf).
	RefID uint32
	// RootDelay and RootDispersion are this clock's distance from the
	// reference at RefTime; the dispersion served grows from there by
	// 15 ppm plus FrequencyUncertainty.
	RootDelay      time.Duration
	RootDispersion time.Duration
	// RefTime is when the clock was last updated from a source, on the
	// disciplined clock.
	RefTime time.Time
	// FrequencyUncertainty is the uncertainty of the clock's frequency
	// correction (s/s).
	FrequencyUncertainty float64
}

// localRefID is the reference ID served under `local: {stratum: N}`:
// 127.127.1.1, the address NTP has always used for the local clock.
const localRefID = 0x7f7f0101

// RefIDOf is the reference ID of a source at addr (RFC 5905, section 7.3):
// an IPv4 address itself, or the first four bytes of the MD5 hash of an
// IPv6 address.
func RefIDOf(addr netip.Addr) uint32 {
	addr = addr.Unmap()
	if addr.Is4() {
		b := addr.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := addr.As16()
	sum := md5.Sum(b[:])
	return binary.BigEndian.Uint32(sum[:4])
}

// RefIDOfCode is the reference ID of a reference clock: its code (such as
// "GPS" or "PPS") in ASCII, padded with zero bytes.
func RefIDOfCode(code string) uint32 {
	var b [4]byte
	copy(b[:], code)
	return binary.BigEndian.Uint32(b[:])
}

// SetState changes what the server tells its clients.
func (s *Server) SetState(st State) {
	s.state.Store(&st)
	s.refresh(s.tb.Now())
}

// refresh recomputes the response fields from the state. Under local
// stratum the reference time moves with the clock, so the workers call it
// about once a second.
func (s *Server) refresh(now time.Time) {
	st := s.state.Load()
	w := &wire{precision: s.prec}
	switch {
	case st.Synchronized:
		w.leap, w.stratum, w.refID = st.Leap, st.Stratum, st.RefID
		w.rootDelay = ntp.ShortOf(st.RootDelay)
		w.rootDisp = st.RootDispersion
		w.dispRate = phi + st.FrequencyUncertainty
		w.refTime = st.RefTime
	case s.set.Load().LocalStratum > 0:
		w.leap, w.stratum, w.refID = sources.LeapNone, uint8(s.set.Load().LocalStratum), localRefID
		if st.Leap != sources.LeapUnknown {
			w.leap = st.Leap
		}
		w.refTime = now
	default:
		w.leap, w.stratum = sources.LeapUnknown, 16
		w.refTime = st.RefTime
	}
	if w.stratum > 16 || w.stratum == 0 {
		w.stratum = 16
	}
	if !w.refTime.IsZero() {
		w.refTimeNTP = ntp.TimestampOf(w.refTime)
	}
	s.wire.Store(w)
}

// Served is what the server sends now in the fields that describe its
// clock.
type Served struct {
	Leap    sources.Leap
	Stratum uint8
	RefID   uint32
}

// Served returns what the server sends now.
func (s *Server) Served() Served {
	w := s.wire.Load()
	return Served{Leap: w.leap, Stratum: w.stratum, RefID: w.refID}
}
