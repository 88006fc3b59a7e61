package gptp

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzDecode feeds Decode arbitrary bytes: it must return a message or an
// error, never panic, and whatever it accepts must encode to bytes that
// decode again and encode the same (the encoding is a fixed point).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{ptp4lPdelayReq, ptp4lPdelayRes, ptp4lPdelayFU, ptp4lAnnounce, ptp4lSync, ptp4lFollowUp} {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, m := range wireTestMessages() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 34))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned %+v with error %v", m, err)
			}
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(Decode(%x)): %v", b, err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%x))) = Decode(%x): %v", b, enc, err)
		}
		if m2.MessageType() != m.MessageType() {
			t.Fatalf("type %v became %v", m.MessageType(), m2.MessageType())
		}
		enc2, err := Encode(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point:\n\t%x\n\t%x (%v)", enc, enc2, err)
		}
	})
}
