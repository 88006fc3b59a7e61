package siv

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
)

// blockSize is AES's block size.
const blockSize = aes.BlockSize

// block is one AES-128 key, ready for the two operations AES-SIV needs:
// CBC-MAC over whole blocks (the body of CMAC) and encrypting independent
// blocks (the CTR keystream). With AES-NI both run in assembly on the
// expanded key; otherwise crypto/aes does the work, a block per call.
type block struct {
	rk  [11 * blockSize]byte // round keys, for the assembly
	aes cipher.Block         // for the portable path
}

func newBlock(key []byte) (*block, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("siv: AES key of %d bytes, want 16", len(key))
	}
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("siv: %w", err)
	}
	b := &block{aes: c}
	if useAsm {
		expandKey128(&b.rk, (*[16]byte)(key))
	}
	return b, nil
}

// mac runs CBC-MAC over src, whole blocks, from and into state.
func (b *block) mac(state *[blockSize]byte, src []byte) {
	if len(src)%blockSize != 0 {
		panic("siv: mac of a partial block")
	}
	if len(src) == 0 {
		return
	}
	if useAsm {
		macBlocks(&b.rk, state, &src[0], len(src)/blockSize)
		return
	}
	// A local copy keeps state off the heap: what reaches an interface
	// method escapes.
	s := *state
	for ; len(src) > 0; src = src[blockSize:] {
		for i := range blockSize {
			s[i] ^= src[i]
		}
		b.aes.Encrypt(s[:], s[:])
	}
	*state = s
}

// encrypt encrypts the whole blocks of src into dst, each on its own.
func (b *block) encrypt(dst, src []byte) {
	if len(src)%blockSize != 0 || len(dst) < len(src) {
		panic("siv: encrypt of a partial block")
	}
	if len(src) == 0 {
		return
	}
	if useAsm {
		encryptBlocks(&b.rk, &dst[0], &src[0], len(src)/blockSize)
		return
	}
	var x [blockSize]byte
	for i := 0; i < len(src); i += blockSize {
		copy(x[:], src[i:])
		b.aes.Encrypt(x[:], x[:])
		copy(dst[i:], x[:])
	}
}
