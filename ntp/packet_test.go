package ntp

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/timed-project/timed/sources"
)

func TestTimestampEra(t *testing.T) {
	// 2036-02-07 06:28:16 UTC is the start of NTP era 1 (seconds wrap to 0).
	era1 := time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC)
	cases := []struct {
		name  string
		t     time.Time
		pivot time.Time
		secs  uint32
	}{
		{"era 0 start", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"unix epoch", time.Unix(0, 0), time.Unix(0, 0), ntpUnixOffset},
		{"now-ish", time.Date(2026, 5, 1, 12, 0, 0, 250_000_000, time.UTC), time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), 0},
		{"last second of era 0", era1.Add(-time.Second), era1, 0xffffffff},
		{"first second of era 1", era1, era1.Add(-time.Hour), 0},
		{"era 1, pivot in era 0", era1.Add(10*time.Second + 123456789), era1.Add(-5 * time.Second), 10},
		{"era 0, pivot in era 1", era1.Add(-10 * time.Second), era1.Add(5 * time.Second), 0xfffffff6},
		{"2036-02-07 noon, pivot 1990", time.Date(2036, 2, 7, 12, 0, 0, 0, time.UTC), time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"2100, pivot 2090", time.Date(2100, 3, 1, 0, 0, 0, 999_999_999, time.UTC), time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := TimestampOf(tc.t)
			if tc.secs != 0 && ts.Seconds() != tc.secs {
				t.Errorf("seconds = %#x, want %#x", ts.Seconds(), tc.secs)
			}
			got := ts.Time(tc.pivot)
			if !got.Equal(tc.t) {
				t.Errorf("round trip: %v → %v → %v", tc.t, ts, got.UTC())
			}
		})
	}
	// An era-1 timestamp on the wire (seconds 0x00000010) read with a pivot
	// in 2036 is in 2036, not 1900.
	ts := Timestamp(0x10<<32 | 0x80000000)
	got := ts.Time(time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC))
	want := era1.Add(16*time.Second + 500*time.Millisecond)
	if !got.Equal(want) {
		t.Errorf("era 1 read as %v, want %v", got.UTC(), want)
	}
	// ±68 years around the pivot.
	pivot := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{-68 * 365 * 24 * time.Hour, 68 * 365 * 24 * time.Hour} {
		tt := pivot.Add(d)
		if got := TimestampOf(tt).Time(pivot); !got.Equal(tt) {
			t.Errorf("pivot %+v: %v read as %v", d, tt, got)
		}
	}
}

func TestTimestampFractionRoundTrip(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for ns := int64(0); ns < 1e9; ns += 999_983 {
		tt := base.Add(time.Duration(ns))
		if got := TimestampOf(tt).Time(base); !got.Equal(tt) {
			t.Fatalf("%d ns: got %v", ns, got.Sub(base))
		}
	}
	tt := base.Add(999_999_999)
	if got := TimestampOf(tt).Time(base); !got.Equal(tt) {
		t.Fatalf("999999999 ns: got %v", got.Sub(base))
	}
}

func TestShort(t *testing.T) {
	cases := []struct {
		d    time.Duration
		s    Short
		back time.Duration
	}{
		{0, 0, 0},
		{-time.Second, 0, 0},
		{time.Second, 0x10000, time.Second},
		{500 * time.Millisecond, 0x8000, 500 * time.Millisecond},
		{15259 * time.Nanosecond, 1, 15259 * time.Nanosecond},
		{100000 * time.Second, 0xffffffff, 65535*time.Second + 999984741},
	}
	for _, tc := range cases {
		if got := ShortOf(tc.d); got != tc.s {
			t.Errorf("ShortOf(%v) = %#x, want %#x", tc.d, got, tc.s)
		}
		if got := tc.s.Duration(); got != tc.back {
			t.Errorf("%#x.Duration() = %v, want %v", tc.s, got, tc.back)
		}
	}
}

func serverPacket() Header {
	return Header{
		Leap: sources.LeapNone, Version: 4, Mode: ModeServer, Stratum: 2, Poll: 6, Precision: -20,
		RootDelay: 0x100, RootDispersion: 0x200, RefID: 0xc0000201,
		Reference: 1, Origin: 0x1122334455667788, Receive: 0xe0000000_00000001, Transmit: 0xe0000000_00000002,
	}
}

func encode(t testing.TB, h Header, tail ...byte) []byte {
	b, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, tail...)
}

func TestHeaderRoundTrip(t *testing.T) {
	h := serverPacket()
	b := encode(t, h)
	if len(b) != HeaderLen {
		t.Fatalf("len %d", len(b))
	}
	if b[0] != 0x24 {
		t.Errorf("first byte %#x, want 0x24 (LI 0, VN 4, mode 4)", b[0])
	}
	p, err := ParsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Header != h {
		t.Errorf("parsed %+v, want %+v", p.Header, h)
	}
	if _, err := (&Header{Leap: 4}).AppendBinary(nil); err == nil {
		t.Error("leap 4 encoded")
	}
}

func ext(typ uint16, n int) []byte {
	b := make([]byte, n)
	b[0], b[1] = byte(typ>>8), byte(typ)
	b[2], b[3] = byte(n>>8), byte(n)
	return b
}

func TestParsePacket(t *testing.T) {
	v3 := serverPacket()
	v3.Version = 3
	v2 := serverPacket()
	v2.Version = 2
	cases := []struct {
		name    string
		b       []byte
		err     error
		nExt    int
		macLen  int
		version uint8
	}{
		{"plain v4", encode(t, serverPacket()), nil, 0, 0, 4},
		{"plain v3", encode(t, v3), nil, 0, 0, 3},
		{"v2 rejected", encode(t, v2), ErrVersion, 0, 0, 0},
		{"short", encode(t, serverPacket())[:47], ErrShort, 0, 0, 0},
		{"empty", nil, ErrShort, 0, 0, 0},
		{"too long", encode(t, serverPacket(), make([]byte, MaxPacketLen)...), ErrLong, 0, 0, 0},
		{"one extension", encode(t, serverPacket(), ext(0x0104, 36)...), nil, 1, 0, 4},
		{"two extensions", encode(t, serverPacket(), append(ext(0x0104, 16), ext(0x0204, 28)...)...), nil, 2, 0, 4},
		{"extension + MAC", encode(t, serverPacket(), append(ext(0x0104, 16), make([]byte, 20)...)...), nil, 1, 20, 4},
		{"MD5 MAC", encode(t, serverPacket(), make([]byte, 20)...), nil, 0, 20, 4},
		{"SHA1 MAC", encode(t, serverPacket(), make([]byte, 24)...), nil, 0, 24, 4},
		{"crypto-NAK", encode(t, serverPacket(), 0, 0, 0, 0), nil, 0, 4, 4},
		{"v3 MAC", encode(t, v3, make([]byte, 20)...), nil, 0, 20, 3},
		{"v3 junk", encode(t, v3, make([]byte, 16)...), ErrTrailer, 0, 0, 0},
		{"stray bytes", encode(t, serverPacket(), 1, 2), ErrTrailer, 0, 0, 0},
		{"length past the end", encode(t, serverPacket(), append(ext(1, 16), 0, 1, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0)...), ErrTrailer, 0, 0, 0},
		{"zero length", encode(t, serverPacket(), make([]byte, 32)...), ErrTrailer, 0, 0, 0},
		{"unaligned length", encode(t, serverPacket(), append(ext(1, 16)[:2], 0, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)...), ErrTrailer, 0, 0, 0},
		{"too many fields", encode(t, serverPacket(), bytes.Repeat(ext(1, 4), 40)...), ErrTrailer, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePacket(tc.b)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Extensions) != tc.nExt || len(p.MAC) != tc.macLen || p.Version != tc.version {
				t.Errorf("got %d extensions, MAC %d bytes, version %d; want %d, %d, %d",
					len(p.Extensions), len(p.MAC), p.Version, tc.nExt, tc.macLen, tc.version)
			}
		})
	}
}

func TestCheckResponse(t *testing.T) {
	mod := func(f func(h *Header)) Header {
		h := serverPacket()
		f(&h)
		return h
	}
	cases := []struct {
		name string
		h    Header
		err  error
		kiss string
	}{
		{"good", serverPacket(), nil, ""},
		{"client mode", mod(func(h *Header) { h.Mode = ModeClient }), ErrMode, ""},
		{"broadcast", mod(func(h *Header) { h.Mode = ModeBroadcast }), ErrMode, ""},
		{"RATE", mod(func(h *Header) { h.Stratum = 0; h.RefID = 0x52415445 }), ErrKissOfDeath, "RATE"},
		{"DENY", mod(func(h *Header) { h.Stratum = 0; h.RefID = 0x44454e59 }), ErrKissOfDeath, "DENY"},
		{"short code", mod(func(h *Header) { h.Stratum = 0; h.RefID = 0x41430000 }), ErrKissOfDeath, "AC"},
		{"binary code", mod(func(h *Header) { h.Stratum = 0; h.RefID = 0x01ff4142 }), ErrKissOfDeath, "??AB"},
		{"unsynchronized", mod(func(h *Header) { h.Leap = sources.LeapUnknown }), ErrUnsynced, ""},
		{"stratum 16", mod(func(h *Header) { h.Stratum = 16 }), ErrUnsynced, ""},
		{"zero transmit", mod(func(h *Header) { h.Transmit = 0 }), ErrNoTransmit, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePacket(encode(t, tc.h))
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckResponse()
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var k *KissError
			if errors.As(err, &k) != (tc.kiss != "") || (k != nil && k.Code != tc.kiss) {
				t.Errorf("kiss = %+v, want %q", k, tc.kiss)
			}
		})
	}
}

func TestPrecisionDuration(t *testing.T) {
	cases := map[int8]time.Duration{0: time.Second, -1: 500 * time.Millisecond, -20: 953 * time.Nanosecond,
		-30: time.Nanosecond, -128: time.Nanosecond, 127: time.Hour, 3: 8 * time.Second}
	for p, want := range cases {
		if got := PrecisionDuration(p); got != want {
			t.Errorf("PrecisionDuration(%d) = %v, want %v", p, got, want)
		}
	}
}

func FuzzParsePacket(f *testing.F) {
	f.Add(encode(f, serverPacket()))
	f.Add(encode(f, serverPacket(), ext(0x0104, 36)...))
	f.Add(encode(f, serverPacket(), append(ext(0x0104, 16), make([]byte, 20)...)...))
	f.Add(encode(f, serverPacket(), 0, 0, 0, 0))
	f.Add([]byte{0x1b})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			return
		}
		if len(b) < HeaderLen || len(b) > MaxPacketLen || len(p.Extensions) > maxExtensionFields {
			t.Fatalf("accepted %d bytes with %d extension fields", len(b), len(p.Extensions))
		}
		n := HeaderLen + len(p.MAC)
		for _, e := range p.Extensions {
			n += 4 + len(e.Body)
		}
		if n != len(b) {
			t.Fatalf("fields cover %d of %d bytes", n, len(b))
		}
		_ = p.CheckResponse()
		// The header re-encodes to the same 48 bytes.
		out, err := p.Header.AppendBinary(nil)
		if err != nil || !bytes.Equal(out, b[:HeaderLen]) {
			t.Fatalf("re-encoded %x, want %x (%v)", out, b[:HeaderLen], err)
		}
	})
}
