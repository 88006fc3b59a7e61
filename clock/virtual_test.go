package clock

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/timed-project/timed/sources"
)

// fakeSystemTime is a system clock the test moves by hand.
type fakeSystemTime struct{ ns atomic.Int64 }

func (f *fakeSystemTime) now() time.Time          { return time.Unix(0, f.ns.Load()) }
func (f *fakeSystemTime) advance(d time.Duration) { f.ns.Add(int64(d)) }

func newFakeVirtual(opts VirtualOptions) (*Virtual, *fakeSystemTime) {
	sys := &fakeSystemTime{}
	sys.ns.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return newVirtual(opts, sys.now), sys
}

func TestVirtualSimulatedError(t *testing.T) {
	tests := []struct {
		name    string
		opts    VirtualOptions
		elapsed time.Duration
		want    time.Duration // offset from system after elapsed
	}{
		{"no error", VirtualOptions{}, time.Hour, 0},
		{"offset only", VirtualOptions{Offset: 200 * time.Millisecond}, time.Hour, 200 * time.Millisecond},
		{"negative offset", VirtualOptions{Offset: -3 * time.Second}, time.Hour, -3 * time.Second},
		{"50 ppm fast", VirtualOptions{Offset: 200 * time.Millisecond, FrequencyPPM: 50}, 1000 * time.Second, 250 * time.Millisecond},
		{"10 ppm slow", VirtualOptions{FrequencyPPM: -10}, 100 * time.Second, -time.Millisecond},
		{"sub-ns rate", VirtualOptions{FrequencyPPM: 0.001}, 24 * time.Hour, 86400 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, sys := newFakeVirtual(tt.opts)
			if got := v.OffsetFromSystem(); got != tt.opts.Offset {
				t.Errorf("start offset = %v, want %v", got, tt.opts.Offset)
			}
			sys.advance(tt.elapsed)
			if got := v.OffsetFromSystem(); got != tt.want {
				t.Errorf("offset after %v = %v, want %v", tt.elapsed, got, tt.want)
			}
			if got := v.Now().Sub(sys.now()); got != tt.want {
				t.Errorf("Now - system = %v, want %v", got, tt.want)
			}
			if f, _ := v.Frequency(); f != 0 {
				t.Errorf("Frequency = %v before any correction, want 0", f)
			}
		})
	}
}

func TestVirtualFrequencyCorrection(t *testing.T) {
	v, sys := newFakeVirtual(VirtualOptions{Offset: 200 * time.Millisecond, FrequencyPPM: 50})
	sys.advance(1000 * time.Second) // 250 ms ahead now
	before := v.Now()
	if err := v.SetFrequency(-50); err != nil {
		t.Fatal(err)
	}
	// Re-anchoring must not move the clock.
	if after := v.Now(); !after.Equal(before) {
		t.Fatalf("SetFrequency made the clock jump by %v", after.Sub(before))
	}
	sys.advance(10000 * time.Second)
	if got := v.OffsetFromSystem(); got != 250*time.Millisecond {
		t.Errorf("with the error corrected the offset drifted to %v, want 250ms", got)
	}
	if f, _ := v.Frequency(); f != -50 {
		t.Errorf("Frequency = %v, want -50", f)
	}
	// Slew the offset away at 500 ppm: 250 ms take 500 s.
	if err := v.SetFrequency(-550); err != nil {
		t.Fatal(err)
	}
	sys.advance(500 * time.Second)
	if got := v.OffsetFromSystem(); got.Abs() > time.Nanosecond {
		t.Errorf("after slewing the offset is %v, want 0", got)
	}
	// FromSystem of a time before the anchor extrapolates backwards at the
	// current rate.
	s := sys.now()
	past := s.Add(-time.Second)
	if d := v.FromSystem(s).Sub(v.FromSystem(past)); d != time.Second-500*time.Microsecond {
		t.Errorf("one system second is %v of virtual time, want 999.5ms", d)
	}
}

func TestVirtualManyReanchors(t *testing.T) {
	// Many small frequency changes must not accumulate rounding error
	// beyond a nanosecond each.
	v, sys := newFakeVirtual(VirtualOptions{})
	var want float64 // ns, exact
	for i := range 10000 {
		ppm := float64(i%7) - 3.3
		if err := v.SetFrequency(ppm); err != nil {
			t.Fatal(err)
		}
		sys.advance(1234567 * time.Nanosecond)
		want += 1234567 * ppm * 1e-6
	}
	got := float64(v.OffsetFromSystem())
	if math.Abs(got-want) > 10000*0.5+1 {
		t.Errorf("offset %v ns, want %v ns", got, want)
	}
}

func TestVirtualStepAndSync(t *testing.T) {
	v, sys := newFakeVirtual(VirtualOptions{Offset: 200 * time.Millisecond, FrequencyPPM: 50})
	if err := v.Step(-200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := v.OffsetFromSystem(); got != 0 {
		t.Errorf("after the step the offset is %v, want 0", got)
	}
	sys.advance(100 * time.Second)
	if got := v.OffsetFromSystem(); got != 5*time.Millisecond {
		t.Errorf("the step changed the rate: offset %v, want 5ms", got)
	}
	cs := sources.ClockSync{Synchronized: true, Leap: sources.LeapInsert, EstError: time.Millisecond}
	if err := v.SetSync(cs); err != nil {
		t.Fatal(err)
	}
	if v.Sync() != cs {
		t.Errorf("Sync = %+v, want %+v", v.Sync(), cs)
	}
	if v.Name() != "virtual" {
		t.Errorf("Name = %q", v.Name())
	}
}

func TestVirtualRejectsBadFrequency(t *testing.T) {
	v, _ := newFakeVirtual(VirtualOptions{FrequencyPPM: 100})
	for _, ppm := range []float64{math.NaN(), math.Inf(1), 499_901, -500_101} {
		if err := v.SetFrequency(ppm); err == nil {
			t.Errorf("SetFrequency(%v) succeeded", ppm)
		}
	}
	if f, _ := v.Frequency(); f != 0 {
		t.Errorf("a rejected frequency was kept: %v", f)
	}
	// Options out of range are made sane rather than producing a clock
	// that runs backwards.
	w, sys := newFakeVirtual(VirtualOptions{FrequencyPPM: -2e6})
	a := w.Now()
	sys.advance(time.Second)
	if !w.Now().After(a) {
		t.Error("the virtual clock does not run forwards")
	}
}

func TestVirtualRealTime(t *testing.T) {
	v := NewVirtual(VirtualOptions{Offset: time.Second})
	if d := v.OffsetFromSystem() - time.Second; d.Abs() > time.Millisecond {
		t.Errorf("offset from system = %v, want 1s", v.OffsetFromSystem())
	}
	var c Clock = v // Virtual is a Clock
	_ = c
}

func TestVirtualConcurrent(t *testing.T) {
	v := NewVirtual(VirtualOptions{FrequencyPPM: 20})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = v.Now()
				_ = v.FromSystem(time.Now())
				_ = v.OffsetFromSystem()
				_, _ = v.Frequency()
			}
		})
	}
	const steps = 200
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range steps {
			if err := v.SetFrequency(float64(i%10) - 20); err != nil {
				t.Error(err)
			}
			if err := v.Step(time.Millisecond); err != nil {
				t.Error(err)
			}
			_ = v.SetSync(sources.ClockSync{Synchronized: i%2 == 0})
		}
	}()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	// 200 steps of 1 ms; the rate terms (|ppm| ≤ 20 over well under a
	// minute) add less than 2 ms.
	if off := v.OffsetFromSystem(); off < 198*time.Millisecond || off > 202*time.Millisecond {
		t.Errorf("offset after %d steps of 1ms = %v", steps, off)
	}
}

func TestNone(t *testing.T) {
	n := NewNone()
	if n.Name() != "none" {
		t.Errorf("Name = %q", n.Name())
	}
	if f, err := n.Frequency(); f != 0 || err != nil {
		t.Errorf("Frequency = %v, %v; want 0, nil", f, err)
	}
	if err := n.SetFrequency(12.5); err != nil {
		t.Fatal(err)
	}
	if f, _ := n.Frequency(); f != 12.5 {
		t.Errorf("Frequency = %v after SetFrequency(12.5)", f)
	}
	if err := n.Step(time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := n.SetSync(sources.ClockSync{Synchronized: true}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(n.Now()).Abs(); d > time.Second {
		t.Errorf("Now is %v from the system clock (after Step(1h), which must do nothing)", d)
	}
	ts := time.Unix(1e9, 5)
	if !n.FromSystem(ts).Equal(ts) {
		t.Error("FromSystem is not the identity")
	}
}

func BenchmarkVirtualNow(b *testing.B) {
	v := NewVirtual(VirtualOptions{Offset: time.Millisecond, FrequencyPPM: 12})
	for b.Loop() {
		_ = v.Now()
	}
}

func BenchmarkVirtualNowParallel(b *testing.B) {
	v := NewVirtual(VirtualOptions{FrequencyPPM: 12})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = v.Now()
		}
	})
}

// The virtual clock applies a leap second at the next UTC midnight, as the
// kernel does for the system clock, once.
func TestVirtualLeapSecond(t *testing.T) {
	start := time.Date(2026, 12, 31, 23, 59, 58, 500_000_000, time.UTC)
	tests := []struct {
		name string
		leap sources.Leap
		// the virtual time 1, 2 and 3 s after start
		want [3]string
	}{
		{"insert", sources.LeapInsert, [3]string{"23:59:59.5", "23:59:59.5", "00:00:00.5"}},
		{"delete", sources.LeapDelete, [3]string{"00:00:00.5", "00:00:01.5", "00:00:02.5"}},
		{"none", sources.LeapNone, [3]string{"23:59:59.5", "00:00:00.5", "00:00:01.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := &fakeSystemTime{}
			sys.ns.Store(start.UnixNano())
			v := newVirtual(VirtualOptions{}, sys.now)
			for i, want := range tt.want {
				sys.advance(time.Second)
				// The engine keeps telling the clock every second, and
				// re-anchors it; neither may apply the leap twice.
				if err := v.SetSync(sources.ClockSync{Synchronized: true, Leap: tt.leap}); err != nil {
					t.Fatal(err)
				}
				if err := v.SetFrequency(float64(i)); err != nil {
					t.Fatal(err)
				}
				if got := v.Now().UTC().Format("15:04:05.0"); got != want {
					t.Errorf("%d s after start: %s, want %s", i+1, got, want)
				}
			}
		})
	}
}

func TestVirtualLeapWithdrawn(t *testing.T) {
	sys := &fakeSystemTime{}
	sys.ns.Store(time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC).UnixNano())
	v := newVirtual(VirtualOptions{}, sys.now)
	if err := v.SetSync(sources.ClockSync{Synchronized: true, Leap: sources.LeapInsert}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetSync(sources.ClockSync{Synchronized: true}); err != nil {
		t.Fatal(err)
	}
	sys.advance(3 * time.Second)
	if got := v.Now().UTC().Format("15:04:05"); got != "00:00:01" {
		t.Errorf("withdrawn leap applied: %s", got)
	}
}
