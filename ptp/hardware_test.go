package ptp

import (
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/netstamp"
)

// systemTimebase is a disciplined clock 1 ms ahead of the system clock,
// with no PHC.
type systemTimebase struct{}

func (systemTimebase) Now() time.Time                   { return time.Now().Add(time.Millisecond) }
func (systemTimebase) FromSystem(t time.Time) time.Time { return t.Add(time.Millisecond) }

// phcTimebase is a PHC on TAI (37 s ahead of UTC) disciplined as the
// local clock, 2 ms ahead of the system clock.
type phcTimebase struct{ systemTimebase }

func (phcTimebase) FromSystem(t time.Time) time.Time   { return t.Add(2 * time.Millisecond) }
func (phcTimebase) FromHardware(t time.Time) time.Time { return t.Add(-37 * time.Second) }

func TestStampTime(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name string
		tb   interface {
			Now() time.Time
			FromSystem(time.Time) time.Time
		}
		st   netstamp.Stamping
		want time.Time
	}{
		{"kernel stamp, system clock", systemTimebase{}, netstamp.StampKernel, at.Add(time.Millisecond)},
		{"kernel stamp, PHC", phcTimebase{}, netstamp.StampKernel, at.Add(2 * time.Millisecond)},
		{"user-space reading, PHC", phcTimebase{}, netstamp.StampUser, at.Add(2 * time.Millisecond)},
		{"hardware stamp, PHC", phcTimebase{}, netstamp.StampHardware, at.Add(-37 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stampTime(tt.tb, at, tt.st); !got.Equal(tt.want) {
				t.Errorf("stampTime = %v, want %v", got, tt.want)
			}
		})
	}
}

// A port with hardware timestamps needs a timebase that converts PHC
// readings.
func TestNewSourceHardwareStamps(t *testing.T) {
	cfg := SourceConfig{Interface: "eth0", Network: NetworkUDPv4, HardwareStamps: true}
	_, err := NewSource(cfg, systemTimebase{}, nil)
	if err == nil || !strings.Contains(err.Error(), "eth0") || !strings.Contains(err.Error(), "timestamping: software") {
		t.Errorf("hardware stamps on the system clock: %v, want a clear error", err)
	}
	if _, err := NewSource(cfg, phcTimebase{}, nil); err != nil {
		t.Errorf("hardware stamps on a PHC: %v", err)
	}
	cfg.HardwareStamps = false
	if _, err := NewSource(cfg, systemTimebase{}, nil); err != nil {
		t.Errorf("software stamps on the system clock: %v", err)
	}
}
