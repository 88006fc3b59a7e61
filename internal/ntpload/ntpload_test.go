package ntpload

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// response builds a server response to cookie with the given first byte,
// stratum and reference ID, n bytes long.
func response(first, stratum byte, refid string, cookie uint64, n int) []byte {
	b := make([]byte, n)
	if n > 0 {
		b[0] = first
	}
	if n >= headerLen {
		b[offStratum] = stratum
		copy(b[offRefID:], refid)
		binary.BigEndian.PutUint64(b[offOrigin:], cookie)
	}
	return b
}

func TestParseResponse(t *testing.T) {
	const cookie = 0x1234567890abcdef
	tests := []struct {
		name   string
		b      []byte
		kind   kind
		origin uint64
		code   string
	}{
		{"v4 server", response(4<<3|4, 1, "LOCL", cookie, 48), kindResponse, cookie, ""},
		{"v3 server", response(3<<3|4, 2, "", cookie, 48), kindResponse, cookie, ""},
		{"v1 server", response(1<<3|4, 2, "", cookie, 48), kindResponse, cookie, ""},
		{"with a MAC", response(4<<3|4, 2, "", cookie, 68), kindResponse, cookie, ""},
		{"leap bits set", response(3<<6|4<<3|4, 1, "", cookie, 48), kindResponse, cookie, ""},
		{"RATE kiss", response(3<<6|4<<3|4, 0, "RATE", cookie, 48), kindKiss, cookie, "RATE"},
		{"DENY kiss", response(4<<3|4, 0, "DENY", cookie, 48), kindKiss, cookie, "DENY"},
		{"short", response(4<<3|4, 1, "", cookie, 47), kindMalformed, 0, ""},
		{"empty", nil, kindMalformed, 0, ""},
		{"client mode", response(4<<3|3, 1, "", cookie, 48), kindMalformed, 0, ""},
		{"broadcast mode", response(4<<3|5, 1, "", cookie, 48), kindMalformed, 0, ""},
		{"version 0", response(0<<3|4, 1, "", cookie, 48), kindMalformed, 0, ""},
		{"version 5", response(5<<3|4, 1, "", cookie, 48), kindMalformed, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, origin, code := parseResponse(tt.b)
			if k != tt.kind || origin != tt.origin {
				t.Fatalf("parseResponse = %v, %#x; want %v, %#x", k, origin, tt.kind, tt.origin)
			}
			if k == kindKiss && kissName(code) != tt.code {
				t.Errorf("kiss code %q, want %q", kissName(code), tt.code)
			}
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add(response(4<<3|4, 1, "LOCL", 42, 48))
	f.Add(response(4<<3|4, 0, "RATE", 42, 48))
	f.Add([]byte{0x24})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, origin, code := parseResponse(b)
		if k != kindMalformed && (len(b) < headerLen || b[0]&7 != modeServer) {
			t.Fatalf("accepted %x as %v", b, k)
		}
		if k == kindMalformed && origin != 0 {
			t.Fatalf("malformed datagram with origin %#x", origin)
		}
		_ = kissName(code)
	})
}

func TestRequest(t *testing.T) {
	b := bytes.Repeat([]byte{0xff}, headerLen)
	request(b, 0x0102030405060708)
	want := make([]byte, headerLen)
	want[0] = 0x23 // LI 0, version 4, mode 3
	copy(want[offTransmit:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if !bytes.Equal(b, want) {
		t.Fatalf("request = %x\nwant      %x", b, want)
	}
}

func TestKissName(t *testing.T) {
	tests := []struct {
		code [4]byte
		want string
	}{
		{[4]byte{'R', 'A', 'T', 'E'}, "RATE"},
		{[4]byte{'D', 'E', 'N', 'Y'}, "DENY"},
		{[4]byte{0, 1, 0xab, 'X'}, "0x0001ab58"},
	}
	for _, tt := range tests {
		if got := kissName(tt.code); got != tt.want {
			t.Errorf("kissName(%v) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	values := []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 4095, 4096, 123456, 1 << 40, 1<<63 - 1, 1<<64 - 1}
	for v := uint64(1); v < 1<<50; v = v*3 + 1 {
		values = append(values, v)
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, i, histBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= histSub && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-12 {
			t.Errorf("bucket %d = [%d, %d] wider than 1/%d", i, lo, hi, histSub)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name    string
		samples func(add func(int64))
		q       float64
		want    time.Duration
	}{
		{"empty", func(func(int64)) {}, 0.5, 0},
		{"one", func(add func(int64)) { add(1000) }, 0.99, 1000},
		{"uniform 1..1000 µs p50", func(add func(int64)) {
			for i := int64(1); i <= 1000; i++ {
				add(i * 1000)
			}
		}, 0.5, 500 * time.Microsecond},
		{"uniform 1..1000 µs p99", func(add func(int64)) {
			for i := int64(1); i <= 1000; i++ {
				add(i * 1000)
			}
		}, 0.99, 990 * time.Microsecond},
		{"one outlier above p99.9", func(add func(int64)) {
			for range 9999 {
				add(50_000)
			}
			add(5_000_000)
		}, 0.999, 50 * time.Microsecond},
		{"negative counts as zero", func(add func(int64)) { add(-5) }, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			tt.samples(h.add)
			got := h.quantile(tt.q)
			if d := got - tt.want; d < -tt.want/50 || d > tt.want/50 {
				t.Errorf("quantile(%g) = %v, want %v ± 2%%", tt.q, got, tt.want)
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b histogram
	a.add(100)
	a.add(300)
	b.add(200)
	b.add(10_000)
	a.merge(&b)
	if a.n != 4 || a.max != 10_000 || a.mean() != 2650 {
		t.Fatalf("merged n=%d max=%d mean=%v", a.n, a.max, a.mean())
	}
}

func TestSourceAddr(t *testing.T) {
	tests := []struct {
		first string
		i     int
		want  string
		err   string
	}{
		{"127.1.0.1", 0, "127.1.0.1", ""},
		{"127.1.0.1", 253, "127.1.0.254", ""},
		{"127.1.0.1", 254, "127.1.1.1", ""},
		{"127.1.0.1", 254*256 - 1, "127.1.255.254", ""},
		{"127.1.0.1", 254 * 256, "127.2.0.1", ""},
		{"127.1.0.1", MaxSources - 1, "127.255.255.254", ""},
		{"127.1.0.1", MaxSources, "", "run out"},
		{"127.9.9.200", 100, "127.9.10.46", ""},
		{"127.1.0.0", 0, "", "ends in .0"},
		{"127.1.0.255", 0, "", "ends in .255"},
	}
	for _, tt := range tests {
		got, err := sourceAddr(netip.MustParseAddr(tt.first), tt.i)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("sourceAddr(%s, %d): error %v, want one with %q", tt.first, tt.i, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("sourceAddr(%s, %d): %v", tt.first, tt.i, err)
		case tt.err == "" && netip.AddrFrom4(got).String() != tt.want:
			t.Errorf("sourceAddr(%s, %d) = %s, want %s", tt.first, tt.i, netip.AddrFrom4(got), tt.want)
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	server := netip.MustParseAddrPort("127.0.0.1:123")
	tests := []struct {
		name string
		o    Options
		err  string
	}{
		{"no server", Options{}, "want an IPv4 address and port"},
		{"IPv6 server", Options{Server: netip.MustParseAddrPort("[::1]:123")}, "want an IPv4"},
		{"port 0", Options{Server: netip.MustParseAddrPort("127.0.0.1:0")}, "want an IPv4"},
		{"too many sources", Options{Server: server, Sources: MaxSources + 1}, "sources"},
		{"negative sources", Options{Server: server, Sources: -1}, "sources"},
		{"negative rate", Options{Server: server, Rate: -1}, "rate"},
		{"negative duration", Options{Server: server, Duration: -time.Second}, "negative"},
		{"burst too large", Options{Server: server, Burst: MaxBurst + 1}, "burst"},
		{"too many workers", Options{Server: server, Workers: 5000}, "workers"},
		{"IPv6 source", Options{Server: server, FirstSource: netip.MustParseAddr("::1")}, "IPv4"},
		{"sources past the /8", Options{Server: server, FirstSource: netip.MustParseAddr("127.255.255.1"), Sources: 300}, "run out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.o.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one with %q", err, tt.err)
			}
		})
	}
	o, err := Options{Server: netip.MustParseAddrPort("[::ffff:127.0.0.1]:123")}.withDefaults()
	if err != nil || o.Server.String() != "127.0.0.1:123" || o.Sources != 1 || o.Burst != 16 || o.Workers != 1 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       stat
		err        bool
	}{
		{"plain", "42 (chronyd) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1 0 100 1000 200 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0",
			stat{name: "chronyd", cpu: 1750 * time.Millisecond, processor: 1}, false},
		{"name with spaces and parentheses", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 0 0 0 0",
			stat{name: "a (b) c", cpu: 70 * time.Millisecond, processor: -1}, false},
		{"short", "7 (x) R 1 2 3", stat{}, true},
		{"no name", "7 x R 1 2 3 4 5 6 7 8 9 10 11 12 13", stat{}, true},
		{"bad utime", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 z 4 0 0", stat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.line)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("parseStat = %+v, %v; want %+v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestWriteText(t *testing.T) {
	r := &Result{Server: "127.0.0.1:123", Sources: 10, Workers: 1, Burst: 16, GSO: true, Seconds: 1,
		Sent: 1000, Answered: 900, Kissed: 50, Kisses: map[string]uint64{"RATE": 40, "DENY": 10},
		ServerPID: 7, ServerCPU: 0.5}
	r.Seconds = 2
	var h histogram
	h.add(int64(50 * time.Microsecond))
	r.finish(&h)
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"maximal", "900 (450/s)", "50 (DENY 10, RATE 40)", "5.0000%", "1800", "0.25 cores", "49.9 / 49.9"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, buf.String())
		}
	}
}
