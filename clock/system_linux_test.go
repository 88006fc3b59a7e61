package clock

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/sources"
)

// fakeKernel stands in for clock_adjtime: it records every call and keeps
// the state the calls set, with the kernel's validation of tick and offset.
type fakeKernel struct {
	mu       sync.Mutex
	calls    []unix.Timex // as passed in
	freq     int64
	tick     int64
	hz       int64
	status   int32
	maxerror int64
	esterror int64
	stepped  time.Duration
	// writeErr fails every call that changes something (reads still work,
	// as for an unprivileged process).
	writeErr error
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{tick: 10000, hz: 100, status: unix.STA_UNSYNC, maxerror: 16_000_000, esterror: 16_000_000}
}

func (k *fakeKernel) adjtime(tx *unix.Timex) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, *tx)
	if tx.Modes != 0 && k.writeErr != nil {
		return -1, k.writeErr
	}
	if tx.Modes&unix.ADJ_TICK != 0 && (int64(tx.Tick) < 900_000/k.hz || int64(tx.Tick) > 1_100_000/k.hz) {
		return -1, unix.EINVAL
	}
	if tx.Modes&unix.ADJ_SETOFFSET != 0 {
		limit := int64(1e6)
		if tx.Modes&unix.ADJ_NANO != 0 {
			limit = 1e9
		}
		if tx.Time.Usec < 0 || int64(tx.Time.Usec) >= limit {
			return -1, unix.EINVAL
		}
		unit := time.Microsecond
		if tx.Modes&unix.ADJ_NANO != 0 {
			unit = time.Nanosecond
			k.status |= unix.STA_NANO
		}
		k.stepped += time.Duration(tx.Time.Sec)*time.Second + time.Duration(tx.Time.Usec)*unit
	}
	if tx.Modes&unix.ADJ_STATUS != 0 {
		k.status = tx.Status
	}
	if tx.Modes&unix.ADJ_FREQUENCY != 0 {
		k.freq = max(-500<<16, min(500<<16, int64(tx.Freq)))
	}
	if tx.Modes&unix.ADJ_TICK != 0 {
		k.tick = int64(tx.Tick)
	}
	if tx.Modes&unix.ADJ_MAXERROR != 0 {
		k.maxerror = int64(tx.Maxerror)
	}
	if tx.Modes&unix.ADJ_ESTERROR != 0 {
		k.esterror = int64(tx.Esterror)
	}
	*tx = unix.Timex{}
	setInt(&tx.Freq, k.freq)
	setInt(&tx.Tick, k.tick)
	setInt(&tx.Maxerror, k.maxerror)
	setInt(&tx.Esterror, k.esterror)
	tx.Status = k.status
	if k.status&unix.STA_UNSYNC != 0 {
		return unix.TIME_ERROR, nil
	}
	return unix.TIME_OK, nil
}

// writes returns the calls that changed something.
func (k *fakeKernel) writes() []unix.Timex {
	k.mu.Lock()
	defer k.mu.Unlock()
	var w []unix.Timex
	for _, c := range k.calls {
		if c.Modes != 0 {
			w = append(w, c)
		}
	}
	return w
}

func newTestSystem(t *testing.T, hz int64) (*system, *fakeKernel) {
	t.Helper()
	k := newFakeKernel()
	if hz != 100 {
		k.tick, k.hz = 1_000_000/hz, hz
	}
	s, err := newSystem(nil, k, hz)
	if err != nil {
		t.Fatal(err)
	}
	if w := k.writes(); len(w) != 0 {
		t.Fatalf("creating the driver changed the clock: %+v", w)
	}
	return s, k
}

func TestSystemSetFrequency(t *testing.T) {
	const scale = 1 << 16
	tests := []struct {
		name     string
		hz       int64
		ppm      float64
		wantTick int64
		wantFreq int64 // scaled ppm
		clamped  bool
	}{
		{"zero", 100, 0, 10000, 0, false},
		{"small positive", 100, 12.5, 10000, 12.5 * scale, false},
		{"small negative", 100, -12.5, 10000, -12.5 * scale, false},
		{"fraction", 100, 0.001, 10000, 66, false}, // 65.536 rounds to 66
		{"kernel freq limit", 100, 500, 10000, 500 * scale, false},
		{"kernel freq limit negative", 100, -500, 10000, -500 * scale, false},
		{"just beyond freq", 100, 550, 10006, -50 * scale, false},
		{"max slew up", 100, 83333.333, 10833, int64(math.Round(33.333 * scale)), false},
		{"max slew down", 100, -83333.333, 9167, int64(math.Round(-33.333 * scale)), false},
		{"kernel limit", 100, 100500, 11000, 500 * scale, false},
		{"beyond kernel limit", 100, 200000, 11000, 500 * scale, true},
		{"beyond kernel limit negative", 100, -200000, 9000, -500 * scale, true},
		// With USER_HZ=1000 a tick is 1000 µs and 1 µs of it is 1000 ppm:
		// 1500 ppm rounds to 2 µs of tick (2000 ppm) and -500 ppm of freq.
		{"hz 1000", 1000, 1500, 1002, -500 * scale, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, k := newTestSystem(t, tt.hz)
			err := s.SetFrequency(tt.ppm)
			if tt.clamped != (err != nil) {
				t.Fatalf("SetFrequency(%v) error = %v, want clamped=%v", tt.ppm, err, tt.clamped)
			}
			w := k.writes()
			if len(w) != 1 {
				t.Fatalf("got %d writes, want 1: %+v", len(w), w)
			}
			if w[0].Modes != unix.ADJ_FREQUENCY|unix.ADJ_TICK {
				t.Errorf("modes = %#x, want ADJ_FREQUENCY|ADJ_TICK", w[0].Modes)
			}
			if w[0].Modes&unix.ADJ_OFFSET != 0 {
				t.Error("ADJ_OFFSET used")
			}
			if int64(w[0].Tick) != tt.wantTick || int64(w[0].Freq) != tt.wantFreq {
				t.Errorf("tick, freq = %d, %d; want %d, %d", w[0].Tick, w[0].Freq, tt.wantTick, tt.wantFreq)
			}
			got, err := s.Frequency()
			if err != nil {
				t.Fatal(err)
			}
			want := tt.ppm
			if tt.clamped {
				want = math.Copysign(100500, tt.ppm)
			}
			if math.Abs(got-want) > 1.0/scale {
				t.Errorf("Frequency() = %.9f, want %.9f", got, want)
			}
		})
	}
}

func TestSystemSetFrequencyInvalid(t *testing.T) {
	s, k := newTestSystem(t, 100)
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := s.SetFrequency(v); err == nil {
			t.Errorf("SetFrequency(%v) succeeded", v)
		}
	}
	if w := k.writes(); len(w) != 0 {
		t.Errorf("invalid frequencies reached the kernel: %+v", w)
	}
}

func TestSystemTurnsOffKernelPLL(t *testing.T) {
	s, k := newTestSystem(t, 100)
	k.status = unix.STA_PLL | unix.STA_FLL | unix.STA_NANO
	if err := s.SetFrequency(10); err != nil {
		t.Fatal(err)
	}
	w := k.writes()
	if len(w) != 2 || w[1].Modes != unix.ADJ_STATUS {
		t.Fatalf("want a frequency write then a status write, got %+v", w)
	}
	if k.status != unix.STA_NANO {
		t.Errorf("status = %#x, want only STA_NANO left", k.status)
	}
	// Now that the PLL is off, the next change is a single call.
	if err := s.SetFrequency(11); err != nil {
		t.Fatal(err)
	}
	if n := len(k.writes()); n != 3 {
		t.Errorf("got %d writes in all, want 3", n)
	}
}

func TestSystemStep(t *testing.T) {
	tests := []struct {
		d        time.Duration
		sec, ns  int64
		noChange bool
	}{
		{d: 1500 * time.Millisecond, sec: 1, ns: 500_000_000},
		{d: -1500 * time.Millisecond, sec: -2, ns: 500_000_000},
		{d: -time.Nanosecond, sec: -1, ns: 999_999_999},
		{d: time.Nanosecond, sec: 0, ns: 1},
		{d: -3 * time.Second, sec: -3, ns: 0},
		{d: 0, noChange: true},
	}
	for _, tt := range tests {
		t.Run(tt.d.String(), func(t *testing.T) {
			s, k := newTestSystem(t, 100)
			if err := s.Step(tt.d); err != nil {
				t.Fatal(err)
			}
			w := k.writes()
			if tt.noChange {
				if len(w) != 0 {
					t.Fatalf("Step(0) made calls: %+v", w)
				}
				return
			}
			if len(w) != 1 {
				t.Fatalf("got %d writes, want 1", len(w))
			}
			if w[0].Modes != unix.ADJ_SETOFFSET|unix.ADJ_NANO {
				t.Errorf("modes = %#x, want ADJ_SETOFFSET|ADJ_NANO", w[0].Modes)
			}
			if int64(w[0].Time.Sec) != tt.sec || int64(w[0].Time.Usec) != tt.ns {
				t.Errorf("time = %d s %d ns, want %d s %d ns", w[0].Time.Sec, w[0].Time.Usec, tt.sec, tt.ns)
			}
			if k.stepped != tt.d {
				t.Errorf("kernel stepped %v, want %v", k.stepped, tt.d)
			}
		})
	}
}

func TestSystemSetSync(t *testing.T) {
	tests := []struct {
		name       string
		sync       sources.ClockSync
		before     int32
		wantStatus int32
		maxerr     int64
		esterr     int64
	}{
		{
			name:       "synchronized",
			sync:       sources.ClockSync{Synchronized: true, EstError: 1500 * time.Nanosecond, MaxError: 20 * time.Millisecond},
			before:     unix.STA_UNSYNC,
			wantStatus: 0, maxerr: 20000, esterr: 2,
		},
		{
			name:       "insert leap",
			sync:       sources.ClockSync{Synchronized: true, Leap: sources.LeapInsert, EstError: time.Microsecond, MaxError: time.Millisecond},
			before:     unix.STA_UNSYNC | unix.STA_NANO,
			wantStatus: unix.STA_INS | unix.STA_NANO, maxerr: 1000, esterr: 1,
		},
		{
			name:       "delete leap",
			sync:       sources.ClockSync{Synchronized: true, Leap: sources.LeapDelete},
			before:     unix.STA_INS,
			wantStatus: unix.STA_DEL,
		},
		{
			name:       "unsynchronized drops the leap",
			sync:       sources.ClockSync{Synchronized: false, Leap: sources.LeapInsert, MaxError: time.Hour},
			before:     unix.STA_INS,
			wantStatus: unix.STA_UNSYNC, maxerr: 16_000_000,
		},
		{
			name:       "PLL and FLL cleared",
			sync:       sources.ClockSync{Synchronized: true},
			before:     unix.STA_PLL | unix.STA_FLL | unix.STA_UNSYNC,
			wantStatus: 0,
		},
		{
			name:       "negative errors are zero",
			sync:       sources.ClockSync{Synchronized: true, EstError: -time.Second, MaxError: -time.Second},
			wantStatus: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, k := newTestSystem(t, 100)
			k.status = tt.before
			if err := s.SetSync(tt.sync); err != nil {
				t.Fatal(err)
			}
			w := k.writes()
			if len(w) != 1 {
				t.Fatalf("got %d writes, want 1", len(w))
			}
			if want := uint32(unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR); w[0].Modes != want {
				t.Errorf("modes = %#x, want %#x", w[0].Modes, want)
			}
			if k.status != tt.wantStatus {
				t.Errorf("status = %#x, want %#x", k.status, tt.wantStatus)
			}
			if k.maxerror != tt.maxerr || k.esterror != tt.esterr {
				t.Errorf("maxerror, esterror = %d, %d µs; want %d, %d", k.maxerror, k.esterror, tt.maxerr, tt.esterr)
			}
		})
	}
}

func TestSystemPermissionErrors(t *testing.T) {
	s, k := newTestSystem(t, 100)
	k.writeErr = unix.EPERM
	checks := map[string]error{
		"SetFrequency": s.SetFrequency(1),
		"Step":         s.Step(time.Second),
		"SetSync":      s.SetSync(sources.ClockSync{Synchronized: true}),
	}
	for name, err := range checks {
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("%s: error %v does not wrap EPERM", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "CAP_SYS_TIME") {
			t.Errorf("%s: error %q does not name CAP_SYS_TIME", name, err)
		}
	}
	// Reading needs no privilege.
	if _, err := s.Frequency(); err != nil {
		t.Errorf("Frequency: %v", err)
	}
	k.writeErr = unix.EINVAL
	if err := s.Step(time.Second); !errors.Is(err, unix.EINVAL) || strings.Contains(err.Error(), "CAP_SYS_TIME") {
		t.Errorf("EINVAL: got %v", err)
	}
}

func TestSystemReadOnlyMethods(t *testing.T) {
	s, _ := newTestSystem(t, 100)
	if s.Name() != "system" {
		t.Errorf("Name = %q", s.Name())
	}
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	if !s.FromSystem(ts).Equal(ts) {
		t.Error("FromSystem is not the identity")
	}
	if d := time.Since(s.Now()); d < 0 || d > time.Second {
		t.Errorf("Now is %v away from time.Now", d)
	}
}

func TestUserHZ(t *testing.T) {
	hz := userHZ()
	if hz != 100 && hz != 250 && hz != 300 && hz != 1000 && hz != 1024 {
		t.Errorf("USER_HZ = %d, which is not a value Linux uses", hz)
	}
}

func TestNewSystemReadsTheRealClockOnly(t *testing.T) {
	// Only reads (modes 0) happen in NewSystem, so this is safe; it checks
	// that the real clock_adjtime call works on this machine.
	c, err := NewSystem(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Frequency(); err != nil {
		t.Fatal(err)
	}
}
