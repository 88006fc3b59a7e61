//go:build !linux

package netstamp

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// errLinkUnsupported is returned by every interface-bound socket here.
var errLinkUnsupported = fmt.Errorf("netstamp: interface-bound timestamped sockets are not supported on %s", runtime.GOOS)

// MulticastConn is a timestamped multicast UDP socket on one interface; it
// is not supported on this operating system.
type MulticastConn struct{}

// ListenMulticast fails: not supported on this operating system.
func ListenMulticast(network, ifname string, port uint16, opts LinkOptions) (*MulticastConn, error) {
	return nil, errLinkUnsupported
}

// JoinGroup fails: not supported on this operating system.
func (c *MulticastConn) JoinGroup(group netip.Addr) error { return errLinkUnsupported }

// LocalAddr returns the zero address.
func (c *MulticastConn) LocalAddr() netip.AddrPort { return netip.AddrPort{} }

// Interface returns "".
func (c *MulticastConn) Interface() string { return "" }

// PHCIndex returns -1.
func (c *MulticastConn) PHCIndex() int { return -1 }

// SetReadDeadline fails: not supported on this operating system.
func (c *MulticastConn) SetReadDeadline(t time.Time) error { return errLinkUnsupported }

// Close does nothing.
func (c *MulticastConn) Close() error { return nil }

// ReadFrom fails: not supported on this operating system.
func (c *MulticastConn) ReadFrom(b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return 0, netip.AddrPort{}, time.Time{}, StampUser, errLinkUnsupported
}

// ReadFromContext fails: not supported on this operating system.
func (c *MulticastConn) ReadFromContext(ctx context.Context, b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return 0, netip.AddrPort{}, time.Time{}, StampUser, errLinkUnsupported
}

// WriteTo fails: not supported on this operating system.
func (c *MulticastConn) WriteTo(b []byte, to netip.AddrPort) (tx time.Time, st Stamping, err error) {
	return time.Time{}, StampUser, errLinkUnsupported
}

// WriteToUnstamped fails: not supported on this operating system.
func (c *MulticastConn) WriteToUnstamped(b []byte, to netip.AddrPort) error {
	return errLinkUnsupported
}
