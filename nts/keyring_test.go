package nts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

// fixedRing is a ring with one key of known id and secret, so that fuzz
// seeds stay valid from run to run.
func fixedRing(t testing.TB, id uint32, fill byte) *KeyRing {
	t.Helper()
	r, err := NewKeyRing(time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	k, err := newCookieKey(id, t0, bytes.Repeat([]byte{fill}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	r.keys = []*cookieKey{k}
	return r
}

func keyIDs(r *KeyRing) []uint32 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var ids []uint32
	for _, k := range r.keys {
		ids = append(ids, k.id)
	}
	return ids
}

func TestNewKeyRingArguments(t *testing.T) {
	tests := []struct {
		period time.Duration
		keep   int
		ok     bool
	}{
		{time.Hour, 2, true},
		{time.Hour, 1000, true},
		{0, 3, false},
		{-time.Hour, 3, false},
		{time.Hour, 1, false},
		{time.Hour, 1001, false},
	}
	for _, tt := range tests {
		_, err := NewKeyRing(tt.period, tt.keep)
		if (err == nil) != tt.ok {
			t.Errorf("NewKeyRing(%v, %d): %v, want ok %v", tt.period, tt.keep, err, tt.ok)
		}
	}
}

func TestRotate(t *testing.T) {
	r, err := NewKeyRing(time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Each step: the time, whether the ring changes, how many keys it has
	// after, and how many keys were added since the start.
	steps := []struct {
		at      time.Duration
		changed bool
		keys    int
		added   uint32
	}{
		{0, true, 1, 0},
		{30 * time.Minute, false, 1, 0},
		{time.Hour, true, 2, 1},
		{2 * time.Hour, true, 3, 2},
		{3 * time.Hour, true, 4, 3},              // the first key is exactly 3 periods old: kept
		{3*time.Hour + time.Second, true, 3, 3},  // now older: dropped
		{3*time.Hour + time.Minute, false, 3, 3}, // nothing to do
		{20 * time.Hour, true, 1, 4},             // after a long stop: one new key, all others retired
		{19 * time.Hour, false, 1, 4},            // the clock went back: nothing dropped, nothing added
	}
	if _, _, ok := r.Current(); ok {
		t.Error("an empty ring has a current key")
	}
	var first uint32
	for i, s := range steps {
		changed, err := r.Rotate(t0.Add(s.at))
		if err != nil {
			t.Fatal(err)
		}
		ids := keyIDs(r)
		if i == 0 {
			first = ids[0]
		}
		if changed != s.changed || len(ids) != s.keys || ids[len(ids)-1] != first+s.added {
			t.Errorf("step %d (+%v): changed %v, keys %x; want changed %v, %d keys, current %x",
				i, s.at, changed, ids, s.changed, s.keys, first+s.added)
		}
		if id, _, ok := r.Current(); !ok || id != ids[len(ids)-1] {
			t.Errorf("step %d: Current() = %x, %v; want %x", i, id, ok, ids[len(ids)-1])
		}
	}
}

func TestSaveLoadShare(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nts.keys")
	a, err := NewKeyRing(time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	for h := range 3 {
		if _, err := a.Rotate(t0.Add(time.Duration(h) * time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(path); err != nil { // overwrite
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after Save, want only the key file", len(entries))
	}

	// Another host (or this one after a restart) with the same file.
	b, err := LoadKeyRing(path, time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keyIDs(b), keyIDs(a); !equalIDs(got, want) {
		t.Fatalf("loaded keys %x, want %x", got, want)
	}
	keys := CookieKeys{AEAD: AEADAESSIVCMAC256}
	keys.C2S[0], keys.S2C[0] = 1, 2
	for _, pair := range []struct {
		name       string
		seal, open *KeyRing
	}{{"a seals, b opens", a, b}, {"b seals, a opens", b, a}} {
		c, err := pair.seal.SealCookie(&keys)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pair.open.OpenCookie(c)
		if err != nil || got != keys {
			t.Errorf("%s: %v", pair.name, err)
		}
	}
	// Loading again (the file changed on the host that rotates) keeps
	// cookies of the keys still in the file valid.
	old, _ := a.SealCookie(&keys)
	if _, err := a.Rotate(t0.Add(3 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := b.Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenCookie(old); err != nil {
		t.Errorf("cookie of a kept key after Load: %v", err)
	}
	fresh, _ := a.SealCookie(&keys)
	if _, err := b.OpenCookie(fresh); err != nil {
		t.Errorf("cookie of the new key after Load: %v", err)
	}
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLoadErrors(t *testing.T) {
	r := fixedRing(t, 0x10, 7)
	k2, _ := newCookieKey(0x11, t0.Add(time.Hour), bytes.Repeat([]byte{8}, KeySize))
	r.keys = append(r.keys, k2)
	good := string(formatKeyFile(r.keys))
	lines := strings.SplitAfter(good, "\n")
	resum := func(body string) string { // a body with a correct checksum
		return string(formatKeyFileRaw(body))
	}
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "empty"},
		{"other file", "hello\n", "line 1: not a timed NTS key file"},
		{"truncated", lines[0] + lines[1], "no checksum line"},
		{"cut in the checksum", good[:len(good)-10], "line 4: checksum mismatch"},
		{"cut in a key", good[:len(lines[0])+20], "line 2: want"},
		{"flipped secret", strings.Replace(good, "0707", "0706", 1), "line 4: checksum mismatch"},
		{"no keys", resum(keyFileMagic + "\n"), "no keys"},
		{"bad id", resum(keyFileMagic + "\nkey 1x 0 " + strings.Repeat("00", 32) + "\n"), "line 2: key id"},
		{"bad time", resum(keyFileMagic + "\nkey 00000001 x " + strings.Repeat("00", 32) + "\n"), "line 2: creation time"},
		{"short secret", resum(keyFileMagic + "\nkey 00000001 0 " + strings.Repeat("00", 31) + "\n"), "line 2: key 00000001: secret"},
		{"same id twice", resum(keyFileMagic + "\nkey 00000001 0 " + strings.Repeat("00", 32) + "\nkey 00000001 1 " + strings.Repeat("11", 32) + "\n"), "line 3: key id 00000001 twice"},
		{"after checksum", good + "key\n", "line 5: text after the checksum"},
		{"long line", keyFileMagic + "\n" + strings.Repeat("x", 300) + "\n", "line 2: bufio.Scanner: token too long"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadKeyRing(path, time.Hour, 3)
			if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v, want ErrKeyFile naming the file and %q", err, tt.want)
			}
		})
	}
	if _, err := LoadKeyRing(filepath.Join(dir, "missing"), time.Hour, 3); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	// A failed Load leaves the ring as it was.
	before := keyIDs(r)
	if err := r.Load(filepath.Join(dir, "empty")); err == nil || !equalIDs(keyIDs(r), before) {
		t.Errorf("failed Load changed the ring: %v, %x", err, keyIDs(r))
	}
}

// formatKeyFileRaw appends the checksum line to body.
func formatKeyFileRaw(body string) []byte {
	b := []byte(body)
	sum := sha256.Sum256(b)
	return append(b, []byte("sha256 "+hex.EncodeToString(sum[:])+"\n")...)
}

func TestSaveErrors(t *testing.T) {
	r := fixedRing(t, 1, 1)
	if err := r.Save(filepath.Join(t.TempDir(), "no", "such", "dir", "keys")); err == nil || !strings.Contains(err.Error(), "nts: save key file") {
		t.Errorf("Save into a missing directory: %v", err)
	}
}

// FuzzParseKeyFile feeds the key file reader: it must never panic, and what
// it accepts it writes back as a file that reads the same.
func FuzzParseKeyFile(f *testing.F) {
	r := fixedRing(f, 0x10, 7)
	f.Add(formatKeyFile(r.keys))
	f.Add([]byte(keyFileMagic + "\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseKeyFile(data)
		if err != nil {
			return
		}
		again, err := parseKeyFile(formatKeyFile(keys))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("accepted %q, its rewrite: %v", data, err)
		}
		for i, k := range keys {
			if a := again[i]; a.id != k.id || a.secret != k.secret || !a.created.Equal(k.created) {
				t.Fatalf("accepted %q, key %d changes in its rewrite", data, i)
			}
		}
	})
}
