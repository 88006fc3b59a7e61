package nts

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/timed-project/timed/nts/internal/siv"
)

// maxCookieLen bounds the cookies a client sends: with seven placeholders
// the request stays well below 1280 bytes for cookies up to this length.
const maxCookieLen = 128

// UniqueID is the unique identifier of one NTS request.
type UniqueID [UniqueIDLen]byte

// ClientSession holds the keys of one NTS-KE exchange on the client: it
// builds requests and verifies their responses. It is safe for concurrent
// use. Keeping the cookies, using each once and starting a new exchange on
// ErrNAK are the caller's.
type ClientSession struct {
	c2s, s2c *siv.AESSIV
}

// NewClientSession prepares the keys that NTS-KE exported for aead.
func NewClientSession(aead uint16, c2s, s2c []byte) (*ClientSession, error) {
	keys, err := keysOf(aead, c2s, s2c)
	if err != nil {
		return nil, err
	}
	defer clear(keys.C2S[:])
	defer clear(keys.S2C[:])
	s := &ClientSession{}
	if s.c2s, err = siv.New(keys.C2S[:]); err != nil {
		return nil, fmt.Errorf("nts: C2S key: %w", err)
	}
	if s.s2c, err = siv.New(keys.S2C[:]); err != nil {
		return nil, fmt.Errorf("nts: S2C key: %w", err)
	}
	return s, nil
}

// AppendRequest appends to dst, which holds the NTP request so far (its
// 48-byte header, perhaps other extension fields), the NTS fields of RFC
// 8915 section 5.7: a fresh unique identifier, the cookie, placeholders
// cookie placeholders (0 to MaxPlaceholders, each as long as the cookie)
// and the authenticator sealing everything before it with the C2S key. It
// returns the packet and the identifier the response must echo.
func (s *ClientSession) AppendRequest(dst, cookie []byte, placeholders int) ([]byte, UniqueID, error) {
	var random [UniqueIDLen + authNonceLen]byte
	if _, err := rand.Read(random[:]); err != nil {
		return dst, UniqueID{}, fmt.Errorf("nts: request: unique identifier: %w", err)
	}
	return s.appendRequest(dst, cookie, placeholders, &random)
}

// appendRequest is AppendRequest with the unique identifier and the nonce
// given (in that order in random).
func (s *ClientSession) appendRequest(dst, cookie []byte, placeholders int, random *[UniqueIDLen + authNonceLen]byte) ([]byte, UniqueID, error) {
	var id UniqueID
	if len(dst) < ntpHeaderLen {
		return dst, id, fmt.Errorf("nts: request: %d bytes before the NTS fields, want the %d-byte NTP header", len(dst), ntpHeaderLen)
	}
	if len(cookie) == 0 || len(cookie) > maxCookieLen {
		return dst, id, fmt.Errorf("nts: request: %d-byte cookie, want 1..%d", len(cookie), maxCookieLen)
	}
	if placeholders < 0 || placeholders > MaxPlaceholders {
		return dst, id, fmt.Errorf("nts: request: %d cookie placeholders, want 0..%d", placeholders, MaxPlaceholders)
	}
	size := len(dst) + RequestFieldsLen(len(cookie), placeholders)
	ef := 4 + pad4(len(cookie))
	if size > maxPacketLen {
		return dst, id, fmt.Errorf("nts: request of %d bytes, longer than %d", size, maxPacketLen)
	}
	copy(id[:], random[:UniqueIDLen])
	orig := len(dst)
	dst = slices.Grow(dst, size-len(dst))
	dst = appendField(dst, FieldUniqueID, id[:])
	dst = appendField(dst, FieldCookie, cookie)
	for range placeholders {
		dst = binaryAppendHeader(dst, FieldCookiePlaceholder, ef)
		dst = appendZeros(dst, ef-4)
	}
	out, err := appendAuthenticator(dst, s.c2s, random[UniqueIDLen:], nil)
	if err != nil {
		return dst[:orig], id, fmt.Errorf("nts: request: %w", err)
	}
	return out, id, nil
}

// RequestFieldsLen is the length of the NTS fields AppendRequest appends
// for a cookie of cookieLen bytes and that many placeholders.
func RequestFieldsLen(cookieLen, placeholders int) int {
	ef := 4 + pad4(cookieLen)
	return 4 + UniqueIDLen + ef*(1+placeholders) + 8 + authNonceLen + siv.Overhead
}

// binaryAppendHeader appends an extension field header of total length n.
func binaryAppendHeader(dst []byte, typ uint16, n int) []byte {
	return append(dst, byte(typ>>8), byte(typ), byte(n>>8), byte(n))
}

// VerifyResponse checks a response to the request that carried id: the
// unique identifier must be echoed (else ErrUniqueIDMismatch: replayed, or
// an answer to a request never sent) and the authenticator must verify
// with the S2C key (else ErrAuth). It returns the new cookies from the
// encrypted fields; they do not alias pkt. An NTS NAK (kiss code NTSN with
// this id and no authenticator) gives ErrNAK. Mode, origin timestamp and
// the rest of the NTP header are the caller's to check.
func (s *ClientSession) VerifyResponse(pkt []byte, id UniqueID) ([][]byte, error) {
	pf, err := walkPacket(pkt)
	if err != nil {
		return nil, fmt.Errorf("nts: response: %w", err)
	}
	if pf.uniqueID == nil {
		return nil, fmt.Errorf("nts: response: %w", ErrNoUniqueID)
	}
	if !bytes.Equal(pf.uniqueID, id[:]) {
		return nil, fmt.Errorf("nts: response: %w", ErrUniqueIDMismatch)
	}
	if pf.authStart == 0 {
		if pkt[1] == 0 && string(pkt[12:16]) == "NTSN" {
			return nil, fmt.Errorf("nts: response: %w", ErrNAK)
		}
		return nil, fmt.Errorf("nts: response: %w", ErrNoAuthenticator)
	}
	pt, err := s.s2c.Open(nil, pf.auth.ciphertext, pkt[:pf.authStart], pf.auth.nonce)
	if err != nil {
		return nil, fmt.Errorf("nts: response: %w", ErrAuth)
	}
	var cookies [][]byte
	err = walkPlaintext(pt, func(f field) error {
		if f.typ == FieldCookie && len(f.body) > 0 && len(cookies) <= MaxPlaceholders {
			cookies = append(cookies, f.body)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nts: response: %w", err)
	}
	return cookies, nil
}
