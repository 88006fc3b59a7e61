package clock

import (
	"testing"
	"time"

	"github.com/timed-project/timed/phc/phctest"
)

// A hardware timestamp is a PHC reading: FromHardware gives the driver's
// UTC for it, the same as Now gives for the reading taken at that instant,
// whatever the system clock's error.
func TestPHCFromHardware(t *testing.T) {
	tests := []struct {
		name   string
		extra  time.Duration // the PHC's error beyond TAI
		sysErr time.Duration
		ago    time.Duration // how long before now the packet was stamped
	}{
		{"exact", 0, 0, 0},
		{"PHC 5 µs ahead", 5 * time.Microsecond, 0, 10 * time.Millisecond},
		{"system clock 3 ms behind", 0, -3 * time.Millisecond, time.Millisecond},
		{"PHC 2 ms behind, system 7 ms ahead", -2 * time.Millisecond, 7 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var truth *fakeSystemTime
			sys := func() time.Time { return truth.now().Add(tt.sysErr) }
			p, tr, dev := newTestPHC(t, tt.extra, phctest.Options{System: sys})
			truth = tr
			truth.advance(time.Second)
			reading, err := dev.Time()
			if err != nil {
				t.Fatal(err)
			}
			stamp := reading.Add(-tt.ago) // the card stamped the packet ago
			want := truth.now().Add(tt.extra - tt.ago)
			if got := p.FromHardware(stamp); !got.Equal(want) {
				t.Errorf("FromHardware(%v) = %v, want %v (true UTC %+v)", stamp, got, want, tt.extra)
			}
			if got, now := p.FromHardware(reading), p.Now(); !got.Equal(now) {
				t.Errorf("FromHardware(reading now) = %v, Now = %v", got, now)
			}
		})
	}
}
