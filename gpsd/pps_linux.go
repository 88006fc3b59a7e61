//go:build linux

package gpsd

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ppsLinuxDevice is a PPS device opened through the Linux PPS API
// (linux/pps.h, after RFC 2783).
type ppsLinuxDevice struct {
	fd        int
	path      string
	clearEdge bool
}

// openPPSDevice opens path, checks that it captures the wanted edge and can
// wait for a pulse, and turns capturing of that edge on if it is off (which
// needs CAP_SYS_TIME; it sets capture parameters only, never a clock).
func openPPSDevice(path string, clearEdge bool) (ppsDevice, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("pps: %s: %w", path, err)
	}
	d := &ppsLinuxDevice{fd: fd, path: path, clearEdge: clearEdge}
	if err := d.setUp(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

func (d *ppsLinuxDevice) ioctl(req uint, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), uintptr(req), uintptr(arg))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}

func (d *ppsLinuxDevice) setUp() error {
	edge, bit := "assert", int32(ppsCaptureAssert)
	if d.clearEdge {
		edge, bit = "clear", ppsCaptureClear
	}
	var caps int32
	if err := d.ioctl(unix.PPS_GETCAP, unsafe.Pointer(&caps)); err != nil {
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("pps: %s is not a PPS device (PPS_GETCAP: %w)", d.path, err)
		}
		return fmt.Errorf("pps: %s: PPS_GETCAP: %w", d.path, err)
	}
	if caps&bit == 0 {
		return fmt.Errorf("pps: %s cannot capture the %s edge (capabilities %#x)", d.path, edge, caps)
	}
	if caps&ppsCanWait == 0 {
		return fmt.Errorf("pps: %s cannot wait for a pulse (capabilities %#x)", d.path, caps)
	}
	var params unix.PPSKParams
	if err := d.ioctl(unix.PPS_GETPARAMS, unsafe.Pointer(&params)); err != nil {
		return fmt.Errorf("pps: %s: PPS_GETPARAMS: %w", d.path, err)
	}
	if params.Mode&bit != 0 {
		return nil
	}
	params.Mode |= bit | ppsTSFmtTSpec
	if err := d.ioctl(unix.PPS_SETPARAMS, unsafe.Pointer(&params)); err != nil {
		return fmt.Errorf("pps: %s: the %s edge is not captured and turning it on failed (PPS_SETPARAMS needs CAP_SYS_TIME and write access): %w", d.path, edge, err)
	}
	return nil
}

// Fetch waits up to timeout for the next pulse. A wait interrupted by a
// signal (the Go runtime preempts with SIGURG) goes on for the time left.
func (d *ppsLinuxDevice) Fetch(timeout time.Duration) (time.Time, uint32, error) {
	var f unix.PPSFData
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return time.Time{}, 0, errPPSTimeout
		}
		f = unix.PPSFData{}
		f.Timeout.Sec = int64(left / time.Second)
		f.Timeout.Nsec = int32(left % time.Second)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), uintptr(unix.PPS_FETCH), uintptr(unsafe.Pointer(&f)))
		if errno == 0 {
			break
		}
		switch errno {
		case unix.EINTR:
			continue
		case unix.ETIMEDOUT:
			return time.Time{}, 0, errPPSTimeout
		default:
			return time.Time{}, 0, fmt.Errorf("pps: %s: PPS_FETCH: %w", d.path, errno)
		}
	}
	k := ppsKInfo{
		AssertSeq: f.Info.Assert_sequence, ClearSeq: f.Info.Clear_sequence,
		AssertSec: f.Info.Assert_tu.Sec, AssertNsec: f.Info.Assert_tu.Nsec,
		ClearSec: f.Info.Clear_tu.Sec, ClearNsec: f.Info.Clear_tu.Nsec,
		Mode: f.Info.Current_mode,
	}
	t, seq, err := ppsDecodeFetch(k, d.clearEdge)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("pps: %s: %w", d.path, err)
	}
	return t, seq, nil
}

// Close closes the device.
func (d *ppsLinuxDevice) Close() error {
	if err := unix.Close(d.fd); err != nil {
		return fmt.Errorf("pps: %s: close: %w", d.path, err)
	}
	return nil
}
