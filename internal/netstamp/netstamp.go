// Package netstamp is timed's one socket layer: UDP sockets that report when
// each datagram left and arrived, as precisely as the operating system can
// tell.
//
// On Linux a Conn is a raw socket integrated with Go's network poller
// (github.com/mdlayher/socket) with SO_TIMESTAMPING: the receive time of every
// datagram is the kernel's software receive timestamp, and the send time is
// the kernel's software transmit timestamp read back from the socket's error
// queue. Elsewhere a Conn wraps a net.UDPConn and both times are read in user
// space. Every time is a system-clock (CLOCK_REALTIME) reading; the Stamping
// value returned with it says where it was taken.
package netstamp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Stamping says where a timestamp was taken.
type Stamping uint8

const (
	// StampUser: read in user space just before the send or just after the
	// receive system call.
	StampUser Stamping = iota
	// StampKernel: the kernel's software timestamp (SO_TIMESTAMPING).
	StampKernel
	// StampHardware: the network card's timestamp.
	StampHardware
)

func (s Stamping) String() string {
	switch s {
	case StampUser:
		return "user"
	case StampKernel:
		return "kernel"
	case StampHardware:
		return "hardware"
	default:
		return fmt.Sprintf("stamping(%d)", uint8(s))
	}
}

// TxStampWait is how long WriteTo waits for the kernel's transmit timestamp
// before it falls back to the user-space send time.
const TxStampWait = 3 * time.Millisecond

// ErrTruncated is returned by ReadFrom when a datagram did not fit into the
// buffer; the bytes that fitted are in the buffer.
var ErrTruncated = errors.New("netstamp: datagram truncated")

// family decides the socket family for network ("udp", "udp4", "udp6") and
// the local address: 4 or 6, and whether an IPv6 socket is IPv6-only.
func family(network string, laddr netip.AddrPort) (fam int, v6only bool, err error) {
	a := laddr.Addr()
	switch network {
	case "udp4":
		if a.IsValid() && !a.Is4() && !a.Is4In6() {
			return 0, false, fmt.Errorf("netstamp: %s is not an IPv4 address", a)
		}
		return 4, false, nil
	case "udp6":
		if a.IsValid() && (a.Is4() || a.Is4In6()) {
			return 0, false, fmt.Errorf("netstamp: %s is not an IPv6 address", a)
		}
		return 6, true, nil
	case "udp":
		if a.IsValid() && (a.Is4() || a.Is4In6()) {
			return 4, false, nil
		}
		// The wildcard or an IPv6 address: one socket for both families
		// when the address is the wildcard.
		return 6, a.IsValid() && !a.IsUnspecified(), nil
	default:
		return 0, false, fmt.Errorf("netstamp: unsupported network %q (want udp, udp4 or udp6)", network)
	}
}

// NetworkFor returns the network ("udp4" or "udp6") of a socket that can
// reach addr.
func NetworkFor(addr netip.Addr) string {
	if addr.Is4() || addr.Is4In6() {
		return "udp4"
	}
	return "udp6"
}
