package ptp

import (
	"time"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/sources"
)

// HardwareTimebase is a sources.Timebase whose disciplined clock is the
// PTP hardware clock (PHC) of the port's network card, such as the clock
// package's PHC driver. A port with hardware timestamps needs one: its
// receive and transmit timestamps are readings of the PHC, not of the
// system clock.
type HardwareTimebase interface {
	sources.Timebase
	// FromHardware converts a reading of the PHC (a hardware timestamp)
	// into the disciplined clock's timescale.
	FromHardware(phc time.Time) time.Time
}

// stampTime converts a timestamp of kind st to the disciplined clock's
// timescale: hardware timestamps through the PHC, the others (kernel
// software stamps, user-space readings) from the system clock.
func stampTime(tb sources.Timebase, t time.Time, st netstamp.Stamping) time.Time {
	if st == netstamp.StampHardware {
		if hw, ok := tb.(HardwareTimebase); ok {
			return hw.FromHardware(t)
		}
	}
	return tb.FromSystem(t)
}
