package nts

import "testing"

// The cache gives one client's keys the same ciphers every time, and never
// holds more than sessionCacheSize clients.
func TestSessionCache(t *testing.T) {
	var s sessions
	keys := func(i int) *CookieKeys {
		k := &CookieKeys{AEAD: AEADAESSIVCMAC256}
		k.C2S[0], k.C2S[1], k.S2C[0] = byte(i), byte(i>>8), byte(i>>16)
		return k
	}
	a, err := s.ciphers(keys(1))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := s.ciphers(keys(1)); b != a {
		t.Error("the same keys got new ciphers")
	}
	if c, _ := s.ciphers(keys(2)); c == a {
		t.Error("other keys got the same ciphers")
	}
	for i := range 3 * sessionCacheSize {
		if _, err := s.ciphers(keys(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.m); n > sessionCacheSize {
		t.Errorf("%d sessions cached, want at most %d", n, sessionCacheSize)
	}
	// Ciphers from the cache seal as fresh ones do.
	k := keys(7)
	c, _ := s.ciphers(k)
	var fresh sessions
	f, _ := fresh.ciphers(k)
	x, _ := c.s2c.Seal(nil, []byte("time"), []byte("ad"))
	y, _ := f.s2c.Seal(nil, []byte("time"), []byte("ad"))
	if string(x) != string(y) {
		t.Error("cached and fresh ciphers disagree")
	}
}
