package nts

import (
	"fmt"
	"sync"

	"github.com/timed-project/timed/nts/internal/siv"
)

// sessions keeps the AES-SIV ciphers of the clients a server saw recently.
// Every cookie of one NTS-KE session carries the same keys, and making the
// two ciphers from them (the AES key schedules and CMAC subkeys) costs as
// much as the rest of a request; a client polling again finds them here.
// The cache is bounded: when full, an entry chosen by the map's iteration
// order (effectively at random) makes room. It holds keys no longer than
// cookies would, in memory only.
type sessions struct {
	mu sync.Mutex
	m  map[CookieKeys]*sessionCiphers
}

type sessionCiphers struct{ c2s, s2c *siv.AESSIV }

// sessionCacheSize bounds the cache: 4096 clients of about 2.5 KiB each.
const sessionCacheSize = 4096

// ciphers returns the ciphers for keys, made now or found.
func (s *sessions) ciphers(keys *CookieKeys) (*sessionCiphers, error) {
	s.mu.Lock()
	c, ok := s.m[*keys]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	c = &sessionCiphers{}
	var err error
	if c.c2s, err = siv.New(keys.C2S[:]); err != nil {
		return nil, fmt.Errorf("C2S key: %w", err)
	}
	if c.s2c, err = siv.New(keys.S2C[:]); err != nil {
		return nil, fmt.Errorf("S2C key: %w", err)
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[CookieKeys]*sessionCiphers, sessionCacheSize)
	}
	if len(s.m) >= sessionCacheSize {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[*keys] = c
	s.mu.Unlock()
	return c, nil
}
