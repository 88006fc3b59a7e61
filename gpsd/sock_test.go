package gpsd

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/sources"
)

// sockTestShift is how far the test timebase's clock is ahead of the
// system clock.
const sockTestShift = 5 * time.Millisecond

// sockTestTimebase is a disciplined clock sockTestShift ahead of the system
// clock.
type sockTestTimebase struct{}

func (sockTestTimebase) Now() time.Time                     { return time.Now().Add(sockTestShift) }
func (sockTestTimebase) FromSystem(sys time.Time) time.Time { return sys.Add(sockTestShift) }

// sockTestReporter records what a source reports.
type sockTestReporter struct {
	mu       sync.Mutex
	polled   int
	measured []sources.Measurement
	faults   []string
	notify   chan struct{}
}

func newSockTestReporter() *sockTestReporter {
	return &sockTestReporter{notify: make(chan struct{}, 1000)}
}

func (r *sockTestReporter) Polled() { r.mu.Lock(); r.polled++; r.mu.Unlock() }
func (r *sockTestReporter) Measured(m sources.Measurement) {
	r.mu.Lock()
	r.measured = append(r.measured, m)
	r.mu.Unlock()
	r.notify <- struct{}{}
}
func (r *sockTestReporter) Fault(reason string) {
	r.mu.Lock()
	r.faults = append(r.faults, reason)
	r.mu.Unlock()
	r.notify <- struct{}{}
}
func (r *sockTestReporter) PollInterval() time.Duration { return time.Second }

func (r *sockTestReporter) snapshot() ([]sources.Measurement, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sources.Measurement(nil), r.measured...), append([]string(nil), r.faults...)
}

// waitFor waits until cond holds for what r recorded.
func (r *sockTestReporter) waitFor(t *testing.T, what string, cond func([]sources.Measurement, []string) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if cond(r.snapshot()) {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			m, f := r.snapshot()
			t.Fatalf("timed out waiting for %s; have %d measurements, faults %q", what, len(m), f)
		}
	}
}

// sockEncode builds a SOCK datagram with time_t of timeSize bytes.
func sockEncode(timeSize int, sec, usec int64, offset float64, pulse, leap int32, magic uint32) []byte {
	b := make([]byte, sockSampleSize(timeSize))
	ne := binary.NativeEndian
	if timeSize == 8 {
		ne.PutUint64(b[0:], uint64(sec))
		ne.PutUint64(b[8:], uint64(usec))
	} else {
		ne.PutUint32(b[0:], uint32(sec))
		ne.PutUint32(b[4:], uint32(usec))
	}
	o := 2 * timeSize
	ne.PutUint64(b[o:], math.Float64bits(offset))
	ne.PutUint32(b[o+8:], uint32(pulse))
	ne.PutUint32(b[o+12:], uint32(leap))
	ne.PutUint32(b[o+20:], magic)
	return b
}

// sockCSample mirrors chrony's struct sock_sample with Go's types: Go's
// int has the size of a C long on every Go target, as time_t and
// suseconds_t do (except 32-bit builds with a 64-bit time_t).
type sockCSample struct {
	sec, usec                int
	offset                   float64
	pulse, leap, pad, magicN int32
}

func TestSockSampleSize(t *testing.T) {
	tests := []struct {
		timeSize, want int
	}{
		{8, 40}, // 64-bit: struct timeval is 16 bytes
		{4, 32}, // 32-bit: 8 bytes
		{sockTimeSize, int(unsafe.Sizeof(sockCSample{}))},
	}
	for _, tt := range tests {
		if got := sockSampleSize(tt.timeSize); got != tt.want {
			t.Errorf("sockSampleSize(%d) = %d, want %d", tt.timeSize, got, tt.want)
		}
	}
	if off := int(unsafe.Offsetof(sockCSample{}.offset)); off != 2*sockTimeSize {
		t.Errorf("offset field at %d, decoder reads it at %d", off, 2*sockTimeSize)
	}
	if off := int(unsafe.Offsetof(sockCSample{}.magicN)); off != 2*sockTimeSize+20 {
		t.Errorf("magic field at %d, decoder reads it at %d", off, 2*sockTimeSize+20)
	}
}

func TestDecodeSockSample(t *testing.T) {
	const sec = 1_800_000_000
	n := sockTimeSize
	tests := []struct {
		name   string
		in     []byte
		want   sockSample
		reason string // drop reason, "" for success
	}{
		{"time sample", sockEncode(n, sec, 250000, 0.0123, 0, 0, sockMagic),
			sockSample{System: time.Unix(sec, 250000000), Offset: 12300 * time.Microsecond}, ""},
		{"negative offset", sockEncode(n, sec, 0, -1.5, 0, 0, sockMagic),
			sockSample{System: time.Unix(sec, 0), Offset: -1500 * time.Millisecond}, ""},
		{"leap insert", sockEncode(n, sec, 1, 0, 0, 1, sockMagic),
			sockSample{System: time.Unix(sec, 1000), Leap: sources.LeapInsert}, ""},
		{"leap delete", sockEncode(n, sec, 1, 0, 0, 2, sockMagic),
			sockSample{System: time.Unix(sec, 1000), Leap: sources.LeapDelete}, ""},
		{"pulse ignores leap", sockEncode(n, sec, 999999, 0.000002, 1, 7, sockMagic),
			sockSample{System: time.Unix(sec, 999999000), Offset: 2 * time.Microsecond, Pulse: true}, ""},
		{"wrong magic", sockEncode(n, sec, 0, 0, 0, 0, 0x4b434f53), sockSample{}, DropWrongMagic},
		{"too short", sockEncode(n, sec, 0, 0, 0, 0, sockMagic)[:20], sockSample{}, DropWrongSize},
		{"too long", append(sockEncode(n, sec, 0, 0, 0, 0, sockMagic), 0), sockSample{}, DropWrongSize},
		{"empty", nil, sockSample{}, DropWrongSize},
		{"usec too large", sockEncode(n, sec, 1000000, 0, 0, 0, sockMagic), sockSample{}, DropBadTimestamp},
		{"negative usec", sockEncode(n, sec, -1, 0, 0, 0, sockMagic), sockSample{}, DropBadTimestamp},
		{"zero seconds", sockEncode(n, 0, 0, 0, 0, 0, sockMagic), sockSample{}, DropBadTimestamp},
		{"NaN offset", sockEncode(n, sec, 0, math.NaN(), 0, 0, sockMagic), sockSample{}, DropBadOffset},
		{"infinite offset", sockEncode(n, sec, 0, math.Inf(-1), 0, 0, sockMagic), sockSample{}, DropBadOffset},
		{"offset beyond a century", sockEncode(n, sec, 0, 4e9, 0, 0, sockMagic), sockSample{}, DropBadOffset},
		{"bad leap", sockEncode(n, sec, 0, 0, 0, 3, sockMagic), sockSample{}, DropBadLeap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSockSample(tt.in)
			if tt.reason != "" {
				if err == nil || sockDropReason(err) != tt.reason {
					t.Fatalf("err = %v, want reason %q", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.System.Equal(tt.want.System) || got.Offset != tt.want.Offset || got.Pulse != tt.want.Pulse || got.Leap != tt.want.Leap {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeSockSampleOtherLayouts(t *testing.T) {
	for _, ts := range []int{4, 8} {
		b := sockEncode(ts, 1_800_000_000, 5, 0.25, 0, 0, sockMagic)
		got, err := decodeSockSampleLayout(b, ts)
		if err != nil {
			t.Fatalf("time_t %d bytes: %v", ts, err)
		}
		if !got.System.Equal(time.Unix(1_800_000_000, 5000)) || got.Offset != 250*time.Millisecond {
			t.Errorf("time_t %d bytes: got %+v", ts, got)
		}
		// The other layout's size is rejected by the layout decoder.
		other := sockEncode(12-ts, 1_800_000_000, 5, 0.25, 0, 0, sockMagic)
		if _, err := decodeSockSampleLayout(other, ts); sockDropReason(err) != DropWrongSize {
			t.Errorf("time_t %d bytes, %d-byte datagram: err = %v", ts, len(other), err)
		}
	}
}

func TestSockFoldPulse(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, 0},
		{300 * time.Millisecond, 300 * time.Millisecond},
		{700 * time.Millisecond, -300 * time.Millisecond},
		{-700 * time.Millisecond, 300 * time.Millisecond},
		{3*time.Second + time.Microsecond, time.Microsecond},
		{-2*time.Second - time.Microsecond, -time.Microsecond},
		{500 * time.Millisecond, -500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := sockFoldPulse(tt.in); got != tt.want {
			t.Errorf("sockFoldPulse(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewSockErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  SockConfig
		want string
	}{
		{"no path", SockConfig{}, "no socket path"},
		{"long path", SockConfig{Path: "/" + strings.Repeat("x", 120)}, "longer than 107"},
		{"long refid", SockConfig{Path: "/run/x.sock", RefID: "GNSS1"}, "longer than 4"},
		{"binary refid", SockConfig{Path: "/run/x.sock", RefID: "G\x00"}, "printable"},
		{"negative delay", SockConfig{Path: "/run/x.sock", Delay: -1}, "negative"},
		{"unknown group", SockConfig{Path: "/run/x.sock", Group: "no-such-group-timed"}, "group"},
	}
	for _, tt := range tests {
		_, err := NewSock(tt.cfg, sockTestTimebase{}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
	s, err := NewSock(SockConfig{Path: "/run/chrony.ttyACM0.sock", Prefer: true, Trust: true}, sockTestTimebase{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "sock /run/chrony.ttyACM0.sock" {
		t.Errorf("Name() = %q", s.Name())
	}
	if o := s.Options(); o.Kind != "sock" || o.Address != "/run/chrony.ttyACM0.sock" || !o.Prefer || !o.Trust || o.NoSelect || o.Require {
		t.Errorf("Options() = %+v", o)
	}
}

// sockStale leaves a socket file at path with nobody listening, as a
// crashed daemon does.
func sockStale(t *testing.T, path string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // a unixgram listener leaves its file behind
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket file not left: %v", err)
	}
}

func TestSockRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chrony.ttyACM0.sock")
	sockStale(t, path)
	s, err := NewSock(SockConfig{Path: path, Offset: time.Millisecond, Delay: 2 * time.Millisecond}, sockTestTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := newSockTestReporter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, r) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()

	var conn *net.UnixConn
	for i := 0; ; i++ {
		conn, err = net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
		if err == nil && s.Status().Connected {
			break
		}
		if conn != nil {
			conn.Close()
		}
		if i > 200 {
			t.Fatalf("socket never came up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer conn.Close()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", st.Mode())
	}

	const sec = 1_800_000_000
	n := sockTimeSize
	datagrams := [][]byte{
		sockEncode(n, sec, 0, 0.020, 0, 1, sockMagic),            // time sample
		sockEncode(n, sec, 0, 0, 0, 0, 0x12345678),               // wrong magic
		sockEncode(n, sec, 0, 0, 0, 0, sockMagic)[:16],           // wrong size
		sockEncode(n, sec+1, 500000, 1.0000031, 1, 0, sockMagic), // pulse
	}
	for _, d := range datagrams {
		if _, err := conn.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(t, "two measurements", func(m []sources.Measurement, _ []string) bool { return len(m) >= 2 })
	got, _ := r.snapshot()
	want := []sources.Measurement{
		// The offsets are against the timebase, which is sockTestShift
		// ahead of the system clock the samples refer to.
		{Local: time.Unix(sec, 0).Add(sockTestShift), Offset: 21*time.Millisecond - sockTestShift, Leap: sources.LeapInsert, RefID: 0x534f434b},
		{Local: time.Unix(sec+1, 500000000).Add(sockTestShift), Offset: 1*time.Millisecond + 3100*time.Nanosecond - sockTestShift, RefID: 0x50505300},
	}
	for i, w := range want {
		g := got[i]
		if !g.Local.Equal(w.Local) || g.Offset != w.Offset || g.Leap != w.Leap || g.RefID != w.RefID {
			t.Errorf("measurement %d: got Local %v Offset %v Leap %v RefID %#x, want %v %v %v %#x",
				i, g.Local, g.Offset, g.Leap, g.RefID, w.Local, w.Offset, w.Leap, w.RefID)
		}
		if g.Delay != 0 || g.Stratum != 0 || g.RootDispersion != 2*time.Millisecond || g.Precision != time.Microsecond {
			t.Errorf("measurement %d: Delay %v Stratum %d RootDispersion %v Precision %v", i, g.Delay, g.Stratum, g.RootDispersion, g.Precision)
		}
	}
	status := s.Status()
	if status.Kind != "sock" || status.Device != path || status.Samples != 2 ||
		status.Dropped[DropWrongMagic] != 1 || status.Dropped[DropWrongSize] != 1 || status.Reason != "" {
		t.Errorf("status %+v", status)
	}

	cancel()
	stopped = true
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed at stop: %v", err)
	}
}

// A socket bound by someone else (systemd's socket activation) is read by
// Run, which returns at once when cancelled and leaves the socket open and
// in place for the next reader.
func TestSockRunHeldConn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chrony.ttyS0.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := NewSock(SockConfig{Path: filepath.Join(dir, "other.sock"), Conn: conn}, sockTestTimebase{}, nil); err == nil ||
		!strings.Contains(err.Error(), "bound elsewhere") {
		t.Errorf("a socket of another path: err = %v", err)
	}
	w, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for run := 0; run < 2; run++ {
		s, err := NewSock(SockConfig{Path: path, Conn: conn, Timeout: time.Hour}, sockTestTimebase{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		r := newSockTestReporter()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, r) }()
		if _, err := w.Write(sockEncode(sockTimeSize, 1_800_000_000+int64(run), 0, 0, 0, 0, sockMagic)); err != nil {
			t.Fatal(err)
		}
		r.waitFor(t, "a measurement", func(m []sources.Measurement, _ []string) bool { return len(m) == 1 })
		if st := s.Status(); !st.Connected || st.Device != path {
			t.Errorf("run %d: status %+v", run, st)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run %d: Run = %v", run, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: Run did not return when cancelled (its read has an hour's deadline)", run)
		}
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("run %d: the socket file went: %v", run, err)
		}
	}
}

func TestSockRunTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	s, err := NewSock(SockConfig{Path: path, Timeout: 50 * time.Millisecond}, sockTestTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := newSockTestReporter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, r)
	r.waitFor(t, "a fault", func(_ []sources.Measurement, f []string) bool { return len(f) > 0 })
	_, faults := r.snapshot()
	if !strings.Contains(faults[0], "no valid sample") {
		t.Errorf("fault %q", faults[0])
	}
	// A sample clears the fault.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(sockEncode(sockTimeSize, 1_800_000_000, 0, 0, 0, 0, sockMagic)); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "the fault cleared", func(m []sources.Measurement, f []string) bool {
		return len(m) == 1 && f[len(f)-1] == ""
	})
}

func TestSockRunRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewSock(SockConfig{Path: path}, sockTestTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := newSockTestReporter()
	err = s.Run(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run = %v, want a not-a-socket error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Errorf("file at the path was changed: %q", b)
	}
	if st := s.Status(); st.Connected || !strings.Contains(st.Reason, "not a socket") {
		t.Errorf("status %+v", st)
	}
}

func FuzzDecodeSockSample(f *testing.F) {
	f.Add(sockEncode(sockTimeSize, 1_800_000_000, 1, 0.5, 0, 0, sockMagic))
	f.Add(sockEncode(sockTimeSize, 1_800_000_000, 1, 0.5, 1, 2, sockMagic))
	f.Add(sockEncode(8, 1_800_000_000, 1, 0.5, 0, 0, sockMagic))
	f.Add(sockEncode(4, 1_800_000_000, 1, 0.5, 0, 0, sockMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSockSample(b)
		if err != nil {
			if sockDropReason(err) == "invalid" {
				t.Fatalf("error without a drop reason: %v", err)
			}
			return
		}
		if s.System.Unix() <= 0 || s.Offset.Abs() > time.Duration(sockMaxOffset)*time.Second {
			t.Fatalf("accepted nonsense: %+v", s)
		}
	})
}
