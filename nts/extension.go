package nts

import (
	"encoding/binary"
	"fmt"

	"github.com/timed-project/timed/nts/internal/siv"
)

// NTP extension field types of RFC 8915 section 5.
const (
	FieldUniqueID          uint16 = 0x0104
	FieldCookie            uint16 = 0x0204
	FieldCookiePlaceholder uint16 = 0x0304
	FieldAuthenticator     uint16 = 0x0404
)

const (
	// ntpHeaderLen is the fixed NTP header before the extension fields.
	ntpHeaderLen = 48
	// maxPacketLen bounds the packets this package reads or writes.
	maxPacketLen = 2048
	// maxFields bounds the extension fields walked in one packet and in
	// one encrypted part.
	maxFields = 32
	// UniqueIDLen is the length of the unique identifiers ClientSession
	// sends (RFC 8915 section 5.3 asks for at least 32 bytes).
	UniqueIDLen = 32
	// authNonceLen is the nonce this package puts in an authenticator.
	authNonceLen = 16
	// minNonceFieldLen is N_REQ of RFC 8915 section 5.6 for AES-SIV:
	// the padded nonce plus additional padding of a request is at least
	// this long.
	minNonceFieldLen = 16
	// MaxPlaceholders is the most cookie placeholders a request may carry
	// and count (RFC 8915 section 5.7: a client sends at most seven).
	MaxPlaceholders = 7
)

// pad4 rounds n up to a multiple of 4.
func pad4(n int) int { return (n + 3) &^ 3 }

// appendField appends one extension field, its body zero-padded to a
// multiple of 4 bytes.
func appendField(dst []byte, typ uint16, body []byte) []byte {
	n := 4 + pad4(len(body))
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = append(dst, body...)
	return appendZeros(dst, pad4(len(body))-len(body))
}

func appendZeros(dst []byte, n int) []byte {
	for range n {
		dst = append(dst, 0)
	}
	return dst
}

// field is one extension field: off is where it starts in the packet (or
// the plaintext), body excludes the 4-byte header.
type field struct {
	typ  uint16
	off  int
	body []byte
}

// nextField reads the field at b[off:]. Fields are at least 4 bytes and a
// multiple of 4 (RFC 7822; RFC 8915 allows short fields inside the
// encrypted part, and this reader allows them outside too).
func nextField(b []byte, off int) (field, error) {
	rest := b[off:]
	if len(rest) < 4 {
		return field{}, fmt.Errorf("%d stray bytes at offset %d: %w", len(rest), off, ErrMalformed)
	}
	typ := binary.BigEndian.Uint16(rest)
	n := int(binary.BigEndian.Uint16(rest[2:]))
	if n < 4 || n%4 != 0 || n > len(rest) {
		return field{}, fmt.Errorf("field %#04x at offset %d has length %d with %d bytes left: %w", typ, off, n, len(rest), ErrMalformed)
	}
	return field{typ: typ, off: off, body: rest[4:n:n]}, nil
}

// authenticator is a parsed NTS Authenticator and Encrypted Extension
// Fields body (RFC 8915 section 5.6).
type authenticator struct {
	nonce, ciphertext []byte
	nonceField        int // padded nonce plus additional padding
}

// parseAuthenticator checks the lengths and that all padding is zero.
func parseAuthenticator(body []byte) (authenticator, error) {
	var a authenticator
	if len(body) < 4 {
		return a, fmt.Errorf("%d-byte authenticator: %w", len(body), ErrMalformed)
	}
	nl := int(binary.BigEndian.Uint16(body))
	cl := int(binary.BigEndian.Uint16(body[2:]))
	rest := body[4:]
	if pad4(nl)+pad4(cl) > len(rest) {
		return a, fmt.Errorf("authenticator nonce %d and ciphertext %d bytes in a %d-byte field: %w", nl, cl, len(body)+4, ErrMalformed)
	}
	if cl < siv.Overhead {
		return a, fmt.Errorf("authenticator ciphertext of %d bytes: %w", cl, ErrMalformed)
	}
	a.nonce = rest[:nl]
	a.ciphertext = rest[pad4(nl) : pad4(nl)+cl]
	if !allZero(rest[nl:pad4(nl)]) || !allZero(rest[pad4(nl)+cl:]) {
		return a, fmt.Errorf("authenticator padding is not zero: %w", ErrMalformed)
	}
	a.nonceField = len(rest) - pad4(cl)
	return a, nil
}

func allZero(b []byte) bool {
	var v byte
	for _, c := range b {
		v |= c
	}
	return v == 0
}

// appendAuthenticator appends an authenticator field sealing plaintext
// with aead over dst[:len(dst)] (the whole packet so far) and nonce. The
// plaintext may be dst's own tail beyond len(dst): see sealInPlace.
func appendAuthenticator(dst []byte, aead *siv.AESSIV, nonce, plaintext []byte) ([]byte, error) {
	start, aad := len(dst), dst
	dst = appendAuthHeader(dst, nonce, len(plaintext))
	ctStart := len(dst)
	out, err := aead.Seal(dst, plaintext, aad, dst[start+8:start+8+len(nonce)])
	if err != nil {
		return aad, fmt.Errorf("seal: %w", err)
	}
	return finishAuth(out, start, ctStart), nil
}

// appendAuthHeader appends the field header, the lengths and the padded
// nonce of an authenticator whose plaintext is ptLen bytes; finishAuth sets
// the field length once the ciphertext follows.
func appendAuthHeader(dst []byte, nonce []byte, ptLen int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, FieldAuthenticator)
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(nonce)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(siv.Overhead+ptLen))
	dst = append(dst, nonce...)
	return appendZeros(dst, pad4(len(nonce))-len(nonce))
}

// finishAuth pads the ciphertext that ends out and writes the length of the
// authenticator field that starts at start.
func finishAuth(out []byte, start, ctStart int) []byte {
	out = appendZeros(out, pad4(len(out)-ctStart)-(len(out)-ctStart))
	binary.BigEndian.PutUint16(out[start+2:], uint16(len(out)-start))
	return out
}

// sealInPlace turns the plaintext dst[ctStart:] (already written after an
// authenticator header made by appendAuthHeader at start) into ciphertext
// and finishes the field; the AAD is dst[:start].
func sealInPlace(dst []byte, aead *siv.AESSIV, start, ctStart int) ([]byte, error) {
	nl := int(binary.BigEndian.Uint16(dst[start+4:]))
	out, err := aead.Seal(dst[:ctStart], dst[ctStart:], dst[:start], dst[start+8:start+8+nl])
	if err != nil {
		return dst[:start], fmt.Errorf("seal: %w", err)
	}
	return finishAuth(out, start, ctStart), nil
}

// packetFields is what a walk over a packet's extension fields found before
// (and including) the authenticator.
type packetFields struct {
	uniqueID     []byte
	cookie       []byte
	cookies      int                  // cookie fields seen
	placeholders [MaxPlaceholders]int // body lengths of the first ones
	nPlaceholder int
	authStart    int // offset of the authenticator field, 0 when none
	auth         authenticator
}

// walkPacket reads the extension fields after the NTP header up to the
// authenticator; what follows it is not authenticated and is ignored
// (RFC 8915 section 5.7). Unknown fields before it are authenticated and
// skipped.
func walkPacket(pkt []byte) (packetFields, error) {
	var pf packetFields
	if len(pkt) < ntpHeaderLen {
		return pf, fmt.Errorf("%d-byte packet, shorter than the NTP header: %w", len(pkt), ErrMalformed)
	}
	if len(pkt) > maxPacketLen {
		return pf, fmt.Errorf("%d-byte packet, longer than %d: %w", len(pkt), maxPacketLen, ErrMalformed)
	}
	off := ntpHeaderLen
	for i := 0; off < len(pkt); i++ {
		if i == maxFields {
			return pf, fmt.Errorf("more than %d extension fields: %w", maxFields, ErrMalformed)
		}
		f, err := nextField(pkt, off)
		if err != nil {
			return pf, err
		}
		switch f.typ {
		case FieldUniqueID:
			if pf.uniqueID != nil {
				return pf, fmt.Errorf("two unique identifiers: %w", ErrMalformed)
			}
			pf.uniqueID = f.body
		case FieldCookie:
			pf.cookies++
			pf.cookie = f.body
		case FieldCookiePlaceholder:
			if pf.nPlaceholder < MaxPlaceholders {
				pf.placeholders[pf.nPlaceholder] = len(f.body)
				pf.nPlaceholder++
			}
		case FieldAuthenticator:
			a, err := parseAuthenticator(f.body)
			if err != nil {
				return pf, err
			}
			pf.auth, pf.authStart = a, off
			return pf, nil
		}
		off += 4 + len(f.body)
	}
	return pf, nil
}

// walkPlaintext calls fn for each field of a decrypted part.
func walkPlaintext(pt []byte, fn func(f field) error) error {
	for i, off := 0, 0; off < len(pt); i++ {
		if i == maxFields {
			return fmt.Errorf("more than %d encrypted extension fields: %w", maxFields, ErrMalformed)
		}
		f, err := nextField(pt, off)
		if err != nil {
			return fmt.Errorf("encrypted part: %w", err)
		}
		if err := fn(f); err != nil {
			return err
		}
		off += 4 + len(f.body)
	}
	return nil
}
