// Package ke is NTS Key Establishment (RFC 8915 section 4): the record
// codec, a client (Exchange) and a server (Server.Serve).
//
// An NTS-KE exchange runs over TLS 1.3 with ALPN "ntske/1". The client sends
// one message (a sequence of records ending in End of Message) naming the
// next protocol (NTPv4) and the AEAD algorithms it can use; the server
// answers with its choices, the NTP server and port to use when they differ
// from the defaults, and a set of cookies. Both sides then export the
// client-to-server and server-to-client keys from the TLS session
// (RFC 8915 section 5.1). The cookies themselves are made by the caller's
// CookieMaker (package nts), never here.
package ke

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// RecordType is an NTS-KE record type (RFC 8915 section 4.1).
type RecordType uint16

// The record types of RFC 8915.
const (
	RecordEndOfMessage RecordType = 0
	RecordNextProtocol RecordType = 1
	RecordError        RecordType = 2
	RecordWarning      RecordType = 3
	RecordAEAD         RecordType = 4
	RecordNewCookie    RecordType = 5
	RecordServer       RecordType = 6
	RecordPort         RecordType = 7
)

// String names the record type as errors show it.
func (t RecordType) String() string {
	switch t {
	case RecordEndOfMessage:
		return "End of Message"
	case RecordNextProtocol:
		return "next protocol"
	case RecordError:
		return "Error"
	case RecordWarning:
		return "Warning"
	case RecordAEAD:
		return "AEAD algorithm"
	case RecordNewCookie:
		return "New Cookie"
	case RecordServer:
		return "NTPv4 server"
	case RecordPort:
		return "NTPv4 port"
	}
	return fmt.Sprintf("unknown type %d", uint16(t))
}

// ProtocolNTPv4 is the NTS Next Protocol ID of NTPv4.
const ProtocolNTPv4 uint16 = 0

// AEAD algorithm IDs (IANA "AEAD Algorithms"). Only AES-SIV-CMAC-256 is
// implemented.
const (
	AEADAESSIVCMAC256 uint16 = 15
	AEADAESSIVCMAC512 uint16 = 17
	AEADAES128GCMSIV  uint16 = 30
)

// Error codes of the Error record (RFC 8915 section 4.1.3).
const (
	ErrorUnrecognizedCritical uint16 = 0
	ErrorBadRequest           uint16 = 1
	ErrorInternalServer       uint16 = 2
)

// Limits on one message. A response with 8 cookies of a few hundred bytes
// each stays far below them.
const (
	// MaxMessageSize bounds the encoded size of one message, End of
	// Message included.
	MaxMessageSize = 16384
	// MaxRecords bounds the number of records in one message, End of
	// Message included.
	MaxRecords = 64
	// maxServerName bounds the NTPv4 Server Negotiation body: a DNS name
	// or an address literal.
	maxServerName = 255
)

// criticalBit marks a record its receiver must understand.
const criticalBit = 0x8000

// Record is one NTS-KE record. Body is the record's body as it is on the
// wire: lists of 16-bit IDs and ports in network byte order.
type Record struct {
	Type     RecordType
	Critical bool
	Body     []byte
}

// U16Record is a record whose body is the given 16-bit values in network
// byte order (Next Protocol, AEAD, Error, Warning, Port).
func U16Record(t RecordType, critical bool, vals ...uint16) Record {
	body := make([]byte, 2*len(vals))
	for i, v := range vals {
		binary.BigEndian.PutUint16(body[2*i:], v)
	}
	return Record{Type: t, Critical: critical, Body: body}
}

// U16s reads the body as a list of 16-bit values (Next Protocol, AEAD);
// a validated record has an even body.
func (r Record) U16s() []uint16 {
	vals := make([]uint16, len(r.Body)/2)
	for i := range vals {
		vals[i] = binary.BigEndian.Uint16(r.Body[2*i:])
	}
	return vals
}

// BadRecordError is a record that breaks RFC 8915 or this package's limits.
// Index counts records from 1 in their message.
type BadRecordError struct {
	Index  int
	Type   RecordType
	Reason string
	// UnknownCritical is set for a critical record of a type not known
	// here: a server answers it with Error code 0.
	UnknownCritical bool
}

func (e *BadRecordError) Error() string {
	return fmt.Sprintf("nts-ke: record %d (%s): %s", e.Index, e.Type, e.Reason)
}

// checkRecord checks one record's critical bit and body against RFC 8915.
// It returns known=false for a non-critical record of an unknown type,
// which the receiver ignores.
func checkRecord(idx int, r Record) (known bool, err error) {
	bad := func(format string, args ...any) (bool, error) {
		return false, &BadRecordError{Index: idx, Type: r.Type, Reason: fmt.Sprintf(format, args...)}
	}
	n := len(r.Body)
	mustCritical := func() (bool, error) {
		if !r.Critical {
			return bad("critical bit not set, RFC 8915 requires it")
		}
		return true, nil
	}
	switch r.Type {
	case RecordEndOfMessage:
		if n != 0 {
			return bad("body of %d bytes, want none", n)
		}
		return mustCritical()
	case RecordNextProtocol:
		if n%2 != 0 {
			return bad("body of %d bytes, want an even number", n)
		}
		return mustCritical()
	case RecordError, RecordWarning:
		if n != 2 {
			return bad("body of %d bytes, want 2", n)
		}
		return mustCritical()
	case RecordAEAD:
		if n%2 != 0 {
			return bad("body of %d bytes, want an even number", n)
		}
	case RecordNewCookie:
		if n == 0 {
			return bad("empty cookie")
		}
		if r.Critical {
			return bad("critical bit set, RFC 8915 forbids it")
		}
	case RecordServer:
		if n == 0 || n > maxServerName {
			return bad("body of %d bytes, want 1 to %d", n, maxServerName)
		}
		for i, c := range r.Body {
			if c <= ' ' || c >= 0x7f {
				return bad("byte %d is %#02x, want printable ASCII", i, c)
			}
		}
	case RecordPort:
		if n != 2 {
			return bad("body of %d bytes, want 2", n)
		}
	default:
		if r.Critical {
			return false, &BadRecordError{Index: idx, Type: r.Type, Reason: "critical but not understood", UnknownCritical: true}
		}
		return false, nil
	}
	return true, nil
}

// recordReader decodes one message record by record and enforces the
// limits and the rules that span records.
type recordReader struct {
	records []Record
	n       int // records seen, the unknown ones included
	size    int // bytes seen
	seen    [RecordPort + 1]bool
}

// add checks the next record of the message and keeps it unless it is an
// unknown non-critical one. It reports whether it was End of Message.
func (rr *recordReader) add(r Record) (eom bool, err error) {
	rr.n++
	if rr.n > MaxRecords {
		return false, fmt.Errorf("nts-ke: more than %d records in one message", MaxRecords)
	}
	rr.size += 4 + len(r.Body)
	if rr.size > MaxMessageSize {
		return false, fmt.Errorf("nts-ke: record %d (%s): message longer than %d bytes", rr.n, r.Type, MaxMessageSize)
	}
	known, err := checkRecord(rr.n, r)
	if err != nil || !known {
		return false, err
	}
	switch r.Type {
	case RecordEndOfMessage:
		return true, nil
	case RecordNextProtocol, RecordAEAD, RecordServer, RecordPort:
		if rr.seen[r.Type] {
			return false, &BadRecordError{Index: rr.n, Type: r.Type, Reason: "repeated, at most one allowed"}
		}
		rr.seen[r.Type] = true
	}
	rr.records = append(rr.records, r)
	return false, nil
}

// ParseRecords decodes one complete message: records up to and including
// End of Message, nothing after it. It returns the records without End of
// Message and without unknown non-critical records. An unknown critical
// record is a *BadRecordError with UnknownCritical set. Bodies alias b.
func ParseRecords(b []byte) ([]Record, error) {
	var rr recordReader
	for off := 0; ; {
		if off == len(b) {
			return nil, fmt.Errorf("nts-ke: message of %d records ends without End of Message", rr.n)
		}
		if len(b)-off < 4 {
			return nil, fmt.Errorf("nts-ke: record %d: truncated header of %d bytes, want 4", rr.n+1, len(b)-off)
		}
		r, bodyLen := decodeHeader(b[off:])
		off += 4
		if len(b)-off < bodyLen {
			return nil, fmt.Errorf("nts-ke: record %d (%s): truncated body: %d of %d bytes", rr.n+1, r.Type, len(b)-off, bodyLen)
		}
		r.Body = b[off : off+bodyLen : off+bodyLen]
		off += bodyLen
		eom, err := rr.add(r)
		if err != nil {
			return nil, err
		}
		if eom {
			if off != len(b) {
				return nil, fmt.Errorf("nts-ke: %d bytes after End of Message", len(b)-off)
			}
			return rr.records, nil
		}
	}
}

// ReadRecords reads one message from r: records up to End of Message,
// within MaxMessageSize and MaxRecords; it reads nothing past End of
// Message. It returns what ParseRecords would; a message cut short is an
// error wrapping io.ErrUnexpectedEOF.
func ReadRecords(r io.Reader) ([]Record, error) {
	var rr recordReader
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				if rr.n == 0 {
					return nil, fmt.Errorf("nts-ke: connection closed before any record: %w", io.ErrUnexpectedEOF)
				}
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("nts-ke: record %d: reading header: %w", rr.n+1, err)
		}
		rec, bodyLen := decodeHeader(hdr[:])
		if rr.size+4+bodyLen > MaxMessageSize {
			return nil, fmt.Errorf("nts-ke: record %d (%s): body of %d bytes makes the message longer than %d bytes", rr.n+1, rec.Type, bodyLen, MaxMessageSize)
		}
		rec.Body = make([]byte, bodyLen)
		if _, err := io.ReadFull(r, rec.Body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("nts-ke: record %d (%s): reading body of %d bytes: %w", rr.n+1, rec.Type, bodyLen, err)
		}
		eom, err := rr.add(rec)
		if err != nil {
			return nil, err
		}
		if eom {
			return rr.records, nil
		}
	}
}

// decodeHeader splits a record header; b holds at least 4 bytes.
func decodeHeader(b []byte) (Record, int) {
	h := binary.BigEndian.Uint16(b)
	return Record{Type: RecordType(h &^ criticalBit), Critical: h&criticalBit != 0}, int(binary.BigEndian.Uint16(b[2:]))
}

// AppendRecords encodes records followed by End of Message onto dst. It
// checks each record as ParseRecords would, so that what it writes is
// accepted by a receiver that follows RFC 8915; a record of an unknown type
// is encoded as given, critical or not.
func AppendRecords(dst []byte, records []Record) ([]byte, error) {
	if len(records)+1 > MaxRecords {
		return dst, fmt.Errorf("nts-ke: %d records, at most %d fit in one message", len(records)+1, MaxRecords)
	}
	var rr recordReader
	start := len(dst)
	for _, r := range append(records[:len(records):len(records)], Record{Type: RecordEndOfMessage, Critical: true}) {
		if r.Type > 0x7fff || len(r.Body) > 0xffff {
			return dst[:start], fmt.Errorf("nts-ke: record %d: type %d or body of %d bytes does not fit in a record", rr.n+1, r.Type, len(r.Body))
		}
		if r.Type == RecordEndOfMessage && rr.n < len(records) {
			return dst[:start], fmt.Errorf("nts-ke: record %d: End of Message before the last record", rr.n+1)
		}
		if _, err := rr.add(r); err != nil {
			var re *BadRecordError
			if !errors.As(err, &re) || !re.UnknownCritical {
				return dst[:start], err
			}
		}
		h := uint16(r.Type)
		if r.Critical {
			h |= criticalBit
		}
		dst = binary.BigEndian.AppendUint16(dst, h)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Body)))
		dst = append(dst, r.Body...)
	}
	return dst, nil
}
