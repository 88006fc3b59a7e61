package nts

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func testKeys() CookieKeys {
	k := CookieKeys{AEAD: AEADAESSIVCMAC256}
	for i := range k.C2S {
		k.C2S[i], k.S2C[i] = byte(i), byte(0x80+i)
	}
	return k
}

func TestCookieRoundTrip(t *testing.T) {
	r := fixedRing(t, 0x1234, 1)
	keys := testKeys()
	c1, err := r.SealCookie(&keys)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := r.SealCookie(&keys)
	if len(c1) != CookieLen || len(c1)%4 != 0 {
		t.Errorf("cookie of %d bytes, want %d, a multiple of 4", len(c1), CookieLen)
	}
	if bytes.Equal(c1, c2) {
		t.Error("two cookies for the same keys are equal (nonce not random)")
	}
	for _, c := range [][]byte{c1, c2} {
		got, err := r.OpenCookie(c)
		if err != nil || got != keys {
			t.Errorf("OpenCookie: %v, keys equal %v", err, got == keys)
		}
	}
}

func TestCookieRejected(t *testing.T) {
	keys := testKeys()
	r := fixedRing(t, 0x1234, 1)
	cookie, _ := r.SealCookie(&keys)

	sameIDOtherSecret := fixedRing(t, 0x1234, 2)
	otherID := fixedRing(t, 0x1000, 1) // 0x1234 is newer than its newest key
	retired := fixedRing(t, 0x1234, 1)
	for h := 1; h <= 4; h++ {
		if _, err := retired.Rotate(t0.Add(time.Duration(h) * time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	empty, _ := NewKeyRing(time.Hour, 3)

	tests := []struct {
		name   string
		ring   *KeyRing
		cookie []byte
		want   error
	}{
		{"short", r, cookie[:CookieLen-1], ErrCookieMalformed},
		{"long", r, append(cookie[:CookieLen:CookieLen], 0, 0, 0, 0), ErrCookieMalformed},
		{"empty", r, nil, ErrCookieMalformed},
		{"wrong key", sameIDOtherSecret, cookie, ErrCookieAuth},
		{"unknown key", otherID, cookie, ErrUnknownKey},
		{"retired key", retired, cookie, ErrRetiredKey},
		{"empty ring", empty, cookie, ErrUnknownKey},
	}
	for _, tt := range tests {
		if _, err := tt.ring.OpenCookie(tt.cookie); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// Every byte flipped.
	for i := range cookie {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(cookie)
			c[i] ^= mask
			_, err := r.OpenCookie(c)
			want := ErrCookieAuth
			if i < 4 {
				want = ErrUnknownKey // or retired: the id changed
			}
			if err == nil || (!errors.Is(err, want) && !errors.Is(err, ErrRetiredKey)) {
				t.Errorf("byte %d ^ %#x: %v, want %v", i, mask, err, want)
			}
		}
	}
}

func TestMakeCookies(t *testing.T) {
	r := fixedRing(t, 5, 3)
	keys := testKeys()
	empty, _ := NewKeyRing(time.Hour, 3)
	tests := []struct {
		name     string
		ring     *KeyRing
		aead     uint16
		c2s, s2c []byte
		n        int
		want     error // nil: success; errAny: some error
	}{
		{"eight", r, AEADAESSIVCMAC256, keys.C2S[:], keys.S2C[:], 8, nil},
		{"none", r, AEADAESSIVCMAC256, keys.C2S[:], keys.S2C[:], 0, nil},
		{"AES-128-GCM-SIV", r, 30, keys.C2S[:16], keys.S2C[:16], 8, ErrUnsupportedAEAD},
		{"short key", r, AEADAESSIVCMAC256, keys.C2S[:16], keys.S2C[:], 8, errAny},
		{"too many", r, AEADAESSIVCMAC256, keys.C2S[:], keys.S2C[:], 65, errAny},
		{"negative", r, AEADAESSIVCMAC256, keys.C2S[:], keys.S2C[:], -1, errAny},
		{"no key", empty, AEADAESSIVCMAC256, keys.C2S[:], keys.S2C[:], 8, ErrNoKey},
	}
	for _, tt := range tests {
		cookies, err := tt.ring.MakeCookies(tt.aead, tt.c2s, tt.s2c, tt.n)
		switch {
		case tt.want == nil && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want == errAny && err == nil, tt.want != nil && tt.want != errAny && !errors.Is(err, tt.want):
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
		if err != nil {
			continue
		}
		if len(cookies) != tt.n {
			t.Errorf("%s: %d cookies, want %d", tt.name, len(cookies), tt.n)
		}
		seen := map[string]bool{}
		for _, c := range cookies {
			if seen[string(c)] {
				t.Errorf("%s: the same cookie twice", tt.name)
			}
			seen[string(c)] = true
			if got, err := r.OpenCookie(c); err != nil || got != keys {
				t.Errorf("%s: cookie does not open: %v", tt.name, err)
			}
		}
	}
}

var errAny = errors.New("any error")

func FuzzOpenCookie(f *testing.F) {
	r := fixedRing(f, 0x1234, 1)
	keys := testKeys()
	var nonce [cookieNonceLen]byte
	good, err := appendCookie(nil, r.keys[0], &keys, nonce[:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, cookie []byte) {
		got, err := r.OpenCookie(cookie)
		if err == nil && (got != keys || !bytes.Equal(cookie, good)) {
			t.Fatalf("a cookie other than the one sealed opened: %x", cookie)
		}
	})
}

func BenchmarkCookie(b *testing.B) {
	r := fixedRing(b, 1, 1)
	keys := testKeys()
	cookie, _ := r.SealCookie(&keys)
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.SealCookie(&keys); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.OpenCookie(cookie); err != nil {
				b.Fatal(err)
			}
		}
	})
}
