package daemon

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/phc"
	"github.com/timed-project/timed/ptp"
)

// With PTP ports that use hardware timestamps, the clock timed disciplines
// is the PTP hardware clock (PHC) those timestamps are read from, and the
// configured clock driver (system, or virtual) is tied to the PHC, as
// linuxptp's phc2sys does. Every hardware port must use the same PHC: timed
// is an ordinary clock, not a boundary clock.
//
// Privileges: steering a PHC needs write access to /dev/ptpN, not
// CAP_SYS_TIME. Without CAP_SYS_TIME the system driver already falls back
// to the virtual clock (buildClock), so the PHC is disciplined and the
// virtual clock is tied to it: the system clock is never touched. With the
// `none` driver timed only observes: the PHC is read (to convert its
// timestamps) but never steered, and nothing is tied.

// defaultUTCOffset is TAI − UTC when no leap-seconds list is readable.
const defaultUTCOffset = 37 * time.Second

// hardwareClock is the PHC side of the daemon; its zero value is "no
// hardware port configured".
type hardwareClock struct {
	dev phc.Device
	phc *clock.PHC
	sys clock.Clock // the driver tied to the PHC; nil without a tie
	tie *clock.Tie
	// portErrs are the hardware ports that cannot run in this process
	// (their interface has no PHC), by interface.
	portErrs map[string]error
}

// hardwarePorts lists the interfaces of the PTP ports with hardware
// timestamps.
func hardwarePorts(c config.PTPConfig) []string {
	var out []string
	for _, p := range c.Ports {
		if p.Timestamping == "hardware" {
			out = append(out, p.Interface)
		}
	}
	return out
}

// choosePHC finds the PHC of every interface in ifaces with find. It
// returns the one path they share ("" when none has a PHC), and for each
// interface without one why. Two different PHCs are an error.
func choosePHC(ifaces []string, find func(ifname string) (string, error)) (path string, portErrs map[string]error, err error) {
	var first string
	for _, ifname := range ifaces {
		p, ferr := find(ifname)
		if ferr != nil {
			if portErrs == nil {
				portErrs = map[string]error{}
			}
			portErrs[ifname] = fmt.Errorf("ptp: port %s has no PTP hardware clock to discipline (%v): %w; "+
				"use timestamping: software for this port, or restart timed once the interface has one",
				ifname, ferr, netstamp.ErrNoHardwareStamps)
			continue
		}
		switch {
		case path == "":
			path, first = p, ifname
		case p != path:
			return "", nil, fmt.Errorf("ptp: ports %s and %s use different PTP hardware clocks (%s and %s): "+
				"timed disciplines one clock, so every port with timestamping: hardware must share one PHC "+
				"(a boundary clock is not supported); use timestamping: software on the others", first, ifname, path, p)
		}
	}
	return path, portErrs, nil
}

// ptpUTCOffset is TAI − UTC now from the system's leap-seconds list, or
// 37 s without one: the PHC keeps PTP's timescale, TAI.
func ptpUTCOffset(log *zap.Logger) time.Duration {
	t, _, err := ptp.LoadLeapTable()
	if err != nil {
		log.Info("no leap-seconds list: the PHC is kept on TAI assuming TAI − UTC = 37 s", zap.Error(err))
		return defaultUTCOffset
	}
	if off := t.TimeProperties(time.Now()).CurrentUTCOffset; off > 0 {
		return time.Duration(off) * time.Second
	}
	return defaultUTCOffset
}

// setupHardwareClock makes the PHC the disciplined clock when a PTP port
// uses hardware timestamps. sys is the configured driver; observe is true
// for `none`. It returns the clock the engine steers: sys unchanged
// without hardware ports (or when none of their interfaces has a PHC).
func setupHardwareClock(cfg *config.Config, sys clock.Clock, observe bool, f factories, log *zap.Logger) (hardwareClock, clock.Clock, error) {
	ifaces := hardwarePorts(cfg.PTP)
	if len(ifaces) == 0 {
		return hardwareClock{}, sys, nil
	}
	find, open := f.findPHC, f.openPHC
	if find == nil {
		find = phc.FindByInterface
	}
	if open == nil {
		open = phc.Open
	}
	path, portErrs, err := choosePHC(ifaces, find)
	if err != nil {
		return hardwareClock{}, nil, fmt.Errorf("daemon: %w", err)
	}
	hw := hardwareClock{portErrs: portErrs}
	for _, perr := range portErrs {
		log.Error("PTP port cannot use hardware timestamps", zap.Error(perr))
	}
	if path == "" {
		return hw, sys, nil
	}
	dev, err := open(path)
	if err != nil {
		return hardwareClock{}, nil, fmt.Errorf("daemon: PTP hardware clock: %w", err)
	}
	p, err := clock.NewPHC(log.Named("phc"), dev, clock.PHCOptions{UTCOffset: ptpUTCOffset(log)})
	if err != nil {
		dev.Close()
		return hardwareClock{}, nil, fmt.Errorf("daemon: %w", err)
	}
	hw.dev, hw.phc = dev, p
	if observe {
		log.Info("clock driver none: the PTP hardware clock is read for its timestamps, not steered, and no clock is tied to it",
			zap.String("phc", dev.Name()))
		return hw, observedPHC{p}, nil
	}
	tie, err := clock.NewTie(log.Named("tie"), p, sys, clock.TieOptions{})
	if err != nil {
		dev.Close()
		return hardwareClock{}, nil, fmt.Errorf("daemon: %w", err)
	}
	hw.sys, hw.tie = sys, tie
	log.Info("disciplining the PTP hardware clock; the "+sys.Name()+" clock is tied to it",
		zap.String("phc", dev.Name()), zap.Strings("interfaces", ifaces))
	return hw, p, nil
}

// portErr is why the hardware port on ifname cannot run, or nil.
func (hw *hardwareClock) portErr(ifname string) error { return hw.portErrs[ifname] }

// run keeps the tie going until ctx is done.
func (hw *hardwareClock) run(ctx context.Context) {
	if hw.tie != nil {
		_ = hw.tie.Run(ctx)
	}
}

// close releases the device.
func (hw *hardwareClock) close() {
	if hw.dev != nil {
		hw.dev.Close()
	}
}

// clockInfo adds the PHC and the tie to what `timectl status` shows.
func (hw *hardwareClock) clockInfo(info *control.ClockInfo) {
	if hw.dev == nil {
		return
	}
	info.Device = hw.dev.Name()
	if hw.tie == nil {
		return
	}
	st := hw.tie.Status()
	info.Tie = &control.TieInfo{
		Clock: hw.sys.Name(), Offset: st.Offset.Seconds(), Delay: st.Delay.Seconds(), Frequency: st.FrequencyPPM,
		Updates: st.Updates, Dropped: st.Dropped, Steps: st.Steps, Waiting: st.Waiting,
	}
}

// keepNetAdmin drops CAP_NET_ADMIN unless a PTP port uses hardware
// timestamps: SIOCSHWTSTAMP needs it whenever such a port (re)opens.
func keepNetAdmin(c config.PTPConfig, log *zap.Logger) {
	if len(hardwarePorts(c)) > 0 {
		log.Info("keeping CAP_NET_ADMIN: PTP ports with hardware timestamps turn them on (SIOCSHWTSTAMP) whenever they (re)open")
		return
	}
	if had, err := dropNetAdminCapability(); err != nil {
		log.Warn("cannot drop CAP_NET_ADMIN", zap.Error(err))
	} else if had {
		log.Info("dropped CAP_NET_ADMIN: no PTP port uses hardware timestamps")
	}
}

// observedPHC is the PHC driver under the `none` clock: read, converted,
// never steered.
type observedPHC struct{ *clock.PHC }

// Hardware ports convert their timestamps through either.
var (
	_ ptp.HardwareTimebase = (*clock.PHC)(nil)
	_ ptp.HardwareTimebase = observedPHC{}
)

// SetFrequency does nothing: the `none` driver steers no clock.
func (observedPHC) SetFrequency(float64) error { return nil }

// Step does nothing.
func (observedPHC) Step(time.Duration) error { return nil }
