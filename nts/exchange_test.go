package nts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/facebook/time/ntp/protocol/nts/aessiv"
)

// ntpHeader returns a 48-byte NTPv4 header of the given mode, stratum and
// reference id, with a transmit timestamp.
func ntpHeader(mode, stratum byte, refID string) []byte {
	h := make([]byte, ntpHeaderLen, 1024)
	h[0] = 4<<3 | mode
	h[1] = stratum
	copy(h[12:16], refID)
	binary.BigEndian.PutUint64(h[40:], 0xeb12_3456_789a_bcde)
	return h
}

type setup struct {
	ring   *KeyRing
	keys   CookieKeys
	sess   *ClientSession
	cookie []byte
}

func newSetup(t testing.TB) setup {
	t.Helper()
	s := setup{ring: fixedRing(t, 0x1234, 1), keys: testKeys()}
	var err error
	if s.sess, err = NewClientSession(AEADAESSIVCMAC256, s.keys.C2S[:], s.keys.S2C[:]); err != nil {
		t.Fatal(err)
	}
	var nonce [cookieNonceLen]byte
	if s.cookie, err = appendCookie(nil, s.ring.keys[0], &s.keys, nonce[:]); err != nil {
		t.Fatal(err)
	}
	return s
}

// request makes a request with a fixed unique id and nonce (for fuzz seeds).
func (s setup) request(t testing.TB, placeholders int) ([]byte, UniqueID) {
	t.Helper()
	var random [UniqueIDLen + authNonceLen]byte
	for i := range random {
		random[i] = byte(i + placeholders)
	}
	req, id, err := s.sess.appendRequest(ntpHeader(3, 0, ""), s.cookie, placeholders, &random)
	if err != nil {
		t.Fatal(err)
	}
	return req, id
}

// serve answers a request as the server does.
func (s setup) serve(t testing.TB, req []byte) []byte {
	t.Helper()
	r, err := ReadRequest(req, s.ring)
	if err != nil {
		t.Fatalf("ReadRequest: %v", err)
	}
	resp, err := r.AppendResponse(ntpHeader(4, 2, "GPS"), s.ring)
	if err != nil {
		t.Fatalf("AppendResponse: %v", err)
	}
	return resp
}

func TestRoundTrip(t *testing.T) {
	s := newSetup(t)
	for p := 0; p <= MaxPlaceholders; p++ {
		t.Run(fmt.Sprintf("%d placeholders", p), func(t *testing.T) {
			req, id, err := s.sess.AppendRequest(ntpHeader(3, 0, ""), s.cookie, p)
			if err != nil {
				t.Fatal(err)
			}
			if want := ntpHeaderLen + 36 + (1+p)*108 + 40; len(req) != want {
				t.Errorf("request of %d bytes, want %d", len(req), want)
			}
			r, err := ReadRequest(req, s.ring)
			if err != nil {
				t.Fatal(err)
			}
			if r.Cookies() != p+1 || !bytes.Equal(r.UniqueID, id[:]) {
				t.Errorf("server sees %d cookies asked, unique id %x; want %d, %x", r.Cookies(), r.UniqueID, p+1, id)
			}
			resp, err := r.AppendResponse(ntpHeader(4, 2, "GPS"), s.ring)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp) > len(req) || len(resp)%4 != 0 {
				t.Errorf("response of %d bytes for a request of %d", len(resp), len(req))
			}
			cookies, err := s.sess.VerifyResponse(resp, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(cookies) != p+1 {
				t.Fatalf("%d new cookies, want %d", len(cookies), p+1)
			}
			for _, c := range cookies {
				if got, err := s.ring.OpenCookie(c); err != nil || got != s.keys {
					t.Errorf("new cookie does not carry the session's keys: %v", err)
				}
				if bytes.Contains(resp, c) {
					t.Error("new cookie shows in the clear in the response")
				}
			}
			// A new cookie makes the next request.
			req2, id2, err := s.sess.AppendRequest(ntpHeader(3, 0, ""), cookies[0], 0)
			if err != nil {
				t.Fatal(err)
			}
			if id2 == id {
				t.Error("unique identifier repeated")
			}
			if _, err := s.sess.VerifyResponse(s.serve(t, req2), id2); err != nil {
				t.Errorf("second exchange: %v", err)
			}
		})
	}
}

func TestClientRequestArguments(t *testing.T) {
	s := newSetup(t)
	tests := []struct {
		name         string
		dst, cookie  []byte
		placeholders int
	}{
		{"no header", nil, s.cookie, 0},
		{"empty cookie", ntpHeader(3, 0, ""), nil, 0},
		{"huge cookie", ntpHeader(3, 0, ""), make([]byte, 129), 0},
		{"eight placeholders", ntpHeader(3, 0, ""), s.cookie, 8},
		{"negative placeholders", ntpHeader(3, 0, ""), s.cookie, -1},
		{"too long", make([]byte, 1900), s.cookie, 1},
	}
	for _, tt := range tests {
		if _, _, err := s.sess.AppendRequest(tt.dst, tt.cookie, tt.placeholders); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	if _, err := NewClientSession(30, s.keys.C2S[:16], s.keys.S2C[:16]); !errors.Is(err, ErrUnsupportedAEAD) {
		t.Errorf("AEAD 30: %v", err)
	}
	if _, err := NewClientSession(AEADAESSIVCMAC256, s.keys.C2S[:], nil); err == nil {
		t.Error("no S2C key: no error")
	}
}

func TestTamperedRequest(t *testing.T) {
	s := newSetup(t)
	req, _ := s.request(t, 2)
	for i := range req {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(req)
			b[i] ^= mask
			if _, err := ReadRequest(b, s.ring); err == nil {
				t.Errorf("byte %d ^ %#x accepted", i, mask)
			}
		}
	}
	for n := range len(req) {
		if _, err := ReadRequest(req[:n], s.ring); err == nil {
			t.Errorf("request cut to %d bytes accepted", n)
		}
	}
}

func TestTamperedResponse(t *testing.T) {
	s := newSetup(t)
	req, id := s.request(t, 2)
	resp := s.serve(t, req)
	for i := range resp {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(resp)
			b[i] ^= mask
			if _, err := s.sess.VerifyResponse(b, id); err == nil {
				t.Errorf("byte %d ^ %#x accepted", i, mask)
			}
		}
	}
	for n := range len(resp) {
		if _, err := s.sess.VerifyResponse(resp[:n], id); err == nil {
			t.Errorf("response cut to %d bytes accepted", n)
		}
	}
}

func TestResponseRejected(t *testing.T) {
	s := newSetup(t)
	req1, id1, _ := s.sess.AppendRequest(ntpHeader(3, 0, ""), s.cookie, 0)
	resp1 := s.serve(t, req1)
	_, id2, _ := s.sess.AppendRequest(ntpHeader(3, 0, ""), s.cookie, 0)

	other := testKeys()
	other.S2C[0] ^= 1
	wrongS2C, err := NewClientSession(AEADAESSIVCMAC256, other.C2S[:], other.S2C[:])
	if err != nil {
		t.Fatal(err)
	}
	nak := AppendNAK(ntpHeader(4, 0, "NTSN"), id1[:])
	kissWithoutNAK := AppendNAK(ntpHeader(4, 0, "RATE"), id1[:])
	unprotected := ntpHeader(4, 2, "GPS")
	junkAfter := append(bytes.Clone(resp1), 0x99, 0x99, 0, 8, 1, 2, 3, 4)

	tests := []struct {
		name string
		sess *ClientSession
		resp []byte
		id   UniqueID
		want error
	}{
		{"replayed (answers another request)", s.sess, resp1, id2, ErrUniqueIDMismatch},
		{"wrong S2C key", wrongS2C, resp1, id1, ErrAuth},
		{"NTS NAK", s.sess, nak, id1, ErrNAK},
		{"NTS NAK for another request", s.sess, nak, id2, ErrUniqueIDMismatch},
		{"other kiss without authenticator", s.sess, kissWithoutNAK, id1, ErrNoAuthenticator},
		{"unprotected", s.sess, unprotected, id1, ErrNoUniqueID},
		{"a request", s.sess, req1, id1, ErrAuth},
		{"garbage after the header", s.sess, append(ntpHeader(4, 2, ""), 1, 2, 3), id1, ErrMalformed},
		{"unauthenticated field after the authenticator", s.sess, junkAfter, id1, nil},
	}
	for _, tt := range tests {
		_, err := tt.sess.VerifyResponse(tt.resp, tt.id)
		if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// ef is an extension field for customRequest.
type ef struct {
	typ  uint16
	body []byte
}

// customRequest builds a request field by field: plain fields, an
// authenticator (unless nonce is nil) with the given encrypted fields and
// additional padding, then trailing bytes.
func customRequest(c2s *aessiv.AESSIV, fields []ef, nonce []byte, encrypted []ef, addPad int, trailer []byte) []byte {
	b := ntpHeader(3, 0, "")
	for _, f := range fields {
		b = appendField(b, f.typ, f.body)
	}
	if nonce != nil {
		var pt []byte
		for _, f := range encrypted {
			if f.typ == 0 { // raw bytes, to break the framing
				pt = append(pt, f.body...)
				continue
			}
			pt = appendField(pt, f.typ, f.body)
		}
		start := len(b)
		b = appendAuthHeader(b, nonce, len(pt))
		ctStart := len(b)
		b, _ = c2s.Seal(b, pt, b[:start], b[start+8:start+8+len(nonce)])
		b = finishAuth(b, start, ctStart)
		b = appendZeros(b, addPad)
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return append(b, trailer...)
}

func TestReadRequest(t *testing.T) {
	s := newSetup(t)
	c2s, _ := aessiv.NewAESSIV(s.keys.C2S[:])
	otherC2S := s.keys.C2S
	otherC2S[5] ^= 1
	wrongC2S, _ := aessiv.NewAESSIV(otherC2S[:])
	uid := bytes.Repeat([]byte{0xaa}, UniqueIDLen)
	nonce := bytes.Repeat([]byte{0x55}, 16)
	ph := ef{FieldCookiePlaceholder, make([]byte, len(s.cookie))}
	cookie := ef{FieldCookie, s.cookie}
	id := ef{FieldUniqueID, uid}
	many := []ef{id, cookie}
	for range 9 {
		many = append(many, ph)
	}
	var fields33 []ef
	for range 31 {
		fields33 = append(fields33, ef{0x7777, make([]byte, 12)})
	}

	tests := []struct {
		name    string
		req     []byte
		want    error // nil: accepted
		cookies int
	}{
		{"minimal", customRequest(c2s, []ef{id, cookie}, nonce, nil, 0, nil), nil, 1},
		{"two placeholders", customRequest(c2s, []ef{id, cookie, ph, ph}, nonce, nil, 0, nil), nil, 3},
		{"placeholders first", customRequest(c2s, []ef{ph, ph, id, cookie}, nonce, nil, 0, nil), nil, 3},
		{"nine placeholders count as seven", customRequest(c2s, many, nonce, nil, 0, nil), nil, 8},
		{"placeholder of another length", customRequest(c2s, []ef{id, cookie, {FieldCookiePlaceholder, make([]byte, 16)}}, nonce, nil, 0, nil), nil, 1},
		{"encrypted placeholders", customRequest(c2s, []ef{id, cookie}, nonce, []ef{ph, ph}, 0, nil), nil, 3},
		{"unknown field authenticated", customRequest(c2s, []ef{id, {0x7777, make([]byte, 12)}, cookie}, nonce, nil, 0, nil), nil, 1},
		{"field after the authenticator", customRequest(c2s, []ef{id, cookie}, nonce, nil, 0, []byte{0x77, 0x77, 0, 8, 1, 2, 3, 4}), nil, 1},
		{"short nonce, padded", customRequest(c2s, []ef{id, cookie}, nonce[:8], nil, 8, nil), nil, 1},
		{"odd nonce, padded", customRequest(c2s, []ef{id, cookie}, nonce[:5], nil, 8, nil), nil, 1},
		{"short nonce, unpadded", customRequest(c2s, []ef{id, cookie}, nonce[:8], nil, 0, nil), ErrMalformed, 0},
		{"encrypted part malformed", customRequest(c2s, []ef{id, cookie}, nonce, []ef{{0, []byte{1, 2}}}, 0, nil), ErrMalformed, 0},
		{"no unique id", customRequest(c2s, []ef{cookie}, nonce, nil, 0, nil), ErrNoUniqueID, 0},
		{"short unique id", customRequest(c2s, []ef{{FieldUniqueID, uid[:16]}, cookie}, nonce, nil, 0, nil), ErrMalformed, 0},
		{"two unique ids", customRequest(c2s, []ef{id, id, cookie}, nonce, nil, 0, nil), ErrMalformed, 0},
		{"no cookie", customRequest(c2s, []ef{id, ph}, nonce, nil, 0, nil), ErrNoCookie, 0},
		{"two cookies", customRequest(c2s, []ef{id, cookie, cookie}, nonce, nil, 0, nil), ErrMalformed, 0},
		{"cookie only encrypted", customRequest(c2s, []ef{id}, nonce, []ef{cookie}, 0, nil), ErrNoCookie, 0},
		{"no authenticator", customRequest(c2s, []ef{id, cookie}, nil, nil, 0, nil), ErrNoAuthenticator, 0},
		{"wrong C2S key", customRequest(wrongC2S, []ef{id, cookie}, nonce, nil, 0, nil), ErrAuth, 0},
		{"stray bytes", customRequest(c2s, []ef{id, cookie}, nil, nil, 0, []byte{1, 2}), ErrMalformed, 0},
		{"33 fields", customRequest(c2s, append([]ef{id, cookie}, fields33...), nonce, nil, 0, nil), ErrMalformed, 0},
		{"too long", customRequest(c2s, []ef{id, cookie, {0x7777, make([]byte, 2000)}}, nonce, nil, 0, nil), ErrMalformed, 0},
		{"shorter than a header", make([]byte, 47), ErrMalformed, 0},
		{"header only", ntpHeader(3, 0, ""), ErrNoUniqueID, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadRequest(tt.req, s.ring)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("%v, want %v", err, tt.want)
				}
				if WantsNAK(err) != (tt.want == ErrAuth) {
					t.Errorf("WantsNAK(%v) = %v", err, WantsNAK(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Cookies() != tt.cookies {
				t.Errorf("%d cookies asked for, want %d", r.Cookies(), tt.cookies)
			}
			resp, err := r.AppendResponse(ntpHeader(4, 2, "GPS"), s.ring)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp) > len(tt.req) {
				t.Errorf("response of %d bytes for a request of %d", len(resp), len(tt.req))
			}
			cookies, err := s.sess.VerifyResponse(resp, UniqueID(uid))
			if err != nil {
				t.Fatal(err)
			}
			if len(cookies) != tt.cookies {
				t.Errorf("%d cookies in the response, want %d", len(cookies), tt.cookies)
			}
		})
	}
}

func TestReadRequestCookieErrors(t *testing.T) {
	s := newSetup(t)
	req, id := s.request(t, 1)
	retired := fixedRing(t, 0x1234, 1)
	for h := 1; h <= 4; h++ {
		if _, err := retired.Rotate(t0.Add(time.Duration(h) * time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		ring *KeyRing
		want error
	}{
		{"retired key", retired, ErrRetiredKey},
		{"unknown key", fixedRing(t, 0x1000, 1), ErrUnknownKey},
		{"wrong key", fixedRing(t, 0x1234, 9), ErrCookieAuth},
	}
	for _, tt := range tests {
		r, err := ReadRequest(req, tt.ring)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if !WantsNAK(err) || !bytes.Equal(r.UniqueID, id[:]) {
			t.Errorf("%s: WantsNAK %v, unique id %x", tt.name, WantsNAK(err), r.UniqueID)
			continue
		}
		nak := AppendNAK(ntpHeader(4, 0, "NTSN"), r.UniqueID)
		if _, err := s.sess.VerifyResponse(nak, id); !errors.Is(err, ErrNAK) {
			t.Errorf("%s: the client reads the NAK as %v", tt.name, err)
		}
	}
}

func TestResponseNeverLarger(t *testing.T) {
	s := newSetup(t)
	req, id := s.request(t, 3)
	r, err := ReadRequest(req, s.ring)
	if err != nil {
		t.Fatal(err)
	}
	// The NTP server adds fields of its own before the NTS ones: fewer
	// cookies fit.
	tests := []struct {
		extra   int
		cookies int
	}{
		{0, 4},
		{4, 3},
		{108, 3},
		{112, 2},
		{3 * 108, 1},
		{4 * 108, 0},
	}
	for _, tt := range tests {
		h := ntpHeader(4, 2, "GPS")
		if tt.extra > 0 {
			h = appendField(h, 0x7777, make([]byte, tt.extra-4))
		}
		resp, err := r.AppendResponse(h, s.ring)
		if err != nil {
			t.Fatalf("extra %d: %v", tt.extra, err)
		}
		cookies, err := s.sess.VerifyResponse(resp, id)
		if err != nil || len(resp) > len(req) || len(cookies) != tt.cookies {
			t.Errorf("extra %d: %d-byte response to %d, %d cookies (want %d), %v", tt.extra, len(resp), len(req), len(cookies), tt.cookies, err)
		}
	}
	h := appendField(ntpHeader(4, 2, "GPS"), 0x7777, make([]byte, 4*108+4))
	if _, err := r.AppendResponse(h, s.ring); err == nil {
		t.Error("no error when no response fits")
	}
	var zero Request
	if _, err := zero.AppendResponse(ntpHeader(4, 2, "GPS"), s.ring); err == nil {
		t.Error("no error for a request not read")
	}
}

// FuzzReadRequest feeds the server's parser: it must never panic, and what
// it accepts it answers with a response no longer than the request.
func FuzzReadRequest(f *testing.F) {
	s := newSetup(f)
	for p := range 3 {
		req, _ := s.request(f, p)
		f.Add(req)
	}
	f.Add(ntpHeader(3, 0, ""))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := ReadRequest(pkt, s.ring)
		if err != nil {
			return
		}
		resp, err := r.AppendResponse(ntpHeader(4, 2, "GPS"), s.ring)
		if err != nil {
			return
		}
		if len(resp) > len(pkt) {
			t.Fatalf("response of %d bytes to a request of %d", len(resp), len(pkt))
		}
	})
}

// FuzzVerifyResponse feeds the client's verifier with responses to a
// request of a fixed unique id: it must never panic, and only authentic
// responses (which the fuzzer cannot forge) may pass, so every cookie it
// returns is one the server sealed for this session.
func FuzzVerifyResponse(f *testing.F) {
	s := newSetup(f)
	req, id := s.request(f, 2)
	f.Add(s.serve(f, req))
	f.Add(AppendNAK(ntpHeader(4, 0, "NTSN"), id[:]))
	f.Add(req)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		cookies, err := s.sess.VerifyResponse(pkt, id)
		if err != nil {
			return
		}
		if len(cookies) > maxResponseCookies {
			t.Fatalf("%d cookies", len(cookies))
		}
		for _, c := range cookies {
			if keys, err := s.ring.OpenCookie(c); err != nil || keys != s.keys {
				t.Fatalf("a response the server did not make verified: %x", pkt)
			}
		}
	})
}

// BenchmarkServer is the server's work per NTS request: open the cookie,
// verify the authenticator, seal new cookies and the response.
func BenchmarkServer(b *testing.B) {
	s := newSetup(b)
	for _, p := range []int{0, 7} {
		b.Run(fmt.Sprintf("placeholders=%d", p), func(b *testing.B) {
			req, _ := s.request(b, p)
			buf := ntpHeader(4, 2, "GPS")
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := ReadRequest(req, s.ring)
				if err != nil {
					b.Fatal(err)
				}
				if buf, err = r.AppendResponse(buf[:ntpHeaderLen], s.ring); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClient is the client's work per request: build it, verify the
// response.
func BenchmarkClient(b *testing.B) {
	s := newSetup(b)
	req, id := s.request(b, 0)
	resp := s.serve(b, req)
	buf := ntpHeader(3, 0, "")
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, _, err = s.sess.AppendRequest(buf[:ntpHeaderLen], s.cookie, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := s.sess.VerifyResponse(resp, id); err != nil {
			b.Fatal(err)
		}
	}
}

// TestResponseInPlace: the server may build the response in the request's
// own buffer.
func TestResponseInPlace(t *testing.T) {
	s := newSetup(t)
	req, id := s.request(t, 3)
	buf := bytes.Clone(req)
	r, err := ReadRequest(buf, s.ring)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, ntpHeader(4, 2, "GPS"))
	resp, err := r.AppendResponse(buf[:ntpHeaderLen], s.ring)
	if err != nil {
		t.Fatal(err)
	}
	if &resp[0] != &buf[0] {
		t.Error("response moved out of the request's buffer")
	}
	if cookies, err := s.sess.VerifyResponse(resp, id); err != nil || len(cookies) != 4 {
		t.Errorf("%d cookies, %v", len(cookies), err)
	}
}

// TestConcurrent runs requests while the keys rotate (for the race
// detector).
func TestConcurrent(t *testing.T) {
	s := newSetup(t)
	req, id := s.request(t, 1)
	done := make(chan error, 4)
	for range 4 {
		go func() {
			for range 200 {
				r, err := ReadRequest(req, s.ring)
				if errors.Is(err, ErrRetiredKey) {
					continue
				}
				if err != nil {
					done <- err
					return
				}
				resp, err := r.AppendResponse(ntpHeader(4, 2, "GPS"), s.ring)
				if err == nil {
					_, err = s.sess.VerifyResponse(resp, id)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for h := range 20 {
		if _, err := s.ring.Rotate(t0.Add(time.Duration(h) * time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ring.MakeCookies(AEADAESSIVCMAC256, s.keys.C2S[:], s.keys.S2C[:], 8); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
