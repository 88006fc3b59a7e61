//go:build linux

package netstamp

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// link is what MulticastConn and PacketConn share: a timestamping socket
// on one network interface, whose hardware timestamps (if on) are readings
// of the interface's PTP hardware clock.
type link struct {
	k       *stampSocket
	ifname  string
	ifindex int
	phc     int // -1 without hardware timestamps
}

// stamp turns timestamping on for s, the socket of c: first hardware
// timestamps on the interface for the received packets rxFilter selects,
// when opts asks for them, then the socket's own.
func (c *link) stamp(s *socket.Conn, opts LinkOptions, rxFilter int32) error {
	c.phc = -1
	if opts.HardwareStamps {
		phc, err := enableHardwareStamps(s, c.ifname, rxFilter)
		if err != nil {
			return err
		}
		c.phc = phc
	}
	k, err := newStampSocket(s, opts)
	if err != nil {
		return err
	}
	c.k = k
	return nil
}

// join runs f, the socket option that joins group on the socket's
// interface, and names both in its error.
func (c *link) join(group fmt.Stringer, f func(fd int) error) error {
	if err := c.k.control(f); err != nil {
		return fmt.Errorf("netstamp: join %s on %s: %w", group, c.ifname, err)
	}
	return nil
}

// WarmTransmitPath prepares a stamped send that comes after a pause:
// with software timestamps, when the last stamped send was over a
// millisecond ago, it runs the kernel's stamped transmit path once on the
// loopback interface, so that the frame sent next leaves its transmit
// timestamp for the wire with that path in the CPU's caches (see
// txWarmer for what it changes). With hardware timestamps it does nothing.
func (c *link) WarmTransmitPath() { c.k.warmTransmitPath() }

// Interface returns the name of the socket's interface.
func (c *link) Interface() string { return c.ifname }

// PHCIndex returns the index N of /dev/ptpN, the clock the hardware
// timestamps are read from, or -1 without hardware timestamps.
func (c *link) PHCIndex() int { return c.phc }

// SetReadDeadline sets the time after which a blocked ReadFrom returns an
// error wrapping os.ErrDeadlineExceeded; the zero time means none.
func (c *link) SetReadDeadline(t time.Time) error { return c.k.s.SetReadDeadline(t) }

// Close closes the socket; a blocked ReadFrom returns an error wrapping
// net.ErrClosed.
func (c *link) Close() error { return c.k.close() }

// enableHardwareStamps checks that ifname can stamp in hardware and turns
// it on for PTP event messages (rxFilter) and every sent packet that asks.
// It returns the index of the interface's PTP hardware clock (-1 if the
// driver names none).
func enableHardwareStamps(s *socket.Conn, ifname string, rxFilter int32) (int, error) {
	raw, err := s.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("netstamp: %w", err)
	}
	var (
		info *unix.EthtoolTsInfo
		ierr error
		cfg  = unix.HwTstampConfig{Tx_type: unix.HWTSTAMP_TX_ON, Rx_filter: rxFilter}
		serr error
	)
	const need = unix.SOF_TIMESTAMPING_TX_HARDWARE | unix.SOF_TIMESTAMPING_RX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE
	cerr := raw.Control(func(fd uintptr) {
		info, ierr = unix.IoctlGetEthtoolTsInfo(int(fd), ifname)
		if ierr == nil && info.So_timestamping&need != need {
			return
		}
		serr = unix.IoctlSetHwTstamp(int(fd), ifname, &cfg)
	})
	if cerr != nil {
		return -1, fmt.Errorf("netstamp: %w", cerr)
	}
	if ierr == nil && info.So_timestamping&need != need {
		return -1, fmt.Errorf("%w: the driver of %s offers no hardware transmit and receive stamps (SOF_TIMESTAMPING flags %#x)", ErrNoHardwareStamps, ifname, info.So_timestamping)
	}
	switch {
	case serr == nil:
	case errors.Is(serr, unix.EPERM):
		return -1, fmt.Errorf("netstamp: SIOCSHWTSTAMP on %s (needs CAP_NET_ADMIN): %w", ifname, serr)
	case errors.Is(serr, unix.EOPNOTSUPP), errors.Is(serr, unix.EINVAL), errors.Is(serr, unix.ERANGE), errors.Is(serr, unix.ENOTTY):
		return -1, fmt.Errorf("%w: SIOCSHWTSTAMP on %s: %v", ErrNoHardwareStamps, ifname, serr)
	default:
		return -1, fmt.Errorf("netstamp: SIOCSHWTSTAMP on %s: %w", ifname, serr)
	}
	if cfg.Rx_filter == unix.HWTSTAMP_FILTER_NONE {
		return -1, fmt.Errorf("%w: the driver of %s stamps no received PTP messages", ErrNoHardwareStamps, ifname)
	}
	phc := -1
	if ierr == nil {
		phc = int(info.Phc_index)
	}
	return phc, nil
}
