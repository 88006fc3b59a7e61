package daemon

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropBindCapability removes CAP_NET_BIND_SERVICE from every thread of the
// process (effective, permitted and inheritable sets): once the NTP
// server's sockets are bound, timed never needs it again. It reports
// whether the capability was there.
func dropBindCapability() (had bool, err error) { return dropCapability(unix.CAP_NET_BIND_SERVICE) }

// dropNetAdminCapability removes CAP_NET_ADMIN the same way: only a PTP
// port with hardware timestamps needs it (SIOCSHWTSTAMP, whenever the port
// opens).
func dropNetAdminCapability() (had bool, err error) { return dropCapability(unix.CAP_NET_ADMIN) }

// dropCapability removes capability c (one of the first 32) from every
// thread of the process, and reports whether it was there.
func dropCapability(c uint) (had bool, err error) {
	if c >= 32 {
		return false, fmt.Errorf("capability %d is not in the first word", c)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	bit := uint32(1) << c
	if (data[0].Effective|data[0].Permitted|data[0].Inheritable)&bit == 0 {
		return false, nil
	}
	data[0].Effective &^= bit
	data[0].Permitted &^= bit
	data[0].Inheritable &^= bit
	// Capabilities belong to threads; Go's threads must all drop it.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno == syscall.ENOTSUP {
		return true, fmt.Errorf("capset: this timed was built with cgo, whose threads Go cannot reach; build it with CGO_ENABLED=0 (make build does)")
	}
	if errno != 0 {
		return true, fmt.Errorf("capset: %w", errno)
	}
	return true, nil
}
