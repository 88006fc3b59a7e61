package ntp

import "testing"

func TestPrecision(t *testing.T) {
	// Any clock timed runs on reads at least to the microsecond and at
	// most to the nanosecond (2^-30 s).
	if p := Precision(); p < -30 || p > -19 {
		t.Errorf("Precision() = %d, want -30..-19", p)
	}
}
