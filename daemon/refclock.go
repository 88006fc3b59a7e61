package daemon

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/gpsd"
	"github.com/timed-project/timed/sources"
)

// startRefclocksLocked starts a task per configured reference clock.
func (d *Daemon) startRefclocksLocked(rcs []config.Refclock) {
	if d.ctx.Err() != nil {
		return
	}
	for _, rc := range rcs {
		d.refclocks = append(d.refclocks, d.startTask(d.ctx, func(ctx context.Context) { d.runRefclock(ctx, rc) }))
	}
}

// refclockOptions are the engine options of a configured reference clock.
func refclockOptions(rc config.Refclock) sources.SourceOptions {
	addr := rc.Device
	switch rc.Kind {
	case "gpsd":
		if addr == "" {
			addr = rc.Address
		}
	case "sock":
		addr = rc.Path
	case "shm":
		addr = "unit " + strconv.Itoa(rc.Unit)
	}
	return sources.SourceOptions{
		Kind: rc.Kind, Address: addr, MinPoll: rc.Poll, MaxPoll: rc.Poll,
		Prefer: rc.Prefer, NoSelect: rc.NoSelect, Trust: rc.Trust, Require: rc.Require,
	}
}

// runRefclock runs one reference clock until ctx is done.
func (d *Daemon) runRefclock(ctx context.Context, rc config.Refclock) {
	log := d.log.With(zap.String("refclock", rc.Name))
	d.runSource(ctx, "reference clock", log, refclockOptions(rc), func() (sources.Source, error) {
		return d.newRefclock(rc, log)
	})
}

// newRefclock makes the source of a configured reference clock, named as
// the configuration names it (so that a PPS clock's lock finds it).
func (d *Daemon) newRefclock(rc config.Refclock, log *zap.Logger) (sources.Source, error) {
	var (
		src sources.Source
		err error
	)
	switch rc.Kind {
	case "gpsd":
		src, err = gpsd.NewClient(gpsd.ClientConfig{Name: rc.Name, Address: rc.Address, Device: rc.Device, MinMode: rc.MinMode,
			PPS: rc.PPS, Offset: rc.Offset, Delay: rc.Delay, Precision: rc.Precision, RefID: rc.RefID,
			Prefer: rc.Prefer, NoSelect: rc.NoSelect, Trust: rc.Trust, Require: rc.Require}, d.clk, log)
	case "sock":
		d.mu.Lock()
		conn := d.refclockIO.sockets[rc.Path]
		d.mu.Unlock()
		src, err = gpsd.NewSock(gpsd.SockConfig{Name: rc.Name, Path: rc.Path, RefID: rc.RefID,
			Offset: rc.Offset, Delay: rc.Delay, Precision: rc.Precision, Conn: conn}, d.clk, log)
	case "shm":
		d.mu.Lock()
		seg := d.refclockIO.shm[rc.Unit]
		d.mu.Unlock()
		src, err = gpsd.NewSHM(gpsd.SHMConfig{Name: rc.Name, Unit: rc.Unit, RefID: rc.RefID,
			Offset: rc.Offset, Delay: rc.Delay, Precision: rc.Precision, Segment: seg}, d.clk, log)
	case "pps":
		pc := gpsd.PPSConfig{Name: rc.Name, Device: rc.Device, ClearEdge: rc.Edge == "clear",
			Offset: rc.Offset, Delay: rc.Delay, Precision: rc.Precision, RefID: rc.RefID, Poll: rc.Poll,
			Prefer: rc.Prefer, NoSelect: rc.NoSelect, Trust: rc.Trust, Require: rc.Require}
		if rc.Lock != "" {
			pc.Coarse = d.coarseOffset(rc.Lock)
		}
		src, err = gpsd.NewPPS(pc, d.clk, log)
	default:
		err = fmt.Errorf("unknown kind %q", rc.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("refclock %s: %w", rc.Name, err)
	}
	if r, ok := src.(refclockReader); ok {
		d.mu.Lock()
		d.refclockReaders[rc.Name] = r
		d.mu.Unlock()
	}
	return src, nil
}

// refclockReader is a reference clock's source that reports on its input.
type refclockReader interface {
	Status() gpsd.RefclockStatus
}

// refclockInfo is the state of each configured reference clock's input for
// `timectl sources`, in configuration order; a clock whose reader has not
// started yet says so.
func (d *Daemon) refclockInfo() []control.RefclockInfo {
	d.mu.Lock()
	rcs := d.refclockConfigs()
	readers := maps.Clone(d.refclockReaders)
	d.mu.Unlock()
	now := d.clk.Now()
	var out []control.RefclockInfo
	for _, rc := range rcs {
		r, ok := readers[rc.Name]
		if !ok {
			out = append(out, control.RefclockInfo{Name: rc.Name, Kind: rc.Kind, Device: refclockOptions(rc).Address, Reason: "not started yet"})
			continue
		}
		st := r.Status()
		info := control.RefclockInfo{Name: rc.Name, Kind: st.Kind, Device: st.Device, Connected: st.Connected, Reason: st.Reason,
			Samples: st.Samples, Dropped: st.Dropped, Mode: st.Mode, Satellites: st.Satellites}
		if !st.LastSample.IsZero() {
			info.LastSampleAgo = max(now.Sub(st.LastSample).Seconds(), 0)
		}
		out = append(out, info)
	}
	return out
}

// coarseOffset is the lock source of a PPS clock: the last offset the
// engine has of the source named lock (a reference clock's name, or an NTP
// server's address with or without its port), while that source has
// measurements and is not a falseticker.
func (d *Daemon) coarseOffset(lock string) func() (time.Duration, bool) {
	return func() (time.Duration, bool) {
		d.mu.Lock()
		st := d.eng.Status(d.clk.Now())
		d.mu.Unlock()
		for _, s := range st.Sources {
			if !lockNames(lock, s.Name) {
				continue
			}
			if s.Samples == 0 || s.State == sources.StateFalseticker {
				return 0, false
			}
			return time.Duration(s.LastOffset * float64(time.Second)), true
		}
		return 0, false
	}
}

// lockNames reports whether the lock setting names the engine source name:
// exactly, or as an NTP server's address without its port.
func lockNames(lock, name string) bool {
	if lock == name {
		return true
	}
	host, _, err := net.SplitHostPort(name)
	return err == nil && host == lock
}

// refclockRefID is a reference clock's refid (1 to 4 ASCII letters, as the
// configuration checked) as NTP's reference identifier: the letters,
// left-justified and padded with zero bytes (RFC 5905).
func refclockRefID(id string) uint32 {
	var b [4]byte
	copy(b[:], id)
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// refclockConfigs are the configured reference clocks (none before a
// configuration is set).
func (d *Daemon) refclockConfigs() []config.Refclock {
	if d.cfg == nil {
		return nil
	}
	return d.cfg.Refclocks
}
