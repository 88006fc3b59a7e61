package daemon

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/gptp"
	"github.com/timed-project/timed/sources"
)

// gptpConfig is the gptp.Config of a configured port.
func (d *Daemon) gptpConfig(p config.GPTPPort) gptp.Config {
	c := gptp.Config{
		Interface: p.Interface, Profile: gptp.Profile(p.Profile), Role: gptp.Role(p.Role),
		Priority1: uint8(p.Priority1), Priority2: uint8(p.Priority2), //#nosec G115 -- 0..255, checked
		NeighborPropDelayThresh: p.NeighborPropDelayThresh,
		LogSyncInterval:         int8(p.LogSyncInterval), LogAnnounceInterval: int8(p.LogAnnounceInterval), //#nosec G115 -- -7..6
		LogPdelayReqInterval: int8(p.LogPdelayReqInterval), OperLogSyncInterval: int8(p.OperLogSyncInterval), //#nosec G115 -- -7..6
		OperLogPdelayReqInterval: int8(p.OperLogPdelayReqInterval), //#nosec G115 -- -7..6
		SyncReceiptTimeout:       p.SyncReceiptTimeout, AnnounceReceiptTimeout: p.AnnounceReceiptTimeout,
		Quality: d.ptpQuality,
	}
	// The automotive profile keeps the link's delay and rate ratio next
	// to the drift file, for a fast start: whatever the clock, since they
	// are the link's (the drift file itself is kept for the system clock
	// only).
	if d.cfg != nil && d.cfg.DriftFile != "" {
		c.StateFile = filepath.Join(filepath.Dir(d.cfg.DriftFile), "gptp-"+p.Interface+".json")
	}
	return c
}

// startGPTPLocked starts a task per configured gPTP port.
func (d *Daemon) startGPTPLocked(c config.GPTPConfig) {
	if d.ctx.Err() != nil || len(c.Ports) == 0 {
		return
	}
	leaps := d.leapTable()
	for _, p := range c.Ports {
		gc := d.gptpConfig(p)
		gc.Leaps = leaps
		opts := sources.SourceOptions{
			Kind: "gptp", Address: p.Interface, MinPoll: p.LogSyncInterval, MaxPoll: max(p.LogSyncInterval, p.OperLogSyncInterval),
			Prefer: p.Prefer, NoSelect: p.NoSelect, Trust: p.Trust, Require: p.Require,
			BoundedByAuthenticated: p.BoundedByAuthenticated,
		}
		d.gptpTasks = append(d.gptpTasks, d.startTask(d.ctx, func(ctx context.Context) {
			log := d.log.With(zap.String("gptp_port", p.Interface))
			d.runSource(ctx, "gptp port", log, opts, func() (sources.Source, error) {
				port, err := gptp.NewPort(gc, d.clk, log)
				if err == nil {
					d.mu.Lock()
					d.gptpPortsBy[p.Interface] = port
					d.mu.Unlock()
				}
				return port, err
			})
		}))
	}
}

// gptpPorts are the gPTP ports for `timectl ptp`.
func (d *Daemon) gptpPorts() []control.PTPPortStatus {
	d.mu.Lock()
	var ports []config.GPTPPort
	if d.cfg != nil {
		ports = slices.Clone(d.cfg.GPTP.Ports)
	}
	running := maps.Clone(d.gptpPortsBy)
	d.mu.Unlock()
	var out []control.PTPPortStatus
	for _, p := range ports {
		port := running[p.Interface]
		if port == nil {
			out = append(out, control.PTPPortStatus{Interface: p.Interface, Transport: "l2", Role: p.Role,
				State: "INITIALIZING", Reason: "not started yet", GPTP: &control.GPTPInfo{Profile: p.Profile}})
			continue
		}
		st := port.Status()
		ps := control.PTPPortStatus{
			Interface: st.Interface, Transport: "l2", Role: string(st.Role), State: st.State, Reason: st.Reason,
			Identity: st.Identity.String(), StepsRemoved: st.StepsRemoved, Offset: -st.Offset.Seconds(),
			PTPTimescale: st.PTPTimescale, UTCOffset: st.UTCOffset.Seconds(), UTCOffsetValid: st.PTPTimescale,
			MeanPathDelay: st.MeanLinkDelay.Seconds(), Timestamps: "kernel", Measurements: st.Measurements, Dropped: st.Dropped,
			GPTP: &control.GPTPInfo{Profile: string(st.Profile), ASCapable: st.ASCapable, NeighborRateRatio: st.NeighborRateRatio,
				RestoredLink: st.RestoredLink, RateRatio: st.RateRatio, LogSyncInterval: st.LogSyncInterval,
				PdelayExchanges: st.PdelayExchanges, FirstSync: st.FirstSync.Seconds()},
		}
		if st.Neighbor.ClockIdentity != 0 {
			ps.GPTP.Neighbor = st.Neighbor.String()
		}
		if st.Parent.ClockIdentity != 0 {
			ps.Parent = st.Parent.String()
		}
		if st.Grandmaster != 0 {
			ps.Grandmaster = st.Grandmaster.String()
		}
		if !st.LastMeasurement.IsZero() {
			ps.LastMeasurementAgo = max(time.Since(st.LastMeasurement).Seconds(), 0)
		}
		out = append(out, ps)
	}
	return out
}
