package gpsd

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/timed-project/timed/sources"
	"go.uber.org/zap/zaptest"
)

// shmCTime mirrors ntpd's struct shmTime with Go's types: Go's int has the
// size and alignment of time_t on every Go target (time_t is a C long;
// 32-bit builds with a 64-bit time_t are not covered).
type shmCTime struct {
	mode, count                      int32
	clockSec                         int
	clockUSec                        int32
	receiveSec                       int
	receiveUSec                      int32
	leap, precision, nsamples, valid int32
	clockNSec, receiveNSec           int32
	dummy                            [8]int32
}

func TestSHMLayout(t *testing.T) {
	var c shmCTime
	native := shmLayout{
		mode: int(unsafe.Offsetof(c.mode)), count: int(unsafe.Offsetof(c.count)),
		clockSec: int(unsafe.Offsetof(c.clockSec)), clockUSec: int(unsafe.Offsetof(c.clockUSec)),
		receiveSec: int(unsafe.Offsetof(c.receiveSec)), receiveUSec: int(unsafe.Offsetof(c.receiveUSec)),
		leap: int(unsafe.Offsetof(c.leap)), precision: int(unsafe.Offsetof(c.precision)),
		nsamples: int(unsafe.Offsetof(c.nsamples)), valid: int(unsafe.Offsetof(c.valid)),
		clockNSec: int(unsafe.Offsetof(c.clockNSec)), receiveNSec: int(unsafe.Offsetof(c.receiveNSec)),
		size: int(unsafe.Sizeof(c)), timeSize: int(unsafe.Sizeof(c.clockSec)),
	}
	tests := []struct {
		name string
		got  shmLayout
		want shmLayout
	}{
		// 64-bit (amd64, arm64): the 96-byte segments gpsd and ntpd make.
		{"64-bit", shmLayoutFor(8), shmLayout{0, 4, 8, 16, 24, 32, 36, 40, 44, 48, 52, 56, 96, 8}},
		// 32-bit (386, arm) with a 32-bit time_t: 80 bytes.
		{"32-bit", shmLayoutFor(4), shmLayout{0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 80, 4}},
		{"native", shmNative, native},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: layout %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

// shmTestSample is what a test writes into a segment.
type shmTestSample struct {
	mode, count            int32
	clockSec, receiveSec   int64
	clockUSec, receiveUSec int32
	clockNSec, receiveNSec int32
	leap, precision, valid int32
}

// encode writes s into b laid out as l.
func (s shmTestSample) encode(b []byte, l shmLayout) {
	ne := binary.NativeEndian
	p32 := func(off int, v int32) { ne.PutUint32(b[off:], uint32(v)) }
	pt := func(off int, v int64) {
		if l.timeSize == 8 {
			ne.PutUint64(b[off:], uint64(v))
		} else {
			p32(off, int32(v))
		}
	}
	p32(l.mode, s.mode)
	p32(l.count, s.count)
	pt(l.clockSec, s.clockSec)
	p32(l.clockUSec, s.clockUSec)
	pt(l.receiveSec, s.receiveSec)
	p32(l.receiveUSec, s.receiveUSec)
	p32(l.leap, s.leap)
	p32(l.precision, s.precision)
	p32(l.valid, s.valid)
	p32(l.clockNSec, s.clockNSec)
	p32(l.receiveNSec, s.receiveNSec)
}

func (s shmTestSample) bytes(l shmLayout) []byte {
	b := make([]byte, l.size)
	s.encode(b, l)
	return b
}

// shmGood is a valid mode-1 sample: the receiver is 1.5 ms ahead.
var shmGood = shmTestSample{
	mode: 1, count: 2, valid: 1, precision: -20,
	clockSec: 1_800_000_001, clockUSec: 1_000, clockNSec: 1_000_500,
	receiveSec: 1_800_000_000, receiveUSec: 999_500, receiveNSec: 999_500_000,
}

func TestDecodeSHM(t *testing.T) {
	with := func(f func(*shmTestSample)) shmTestSample { s := shmGood; f(&s); return s }
	tests := []struct {
		name   string
		in     shmTestSample
		valid  bool
		offset time.Duration
		leap   sources.Leap
		reason string
	}{
		{"nanoseconds", shmGood, true, 1_500_500 * time.Nanosecond, sources.LeapNone, ""},
		{"microseconds when ns disagree", with(func(s *shmTestSample) { s.clockNSec = 0 }), true, 1500 * time.Microsecond, sources.LeapNone, ""},
		{"mode 0", with(func(s *shmTestSample) { s.mode = 0 }), true, 1_500_500 * time.Nanosecond, sources.LeapNone, ""},
		{"not valid", with(func(s *shmTestSample) { s.valid = 0; s.clockUSec = -5 }), false, 0, 0, ""},
		{"leap insert", with(func(s *shmTestSample) { s.leap = 1 }), true, 1_500_500 * time.Nanosecond, sources.LeapInsert, ""},
		{"leap delete", with(func(s *shmTestSample) { s.leap = 2 }), true, 1_500_500 * time.Nanosecond, sources.LeapDelete, ""},
		{"not synchronized", with(func(s *shmTestSample) { s.leap = 3 }), false, 0, 0, DropNotSynced},
		{"bad leap", with(func(s *shmTestSample) { s.leap = 9 }), false, 0, 0, DropBadLeap},
		{"mode 2", with(func(s *shmTestSample) { s.mode = 2 }), false, 0, 0, DropBadMode},
		{"usec out of range", with(func(s *shmTestSample) { s.receiveUSec = 1_000_000 }), false, 0, 0, DropBadTimestamp},
		{"zero seconds", with(func(s *shmTestSample) { s.clockSec = 0 }), false, 0, 0, DropBadTimestamp},
		{"precision out of range", with(func(s *shmTestSample) { s.precision = 40 }), false, 0, 0, DropBadPrecision},
	}
	for _, l := range []shmLayout{shmLayoutFor(8), shmLayoutFor(4)} {
		for _, tt := range tests {
			got, err := decodeSHM(tt.in.bytes(l), l)
			if tt.reason != "" {
				if err == nil || sockDropReason(err) != tt.reason {
					t.Errorf("%d-byte time_t, %s: err = %v, want reason %q", l.timeSize, tt.name, err, tt.reason)
				}
				continue
			}
			if err != nil {
				t.Errorf("%d-byte time_t, %s: %v", l.timeSize, tt.name, err)
				continue
			}
			if got.Valid != tt.valid {
				t.Errorf("%d-byte time_t, %s: valid %v", l.timeSize, tt.name, got.Valid)
			}
			if !tt.valid {
				continue
			}
			if off := got.Reference.Sub(got.System); off != tt.offset || got.Leap != tt.leap || got.Precision != -20 {
				t.Errorf("%d-byte time_t, %s: offset %v leap %v precision %d, want %v %v -20", l.timeSize, tt.name, off, got.Leap, got.Precision, tt.offset, tt.leap)
			}
		}
	}
	if _, err := decodeSHM(make([]byte, 10), shmNative); sockDropReason(err) != DropWrongSize {
		t.Errorf("short segment: err = %v", err)
	}
}

// shmFake is an in-memory segment.
type shmFake struct {
	mem      []byte
	readOnly bool
	// countAfter, when set, is what the count reads as after the copy (a
	// writer that raced the reader).
	countAfter *int32
	detached   int
}

func (f *shmFake) Bytes(b []byte) { copy(b, f.mem) }
func (f *shmFake) Count(off int) int32 {
	if f.countAfter != nil {
		return *f.countAfter
	}
	return int32(binary.NativeEndian.Uint32(f.mem[off:]))
}
func (f *shmFake) ClearValid(off int) error {
	if f.readOnly {
		return errors.New("read-only")
	}
	binary.NativeEndian.PutUint32(f.mem[off:], 0)
	return nil
}
func (f *shmFake) Size() int     { return len(f.mem) }
func (f *shmFake) Detach() error { f.detached++; return nil }

func TestSHMReaderPoll(t *testing.T) {
	l := shmNative
	s, err := NewSHM(SHMConfig{Unit: 2, Offset: -time.Millisecond}, sockTestTimebase{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raced := int32(3)
	tests := []struct {
		name    string
		seg     *shmFake
		polls   int
		samples int    // measurements from the polls
		reason  string // the drop reason of the first poll, if any
	}{
		{"mode 1 taken once", &shmFake{mem: shmGood.bytes(l)}, 3, 1, ""},
		{"mode 0 taken once", &shmFake{mem: func() []byte { x := shmGood; x.mode = 0; return x.bytes(l) }()}, 3, 1, ""},
		{"count changed during the copy", &shmFake{mem: shmGood.bytes(l), countAfter: &raced}, 2, 0, DropCountChanged},
		{"read-only: same count is not new", &shmFake{mem: shmGood.bytes(l), readOnly: true}, 3, 1, ""},
		{"not valid", &shmFake{mem: func() []byte { x := shmGood; x.valid = 0; return x.bytes(l) }()}, 2, 0, ""},
		{"bad mode", &shmFake{mem: func() []byte { x := shmGood; x.mode = 7; return x.bytes(l) }()}, 1, 0, DropBadMode},
	}
	for _, tt := range tests {
		rd := shmReader{seg: tt.seg, layout: l, buf: make([]byte, l.size)}
		n := 0
		for i := 0; i < tt.polls; i++ {
			m, ok, err := rd.poll(s)
			if i == 0 && (err == nil) != (tt.reason == "") || err != nil && sockDropReason(err) != tt.reason {
				t.Errorf("%s: poll %d: err = %v, want reason %q", tt.name, i, err, tt.reason)
			}
			if !ok {
				continue
			}
			n++
			wantLocal := time.Unix(1_800_000_000, 999_500_000).Add(sockTestShift)
			if !m.Local.Equal(wantLocal) || m.Offset != 500_500*time.Nanosecond-sockTestShift || m.Precision != 953*time.Nanosecond ||
				m.RootDispersion != DefaultSHMUncertainty || m.RefID != 0x53484d00 || m.Stratum != 0 || m.Delay != 0 {
				t.Errorf("%s: measurement %+v", tt.name, m)
			}
		}
		if n != tt.samples {
			t.Errorf("%s: %d samples, want %d", tt.name, n, tt.samples)
		}
	}
}

func TestNewSHM(t *testing.T) {
	tests := []struct {
		cfg     SHMConfig
		err     string
		perm    uint32
		key     int
		minPoll int
	}{
		{cfg: SHMConfig{Unit: 0}, perm: 0o600, key: 0x4e545030, minPoll: 0},
		{cfg: SHMConfig{Unit: 1, Interval: 250 * time.Millisecond}, perm: 0o600, key: 0x4e545031, minPoll: -2},
		{cfg: SHMConfig{Unit: 2, NoSelect: true}, perm: 0o666, key: 0x4e545032},
		{cfg: SHMConfig{Unit: 7, Perm: 0o640}, perm: 0o640, key: 0x4e545037},
		{cfg: SHMConfig{Unit: 8}, err: "want 0 to 7"},
		{cfg: SHMConfig{Unit: -1}, err: "want 0 to 7"},
		{cfg: SHMConfig{Unit: 0, Interval: time.Microsecond}, err: "below 1 ms"},
		{cfg: SHMConfig{Unit: 0, RefID: "TOOLONG"}, err: "longer than 4"},
		{cfg: SHMConfig{Unit: 0, Perm: 0o4777}, err: "rwx"},
	}
	for _, tt := range tests {
		s, err := NewSHM(tt.cfg, sockTestTimebase{}, nil)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: err = %v, want %q", tt.cfg, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tt.cfg, err)
			continue
		}
		if uint32(s.cfg.Perm) != tt.perm || s.cfg.key != tt.key {
			t.Errorf("%+v: perm %o key %#x, want %o %#x", tt.cfg, s.cfg.Perm, s.cfg.key, tt.perm, tt.key)
		}
		if o := s.Options(); o.Kind != "shm" || o.MinPoll != tt.minPoll || !strings.Contains(o.Address, "unit") || o.NoSelect != tt.cfg.NoSelect {
			t.Errorf("%+v: options %+v", tt.cfg, o)
		}
	}
}

// A segment attached beforehand (as the daemon does at start-up) is read
// by Run and stays attached when Run returns, for the next reader.
func TestSHMRunHeldSegment(t *testing.T) {
	fake := &shmFake{mem: shmGood.bytes(shmNative)}
	held := &SHMSegment{unit: 2, seg: fake}
	if _, err := NewSHM(SHMConfig{Unit: 3, Segment: held}, sockTestTimebase{}, nil); err == nil || !strings.Contains(err.Error(), "segment of unit 2") {
		t.Errorf("unit 3 with unit 2's segment: err = %v", err)
	}
	for run := 0; run < 2; run++ {
		s, err := NewSHM(SHMConfig{Unit: 2, Segment: held, Interval: 10 * time.Millisecond}, sockTestTimebase{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		r := newSockTestReporter()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, r) }()
		r.waitFor(t, "a measurement", func(m []sources.Measurement, _ []string) bool { return len(m) == 1 })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run %d: Run = %v", run, err)
		}
		if fake.detached != 0 {
			t.Fatalf("run %d: the held segment was detached", run)
		}
		// The reader cleared valid: a new sample for the next run.
		copy(fake.mem, shmGood.bytes(shmNative))
	}
}

func FuzzDecodeSHM(f *testing.F) {
	f.Add(shmGood.bytes(shmNative), uint8(0))
	f.Add(shmGood.bytes(shmLayoutFor(4)), uint8(1))
	f.Add([]byte{1, 0, 0, 0}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		l := shmLayoutFor(8)
		if which%2 == 1 {
			l = shmLayoutFor(4)
		}
		s, err := decodeSHM(b, l)
		if err != nil {
			if sockDropReason(err) == "invalid" {
				t.Fatalf("error without a drop reason: %v", err)
			}
			return
		}
		if s.Valid && (s.Reference.Sub(s.System).Abs() > time.Duration(sockMaxOffset)*time.Second || s.Precision < -30 || s.Precision > 10) {
			t.Fatalf("accepted nonsense: %+v", s)
		}
	})
}
