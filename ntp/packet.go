package ntp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/timed-project/timed/sources"
)

// HeaderLen is the length of the fixed NTP header (RFC 5905, section 7.3).
const HeaderLen = 48

// MaxPacketLen bounds what the codec reads: a datagram longer than this is
// rejected rather than walked.
const MaxPacketLen = 2048

// maxExtensionFields bounds the number of extension fields walked.
const maxExtensionFields = 32

// Mode is the NTP association mode.
type Mode uint8

const (
	ModeSymmetricActive  Mode = 1
	ModeSymmetricPassive Mode = 2
	ModeClient           Mode = 3
	ModeServer           Mode = 4
	ModeBroadcast        Mode = 5
	ModeControl          Mode = 6
)

// Timestamp is a 64-bit NTP timestamp: seconds since the start of the NTP
// era in the high 32 bits and the fraction of a second in the low 32 bits.
// The era (which 136-year span is meant) is not on the wire; Time resolves
// it against a pivot.
type Timestamp uint64

// ntpUnixOffset is the number of seconds from 1900-01-01 (the start of NTP
// era 0) to 1970-01-01.
const ntpUnixOffset = 2_208_988_800

// TimestampOf returns the NTP timestamp of t (in whichever era t lies),
// rounded to the nearest 2^-32 s.
func TimestampOf(t time.Time) Timestamp {
	sec := t.Unix() + ntpUnixOffset
	frac := (uint64(t.Nanosecond())<<32 + 500_000_000) / 1_000_000_000
	return Timestamp(uint64(uint32(sec))<<32 + frac) // frac < 2^32 for nsec < 1e9
}

// Seconds and Fraction are the two halves of the timestamp.
func (ts Timestamp) Seconds() uint32  { return uint32(ts >> 32) }
func (ts Timestamp) Fraction() uint32 { return uint32(ts) }

// IsZero reports whether ts is zero (NTP's "no time").
func (ts Timestamp) IsZero() bool { return ts == 0 }

// Time converts ts to the time within ±68 years of pivot that has these
// seconds and fraction (RFC 5905, section 6: the era is taken from the
// pivot, normally the local clock).
func (ts Timestamp) Time(pivot time.Time) time.Time {
	pivotSec := pivot.Unix() + ntpUnixOffset
	diff := int64(int32(ts.Seconds() - uint32(pivotSec)))
	sec := pivotSec + diff - ntpUnixOffset
	nsec := (uint64(ts.Fraction())*1_000_000_000 + 1<<31) >> 32
	return time.Unix(sec, int64(nsec))
}

// String shows the timestamp as seconds.fraction in hex (era unknown).
func (ts Timestamp) String() string { return fmt.Sprintf("%08x.%08x", ts.Seconds(), ts.Fraction()) }

// Short is NTP's 32-bit short format (16.16 fixed point seconds) used for
// the root delay and root dispersion.
type Short uint32

// Duration converts s to a duration.
func (s Short) Duration() time.Duration {
	return time.Duration((uint64(s)*uint64(time.Second) + 1<<15) >> 16)
}

// ShortOf converts d to the short format, saturating at 0 and the largest
// value (65536 s).
func ShortOf(d time.Duration) Short {
	if d <= 0 {
		return 0
	}
	v := (uint64(d)<<16 + uint64(time.Second)/2) / uint64(time.Second)
	if d >= 65536*time.Second || v > math.MaxUint32 {
		return math.MaxUint32
	}
	return Short(v)
}

// Header is the fixed part of an NTP packet.
type Header struct {
	Leap           sources.Leap // LI
	Version        uint8        // VN, 1..7 on the wire
	Mode           Mode
	Stratum        uint8
	Poll           int8 // log2 s
	Precision      int8 // log2 s
	RootDelay      Short
	RootDispersion Short
	RefID          uint32
	Reference      Timestamp
	Origin         Timestamp
	Receive        Timestamp
	Transmit       Timestamp
}

// AppendBinary appends the 48-byte wire form of h to b.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	if h.Leap > 3 || h.Version > 7 || h.Mode > 7 {
		return b, fmt.Errorf("ntp: header fields out of range (leap %d, version %d, mode %d)", h.Leap, h.Version, h.Mode)
	}
	b = append(b, byte(h.Leap)<<6|h.Version<<3|byte(h.Mode), h.Stratum, byte(h.Poll), byte(h.Precision))
	b = binary.BigEndian.AppendUint32(b, uint32(h.RootDelay))
	b = binary.BigEndian.AppendUint32(b, uint32(h.RootDispersion))
	b = binary.BigEndian.AppendUint32(b, h.RefID)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Reference))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Origin))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Receive))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Transmit))
	return b, nil
}

func (h *Header) decode(b []byte) {
	h.Leap = sources.Leap(b[0] >> 6)
	h.Version = (b[0] >> 3) & 7
	h.Mode = Mode(b[0] & 7)
	h.Stratum = b[1]
	h.Poll = int8(b[2])
	h.Precision = int8(b[3])
	h.RootDelay = Short(binary.BigEndian.Uint32(b[4:]))
	h.RootDispersion = Short(binary.BigEndian.Uint32(b[8:]))
	h.RefID = binary.BigEndian.Uint32(b[12:])
	h.Reference = Timestamp(binary.BigEndian.Uint64(b[16:]))
	h.Origin = Timestamp(binary.BigEndian.Uint64(b[24:]))
	h.Receive = Timestamp(binary.BigEndian.Uint64(b[32:]))
	h.Transmit = Timestamp(binary.BigEndian.Uint64(b[40:]))
}

// ExtensionField is one RFC 7822 extension field. Body aliases the parsed
// buffer (it excludes the 4-byte type/length header; padding is included).
type ExtensionField struct {
	Type uint16
	Body []byte
}

// Packet is a parsed NTP packet. Its slices alias the parsed buffer.
type Packet struct {
	Header
	// Extensions are the extension fields after the header, in order.
	Extensions []ExtensionField
	// MAC is a legacy MAC (key ID and digest, or a 4-byte crypto-NAK) after
	// the header or the extension fields, nil when there is none.
	MAC []byte
}

// Errors returned by ParsePacket and CheckResponse; match them with
// errors.Is.
var (
	ErrShort        = errors.New("shorter than the 48-byte NTP header")
	ErrLong         = errors.New("longer than any NTP packet timed accepts")
	ErrVersion      = errors.New("unsupported NTP version")
	ErrTrailer      = errors.New("malformed extension fields")
	ErrMode         = errors.New("not a server-mode packet")
	ErrNoTransmit   = errors.New("transmit timestamp is zero")
	ErrUnsynced     = errors.New("server unsynchronized")
	ErrKissOfDeath  = errors.New("kiss-of-death")
	errTooManyExtns = errors.New("too many extension fields")
)

// ParsePacket parses an NTP packet of version 3 or 4: the header, then
// extension fields and an optional legacy MAC. It checks the structure only
// (length, version, field framing); CheckResponse checks what a client needs.
// It does not allocate unless extension fields are present.
func ParsePacket(b []byte) (Packet, error) {
	var p Packet
	if len(b) < HeaderLen {
		return p, fmt.Errorf("ntp: %d bytes: %w", len(b), ErrShort)
	}
	if len(b) > MaxPacketLen {
		return p, fmt.Errorf("ntp: %d bytes: %w", len(b), ErrLong)
	}
	p.Header.decode(b)
	if p.Version != 3 && p.Version != 4 {
		return p, fmt.Errorf("ntp: version %d: %w", p.Version, ErrVersion)
	}
	rest := b[HeaderLen:]
	if len(rest) == 0 {
		return p, nil
	}
	if p.Version == 3 {
		// NTPv3 has no extension fields: whatever follows is a MAC.
		if !isMAC(rest) {
			return p, fmt.Errorf("ntp: %d bytes after a v3 header: %w", len(rest), ErrTrailer)
		}
		p.MAC = rest
		return p, nil
	}
	for len(rest) > 0 {
		if isMAC(rest) && !looksLikeField(rest) {
			p.MAC = rest
			return p, nil
		}
		if len(rest) < 4 {
			return p, fmt.Errorf("ntp: %d stray bytes after the header: %w", len(rest), ErrTrailer)
		}
		typ := binary.BigEndian.Uint16(rest)
		n := int(binary.BigEndian.Uint16(rest[2:]))
		if n < 4 || n%4 != 0 || n > len(rest) {
			if isMAC(rest) {
				p.MAC = rest
				return p, nil
			}
			return p, fmt.Errorf("ntp: extension field type %#04x length %d with %d bytes left: %w", typ, n, len(rest), ErrTrailer)
		}
		if len(p.Extensions) == maxExtensionFields {
			return p, fmt.Errorf("ntp: %w (more than %d): %w", errTooManyExtns, maxExtensionFields, ErrTrailer)
		}
		p.Extensions = append(p.Extensions, ExtensionField{Type: typ, Body: rest[4:n:n]})
		rest = rest[n:]
	}
	return p, nil
}

// isMAC reports whether b has the length of a legacy MAC: a 4-byte
// crypto-NAK, or a key ID and an MD5 (16) or SHA-1 (20) digest.
func isMAC(b []byte) bool { return len(b) == 4 || len(b) == 20 || len(b) == 24 }

// looksLikeField reports whether b is exactly one well-framed extension
// field (RFC 7822 resolves the ambiguity with a MAC by field length; a field
// that spans the whole rest is read as a field).
func looksLikeField(b []byte) bool {
	return len(b) >= 16 && int(binary.BigEndian.Uint16(b[2:])) == len(b)
}

// KissError is a kiss-of-death packet: stratum 0 with an ASCII code in the
// reference ID.
type KissError struct {
	Code string
}

func (e *KissError) Error() string { return "ntp: server sent kiss-of-death " + e.Code }

// Is makes errors.Is(err, ErrKissOfDeath) true.
func (e *KissError) Is(target error) bool { return target == ErrKissOfDeath }

// KissCode returns the reference ID as a kiss code: four ASCII characters,
// trailing NULs and spaces removed, anything unprintable shown as '?'.
func KissCode(refID uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], refID)
	n := 4
	for n > 0 && (b[n-1] == 0 || b[n-1] == ' ') {
		n--
	}
	for i := range n {
		if b[i] < 0x20 || b[i] > 0x7e {
			b[i] = '?'
		}
	}
	return string(b[:n])
}

// CheckResponse checks what a client needs of a server's reply: mode 4, a
// non-zero transmit timestamp, a kiss-of-death (stratum 0, returned as a
// *KissError), and an unsynchronized server (leap indicator 3 or stratum 16
// and above, ErrUnsynced). The origin check is the caller's.
func (p *Packet) CheckResponse() error {
	if p.Mode != ModeServer {
		return fmt.Errorf("ntp: mode %d: %w", p.Mode, ErrMode)
	}
	if p.Stratum == 0 {
		return &KissError{Code: KissCode(p.RefID)}
	}
	if p.Transmit.IsZero() {
		return fmt.Errorf("ntp: %w", ErrNoTransmit)
	}
	if p.Leap == sources.LeapUnknown {
		return fmt.Errorf("ntp: %w (leap indicator 3)", ErrUnsynced)
	}
	if p.Stratum >= 16 {
		return fmt.Errorf("ntp: %w (stratum %d)", ErrUnsynced, p.Stratum)
	}
	return nil
}

// PrecisionDuration converts a log2-seconds precision to a duration,
// limited to [1 ns, 1 h].
func PrecisionDuration(log2 int8) time.Duration {
	switch {
	case log2 <= -30:
		return time.Nanosecond
	case log2 >= 12:
		return time.Hour
	}
	return time.Duration(math.Ldexp(float64(time.Second), int(log2)))
}
