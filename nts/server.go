package nts

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/timed-project/timed/nts/internal/siv"
)

// maxResponseCookies bounds the cookies one response carries: the cookie
// the request spent and MaxPlaceholders more.
const maxResponseCookies = 1 + MaxPlaceholders

// Request is an NTS-protected NTP request the server has authenticated
// with ReadRequest.
type Request struct {
	// UniqueID is the request's unique identifier (aliasing the packet). It
	// is set whenever the request had a well-formed one, also when
	// ReadRequest fails, so that the server can answer with an NTS NAK
	// (AppendNAK).
	UniqueID []byte

	keys    CookieKeys
	s2c     *siv.AESSIV
	cookies int // how many new cookies the response should carry
	size    int // length of the request, which the response must not exceed
}

// Cookies is the number of new cookies the response asks for: one for the
// cookie spent and one per valid placeholder.
func (req *Request) Cookies() int { return req.cookies }

// ReadRequest reads and authenticates the NTS fields of an NTP request pkt
// (from its 48-byte header on): exactly one unique identifier of at least
// 32 bytes, exactly one cookie, which must open with ring, and an
// authenticator that verifies with the cookie's C2S key. Placeholders count
// when their body is as long as the cookie (RFC 8915 section 5.5), at most
// MaxPlaceholders. Fields after the authenticator are ignored. Errors match
// ErrMalformed, ErrNoUniqueID, ErrNoCookie, ErrNoAuthenticator, ErrAuth or
// a cookie error (ErrCookieMalformed, ErrUnknownKey, ErrRetiredKey,
// ErrCookieAuth, ErrUnsupportedAEAD); answer those with cookie or
// authentication errors with an NTS NAK. Replayed requests and reused cookies
// are not detected here: that is the NTP server's job.
func ReadRequest(pkt []byte, ring *KeyRing) (Request, error) {
	var req Request
	pf, err := walkPacket(pkt)
	if err != nil {
		return req, fmt.Errorf("nts: request: %w", err)
	}
	if pf.uniqueID == nil {
		return req, fmt.Errorf("nts: request: %w", ErrNoUniqueID)
	}
	if len(pf.uniqueID) < UniqueIDLen {
		return req, fmt.Errorf("nts: request: %d-byte unique identifier, want at least %d: %w", len(pf.uniqueID), UniqueIDLen, ErrMalformed)
	}
	req.UniqueID = pf.uniqueID
	if pf.authStart == 0 {
		return req, fmt.Errorf("nts: request: %w", ErrNoAuthenticator)
	}
	switch {
	case pf.cookies == 0:
		return req, fmt.Errorf("nts: request: %w", ErrNoCookie)
	case pf.cookies > 1:
		return req, fmt.Errorf("nts: request: %d cookies, want one: %w", pf.cookies, ErrMalformed)
	}
	if pf.auth.nonceField < minNonceFieldLen {
		return req, fmt.Errorf("nts: request: authenticator nonce and padding of %d bytes, want at least %d: %w", pf.auth.nonceField, minNonceFieldLen, ErrMalformed)
	}
	req.keys, err = ring.openCookie(pf.cookie)
	if err != nil {
		return req, fmt.Errorf("nts: request: %w", err)
	}
	ciphers, err := ring.sessions.ciphers(&req.keys)
	if err != nil {
		return req, fmt.Errorf("nts: request: %w", err)
	}
	pt, err := ciphers.c2s.Open(nil, pf.auth.ciphertext, pkt[:pf.authStart], pf.auth.nonce)
	if err != nil {
		return req, fmt.Errorf("nts: request: %w", ErrAuth)
	}
	valid := 0
	for _, n := range pf.placeholders[:pf.nPlaceholder] {
		if n == len(pf.cookie) {
			valid++
		}
	}
	err = walkPlaintext(pt, func(f field) error {
		if f.typ == FieldCookiePlaceholder && len(f.body) == len(pf.cookie) {
			valid++
		}
		return nil
	})
	if err != nil {
		return req, fmt.Errorf("nts: request: %w", err)
	}
	req.s2c = ciphers.s2c
	req.cookies = min(1+valid, maxResponseCookies)
	req.size = len(pkt)
	return req, nil
}

// WantsNAK reports whether err, from ReadRequest, calls for an NTS NAK: the
// cookie could not be used or the request did not authenticate (RFC 8915
// section 5.7). Malformed requests get no answer.
func WantsNAK(err error) bool {
	for _, e := range []error{ErrUnknownKey, ErrRetiredKey, ErrCookieAuth, ErrCookieMalformed, ErrUnsupportedAEAD, ErrAuth} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errTooLarge is returned when not even a response without cookies fits in
// the request's length.
var errTooLarge = errors.New("response would be larger than the request")

// AppendResponse appends to dst, the response so far (its 48-byte NTP
// header, perhaps other fields to authenticate), the NTS fields of the
// answer: the unique identifier, then the authenticator sealing with the S2C
// key new cookies from ring (as many as asked for that fit: the response is
// never longer than the request). dst may be the request's own buffer,
// its first 48 bytes rewritten as the response header: the response fits.
func (req *Request) AppendResponse(dst []byte, ring *KeyRing) ([]byte, error) {
	if req.s2c == nil {
		return dst, fmt.Errorf("nts: response: request not authenticated")
	}
	if len(dst) < ntpHeaderLen {
		return dst, fmt.Errorf("nts: response: %d bytes before the NTS fields, want the %d-byte NTP header", len(dst), ntpHeaderLen)
	}
	k, err := ring.sealKey()
	if err != nil {
		return dst, fmt.Errorf("nts: response: %w", err)
	}
	orig := len(dst)
	fixed := orig + 4 + pad4(len(req.UniqueID)) + 8 + authNonceLen + siv.Overhead
	if fixed > req.size {
		return dst, fmt.Errorf("nts: %d-byte request: %w", req.size, errTooLarge)
	}
	const perCookie = 4 + CookieLen
	n := min(req.cookies, (req.size-fixed)/perCookie)
	var random [authNonceLen + maxResponseCookies*cookieNonceLen]byte
	if _, err := rand.Read(random[:authNonceLen+n*cookieNonceLen]); err != nil {
		return dst, fmt.Errorf("nts: response: nonces: %w", err)
	}
	dst = slices.Grow(dst, fixed+n*perCookie-orig)
	dst = appendField(dst, FieldUniqueID, req.UniqueID)
	start := len(dst)
	dst = appendAuthHeader(dst, random[:authNonceLen], n*perCookie)
	ctStart := len(dst)
	for i := range n {
		dst = binaryAppendHeader(dst, FieldCookie, perCookie)
		nonce := random[authNonceLen+i*cookieNonceLen : authNonceLen+(i+1)*cookieNonceLen]
		if dst, err = appendCookie(dst, k, &req.keys, nonce); err != nil {
			return dst[:orig], fmt.Errorf("nts: response: %w", err)
		}
	}
	out, err := sealInPlace(dst, req.s2c, start, ctStart)
	if err != nil {
		return dst[:orig], fmt.Errorf("nts: response: %w", err)
	}
	return out, nil
}

// AppendNAK appends the extension field of an NTS NAK (RFC 8915 section
// 5.7) to dst, the response's header: the request's unique identifier
// alone. The caller makes the header a kiss-of-death with code "NTSN"
// (stratum 0). uniqueID is Request.UniqueID as ReadRequest left it; without
// one no NAK can be sent.
func AppendNAK(dst, uniqueID []byte) []byte {
	return appendField(dst, FieldUniqueID, uniqueID)
}
