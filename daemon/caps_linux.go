package daemon

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
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
	hdr, data, err := getCaps()
	if err != nil {
		return false, err
	}
	bit := uint32(1) << c
	if (data[0].Effective|data[0].Permitted|data[0].Inheritable)&bit == 0 {
		return false, nil
	}
	data[0].Effective &^= bit
	data[0].Permitted &^= bit
	data[0].Inheritable &^= bit
	return true, setCaps(hdr, data)
}

// getCaps reads the capability sets of the calling thread (both words).
func getCaps() (*unix.CapUserHeader, *[2]unix.CapUserData, error) {
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return nil, nil, fmt.Errorf("capget: %w", err)
	}
	return hdr, data, nil
}

// setCaps sets the capability sets of every thread of the process:
// capabilities belong to threads, and Go's threads must all change.
func setCaps(hdr *unix.CapUserHeader, data *[2]unix.CapUserData) error {
	return allThreads("capset", unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
}

// allThreads makes a system call on every thread of the process; what
// names it in errors.
func allThreads(what string, trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno == syscall.ENOTSUP {
		return fmt.Errorf("%s: this timed was built with cgo, whose threads Go cannot reach; build it with CGO_ENABLED=0 (make build does)", what)
	}
	if errno != 0 {
		return fmt.Errorf("%s: %w", what, errno)
	}
	return nil
}

// limitCapabilities removes every capability not in need from the
// effective, permitted and inheritable sets of all threads (the ambient
// set follows: the kernel keeps it within permitted and inheritable). With
// CAP_SETPCAP it first removes them from the bounding set too, and reports
// so; without it (timed started by systemd as its own user) the bounding
// set is what the unit's CapabilityBoundingSet made it. kept are the
// capabilities of need the process had, in number order.
func limitCapabilities(need map[capability]string) (kept []capability, bounding bool, err error) {
	hdr, data, err := getCaps()
	if err != nil {
		return nil, false, err
	}
	var keep [2]uint32
	for c := range need {
		if data[c.nr/32].Permitted&(1<<(c.nr%32)) != 0 {
			keep[c.nr/32] |= 1 << (c.nr % 32)
			kept = append(kept, c)
		}
	}
	slices.SortFunc(kept, func(a, b capability) int { return int(a.nr) - int(b.nr) })
	if data[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		for c := 0; c <= lastCapability(); c++ {
			if keep[c/32]&(1<<(c%32)) != 0 {
				continue
			}
			if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil || in == 0 {
				continue // not there, or not known to this kernel
			}
			if err := allThreads(fmt.Sprintf("prctl(PR_CAPBSET_DROP, %d)", c), unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				return nil, false, err
			}
		}
		bounding = true
	}
	extra := false
	for i := range data {
		extra = extra || (data[i].Effective|data[i].Permitted|data[i].Inheritable)&^keep[i] != 0
		data[i].Effective &= keep[i]
		data[i].Permitted &= keep[i]
		data[i].Inheritable &= keep[i]
	}
	if !extra {
		return kept, bounding, nil // nothing to drop (an unprivileged user)
	}
	if err := setCaps(hdr, data); err != nil {
		return nil, false, err
	}
	return kept, bounding, nil
}

// lastCapability is the highest capability number the kernel knows.
func lastCapability() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}
