package nts

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/timed-project/timed/nts/internal/siv"
)

// AEADAESSIVCMAC256 is the IANA id of AEAD_AES_SIV_CMAC_256, the only AEAD
// this package seals NTP packets with (RFC 8915 section 5.1 makes it
// mandatory).
const AEADAESSIVCMAC256 uint16 = 15

// A cookie is
//
//	key id (4) | nonce (16) | AES-SIV(key, AD = key id, nonce; plaintext)
//
// where the plaintext is the AEAD id (2), C2S, S2C and two zero bytes, so
// that the cookie is a whole number of 32-bit words (RFC 7822 fields are)
// and needs no padding on the wire: 104 bytes for AES-SIV-CMAC-256.
const (
	cookieNonceLen     = 16
	cookieHeaderLen    = 4 + cookieNonceLen
	cookiePlaintextLen = 2 + 2*KeySize + 2
	// CookieLen is the length of the cookies this package makes.
	CookieLen = cookieHeaderLen + siv.Overhead + cookiePlaintextLen
)

// CookieKeys are what a cookie carries: the AEAD algorithm and the two keys
// of one NTS-KE session.
type CookieKeys struct {
	AEAD     uint16
	C2S, S2C [KeySize]byte
}

// keysOf checks the AEAD and key lengths of an NTS-KE session.
func keysOf(aead uint16, c2s, s2c []byte) (CookieKeys, error) {
	var k CookieKeys
	if aead != AEADAESSIVCMAC256 {
		return k, fmt.Errorf("nts: AEAD %d: %w", aead, ErrUnsupportedAEAD)
	}
	if len(c2s) != KeySize || len(s2c) != KeySize {
		return k, fmt.Errorf("nts: AEAD %d keys are %d bytes, got %d and %d", aead, KeySize, len(c2s), len(s2c))
	}
	k.AEAD = aead
	copy(k.C2S[:], c2s)
	copy(k.S2C[:], s2c)
	return k, nil
}

// SealCookie seals keys into a new cookie with the current key.
func (r *KeyRing) SealCookie(keys *CookieKeys) ([]byte, error) {
	k, err := r.sealKey()
	if err != nil {
		return nil, fmt.Errorf("nts: seal cookie: %w", err)
	}
	var nonce [cookieNonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("nts: cookie nonce: %w", err)
	}
	c, err := appendCookie(make([]byte, 0, CookieLen), k, keys, nonce[:])
	if err != nil {
		return nil, fmt.Errorf("nts: seal cookie: %w", err)
	}
	return c, nil
}

// sealKey returns the current key.
func (r *KeyRing) sealKey() (*cookieKey, error) {
	r.mu.RLock()
	k := r.current()
	r.mu.RUnlock()
	if k == nil {
		return nil, ErrNoKey
	}
	return k, nil
}

// appendCookie appends a cookie sealed with k and nonce.
func appendCookie(dst []byte, k *cookieKey, keys *CookieKeys, nonce []byte) ([]byte, error) {
	if keys.AEAD != AEADAESSIVCMAC256 {
		return dst, fmt.Errorf("AEAD %d: %w", keys.AEAD, ErrUnsupportedAEAD)
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, k.id)
	dst = append(dst, nonce...)
	var pt [cookiePlaintextLen]byte
	binary.BigEndian.PutUint16(pt[:], keys.AEAD)
	copy(pt[2:], keys.C2S[:])
	copy(pt[2+KeySize:], keys.S2C[:])
	out, err := k.aead.Seal(dst, pt[:], dst[start:start+4], dst[start+4:start+cookieHeaderLen])
	clear(pt[:])
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

// OpenCookie recovers the keys sealed in a cookie. A cookie of the wrong
// length gives ErrCookieMalformed, one sealed with a key the ring does not
// hold ErrRetiredKey or ErrUnknownKey, and one that does not authenticate
// ErrCookieAuth.
func (r *KeyRing) OpenCookie(cookie []byte) (CookieKeys, error) {
	keys, err := r.openCookie(cookie)
	if err != nil {
		return keys, fmt.Errorf("nts: %w", err)
	}
	return keys, nil
}

func (r *KeyRing) openCookie(cookie []byte) (CookieKeys, error) {
	var keys CookieKeys
	if len(cookie) != CookieLen {
		return keys, fmt.Errorf("%d-byte cookie, want %d: %w", len(cookie), CookieLen, ErrCookieMalformed)
	}
	id := binary.BigEndian.Uint32(cookie)
	r.mu.RLock()
	k, err := r.lookup(id)
	r.mu.RUnlock()
	if err != nil {
		return keys, err
	}
	var buf [cookiePlaintextLen]byte
	pt, err := k.aead.Open(buf[:0], cookie[cookieHeaderLen:], cookie[:4], cookie[4:cookieHeaderLen])
	if err != nil || len(pt) != cookiePlaintextLen {
		return keys, fmt.Errorf("cookie key %08x: %w", id, ErrCookieAuth)
	}
	defer clear(buf[:])
	keys.AEAD = binary.BigEndian.Uint16(pt)
	if keys.AEAD != AEADAESSIVCMAC256 {
		// Authentic, so sealed by a server with the same keys but a
		// newer AEAD than this one knows.
		return keys, fmt.Errorf("cookie for AEAD %d: %w", keys.AEAD, ErrUnsupportedAEAD)
	}
	copy(keys.C2S[:], pt[2:])
	copy(keys.S2C[:], pt[2+KeySize:])
	return keys, nil
}

// MakeCookies seals n cookies for the keys of one NTS-KE session: the
// CookieMaker the NTS-KE server (nts/ke) calls.
func (r *KeyRing) MakeCookies(aead uint16, c2s, s2c []byte, n int) ([][]byte, error) {
	if n < 0 || n > 64 {
		return nil, fmt.Errorf("nts: %d cookies asked for, want 0..64", n)
	}
	keys, err := keysOf(aead, c2s, s2c)
	if err != nil {
		return nil, err
	}
	defer clear(keys.C2S[:])
	defer clear(keys.S2C[:])
	k, err := r.sealKey()
	if err != nil {
		return nil, fmt.Errorf("nts: make cookies: %w", err)
	}
	nonces := make([]byte, n*cookieNonceLen)
	if _, err := rand.Read(nonces); err != nil {
		return nil, fmt.Errorf("nts: cookie nonces: %w", err)
	}
	buf := make([]byte, 0, n*CookieLen)
	cookies := make([][]byte, n)
	for i := range cookies {
		start := len(buf)
		buf, err = appendCookie(buf, k, &keys, nonces[i*cookieNonceLen:(i+1)*cookieNonceLen])
		if err != nil {
			return nil, fmt.Errorf("nts: make cookies: %w", err)
		}
		cookies[i] = buf[start:len(buf):len(buf)]
	}
	return cookies, nil
}
