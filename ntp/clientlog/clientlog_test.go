package clientlog

import (
	"math"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// v4 returns the IPv4 address 10.x.y.z for i = x<<16 | y<<8 | z.
func v4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func mustNew(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestValidate(t *testing.T) {
	good := Config{Size: 1024, Interval: time.Second, Burst: 4, KissEvery: 4,
		PrefixV4: 24, PrefixV6: 48, PrefixInterval: time.Millisecond, PrefixBurst: 64}
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the error; none: valid
	}{
		{"good", func(*Config) {}, nil},
		{"no limits, no burst", func(c *Config) { *c = Config{Size: 64} }, nil},
		{"largest", func(c *Config) { c.Size, c.PrefixSize = MaxSize, MaxSize }, nil},
		{"zero", func(c *Config) { *c = Config{} }, []string{"clientlog: size must be from 64 to 16777216, got 0"}},
		{"size too large", func(c *Config) { c.Size = MaxSize + 1 }, []string{"size must be from"}},
		{"burst 0", func(c *Config) { c.Burst = 0 }, []string{"clientlog: burst must be at least 1, got 0"}},
		{"negative interval", func(c *Config) { c.Interval = -1 }, []string{"interval must not be negative, got -1ns"}},
		{"overflow", func(c *Config) { c.Interval, c.Burst = math.MaxInt64/2, 3 }, []string{"burst × interval is too long"}},
		{"kiss", func(c *Config) { c.KissEvery = -1 }, []string{"kiss every must not be negative, got -1"}},
		{"v4 prefix", func(c *Config) { c.PrefixV4 = 33 }, []string{"IPv4 prefix length must be from 0 to 32, got 33"}},
		{"v6 prefix", func(c *Config) { c.PrefixV6 = -1 }, []string{"IPv6 prefix length must be from 0 to 128, got -1"}},
		{"prefix burst", func(c *Config) { c.PrefixBurst = 0 }, []string{"clientlog: prefix burst must be at least 1, got 0"}},
		{"prefix interval", func(c *Config) { c.PrefixInterval = -time.Second }, []string{"prefix interval must not be negative"}},
		{"prefix size", func(c *Config) { c.PrefixSize = 10 }, []string{"prefix size must be 0 (same as size) or from 64"}},
		{"all at once", func(c *Config) { c.Size, c.Burst, c.KissEvery = 1, 0, -2 },
			[]string{"size must be", "burst must be at least 1", "kiss every must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.modify(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if _, err := New(c); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Serve: "serve", Kiss: "kiss", Drop: "drop", 7: "Verdict(7)"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", v, got, want)
		}
	}
}

func TestSizeAndMemory(t *testing.T) {
	if s := unsafe.Sizeof(clientBucket{}); s%64 != 0 {
		t.Errorf("clientBucket is %d bytes, not a multiple of 64", s)
	}
	if s := unsafe.Sizeof(prefixBucket{}); s%64 != 0 {
		t.Errorf("prefixBucket is %d bytes, not a multiple of 64", s)
	}
	tests := []struct {
		cfg                  Config
		wantSize, wantPrefix int
	}{
		{Config{Size: 64}, 64, 0},
		{Config{Size: 100}, 128, 0},
		{Config{Size: 1 << 20}, 1 << 20, 0},
		{Config{Size: 1000, PrefixInterval: time.Second, PrefixBurst: 1}, 1024, 1024},
		{Config{Size: 1000, PrefixInterval: time.Second, PrefixBurst: 1, PrefixSize: 200}, 1024, 256},
	}
	for _, tt := range tests {
		l := mustNew(t, tt.cfg)
		if l.Size() != tt.wantSize || len(l.prefixes)*ways != tt.wantPrefix {
			t.Errorf("%+v: Size() = %d, prefixes %d; want %d, %d", tt.cfg, l.Size(), len(l.prefixes)*ways, tt.wantSize, tt.wantPrefix)
		}
		want := int(unsafe.Sizeof(*l)) + tt.wantSize*int(unsafe.Sizeof(clientBucket{}))/ways +
			tt.wantPrefix*int(unsafe.Sizeof(prefixBucket{}))/ways
		if l.MemoryBytes() != want {
			t.Errorf("%+v: MemoryBytes() = %d, want %d", tt.cfg, l.MemoryBytes(), want)
		}
		if l.Len() != 0 {
			t.Errorf("Len() = %d on a new table", l.Len())
		}
	}
}

type tally struct{ served, kissed, dropped int }

func (c *tally) add(v Verdict) {
	switch v {
	case Serve:
		c.served++
	case Kiss:
		c.kissed++
	default:
		c.dropped++
	}
}

// checkKisses checks that 1 in every kissEvery over-limit requests was kissed.
func checkKisses(t *testing.T, c tally, kissEvery int) {
	t.Helper()
	over := c.kissed + c.dropped
	want := 0
	if kissEvery > 0 {
		want = (over + kissEvery - 1) / kissEvery
	}
	if c.kissed != want {
		t.Errorf("kissed %d of %d over-limit requests, want %d (1 in %d)", c.kissed, over, want, kissEvery)
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name               string
		interval           time.Duration
		burst, kissEvery   int
		every              time.Duration // between requests
		n                  int
		minServed, maxServ int
	}{
		{"no limit", 0, 0, 4, 0, 1000, 1000, 1000},
		{"steady under the limit", time.Second, 1, 4, 1100 * time.Millisecond, 100, 100, 100},
		{"steady at the limit", time.Second, 1, 4, time.Second, 100, 100, 100},
		{"steady at the limit, burst 8", 16 * time.Second, 8, 4, 16 * time.Second, 100, 100, 100},
		{"10% over, burst 1: every other one", time.Second, 1, 4, 900 * time.Millisecond, 100, 50, 50},
		{"10% over, burst 2", time.Second, 2, 4, 900 * time.Millisecond, 100, 91, 92},
		{"flood 10x", 100 * time.Millisecond, 4, 4, 10 * time.Millisecond, 1000, 100, 105},
		{"flood 10x, never kiss", 100 * time.Millisecond, 4, 0, 10 * time.Millisecond, 1000, 100, 105},
		{"flood 10x, always kiss", 100 * time.Millisecond, 4, 1, 10 * time.Millisecond, 1000, 100, 105},
		{"flood 100x, kiss 1 in 16", time.Second, 16, 16, 10 * time.Millisecond, 2000, 35, 36},
		{"burst at one instant", time.Hour, 8, 2, 0, 100, 8, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustNew(t, Config{Size: 64, Interval: tt.interval, Burst: tt.burst, KissEvery: tt.kissEvery})
			a := netip.MustParseAddr("192.0.2.1")
			var c tally
			now := int64(1e12)
			for i := range tt.n {
				v, _, _ := l.Request(a, now, uint64(i+1), uint64(i+1))
				if i < tt.burst && v != Serve {
					t.Fatalf("request %d of a new client got %v, want serve (burst %d)", i, v, tt.burst)
				}
				c.add(v)
				now += int64(tt.every)
			}
			if c.served < tt.minServed || c.served > tt.maxServ {
				t.Errorf("served %d of %d, want %d to %d", c.served, tt.n, tt.minServed, tt.maxServ)
			}
			checkKisses(t, c, tt.kissEvery)
			got := l.Top(1, now)
			if len(got) != 1 || got[0].Served != uint64(c.served) || got[0].Kissed != uint64(c.kissed) ||
				got[0].Dropped != uint64(c.dropped) || got[0].Requests != uint64(tt.n) {
				t.Errorf("Top = %+v, want counters %+v of %d", got, c, tt.n)
			}
		})
	}
}

func TestRecovery(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		burst    int
		flood    time.Duration // flood length, at 10× the rate
		pause    time.Duration // after it
		want     int           // requests served at once after the pause
	}{
		{"burst 1", time.Second, 1, 30 * time.Second, time.Second, 1},
		{"burst 4", time.Second, 4, 30 * time.Second, 4 * time.Second, 4},
		{"burst 16, long flood", 100 * time.Millisecond, 16, 10 * time.Minute, 1600 * time.Millisecond, 16},
		{"burst 8, half the pause", time.Second, 8, 30 * time.Second, 4 * time.Second, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustNew(t, Config{Size: 64, Interval: tt.interval, Burst: tt.burst, KissEvery: 2})
			a := netip.MustParseAddr("2001:db8::1")
			now := int64(0)
			var c tally
			for end := now + int64(tt.flood); now < end; now += int64(tt.interval / 10) {
				v, _, _ := l.Request(a, now, 1, 1)
				c.add(v)
			}
			if c.kissed+c.dropped == 0 {
				t.Fatal("the flood was never limited")
			}
			now += int64(tt.pause) - int64(tt.interval/10)
			served := 0
			for range 2 * tt.burst {
				if v, _, _ := l.Request(a, now, 1, 1); v == Serve {
					served++
				}
			}
			if served != tt.want {
				t.Errorf("after a pause of %v, %d requests at once were served, want %d", tt.pause, served, tt.want)
			}
		})
	}
}

func TestPrefixLimit(t *testing.T) {
	base := Config{Size: 4096, Interval: time.Second, Burst: 2, KissEvery: 4,
		PrefixV4: 24, PrefixV6: 48, PrefixInterval: 10 * time.Millisecond, PrefixBurst: 10}
	tests := []struct {
		name                 string
		addr                 func(i int) netip.Addr
		minServed, maxServed int // of 1000: 200 addresses, 1 request/s each for 5 s
	}{
		{"one /24", func(i int) netip.Addr { return v4(i) }, 505, 515},
		{"one /24, IPv4-mapped", func(i int) netip.Addr { return netip.AddrFrom16(v4(i).As16()) }, 505, 515},
		{"200 /24s", func(i int) netip.Addr { return v4(i << 8) }, 1000, 1000},
		{"one /48", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 0, 1, 0, byte(i)})
		}, 505, 515},
		{"200 /48s", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 0, byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
		}, 1000, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustNew(t, base)
			var c tally
			for s := range 5 {
				for i := range 200 {
					now := int64(s)*1e9 + int64(i)*5e6 // 200/s from the prefix, spread over each second
					v, _, _ := l.Request(tt.addr(i), now, 1, 1)
					c.add(v)
				}
			}
			if c.served < tt.minServed || c.served > tt.maxServed {
				t.Errorf("served %d of 1000, want %d to %d", c.served, tt.minServed, tt.maxServed)
			}
			checkKisses(t, c, base.KissEvery)
		})
	}
}

func TestPrefixKey(t *testing.T) {
	tests := []struct {
		addr   string
		v4, v6 int
		want   string
	}{
		{"192.0.2.77", 24, 48, "192.0.2.0"},
		{"::ffff:192.0.2.77", 24, 48, "192.0.2.0"},
		{"192.0.2.77", 32, 48, "192.0.2.77"},
		{"192.0.2.77", 0, 48, "0.0.0.0"},
		{"192.0.2.77", 17, 48, "192.0.0.0"},
		{"2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 24, 65, "2001:db8:1:2::"},
		{"2001:db8:1:2:8003:4:5:6", 24, 65, "2001:db8:1:2:8000::"},
		{"2001:db8:1:2:3:4:5:6", 24, 128, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:6", 24, 0, "::"},
		{"2001:db8:1:2:3:4:5:6", 24, 31, "2001:db8::"},
	}
	for _, tt := range tests {
		got := keyOf(netip.MustParseAddr(tt.addr)).prefix(tt.v4, tt.v6).addr()
		if got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s with /%d and /%d: %v, want %s", tt.addr, tt.v4, tt.v6, got, tt.want)
		}
	}
}

// A request the prefix limit refuses takes no token from the address.
func TestPrefixRefusalKeepsAddressToken(t *testing.T) {
	l := mustNew(t, Config{Size: 64, Interval: 10 * time.Second, Burst: 1, KissEvery: 1,
		PrefixV4: 24, PrefixInterval: time.Second, PrefixBurst: 1})
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	steps := []struct {
		addr netip.Addr
		now  time.Duration
		want Verdict
	}{
		{a, 0, Serve},
		{b, 0, Kiss}, // the prefix is empty
		{b, time.Second, Serve},
		{b, time.Second + 1, Kiss},     // now the prefix and the address are empty
		{a, 2 * time.Second, Kiss},     // the address is empty (and the prefix not touched)
		{a, 10 * time.Second, Serve},   // both full again
		{b, 10 * time.Second, Kiss},    // prefix empty
		{b, 11 * time.Second, Serve},   // b's own bucket refilled at 11 s
		{a, 100 * time.Second, Serve},  // much later
		{b, 100 * time.Second, Kiss},   // prefix
		{b, 101 * time.Second, Serve},  // prefix refilled, b's bucket full
		{a, 101 * time.Second, Kiss},   // a's bucket empty (until 110 s)
		{a, 110 * time.Second, Serve},  // and the prefix refilled at 102 s
		{b, 110*time.Second + 1, Kiss}, // prefix
	}
	for i, s := range steps {
		if v, _, _ := l.Request(s.addr, int64(s.now), 1, 1); v != s.want {
			t.Fatalf("step %d: %v at %v got %v, want %v", i, s.addr, s.now, v, s.want)
		}
	}
}

// sameBucket returns n addresses that fall into client bucket 0 of l.
func sameBucket(l *Log, n int) []netip.Addr {
	var out []netip.Addr
	for i := 0; len(out) < n; i++ {
		a := v4(i)
		if l.chash.index(keyOf(a)) == 0 {
			out = append(out, a)
		}
	}
	return out
}

func TestEviction(t *testing.T) {
	tests := []struct {
		name    string
		order   []int // requests from these of the 5 addresses, 1 s apart
		evicted []int // not in the table afterwards
	}{
		{"oldest goes", []int{0, 1, 2, 3, 4}, []int{0}},
		{"re-seen stays", []int{0, 1, 2, 3, 0, 4}, []int{1}},
		{"all re-seen", []int{0, 1, 2, 3, 3, 2, 1, 0, 4}, []int{3}},
		{"evicted comes back", []int{0, 1, 2, 3, 4, 0}, []int{1}},
		{"no eviction below ways", []int{0, 1, 2, 3, 3, 3}, []int{4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustNew(t, Config{Size: 64})
			addrs := sameBucket(l, 5)
			now := int64(0)
			for _, i := range tt.order {
				now += 1e9
				l.Request(addrs[i], now, uint64(now), uint64(now))
			}
			present := map[netip.Addr]bool{}
			for _, c := range l.Top(64, now) {
				present[c.Addr] = true
			}
			for i, a := range addrs {
				gone := false
				for _, e := range tt.evicted {
					gone = gone || e == i
				}
				if present[a] == gone {
					t.Errorf("address %d (%v): present %v, want %v", i, a, present[a], !gone)
				}
			}
			if l.Len() != 4 && l.Len() != len(present) {
				t.Errorf("Len() = %d, want %d", l.Len(), len(present))
			}
		})
	}
}

func TestInterleaved(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("::ffff:192.0.2.8")
	b4 := netip.MustParseAddr("192.0.2.8") // the same client as b
	type step struct {
		op             string // "req", "upd", "mark"
		addr           netip.Addr
		rx, tx         uint64
		wantV          Verdict
		wantRx, wantTx uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first request has nothing saved", []step{
			{"req", a, 10, 11, Serve, 0, 0},
		}},
		{"previous timestamps come back", []step{
			{"req", a, 10, 11, Serve, 0, 0},
			{"req", a, 20, 21, Serve, 10, 11},
			{"req", a, 30, 31, Serve, 20, 21},
		}},
		{"update with the right rx", []step{
			{"req", a, 10, 11, Serve, 0, 0},
			{"upd", a, 10, 12, 0, 0, 0},
			{"req", a, 20, 21, Serve, 10, 12},
		}},
		{"update with the wrong rx is ignored", []step{
			{"req", a, 10, 11, Serve, 0, 0},
			{"req", a, 20, 21, Serve, 10, 11},
			{"upd", a, 10, 99, 0, 0, 0}, // a late send timestamp of the older response
			{"req", a, 30, 31, Serve, 20, 21},
		}},
		{"update of another address is ignored", []step{
			{"req", a, 10, 11, Serve, 0, 0},
			{"upd", b, 10, 99, 0, 0, 0},
			{"req", a, 20, 21, Serve, 10, 11},
			{"req", b, 40, 41, Serve, 0, 0},
		}},
		{"update with rx 0 is ignored", []step{
			{"req", a, 0, 11, Serve, 0, 0},
			{"upd", a, 0, 99, 0, 0, 0},
			{"req", a, 20, 21, Serve, 0, 11},
		}},
		{"IPv4 and IPv4-mapped are one client", []step{
			{"req", b, 10, 11, Serve, 0, 0},
			{"upd", b4, 10, 12, 0, 0, 0},
			{"req", b4, 20, 21, Serve, 10, 12},
		}},
		{"limited requests save nothing", []step{
			{"req", a, 10, 11, Serve, 0, 0},
			{"req", a, 11, 21, Kiss, 0, 0},
			{"req", a, 12, 31, Drop, 0, 0},
			{"upd", a, 11, 99, 0, 0, 0},
			{"req", a, 20, 41, Serve, 10, 11},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// rx/10 is the time of the request in seconds.
			l := mustNew(t, Config{Size: 64, Interval: time.Second, Burst: 1, KissEvery: 2})
			for i, s := range tt.steps {
				switch s.op {
				case "req":
					v, rx, tx := l.Request(s.addr, int64(s.rx)*1e8, s.rx, s.tx)
					if v != s.wantV || rx != s.wantRx || tx != s.wantTx {
						t.Fatalf("step %d: Request = %v, %d, %d; want %v, %d, %d", i, v, rx, tx, s.wantV, s.wantRx, s.wantTx)
					}
				case "upd":
					l.UpdateTx(s.addr, s.rx, s.tx)
				}
			}
		})
	}
}

func TestInterleavedFlag(t *testing.T) {
	tests := []struct {
		marks string // one letter per request: x interleaved, b basic
		want  bool
	}{
		{"", false},
		{"b", false},
		{"x", true},
		{"xbbbbbbb", true},
		{"xbbbbbbbb", false},
		{"bbbbbbbbbbx", true},
		{"xbxbxbxbxbxb", true},
	}
	for _, tt := range tests {
		l := mustNew(t, Config{Size: 64})
		a := netip.MustParseAddr("203.0.113.9")
		l.MarkInterleaved(a) // not in the table yet: no effect
		l.Request(a, 0, 1, 1)
		for i, m := range tt.marks {
			l.Request(a, int64(i+1), 1, 1)
			if m == 'x' {
				l.MarkInterleaved(a)
			}
		}
		if got := l.Top(1, 100)[0].Interleaved; got != tt.want {
			t.Errorf("%q: Interleaved = %v, want %v", tt.marks, got, tt.want)
		}
	}
}

// The zero Addr is not a client's address, but it must not break anything:
// it counts as "::".
func TestZeroAddr(t *testing.T) {
	l := mustNew(t, Config{Size: 64, Interval: time.Second, Burst: 1, PrefixV6: 48, PrefixInterval: time.Second, PrefixBurst: 1})
	var zero netip.Addr
	if v, _, _ := l.Request(zero, 0, 1, 2); v != Serve {
		t.Errorf("first request from the zero Addr: %v", v)
	}
	l.UpdateTx(zero, 1, 3)
	l.MarkInterleaved(zero)
	if _, rx, tx := l.Request(netip.IPv6Unspecified(), 2e9, 4, 5); rx != 1 || tx != 3 {
		t.Errorf("request from :: got %d, %d, want 1, 3", rx, tx)
	}
}

func TestEvictedEntryForgetsTimestamps(t *testing.T) {
	l := mustNew(t, Config{Size: 64})
	addrs := sameBucket(l, ways+1)
	for i, a := range addrs {
		if _, rx, tx := l.Request(a, int64(i), 1, 2); rx != 0 || tx != 0 {
			t.Fatalf("new address %d: previous timestamps %d, %d", i, rx, tx)
		}
	}
	// addrs[0] was evicted by the last one.
	if _, rx, tx := l.Request(addrs[0], 100, 3, 4); rx != 0 || tx != 0 {
		t.Errorf("evicted address: previous timestamps %d, %d, want 0, 0", rx, tx)
	}
	if _, rx, tx := l.Request(addrs[ways], 101, 3, 4); rx != 1 || tx != 2 {
		t.Errorf("kept address: previous timestamps %d, %d, want 1, 2", rx, tx)
	}
}

func TestMillionAddresses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no limits", Config{Size: 4096}},
		{"limits", Config{Size: 4096, Interval: time.Second, Burst: 4, KissEvery: 4,
			PrefixV4: 24, PrefixV6: 48, PrefixInterval: time.Millisecond, PrefixBurst: 16, PrefixSize: 1024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustNew(t, tt.cfg)
			l.Request(v4(0), 0, 1, 1)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := 1; i < 1<<20; i++ {
				l.Request(v4(i), int64(i)*1000, uint64(i), uint64(i))
			}
			runtime.ReadMemStats(&after)
			if l.Len() > l.Size() {
				t.Errorf("Len() = %d > Size() = %d", l.Len(), l.Size())
			}
			if l.Len() < l.Size()*9/10 {
				t.Errorf("Len() = %d, want the table (%d) nearly full", l.Len(), l.Size())
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<10 {
				t.Errorf("a million requests allocated %d bytes", grew)
			}
			if n := after.Mallocs - before.Mallocs; n > 100 {
				t.Errorf("a million requests made %d allocations", n)
			}
			t.Logf("table %d entries, %d bytes; heap %d -> %d bytes", l.Size(), l.MemoryBytes(), before.HeapAlloc, after.HeapAlloc)
		})
	}
}

func TestNoAllocations(t *testing.T) {
	l := mustNew(t, Config{Size: 1024, Interval: time.Second, Burst: 2, KissEvery: 2,
		PrefixV4: 24, PrefixV6: 64, PrefixInterval: time.Millisecond, PrefixBurst: 8})
	a := netip.MustParseAddr("2001:db8::5")
	now := int64(0)
	tests := []struct {
		name string
		f    func()
	}{
		{"Request", func() { now += 1e6; l.Request(a, now, 1, 2) }},
		{"UpdateTx", func() { l.UpdateTx(a, 1, 3) }},
		{"MarkInterleaved", func() { l.MarkInterleaved(a) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
			t.Errorf("%s: %v allocations per call", tt.name, n)
		}
	}
}

func TestTop(t *testing.T) {
	l := mustNew(t, Config{Size: 256, Interval: 5 * time.Millisecond, Burst: 4, KissEvery: 1})
	fast, medium, slow, once := v4(1), v4(2), v4(3), v4(4)
	// 10 s: fast at 1000/s (5x over its limit), medium at 10/s, slow at 1/s.
	for ms := int64(0); ms < 10000; ms++ {
		now := ms * 1e6
		l.Request(fast, now, 1, 1)
		if ms%100 == 0 {
			l.Request(medium, now+1, 1, 1)
			l.MarkInterleaved(medium)
		}
		if ms%1000 == 0 {
			l.Request(slow, now+2, 1, 1)
		}
	}
	l.Request(once, 5e9, 1, 1)
	l.MarkInterleaved(slow)
	l.Request(slow, 10e9, 1, 1) // one of slow's last 8 requests was interleaved
	now := int64(10e9)

	tests := []struct {
		name string
		n    int
		now  int64
		want []Client
	}{
		{"top 2", 2, now, []Client{
			{Addr: fast, Requests: 10000, Served: 2003, Kissed: 7997, Rate: 1000, LastSeen: time.Millisecond},
			{Addr: medium, Requests: 100, Served: 100, Rate: 10, LastSeen: 99*time.Millisecond + time.Millisecond - 1, Interleaved: true},
		}},
		{"all", 10, now, []Client{
			{Addr: fast, Requests: 10000, Served: 2003, Kissed: 7997, Rate: 1000, LastSeen: time.Millisecond},
			{Addr: medium, Requests: 100, Served: 100, Rate: 10, LastSeen: 100*time.Millisecond - 1, Interleaved: true},
			{Addr: slow, Requests: 11, Served: 11, Rate: 1, LastSeen: 0, Interleaved: true},
			{Addr: once, Requests: 1, Served: 1, Rate: 0, LastSeen: 5 * time.Second},
		}},
		{"idle: rates fall with the time since the last request", 3, now + 100e9, []Client{
			{Addr: slow, Requests: 11, Served: 11, Rate: 0.01, LastSeen: 100 * time.Second, Interleaved: true},
			{Addr: fast, Requests: 10000, Served: 2003, Kissed: 7997, Rate: 0.01, LastSeen: 100*time.Second + time.Millisecond},
			{Addr: medium, Requests: 100, Served: 100, Rate: 0.01, LastSeen: 100*time.Second + 100*time.Millisecond - 1, Interleaved: true},
		}},
		{"none", 0, now, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := l.Top(tt.n, tt.now)
			if len(got) != len(tt.want) {
				t.Fatalf("Top(%d) returned %d clients: %+v", tt.n, len(got), got)
			}
			for i, w := range tt.want {
				g := got[i]
				rateOK := math.Abs(g.Rate-w.Rate) <= 0.002*w.Rate
				if g.Addr != w.Addr || !rateOK || g.Requests != w.Requests || g.Served != w.Served ||
					g.Kissed != w.Kissed || g.Dropped != w.Dropped || g.LastSeen != w.LastSeen || g.Interleaved != w.Interleaved {
					t.Errorf("Top(%d)[%d] = %+v, want %+v", tt.n, i, g, w)
				}
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		each    = 4000
		shared  = 16
		own     = 200
	)
	l := mustNew(t, Config{Size: 1 << 18, Interval: time.Millisecond, Burst: 4, KissEvery: 3,
		PrefixV4: 24, PrefixV6: 48, PrefixInterval: 100 * time.Microsecond, PrefixBurst: 32})
	start := time.Now()
	var wg sync.WaitGroup
	counts := make([]tally, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				a := v4(i / 2 % shared) // all workers share these
				if i%2 == 1 {
					a = v4((w+1)<<16 | i/2%own) // this worker's own
				}
				now := int64(time.Since(start))
				v, _, _ := l.Request(a, now, uint64(now), uint64(i))
				counts[w].add(v)
				switch i % 7 {
				case 0:
					l.UpdateTx(a, uint64(now), uint64(i+1))
				case 1:
					l.MarkInterleaved(a)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			l.Top(5, int64(time.Since(start)))
		}
	})
	wg.Wait()

	var want tally
	for _, c := range counts {
		want.served += c.served
		want.kissed += c.kissed
		want.dropped += c.dropped
	}
	if n := shared + workers*own; l.Len() != n {
		t.Fatalf("Len() = %d, want %d (distinct addresses)", l.Len(), n)
	}
	var got tally
	var requests uint64
	for _, c := range l.Top(l.Size(), int64(time.Since(start))) {
		got.served += int(c.Served)
		got.kissed += int(c.Kissed)
		got.dropped += int(c.Dropped)
		requests += c.Requests
	}
	if got != want || requests != workers*each {
		t.Errorf("the table counted %+v (%d requests), the workers %+v (%d)", got, requests, want, workers*each)
	}
}

// benchConfig limits a request per millisecond per address and 16 per
// microsecond per /24: the benchmarks' clients (one request every 4.096 ms,
// 256 per /24) are always served, so both limits are checked every time.
var benchConfig = Config{Size: 1 << 16, Interval: time.Millisecond, Burst: 4, KissEvery: 4,
	PrefixV4: 24, PrefixV6: 48, PrefixInterval: time.Microsecond / 16, PrefixBurst: 64}

func BenchmarkRequest(b *testing.B) {
	noPrefix := benchConfig
	noPrefix.PrefixInterval = 0
	flood := benchConfig
	flood.Interval = time.Second
	tests := []struct {
		name    string
		cfg     Config
		clients int // distinct addresses, cycled, one request each per µs
	}{
		{"served", benchConfig, 4096},
		{"served, no prefix limit", noPrefix, 4096},
		{"over the limit", flood, 4096},
		{"new client each time", benchConfig, 1 << 24},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			l := mustNew(b, tt.cfg)
			b.ReportAllocs()
			i := 0
			var served int
			for b.Loop() {
				i++
				if v, _, _ := l.Request(v4(i%tt.clients), int64(i)*1000, uint64(i), uint64(i)); v == Serve {
					served++
				}
			}
			b.ReportMetric(float64(served)/float64(i), "served/op")
		})
	}
}

func BenchmarkRequestParallel(b *testing.B) {
	l := mustNew(b, benchConfig)
	var mu sync.Mutex
	next := 0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		next++
		base := next << 16
		mu.Unlock()
		i := 0
		for pb.Next() {
			i++
			l.Request(v4(base|i%4096), int64(i)*1000, uint64(i), uint64(i))
		}
	})
}
