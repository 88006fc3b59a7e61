package clock

import "golang.org/x/sys/unix"

// CanSetTime reports whether this process may steer the system clock: on
// Linux, whether CAP_SYS_TIME is in its effective capability set.
func CanSetTime() bool {
	eff, err := effectiveCaps()
	if err != nil {
		return false
	}
	return eff&(1<<unix.CAP_SYS_TIME) != 0
}

// effectiveCaps returns the process's effective capability set (capget,
// version 3: two 32-bit words).
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}
