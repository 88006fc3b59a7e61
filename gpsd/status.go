package gpsd

import (
	"fmt"
	"time"
)

// RefclockStatus is what a reference-clock reader (gpsd, SOCK, SHM or PPS)
// reports about itself for the control socket and metrics.
type RefclockStatus struct {
	// Kind is the reader's kind: "gpsd", "sock", "shm" or "pps".
	Kind string
	// Device is what the reader reads: a gpsd address and device, a socket
	// path, an SHM unit or a PPS device path.
	Device string
	// Connected reports whether the reader currently has its input open.
	Connected bool
	// Reason says why the reader is not connected or not producing
	// samples; it is empty when all is well.
	Reason string
	// Samples counts the measurements reported to the engine.
	Samples uint64
	// Dropped counts inputs that were read but not reported, by reason.
	Dropped map[string]uint64
	// LastSample is the local time of the last reported measurement, or the
	// zero time when there has been none.
	LastSample time.Time
	// Mode is the GNSS fix mode (2 for 2D, 3 for 3D), or 0 when unknown or
	// not applicable.
	Mode int
	// Satellites is the number of satellites used in the fix, or 0 when
	// unknown or not applicable.
	Satellites int
}

// packRefID packs a reference identifier of up to 4 printable ASCII characters
// into NTP's 32-bit form, left-justified and padded with zero bytes; ""
// gives 0.
func packRefID(s string) (uint32, error) {
	if len(s) > 4 {
		return 0, fmt.Errorf("refid %q is longer than 4 characters", s)
	}
	var id uint32
	for i := range 4 {
		id <<= 8
		if i < len(s) {
			if s[i] < 0x21 || s[i] > 0x7e {
				return 0, fmt.Errorf("refid %q is not printable ASCII", s)
			}
			id |= uint32(s[i])
		}
	}
	return id, nil
}
