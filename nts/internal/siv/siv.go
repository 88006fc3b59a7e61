// Package siv is AEAD_AES_SIV_CMAC_256 (RFC 5297), the AEAD that NTS
// (RFC 8915) requires, built for the NTP server's hot path: every NTS
// request costs the server four AES-SIV operations, and CMAC is a chain in
// which each block waits for the one before. With AES-NI the chain runs
// in one assembly loop on registers (no call, no copy per block) and the
// CTR keystream four blocks at a time; Seal and Open allocate nothing when
// dst has room. Without AES-NI it falls back to crypto/aes.
package siv

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// KeySize is the length of an AEAD_AES_SIV_CMAC_256 key: a CMAC key and a
// CTR key of 16 bytes each.
const KeySize = 32

// Overhead is how much longer a ciphertext is than its plaintext: the
// synthetic IV in front.
const Overhead = blockSize

// ErrOpen is returned by Open for a ciphertext that does not authenticate.
var ErrOpen = errors.New("siv: message authentication failed")

// maxComponents is RFC 5297's bound on the associated data items plus the
// plaintext (the 127 of section 7, less one for the plaintext).
const maxComponents = 126

// AESSIV is one AEAD_AES_SIV_CMAC_256 key. It is safe for concurrent use.
type AESSIV struct {
	mac, ctr *block
	k1, k2   [blockSize]byte // CMAC's subkeys (RFC 4493 section 2.3)
	d0       [blockSize]byte // CMAC(zero block), where S2V starts
}

// New returns the AEAD for a KeySize-byte key.
func New(key []byte) (*AESSIV, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("siv: key of %d bytes, want %d", len(key), KeySize)
	}
	mac, err := newBlock(key[:16])
	if err != nil {
		return nil, err
	}
	ctr, err := newBlock(key[16:])
	if err != nil {
		return nil, err
	}
	a := &AESSIV{mac: mac, ctr: ctr}
	var l [blockSize]byte
	mac.encrypt(l[:], l[:])
	a.k1 = double(l)
	a.k2 = double(a.k1)
	var zero [blockSize]byte
	a.cmac(&a.d0, zero[:], nil)
	return a, nil
}

// Seal appends to dst the synthetic IV and the encryption of plaintext,
// authenticating the associated data items ad in order, and returns the
// result. dst may alias plaintext exactly (dst = plaintext[:0]) or not at
// all.
func (a *AESSIV) Seal(dst, plaintext []byte, ad ...[]byte) ([]byte, error) {
	if len(ad) > maxComponents {
		return nil, fmt.Errorf("siv: %d associated data items, at most %d", len(ad), maxComponents)
	}
	var v [blockSize]byte
	a.s2v(&v, plaintext, ad)
	ret, out := grow(dst, blockSize+len(plaintext))
	copy(out[blockSize:], plaintext) // memmove: safe when out aliases plaintext
	copy(out, v[:])
	a.xorKeyStream(out[blockSize:], &v)
	return ret, nil
}

// Open checks and decrypts ciphertext (a synthetic IV and the encrypted
// plaintext) with the associated data items ad, appends the plaintext to
// dst and returns the result. On failure nothing is appended (and what
// was written to dst's spare capacity is cleared). dst may alias
// ciphertext exactly (dst = ciphertext[:0]) or not at all.
func (a *AESSIV) Open(dst, ciphertext []byte, ad ...[]byte) ([]byte, error) {
	if len(ciphertext) < blockSize {
		return nil, fmt.Errorf("siv: ciphertext of %d bytes, shorter than its %d-byte IV: %w", len(ciphertext), blockSize, ErrOpen)
	}
	if len(ad) > maxComponents {
		return nil, fmt.Errorf("siv: %d associated data items, at most %d", len(ad), maxComponents)
	}
	var iv, v [blockSize]byte
	copy(iv[:], ciphertext)
	ret, out := grow(dst, len(ciphertext)-blockSize)
	copy(out, ciphertext[blockSize:])
	a.xorKeyStream(out, &iv)
	a.s2v(&v, out, ad)
	if subtle.ConstantTimeCompare(iv[:], v[:]) != 1 {
		clear(out)
		return nil, ErrOpen
	}
	return ret, nil
}

// grow extends in by n bytes, reallocating only when its capacity is short,
// and returns the whole and the new part.
func grow(in []byte, n int) (whole, tail []byte) {
	total := len(in) + n
	if cap(in) >= total {
		whole = in[:total]
	} else {
		whole = make([]byte, total)
		copy(whole, in)
	}
	return whole, whole[len(in):]
}

// s2v is RFC 5297's S2V over the items ad and then msg, into v.
func (a *AESSIV) s2v(v *[blockSize]byte, msg []byte, ad [][]byte) {
	d := a.d0
	var m [blockSize]byte
	for _, s := range ad {
		a.cmac(&m, s, nil)
		d = double(d)
		xor16(&d, &m)
	}
	if len(msg) >= blockSize {
		a.cmac(v, msg, &d) // CMAC(msg xorend d)
		return
	}
	d = double(d)
	var t [blockSize]byte
	copy(t[:], msg)
	t[len(msg)] = 0x80
	xor16(&t, &d)
	a.cmac(v, t[:], nil)
}

// cmac is AES-CMAC (RFC 4493) of msg into out; with end set, of msg with
// end XORed into its last 16 bytes (S2V's xorend; len(msg) >= 16 then).
func (a *AESSIV) cmac(out *[blockSize]byte, msg []byte, end *[blockSize]byte) {
	// The blocks before the last, taken straight from msg while untouched
	// by end; the rest (up to two blocks) is copied into tail.
	n := len(msg)
	last := (n - 1) / blockSize * blockSize // start of the last block
	if n == 0 {
		last = 0
	}
	direct := last
	if end != nil {
		direct = min(last, (n-blockSize)/blockSize*blockSize)
	}
	clear(out[:])
	a.mac.mac(out, msg[:direct])
	var tail [2 * blockSize]byte
	copy(tail[:], msg[direct:])
	tn := n - direct
	if end != nil {
		xor16((*[blockSize]byte)(tail[tn-blockSize:tn]), end)
	}
	if tn > blockSize { // a whole block before the last one
		a.mac.mac(out, tail[:blockSize])
		copy(tail[:], tail[blockSize:])
		tn -= blockSize
	}
	lastBlock := (*[blockSize]byte)(tail[:blockSize])
	if tn == blockSize {
		xor16(lastBlock, &a.k1)
	} else {
		lastBlock[tn] = 0x80
		clear(lastBlock[tn+1:])
		xor16(lastBlock, &a.k2)
	}
	a.mac.mac(out, lastBlock[:])
}

// xorKeyStream XORs buf with the CTR keystream that starts from the
// synthetic IV v, its bits 31 and 63 cleared (RFC 5297 section 2.5).
func (a *AESSIV) xorKeyStream(buf []byte, v *[blockSize]byte) {
	var ctr [blockSize]byte
	copy(ctr[:], v[:])
	ctr[8] &= 0x7f
	ctr[12] &= 0x7f
	hi := binary.BigEndian.Uint64(ctr[:8])
	lo := binary.BigEndian.Uint64(ctr[8:])
	var counters, stream [8 * blockSize]byte
	for len(buf) > 0 {
		nb := min((len(buf)+blockSize-1)/blockSize, 8)
		for i := range nb {
			binary.BigEndian.PutUint64(counters[i*blockSize:], hi)
			binary.BigEndian.PutUint64(counters[i*blockSize+8:], lo)
			lo++
			if lo == 0 {
				hi++
			}
		}
		a.ctr.encrypt(stream[:nb*blockSize], counters[:nb*blockSize])
		buf = buf[subtle.XORBytes(buf, buf, stream[:nb*blockSize]):]
	}
}

// double multiplies x by the generator of GF(2^128) (RFC 5297's dbl),
// in constant time.
func double(x [blockSize]byte) [blockSize]byte {
	hi := binary.BigEndian.Uint64(x[:8])
	lo := binary.BigEndian.Uint64(x[8:])
	var y [blockSize]byte
	binary.BigEndian.PutUint64(y[:8], hi<<1|lo>>63)
	binary.BigEndian.PutUint64(y[8:], lo<<1^(0x87&-(hi>>63)))
	return y
}

// xor16 XORs y into x.
func xor16(x, y *[blockSize]byte) {
	binary.LittleEndian.PutUint64(x[:8], binary.LittleEndian.Uint64(x[:8])^binary.LittleEndian.Uint64(y[:8]))
	binary.LittleEndian.PutUint64(x[8:], binary.LittleEndian.Uint64(x[8:])^binary.LittleEndian.Uint64(y[8:]))
}
