// Package clientlog is the NTP server's table of clients: it rate-limits
// requests per client address and per address prefix, keeps the timestamps
// interleaved mode needs, and counts what each client got, in memory that is
// fixed when the table is made.
//
// The table is set-associative: a keyed hash with a random seed picks a
// bucket of a few entries, each bucket has its own lock, and a full bucket
// replaces its least recently seen entry. A million distinct addresses (or
// spoofed ones) therefore never grow it; they only push older entries out.
//
// Rate limits are token buckets kept as a GCRA "theoretical arrival time":
// one int64 per entry that says when the bucket will be full again.
package clientlog

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Limits of Config.Size and Config.PrefixSize.
const (
	MinSize = 64
	MaxSize = 1 << 24
)

// Config sets the table's size and limits. The zero value is not valid: Size
// must be set.
type Config struct {
	// Size is how many clients are remembered, rounded up to a power of two,
	// from MinSize to MaxSize. It is the memory bound (MemoryBytes).
	Size int
	// Interval is the mean interval allowed between one address's requests
	// (the token bucket's refill); 0 means no limit per address.
	Interval time.Duration
	// Burst is the token bucket's depth: how many requests may come at once.
	// At least 1 when Interval is set.
	Burst int
	// KissEvery: 1 in KissEvery over-limit requests is answered with a RATE
	// kiss, the others are dropped; 0 means never kiss.
	KissEvery int
	// PrefixV4 and PrefixV6 are the prefix lengths of the limit per prefix
	// (e.g. 24 and 48).
	PrefixV4, PrefixV6 int
	// PrefixInterval is the mean interval allowed between requests from one
	// prefix; 0 means no limit per prefix.
	PrefixInterval time.Duration
	// PrefixBurst is the prefix bucket's depth; at least 1 when
	// PrefixInterval is set.
	PrefixBurst int
	// PrefixSize is how many prefixes are remembered (rounded up to a power
	// of two); 0 means Size. Only used when PrefixInterval is set.
	PrefixSize int
}

// Validate reports every mistake in c, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("clientlog: "+format, args...))
	}
	if c.Size < MinSize || c.Size > MaxSize {
		bad("size must be from %d to %d, got %d", MinSize, MaxSize, c.Size)
	}
	checkBucket := func(name string, interval time.Duration, burst int) {
		switch {
		case interval < 0:
			bad("%sinterval must not be negative, got %v", name, interval)
		case interval == 0:
		case burst < 1:
			bad("%sburst must be at least 1, got %d", name, burst)
		case int64(burst) > math.MaxInt64/int64(interval):
			bad("%sburst × %sinterval is too long (%d × %v)", name, name, burst, interval)
		}
	}
	checkBucket("", c.Interval, c.Burst)
	checkBucket("prefix ", c.PrefixInterval, c.PrefixBurst)
	if c.KissEvery < 0 {
		bad("kiss every must not be negative, got %d", c.KissEvery)
	}
	if c.PrefixV4 < 0 || c.PrefixV4 > 32 {
		bad("IPv4 prefix length must be from 0 to 32, got %d", c.PrefixV4)
	}
	if c.PrefixV6 < 0 || c.PrefixV6 > 128 {
		bad("IPv6 prefix length must be from 0 to 128, got %d", c.PrefixV6)
	}
	if c.PrefixSize != 0 && (c.PrefixSize < MinSize || c.PrefixSize > MaxSize) {
		bad("prefix size must be 0 (same as size) or from %d to %d, got %d", MinSize, MaxSize, c.PrefixSize)
	}
	return errors.Join(errs...)
}

// Verdict is what the server does with a request.
type Verdict uint8

// The verdicts.
const (
	Serve Verdict = iota // answer it
	Kiss                 // answer with a RATE kiss-o'-death
	Drop                 // send nothing
)

func (v Verdict) String() string {
	switch v {
	case Serve:
		return "serve"
	case Kiss:
		return "kiss"
	case Drop:
		return "drop"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// avgShift sets the weight of a new interval in the moving average: 1/8.
const avgShift = 3

// Log is the client table. Its methods are safe for concurrent use.
type Log struct {
	clients   []clientBucket
	chash     hash
	prefixes  []prefixBucket // nil: no limit per prefix
	phash     hash
	nclients  atomic.Int64
	interval  int64 // ns; 0: no limit per address
	slack     int64 // (Burst-1) × interval
	pinterval int64
	pslack    int64
	kissEvery uint64
	prefixV4  int
	prefixV6  int
}

// New allocates a table as cfg says; it never allocates again.
func New(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := roundUp(cfg.Size) / ways
	chash, err := newHash(n)
	if err != nil {
		return nil, err
	}
	l := &Log{
		clients:   make([]clientBucket, n),
		chash:     chash,
		interval:  int64(cfg.Interval),
		kissEvery: uint64(cfg.KissEvery),
		prefixV4:  cfg.PrefixV4,
		prefixV6:  cfg.PrefixV6,
	}
	if cfg.Interval > 0 {
		l.slack = int64(cfg.Burst-1) * l.interval
	}
	if cfg.PrefixInterval > 0 {
		size := cfg.PrefixSize
		if size == 0 {
			size = cfg.Size
		}
		pn := roundUp(size) / ways
		if l.phash, err = newHash(pn); err != nil {
			return nil, err
		}
		l.prefixes = make([]prefixBucket, pn)
		l.pinterval = int64(cfg.PrefixInterval)
		l.pslack = int64(cfg.PrefixBurst-1) * l.pinterval
	}
	return l, nil
}

func roundUp(n int) int {
	p := MinSize
	for p < n {
		p <<= 1
	}
	return p
}

// Request accounts one request from addr at now (monotonic nanoseconds, from
// the caller) and returns the verdict. A request is served when both the
// address's and its prefix's token buckets hold a token; it then takes one
// from each. Otherwise 1 in KissEvery of the over-limit requests of that
// address (or of that prefix, when the prefix is what is over) gets Kiss and
// the rest Drop; they take no token. A new entry starts with a full bucket.
//
// When the verdict is Serve, rx and tx (the receive and transmit timestamps
// of the response the caller is about to send) are saved for addr, and the
// ones saved with addr's previous served request are returned (0, 0 if there
// was none or the entry was evicted since). Otherwise nothing is saved and
// 0, 0 is returned.
//
// IPv4 addresses and their IPv4-mapped IPv6 form are the same client; zones
// are ignored; the zero Addr counts as "::". Request does not allocate.
func (l *Log) Request(addr netip.Addr, now int64, rx, tx uint64) (v Verdict, prevRx, prevTx uint64) {
	k := keyOf(addr)
	b := &l.clients[l.chash.index(k)]
	b.mu.Lock()
	i, found, grew := b.take(k)
	e := &b.ents[i]
	if !found {
		*e = entry{tat: now}
		b.seen[i] = now
		if grew {
			l.nclients.Add(1)
		}
	} else {
		dt := max(now-b.seen[i], 0)
		if e.requests() == 1 {
			e.avg = dt
		} else {
			e.avg += (dt - e.avg) >> avgShift
		}
		b.touch(i, now)
	}
	e.xhist <<= 1

	v = Serve
	var t int64
	if l.interval > 0 {
		t = max(e.tat, now)
		if t-now > l.slack {
			v = l.overLimit(e.kissed + e.dropped)
		}
	}
	if v == Serve && l.prefixes != nil {
		v = l.prefixRequest(k, now)
	}
	switch v {
	case Serve:
		if l.interval > 0 {
			e.tat = t + l.interval
		}
		e.served++
		prevRx, prevTx = e.rx, e.tx
		e.rx, e.tx = rx, tx
	case Kiss:
		e.kissed++
	default:
		e.dropped++
	}
	b.mu.Unlock()
	return v, prevRx, prevTx
}

// prefixRequest takes a token from the bucket of k's prefix if it has one.
// The caller holds the lock of k's client bucket (always taken first).
func (l *Log) prefixRequest(k key, now int64) Verdict {
	pk := k.prefix(l.prefixV4, l.prefixV6)
	b := &l.prefixes[l.phash.index(pk)]
	b.mu.Lock()
	defer b.mu.Unlock()
	i, found, _ := b.take(pk)
	if !found {
		b.tat[i], b.over[i], b.seen[i] = now, 0, now
	} else {
		b.touch(i, now)
	}
	t := max(b.tat[i], now)
	if t-now > l.pslack {
		n := b.over[i]
		b.over[i]++
		return l.overLimit(uint64(n))
	}
	b.tat[i] = t + l.pinterval
	return Serve
}

// overLimit says what the n-th (from 0) over-limit request of an entry gets:
// the first of every KissEvery is kissed.
func (l *Log) overLimit(n uint64) Verdict {
	if l.kissEvery != 0 && n%l.kissEvery == 0 {
		return Kiss
	}
	return Drop
}

// lookup calls f with addr's entry, under its bucket's lock, if addr is in
// the table.
func (l *Log) lookup(addr netip.Addr, f func(e *entry)) {
	k := keyOf(addr)
	b := &l.clients[l.chash.index(k)]
	b.mu.Lock()
	if i := b.find(k); i >= 0 {
		f(&b.ents[i])
	}
	b.mu.Unlock()
}

// UpdateTx replaces the transmit timestamp saved for addr with tx if the
// receive timestamp saved with it is rx (the kernel's send timestamp of that
// response arrived after Request). It does nothing otherwise, and nothing
// when rx is 0.
func (l *Log) UpdateTx(addr netip.Addr, rx, tx uint64) {
	if rx == 0 {
		return
	}
	l.lookup(addr, func(e *entry) {
		if e.rx == rx {
			e.tx = tx
		}
	})
}

// MarkInterleaved records that addr's latest request was in interleaved
// mode. Client.Interleaved is true while one of a client's last 8 requests
// was marked.
func (l *Log) MarkInterleaved(addr netip.Addr) {
	l.lookup(addr, func(e *entry) { e.xhist |= 1 })
}

// Client is what the table knows about one client address.
type Client struct {
	Addr netip.Addr
	// Requests = Served + Kissed + Dropped, since the entry was created.
	Requests, Served, Kissed, Dropped uint64
	// Rate is requests per second: the inverse of a moving average of the
	// interval between requests (weight 1/8), or of the time since the last
	// request when that is longer. 0 after one request.
	Rate float64
	// LastSeen is how long before now the last request came.
	LastSeen time.Duration
	// Interleaved is true when one of the client's last 8 requests was
	// marked with MarkInterleaved.
	Interleaved bool
}

func (l *Log) client(k key, seen int64, e *entry, now int64) Client {
	c := Client{
		Addr:        k.addr(),
		Served:      e.served,
		Kissed:      e.kissed,
		Dropped:     e.dropped,
		Requests:    e.requests(),
		LastSeen:    time.Duration(max(now-seen, 0)),
		Interleaved: e.xhist != 0,
	}
	if c.Requests > 1 {
		c.Rate = 1e9 / float64(max(e.avg, int64(c.LastSeen), 1))
	}
	return c
}

// Top returns up to n clients ordered by Rate, highest first (ties by
// address), as of now. It visits the whole table, taking one bucket's lock at
// a time: it is for `timectl clients`, not for the request path.
func (l *Log) Top(n int, now int64) []Client {
	if n <= 0 {
		return nil
	}
	h := make(clientHeap, 0, min(n, l.Len()))
	for bi := range l.clients {
		b := &l.clients[bi]
		b.mu.Lock()
		for i := range ways {
			if b.used&(1<<i) == 0 {
				continue
			}
			c := l.client(b.keys[i], b.seen[i], &b.ents[i], now)
			switch {
			case len(h) < n:
				heap.Push(&h, c)
			case above(c, h[0]):
				h[0] = c
				heap.Fix(&h, 0)
			}
		}
		b.mu.Unlock()
	}
	sort.Slice(h, func(i, j int) bool { return above(h[i], h[j]) })
	return h
}

// above orders clients for Top.
func above(a, b Client) bool {
	if a.Rate != b.Rate {
		return a.Rate > b.Rate
	}
	return a.Addr.Less(b.Addr)
}

// clientHeap is a min-heap by above: its root is the one Top drops first.
type clientHeap []Client

func (h clientHeap) Len() int           { return len(h) }
func (h clientHeap) Less(i, j int) bool { return above(h[j], h[i]) }
func (h clientHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *clientHeap) Push(x any)        { *h = append(*h, x.(Client)) }
func (h *clientHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// Len returns how many client entries are in use.
func (l *Log) Len() int { return int(l.nclients.Load()) }

// Size returns how many clients the table can hold.
func (l *Log) Size() int { return len(l.clients) * ways }

// MemoryBytes returns what the table occupies; it is fixed by New.
func (l *Log) MemoryBytes() int {
	return int(unsafe.Sizeof(*l)) +
		len(l.clients)*int(unsafe.Sizeof(clientBucket{})) +
		len(l.prefixes)*int(unsafe.Sizeof(prefixBucket{}))
}
