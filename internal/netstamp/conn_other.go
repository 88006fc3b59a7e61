//go:build !linux

package netstamp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Conn is a UDP socket with send and receive times. On this operating system
// they are read in user space (StampUser) around the system calls.
type Conn struct {
	uc    *net.UDPConn
	fam   int
	local netip.AddrPort
	wmu   sync.Mutex
	rmu   sync.Mutex
}

// Listen opens a UDP socket bound to laddr. network is "udp4", "udp6" or
// "udp". Port 0 picks an ephemeral port.
func Listen(network string, laddr netip.AddrPort) (*Conn, error) {
	fam, _, err := family(network, laddr)
	if err != nil {
		return nil, err
	}
	var ua *net.UDPAddr
	if laddr.Addr().IsValid() {
		ua = net.UDPAddrFromAddrPort(laddr)
	} else {
		ua = &net.UDPAddr{Port: int(laddr.Port())}
	}
	uc, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("netstamp: listen %s %s: %w", network, laddr, err)
	}
	c := &Conn{uc: uc, fam: fam}
	if ap, ok := uc.LocalAddr().(*net.UDPAddr); ok {
		c.local = ap.AddrPort()
	}
	return c, nil
}

// LocalAddr returns the address the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// SetReadDeadline sets the time after which a blocked ReadFrom returns an
// error wrapping os.ErrDeadlineExceeded; the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// Close closes the socket; a blocked ReadFrom returns an error wrapping
// net.ErrClosed.
func (c *Conn) Close() error { return c.uc.Close() }

// ReadFrom reads one datagram into b; rx is read just after the read
// returned.
func (c *Conn) ReadFrom(b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return c.ReadFromContext(context.Background(), b)
}

// ReadFromContext is ReadFrom that also returns when ctx is done.
func (c *Conn) ReadFromContext(ctx context.Context, b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.uc.SetReadDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				_ = c.uc.SetReadDeadline(time.Time{})
				if err != nil && ctx.Err() != nil {
					err = fmt.Errorf("netstamp: read: %w", ctx.Err())
				}
			}
		}()
	}
	var flags int
	n, _, flags, from, err = c.uc.ReadMsgUDPAddrPort(b, nil)
	rx = time.Now()
	if err != nil {
		return 0, netip.AddrPort{}, time.Time{}, StampUser, fmt.Errorf("netstamp: read: %w", err)
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if flags&msgTrunc != 0 {
		return n, from, rx, StampUser, ErrTruncated
	}
	return n, from, rx, StampUser, nil
}

// WriteTo sends b to the address to; tx is read just before the send.
func (c *Conn) WriteTo(b []byte, to netip.AddrPort) (tx time.Time, st Stamping, err error) {
	if !to.Addr().IsValid() {
		return time.Time{}, StampUser, errors.New("netstamp: no destination address")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	tx = time.Now()
	if _, err := c.uc.WriteToUDPAddrPort(b, to); err != nil {
		return tx, StampUser, fmt.Errorf("netstamp: send to %s: %w", to, err)
	}
	return tx, StampUser, nil
}

// WriteToUnstamped sends b to the address to.
func (c *Conn) WriteToUnstamped(b []byte, to netip.AddrPort) error {
	_, _, err := c.WriteTo(b, to)
	return err
}

// SendStampedFromOwnSocket does nothing on this operating system: there
// are no kernel transmit timestamps to wait for.
func (c *Conn) SendStampedFromOwnSocket() error { return nil }
