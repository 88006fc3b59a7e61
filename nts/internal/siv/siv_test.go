package siv

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/facebook/time/ntp/protocol/nts/aessiv"

	"github.com/timed-project/timed/internal/testenv"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// haveAsm is whether this machine runs the assembly (useAsm as the package
// set it, before any test changed it).
var haveAsm = useAsm

// requireAsm makes a test of the assembly skip where the machine has no
// AES-NI, and fail there in CI (TIMED_REQUIRE_PEERS=1), whose machines
// have it.
func requireAsm(t *testing.T) {
	t.Helper()
	if !haveAsm {
		testenv.Missing(t, "AES-NI, which nts/internal/siv's assembly needs")
	}
}

// paths runs f with the assembly and with the portable path.
func paths(t *testing.T, f func(t *testing.T)) {
	t.Cleanup(func() { useAsm = haveAsm })
	t.Run("asm", func(t *testing.T) {
		requireAsm(t)
		useAsm = true
		f(t)
	})
	t.Run("portable", func(t *testing.T) {
		useAsm = false
		f(t)
	})
}

// TestRFC5297 checks the deterministic example of RFC 5297 appendix A.1
// and the nonce-based one of A.2.
func TestRFC5297(t *testing.T) {
	cases := []struct {
		name, key, pt, out string
		ad                 []string
	}{
		{
			name: "A.1",
			key:  "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
			ad:   []string{"101112131415161718191a1b1c1d1e1f2021222324252627"},
			pt:   "112233445566778899aabbccddee",
			out:  "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c",
		},
		{
			name: "A.2",
			key:  "7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f",
			ad: []string{
				"00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa99887766554433221100",
				"102030405060708090a0",
				"09f911029d74e35bd84156c5635688c0",
			},
			pt:  "7468697320697320736f6d6520706c61696e7465787420746f20656e6372797074207573696e67205349562d414553",
			out: "7bdb6e3b432667eb06f4d14bff2fbd0fcb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d",
		},
	}
	paths(t, func(t *testing.T) {
		for _, c := range cases {
			a, err := New(unhex(t, c.key))
			if err != nil {
				t.Fatal(err)
			}
			var ad [][]byte
			for _, s := range c.ad {
				ad = append(ad, unhex(t, s))
			}
			got, err := a.Seal(nil, unhex(t, c.pt), ad...)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, c.out); !bytes.Equal(got, want) {
				t.Errorf("%s: Seal = %x, want %x", c.name, got, want)
			}
			pt, err := a.Open(nil, got, ad...)
			if err != nil || !bytes.Equal(pt, unhex(t, c.pt)) {
				t.Errorf("%s: Open = %x, %v", c.name, pt, err)
			}
		}
	})
}

// TestAgainstFacebook compares Seal and Open with facebook/time's aessiv
// over lengths that cross every block boundary the code handles apart.
func TestAgainstFacebook(t *testing.T) {
	paths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 3000 {
			key := randBytes(rng, KeySize)
			ref, err := aessiv.NewAESSIV(key)
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(key)
			if err != nil {
				t.Fatal(err)
			}
			pt := randBytes(rng, i%140)
			ad := make([][]byte, rng.IntN(4))
			for j := range ad {
				ad[j] = randBytes(rng, rng.IntN(220))
			}
			want, err := ref.Seal(nil, pt, ad...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Seal(nil, pt, ad...)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("plaintext %d bytes, %d items: Seal = %x, %v, want %x", len(pt), len(ad), got, err, want)
			}
			back, err := a.Open(nil, want, ad...)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("plaintext %d bytes, %d items: Open = %x, %v", len(pt), len(ad), back, err)
			}
		}
	})
}

// TestInPlace seals and opens with dst aliasing the input, as the NTS code
// does, and checks that a failed Open leaves no plaintext behind.
func TestInPlace(t *testing.T) {
	paths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		a, err := New(randBytes(rng, KeySize))
		if err != nil {
			t.Fatal(err)
		}
		ad := randBytes(rng, 50)
		for n := range 70 {
			pt := randBytes(rng, n)
			want, _ := a.Seal(nil, pt, ad)
			buf := make([]byte, n, n+Overhead)
			copy(buf, pt)
			got, err := a.Seal(buf[:0], buf, ad)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: in-place Seal = %x, %v, want %x", n, got, err, want)
			}
			back, err := a.Open(got[:0], got, ad)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("%d bytes: in-place Open = %x, %v", n, back, err)
			}
			bad, _ := a.Seal(nil, pt, ad)
			bad[len(bad)-1] ^= 1
			if out, err := a.Open(bad[:0], bad, ad); !errors.Is(err, ErrOpen) || out != nil {
				t.Fatalf("%d bytes: tampered Open = %x, %v", n, out, err)
			}
			if n > 0 && !bytes.Equal(bad[:n], make([]byte, n)) {
				t.Fatalf("%d bytes: a failed Open left %x in dst", n, bad[:n])
			}
		}
	})
}

// TestTamper flips every bit of a sealed message and of its associated
// data: none opens.
func TestTamper(t *testing.T) {
	paths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		a, _ := New(randBytes(rng, KeySize))
		ad, pt := randBytes(rng, 37), randBytes(rng, 29)
		ct, _ := a.Seal(nil, pt, ad)
		for i := range 8 * len(ct) {
			c := bytes.Clone(ct)
			c[i/8] ^= 1 << (i % 8)
			if _, err := a.Open(nil, c, ad); !errors.Is(err, ErrOpen) {
				t.Fatalf("ciphertext bit %d flipped: %v", i, err)
			}
		}
		for i := range 8 * len(ad) {
			d := bytes.Clone(ad)
			d[i/8] ^= 1 << (i % 8)
			if _, err := a.Open(nil, ct, d); !errors.Is(err, ErrOpen) {
				t.Fatalf("associated data bit %d flipped: %v", i, err)
			}
		}
		if _, err := a.Open(nil, ct); !errors.Is(err, ErrOpen) {
			t.Fatalf("associated data left out: %v", err)
		}
		if _, err := a.Open(nil, ct[:15], ad); !errors.Is(err, ErrOpen) {
			t.Fatalf("15-byte ciphertext: %v", err)
		}
	})
}

// TestBlocks checks the assembly's key expansion, CBC-MAC and block
// encryption against crypto/aes.
func TestBlocks(t *testing.T) {
	requireAsm(t) // the portable path is crypto/aes itself
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		key := randBytes(rng, 16)
		b, err := newBlock(key)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := aes.NewCipher(key)
		n := rng.IntN(12)
		src := randBytes(rng, n*blockSize)
		got := make([]byte, len(src))
		b.encrypt(got, src)
		var st, want [blockSize]byte
		copy(st[:], randBytes(rng, blockSize))
		want = st
		b.mac(&st, src)
		for i := 0; i < len(src); i += blockSize {
			w := make([]byte, blockSize)
			ref.Encrypt(w, src[i:i+blockSize])
			if !bytes.Equal(got[i:i+blockSize], w) {
				t.Fatalf("block %d of %d: %x, want %x", i/blockSize, n, got[i:i+blockSize], w)
			}
			for j := range blockSize {
				want[j] ^= src[i+j]
			}
			ref.Encrypt(want[:], want[:])
		}
		if st != want {
			t.Fatalf("CBC-MAC of %d blocks: %x, want %x", n, st, want)
		}
	}
}

func TestNewBadKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte key: no error", n)
		}
	}
}

// TestNoAllocs checks that Seal and Open with room in dst allocate nothing
// (with the assembly).
func TestNoAllocs(t *testing.T) {
	// The portable path passes blocks through crypto/aes's interface,
	// which allocates.
	requireAsm(t)
	a, _ := New(make([]byte, KeySize))
	ad, pt := make([]byte, 192), make([]byte, 108)
	buf := make([]byte, 0, 256)
	ct, _ := a.Seal(nil, pt, ad)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = a.Seal(buf[:0], pt, ad)
		_, _ = a.Open(buf[:0], ct, ad)
	}); n != 0 {
		t.Errorf("%v allocations per Seal and Open, want 0", n)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// FuzzOpen opens arbitrary ciphertexts and associated data with both this
// package and facebook/time's aessiv: they agree, and whatever opens seals
// back to the same bytes.
func FuzzOpen(f *testing.F) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	a, _ := New(key)
	ref, _ := aessiv.NewAESSIV(key)
	good, _ := a.Seal(nil, []byte("plaintext of a test"), []byte("associated"))
	f.Add(good, []byte("associated"))
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 40), make([]byte, 17))
	f.Fuzz(func(t *testing.T, ct, ad []byte) {
		pt, err := a.Open(nil, ct, ad)
		refPT, refErr := ref.Open(nil, ct, ad)
		if (err == nil) != (refErr == nil) || !bytes.Equal(pt, refPT) {
			t.Fatalf("Open = %x, %v; facebook/time's = %x, %v", pt, err, refPT, refErr)
		}
		// A forged input cannot open; test the other direction instead.
		sealed, err := a.Seal(nil, ct, ad)
		if err != nil {
			t.Fatal(err)
		}
		refSealed, _ := ref.Seal(nil, ct, ad)
		if !bytes.Equal(sealed, refSealed) {
			t.Fatalf("Seal = %x, facebook/time's %x", sealed, refSealed)
		}
		back, err := a.Open(nil, sealed, ad)
		if err != nil || !bytes.Equal(back, ct) {
			t.Fatalf("Open(Seal(x)) = %x, %v, want %x", back, err, ct)
		}
	})
}

func BenchmarkAESSIV(b *testing.B) {
	a, _ := New(make([]byte, KeySize))
	ref, _ := aessiv.NewAESSIV(make([]byte, KeySize))
	for _, c := range []struct {
		name   string
		ad, pt int
	}{{"request", 192, 0}, {"response", 84, 108}, {"cookie", 4, 68}} {
		ad, nonce, pt := make([]byte, c.ad), make([]byte, 16), make([]byte, c.pt)
		buf := make([]byte, 0, 256)
		ct, _ := a.Seal(nil, pt, ad, nonce)
		b.Run("seal/"+c.name, func(b *testing.B) {
			for b.Loop() {
				_, _ = a.Seal(buf[:0], pt, ad, nonce)
			}
		})
		b.Run("open/"+c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.Open(buf[:0], ct, ad, nonce); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("facebook-seal/"+c.name, func(b *testing.B) {
			for b.Loop() {
				_, _ = ref.Seal(buf[:0], pt, ad, nonce)
			}
		})
	}
}
