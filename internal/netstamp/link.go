package netstamp

import (
	"errors"
	"time"
)

// LinkOptions configures a socket bound to one network interface: a
// MulticastConn or a PacketConn.
type LinkOptions struct {
	// HardwareStamps asks the interface's driver for hardware timestamps
	// of PTP event messages (SIOCSHWTSTAMP) and reads those instead of the
	// kernel's software stamps. Opening fails with an error wrapping
	// ErrNoHardwareStamps when the interface cannot do it; the caller may
	// then open again without. Hardware timestamps are readings of the
	// interface's PTP hardware clock, not of the system clock.
	HardwareStamps bool
	// TxStampWait is how long a stamped send waits for its transmit
	// timestamp. Zero means TxStampWait for software stamps and
	// HardwareTxStampWait for hardware stamps.
	TxStampWait time.Duration
	// HopLimit is the IPv4 TTL or IPv6 hop limit of multicast datagrams;
	// zero means 1. PacketConn ignores it.
	HopLimit int
}

// HardwareTxStampWait is how long a send waits for a hardware transmit
// timestamp when LinkOptions.TxStampWait is zero.
const HardwareTxStampWait = 20 * time.Millisecond

// ErrNoHardwareStamps is wrapped by the error of ListenMulticast and
// ListenPacket when hardware timestamps were asked for and the interface
// has none.
var ErrNoHardwareStamps = errors.New("netstamp: no hardware timestamping")

// ErrNoTxStamp is wrapped by the error of a stamped send when hardware
// timestamps are on and the transmit timestamp did not come back in time.
// The datagram was sent.
var ErrNoTxStamp = errors.New("netstamp: transmit timestamp did not arrive")
