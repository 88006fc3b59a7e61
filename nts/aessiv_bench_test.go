package nts

import (
	"crypto/rand"
	"testing"

	"github.com/facebook/time/ntp/protocol/nts/aessiv"
)

// BenchmarkAESSIV seals and opens what a typical NTS request authenticates:
// the 48-byte header, a 36-byte unique identifier field and a 108-byte
// cookie field as associated data (192 bytes), with a 16-byte nonce and no
// plaintext; and a typical response's encrypted part, one new cookie field
// (108 bytes), under a 52-byte associated data.
func BenchmarkAESSIV(b *testing.B) {
	key := make([]byte, KeySize)
	rand.Read(key)
	a, err := aessiv.NewAESSIV(key)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, 16)
	for _, tc := range []struct {
		name          string
		ad, plaintext []byte
	}{
		{"request", make([]byte, 192), nil},
		{"response", make([]byte, 84), make([]byte, 108)},
	} {
		sealed, err := a.Seal(nil, tc.plaintext, tc.ad, nonce)
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]byte, 0, len(sealed))
		b.Run("seal/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Seal(dst[:0], tc.plaintext, tc.ad, nonce); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("open/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Open(dst[:0], sealed, tc.ad, nonce); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
