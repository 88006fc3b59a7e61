//go:build !linux

package netstamp

import (
	"context"
	"net"
	"time"
)

// PacketConn is a timestamped Ethernet socket on one interface; it is not
// supported on this operating system.
type PacketConn struct{}

// ListenPacket fails: not supported on this operating system.
func ListenPacket(ifname string, etherType uint16, opts LinkOptions) (*PacketConn, error) {
	return nil, errLinkUnsupported
}

// JoinGroup fails: not supported on this operating system.
func (c *PacketConn) JoinGroup(group net.HardwareAddr) error { return errLinkUnsupported }

// HardwareAddr returns nil.
func (c *PacketConn) HardwareAddr() net.HardwareAddr { return nil }

// Interface returns "".
func (c *PacketConn) Interface() string { return "" }

// PHCIndex returns -1.
func (c *PacketConn) PHCIndex() int { return -1 }

// SetReadDeadline fails: not supported on this operating system.
func (c *PacketConn) SetReadDeadline(t time.Time) error { return errLinkUnsupported }

// Close does nothing.
func (c *PacketConn) Close() error { return nil }

// ReadFrom fails: not supported on this operating system.
func (c *PacketConn) ReadFrom(b []byte) (n int, from net.HardwareAddr, rx time.Time, st Stamping, err error) {
	return 0, nil, time.Time{}, StampUser, errLinkUnsupported
}

// ReadFromContext fails: not supported on this operating system.
func (c *PacketConn) ReadFromContext(ctx context.Context, b []byte) (n int, from net.HardwareAddr, rx time.Time, st Stamping, err error) {
	return 0, nil, time.Time{}, StampUser, errLinkUnsupported
}

// WriteTo fails: not supported on this operating system.
func (c *PacketConn) WriteTo(b []byte, to net.HardwareAddr) (tx time.Time, st Stamping, err error) {
	return time.Time{}, StampUser, errLinkUnsupported
}

// WriteToUnstamped fails: not supported on this operating system.
func (c *PacketConn) WriteToUnstamped(b []byte, to net.HardwareAddr) error {
	return errLinkUnsupported
}
