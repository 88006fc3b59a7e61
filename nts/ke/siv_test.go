package ke

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"testing"
)

// A minimal AES-SIV-CMAC-256 (RFC 5297) for the tests, so that they can
// prove the exported keys are the ones chronyd derives: they seal and open
// NTS-protected NTP packets with them. Package nts has the real one.

// dbl doubles a block in GF(2^128).
func dbl(b []byte) []byte {
	out := make([]byte, 16)
	carry := byte(0)
	for i := 15; i >= 0; i-- {
		out[i] = b[i]<<1 | carry
		carry = b[i] >> 7
	}
	if carry != 0 {
		out[15] ^= 0x87
	}
	return out
}

func xorInto(dst, src []byte) {
	for i := range src {
		dst[i] ^= src[i]
	}
}

// cmac is AES-CMAC (RFC 4493).
func cmac(c cipher.Block, msg []byte) []byte {
	l := make([]byte, 16)
	c.Encrypt(l, l)
	k1 := dbl(l)
	n := (len(msg) + 15) / 16
	last := make([]byte, 16)
	if n > 0 && len(msg)%16 == 0 {
		copy(last, msg[16*(n-1):])
		xorInto(last, k1)
	} else {
		if n == 0 {
			n = 1
		}
		rest := msg[16*(n-1):]
		copy(last, rest)
		last[len(rest)] = 0x80
		xorInto(last, dbl(k1))
	}
	x := make([]byte, 16)
	for i := 0; i < n-1; i++ {
		xorInto(x, msg[16*i:16*i+16])
		c.Encrypt(x, x)
	}
	xorInto(x, last)
	c.Encrypt(x, x)
	return x
}

// s2v is RFC 5297's S2V over the given strings, the last one being the
// plaintext.
func s2v(c cipher.Block, strs ...[]byte) []byte {
	d := cmac(c, make([]byte, 16))
	for _, s := range strs[:len(strs)-1] {
		d = dbl(d)
		xorInto(d, cmac(c, s))
	}
	last := strs[len(strs)-1]
	var t []byte
	if len(last) >= 16 {
		t = bytes.Clone(last)
		xorInto(t[len(t)-16:], d)
	} else {
		t = make([]byte, 16)
		copy(t, last)
		t[len(last)] = 0x80
		xorInto(t, dbl(d))
	}
	return cmac(c, t)
}

// sivCTR runs AES-CTR from the synthetic IV with its two bits cleared.
func sivCTR(key, v, in []byte) []byte {
	c, _ := aes.NewCipher(key)
	q := bytes.Clone(v)
	q[8] &= 0x7f
	q[12] &= 0x7f
	out := make([]byte, len(in))
	cipher.NewCTR(c, q).XORKeyStream(out, in)
	return out
}

// sivSeal is AEAD_AES_SIV_CMAC_256 encryption: V || C.
func sivSeal(key, nonce, ad, plaintext []byte) []byte {
	mac, _ := aes.NewCipher(key[:16])
	v := s2v(mac, ad, nonce, plaintext)
	return append(v, sivCTR(key[16:], v, plaintext)...)
}

// sivOpen is AEAD_AES_SIV_CMAC_256 decryption.
func sivOpen(key, nonce, ad, sealed []byte) ([]byte, error) {
	if len(sealed) < 16 {
		return nil, errors.New("siv: ciphertext shorter than its tag")
	}
	v := sealed[:16]
	p := sivCTR(key[16:], v, sealed[16:])
	mac, _ := aes.NewCipher(key[:16])
	if subtle.ConstantTimeCompare(s2v(mac, ad, nonce, p), v) != 1 {
		return nil, errors.New("siv: authentication failed")
	}
	return p, nil
}

// TestSIV checks the test AES-SIV against RFC 5297's deterministic example
// (appendix A.1: one associated data string, no nonce).
func TestSIV(t *testing.T) {
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key := h("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
	ad := h("101112131415161718191a1b1c1d1e1f2021222324252627")
	pt := h("112233445566778899aabbccddee")
	mac, _ := aes.NewCipher(key[:16])
	v := s2v(mac, ad, pt)
	got := append(v, sivCTR(key[16:], v, pt)...)
	want := h("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
	if !bytes.Equal(got, want) {
		t.Fatalf("RFC 5297 A.1: %x, want %x", got, want)
	}
	sealed := sivSeal(key, []byte("nonce"), ad, pt)
	if p, err := sivOpen(key, []byte("nonce"), ad, sealed); err != nil || !bytes.Equal(p, pt) {
		t.Fatalf("open(seal) = %x, %v", p, err)
	}
	sealed[3] ^= 1
	if _, err := sivOpen(key, []byte("nonce"), ad, sealed); err == nil {
		t.Fatal("a flipped bit went unnoticed")
	}
}
