package clientlog

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"unsafe"
)

// ways is how many entries share one bucket. A full bucket replaces its
// least recently seen entry.
const ways = 4

// fullMask has one bit per way.
const fullMask = 1<<ways - 1

// key is an address in its 16-byte form (IPv4 as IPv4-mapped IPv6), or such
// an address with the bits beyond a prefix length cleared.
type key struct{ hi, lo uint64 }

func keyOf(a netip.Addr) key {
	b := a.As16()
	return key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (k key) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b).Unmap()
}

// isV4 reports whether k is an IPv4-mapped address (::ffff:a.b.c.d).
func (k key) isV4() bool { return k.hi == 0 && k.lo>>32 == 0xffff }

// prefix clears the bits of k beyond v4 (for IPv4) or v6 (otherwise) bits.
func (k key) prefix(v4, v6 int) key {
	n := v6
	if k.isV4() {
		n = 96 + v4
	}
	if n >= 64 {
		k.lo &= ^uint64(0) << uint(128-n)
	} else {
		k.lo = 0
		k.hi &= ^uint64(0) << uint(64-n)
	}
	return k
}

// hash picks a key's bucket: pair-multiply-shift hashing (Thorup, "High
// speed hashing for integers and strings") of the key's four 32-bit words
// with 64-bit arithmetic, keyed with random numbers from crypto/rand. The
// family is universal: whatever two addresses an outside party chooses,
// without the keys they land in one bucket with probability at most
// 2/buckets, so no one can aim at a bucket. It costs two multiplications.
type hash struct {
	a     [4]uint64
	b     uint64
	shift uint // 64 - log2(buckets): the index is the top bits
}

func newHash(buckets int) (hash, error) {
	var r [5 * 8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return hash{}, fmt.Errorf("clientlog: hash key: %w", err)
	}
	h := hash{shift: uint(64 - bits.TrailingZeros(uint(buckets)))}
	for i := range h.a {
		h.a[i] = binary.LittleEndian.Uint64(r[8*i:])
	}
	h.b = binary.LittleEndian.Uint64(r[32:])
	return h, nil
}

// index returns k's bucket.
func (h *hash) index(k key) uint64 {
	x0, x1, x2, x3 := k.hi>>32, k.hi&0xffffffff, k.lo>>32, k.lo&0xffffffff
	return ((h.a[0]+x1)*(h.a[1]+x0) + (h.a[2]+x3)*(h.a[3]+x2) + h.b) >> h.shift
}

// ways of a bucket: the part of a bucket that both tables share. The caller
// holds the bucket's lock.
type slots struct {
	keys [ways]key
	mu   sync.Mutex
	used uint8 // bit i: way i holds an entry
	seen [ways]int64
}

// find returns the way holding k, or -1.
func (s *slots) find(k key) int {
	for i := range ways {
		if s.used&(1<<i) != 0 && s.keys[i] == k {
			return i
		}
	}
	return -1
}

// take returns the way holding k and true, or else puts k in a free way, or
// in place of the least recently seen entry, and returns that way and false;
// grew says whether a free way was used. The caller initialises the entry.
func (s *slots) take(k key) (i int, found, grew bool) {
	if i = s.find(k); i >= 0 {
		return i, true, false
	}
	if s.used != fullMask {
		i = bits.TrailingZeros8(^s.used)
		s.used |= 1 << i
		grew = true
	} else {
		i = 0
		for j := 1; j < ways; j++ {
			if s.seen[j] < s.seen[i] {
				i = j
			}
		}
	}
	s.keys[i] = k
	return i, false, grew
}

// touch records that the entry in way i was seen at now. Workers read the
// clock before they take the lock, so now may be a little behind.
func (s *slots) touch(i int, now int64) {
	if now > s.seen[i] {
		s.seen[i] = now
	}
}

// entry is what is kept per client address besides its key and last-seen
// time.
type entry struct {
	tat int64 // the token bucket as GCRA: when the bucket is full again
	avg int64 // moving average of the interval between requests, ns
	// served + kissed + dropped = requests since the entry was created.
	served, kissed, dropped uint64
	rx, tx                  uint64 // timestamps of the last served response
	xhist                   uint8  // bit n: the request n back was interleaved
}

func (e *entry) requests() uint64 { return e.served + e.kissed + e.dropped }

// cacheLine is the size that buckets are padded to a multiple of, so that
// workers on different buckets do not share cache lines (the tables are
// large allocations, which are page-aligned).
const cacheLine = 64

type clientWays struct {
	slots
	ents [ways]entry
}

// clientBucket is 384 bytes on 64-bit machines.
type clientBucket struct {
	clientWays
	_ [(cacheLine - unsafe.Sizeof(clientWays{})%cacheLine) % cacheLine]byte
}

type prefixWays struct {
	slots
	tat  [ways]int64
	over [ways]uint32 // over-limit requests, for 1-in-KissEvery kisses
}

// prefixBucket is 192 bytes on 64-bit machines.
type prefixBucket struct {
	prefixWays
	_ [(cacheLine - unsafe.Sizeof(prefixWays{})%cacheLine) % cacheLine]byte
}
