package daemon

import (
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
)

// capability is a Linux capability number and its name as capsh and
// systemd write it.
type capability struct {
	nr   uint
	name string
}

// Linux capability numbers (linux/capability.h); the same on every
// architecture and needed by name on other systems too, for the log.
var (
	capNetBindService = capability{10, "cap_net_bind_service"}
	capNetAdmin       = capability{12, "cap_net_admin"}
	capNetRaw         = capability{13, "cap_net_raw"}
	capSysTime        = capability{25, "cap_sys_time"}
)

// neededCapabilities are the capabilities timed still uses once started
// with cfg: CAP_SYS_TIME to steer the system clock, CAP_NET_BIND_SERVICE
// for PTP ports on UDP (they bind ports 319 and 320 whenever they reopen),
// CAP_NET_ADMIN for hardware timestamps (SIOCSHWTSTAMP on every reopen),
// CAP_NET_RAW for PTP on Ethernet and gPTP (AF_PACKET sockets). Each comes
// with the reason the log gives. systemClock says whether the system
// clock is steered. The sections that would need others
// (clock, ptp, gptp) take effect only at a restart.
func neededCapabilities(cfg *config.Config, systemClock bool) map[capability]string {
	need := map[capability]string{}
	if systemClock {
		need[capSysTime] = "steers the system clock"
	}
	if ptpUsesUDP(cfg.PTP) {
		need[capNetBindService] = "PTP ports on UDP bind ports 319 and 320 whenever they reopen"
	}
	if len(hardwarePorts(cfg.PTP)) > 0 {
		need[capNetAdmin] = "PTP ports with hardware timestamps turn them on whenever they reopen"
	}
	if usesEthernet(cfg) {
		need[capNetRaw] = "PTP on Ethernet and gPTP open AF_PACKET sockets whenever their ports reopen"
	}
	return need
}

// usesEthernet reports whether a PTP port with transport l2 or a gPTP
// port is configured.
func usesEthernet(cfg *config.Config) bool {
	if len(cfg.GPTP.Ports) > 0 {
		return true
	}
	for _, p := range cfg.PTP.Ports {
		if p.Transport == "l2" {
			return true
		}
	}
	return false
}

// lockDown ends start-up: every capability timed no longer needs leaves the
// effective, permitted, inheritable, ambient and (with CAP_SETPCAP)
// bounding sets of all threads, and the seccomp filter goes on when cfg
// asks for it. Failures are logged: timed still keeps the time.
// The daemon's own tests leave it out (factories.lockDown): the daemon runs
// inside the test process there, and other tests still need what it would
// remove.
func (d *Daemon) lockDown(cfg *config.Config) {
	// The system clock driver steers the system clock, or, with hardware
	// timestamps, ties it to the PHC: either way it needs CAP_SYS_TIME
	// (without it timed already fell back to the virtual clock).
	need := neededCapabilities(cfg, cfg.Clock.Driver == "" || cfg.Clock.Driver == "system")
	kept, bounding, err := limitCapabilities(need)
	switch {
	case err != nil:
		d.log.Warn("cannot drop the capabilities timed no longer needs", zap.Error(err))
	default:
		var names, why []string
		for _, c := range kept {
			names = append(names, c.name)
			why = append(why, c.name+": "+need[c])
		}
		d.log.Info("capabilities limited to what timed still needs", zap.String("kept", strings.Join(names, " ")),
			zap.Strings("why", why), zap.Bool("bounding_set_limited", bounding))
	}
	if !cfg.Seccomp {
		d.log.Info("seccomp filter off (seccomp: false)")
		return
	}
	if !seccompSupported {
		_, err := installSeccomp()
		d.log.Info("no seccomp filter on this system", zap.Error(err))
		return
	}
	n, err := installSeccomp()
	if err != nil {
		d.log.Warn("cannot install the seccomp filter; running without it", zap.Error(err))
		return
	}
	d.log.Info("seccomp filter installed: "+strconv.Itoa(n)+" syscalls allowed", zap.Int("syscalls", n))
}
