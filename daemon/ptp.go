package daemon

import (
	"context"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/ptp"
	"github.com/timed-project/timed/sources"
)

// ptpUsesUDP reports whether a configured PTP port runs over UDP, whose
// ports 319 and 320 need CAP_NET_BIND_SERVICE.
func ptpUsesUDP(c config.PTPConfig) bool {
	for _, p := range c.Ports {
		if p.Transport != "l2" {
			return true
		}
	}
	return false
}

// ptpSourceConfig is the ptp.SourceConfig of a configured port.
func ptpSourceConfig(c config.PTPConfig, p config.PTPPort) ptp.SourceConfig {
	mech := ptp.EndToEnd
	if p.DelayMechanism == "p2p" {
		mech = ptp.PeerToPeer
	}
	return ptp.SourceConfig{
		Interface: p.Interface, Role: ptp.Role(p.Role), Network: ptp.Network(p.Transport), Domain: uint8(c.Domain),
		Priority1: uint8(c.Priority1), Priority2: uint8(c.Priority2),
		LogAnnounceInterval: int8(p.LogAnnounceInterval), LogSyncInterval: int8(p.LogSyncInterval),
		LogMinDelayReqInterval: int8(p.LogMinDelayReqInterval),
		AnnounceReceiptTimeout: p.AnnounceReceiptTimeout, DelayAsymmetry: p.DelayAsymmetry, DelayMechanism: mech,
		UnicastMasters: slices.Clone(p.UnicastMasters),
		UnicastListen:  p.UnicastListen,
		HardwareStamps: p.Timestamping == "hardware",
	}
}

// startPTPLocked starts a task per configured PTP port.
func (d *Daemon) startPTPLocked(c config.PTPConfig) {
	if d.ctx.Err() != nil {
		return
	}
	for _, p := range c.Ports {
		sc := ptpSourceConfig(c, p)
		sc.Quality = d.ptpQuality
		d.ptpPorts = append(d.ptpPorts, d.startTask(d.ctx, func(ctx context.Context) { d.runPTPPort(ctx, sc, p) }))
	}
}

// runPTPPort runs one PTP port as a source until ctx is done.
func (d *Daemon) runPTPPort(ctx context.Context, sc ptp.SourceConfig, p config.PTPPort) {
	log := d.log.With(zap.String("ptp_port", sc.Interface))
	opts := sources.SourceOptions{
		Kind: "ptp", Address: sc.Interface, MinPoll: p.LogSyncInterval, MaxPoll: p.LogSyncInterval,
		Prefer: p.Prefer, NoSelect: p.NoSelect, Trust: p.Trust, Require: p.Require,
		BoundedByAuthenticated: p.BoundedByAuthenticated,
	}
	d.runSource(ctx, "ptp port", log, opts, func() (sources.Source, error) {
		if err := d.hw.portErr(sc.Interface); err != nil {
			return nil, err
		}
		src, err := ptp.NewSource(sc, d.clk, log)
		if err == nil {
			d.mu.Lock()
			d.ptpSources[sc.Interface] = src
			d.mu.Unlock()
		}
		return src, err
	})
}

// ptpQuality is the local clock's quality as a PTP master announces it,
// from the engine's status. A clock timed does not steer (the `none`
// driver) is never announced as synchronized.
func (d *Daemon) ptpQuality() ptp.Quality {
	d.mu.Lock()
	st := d.eng.Status(d.clk.Now())
	ever := d.everSynced
	observe := d.observe
	d.mu.Unlock()
	if observe {
		return ptp.QualityOf(sources.Status{}, false)
	}
	return ptp.QualityOf(st, ever)
}

// PTP returns the PTP ports for `timectl ptp`. It implements
// control.Backend.
func (d *Daemon) PTP() control.PTPReply {
	d.mu.Lock()
	ports := slices.Clone(d.cfg.PTP.Ports)
	srcs := make(map[string]*ptp.Source, len(d.ptpSources))
	maps.Copy(srcs, d.ptpSources)
	d.mu.Unlock()
	now := time.Now()
	out := control.PTPReply{Ports: []control.PTPPortStatus{}}
	for _, p := range ports {
		src := srcs[p.Interface]
		if err := d.hw.portErr(p.Interface); src == nil && err != nil {
			out.Ports = append(out.Ports, control.PTPPortStatus{Interface: p.Interface, Transport: p.Transport, Role: p.Role,
				State: "FAULTY", Reason: err.Error(), Timestamps: "hardware"})
			continue
		}
		if src == nil {
			out.Ports = append(out.Ports, control.PTPPortStatus{Interface: p.Interface, Transport: p.Transport, Role: p.Role,
				State: "INITIALIZING", Reason: "not started yet"})
			continue
		}
		st := src.Status()
		ps := control.PTPPortStatus{
			Interface: st.Interface, Transport: string(st.Network), Role: string(st.Role),
			State: st.State, Reason: st.Reason, Identity: st.Identity,
			Parent: st.Parent, Grandmaster: st.Grandmaster, GrandmasterClass: st.GrandmasterClass,
			GrandmasterAccuracy: st.GrandmasterAccuracy.Seconds(), StepsRemoved: st.StepsRemoved,
			UTCOffset: st.UTCOffset.Seconds(), UTCOffsetValid: st.UTCOffsetValid, PTPTimescale: st.PTPTimescale,
			Offset: st.Offset.Seconds(), MeanPathDelay: st.MeanPathDelay.Seconds(), Timestamps: st.Timestamps,
			Measurements: st.Measurements, Dropped: st.Dropped, UnicastMasters: ptpUnicastMasters(st.UnicastMasters),
			UnicastClients: ptpUnicastClients(st.UnicastClients),
		}
		if !st.Since.IsZero() {
			ps.SinceAgo = now.Sub(st.Since).Seconds()
		}
		if !st.LastMeasurement.IsZero() {
			ps.LastMeasurementAgo = d.clk.Now().Sub(st.LastMeasurement).Seconds()
		}
		out.Ports = append(out.Ports, ps)
	}
	out.Ports = append(out.Ports, d.gptpPorts()...)
	return out
}

// ptpUnicastMasters is the unicast negotiation of a port as the control
// protocol carries it.
func ptpUnicastMasters(ms []ptp.UnicastMasterStatus) []control.PTPUnicastMaster {
	var out []control.PTPUnicastMaster
	for _, m := range ms {
		cm := control.PTPUnicastMaster{Address: m.Address.String(), Identity: m.Identity, Selected: m.Selected,
			Grants: []control.PTPUnicastGrant{}}
		for _, g := range m.Grants {
			cm.Grants = append(cm.Grants, control.PTPUnicastGrant{Message: g.Message, State: g.State,
				LogInterval: g.LogInterval, Left: g.Left.Seconds()})
		}
		out = append(out, cm)
	}
	return out
}

// ptpUnicastClients are the unicast clients a master port serves, as the
// control protocol carries them.
func ptpUnicastClients(cs []ptp.UnicastClientStatus) []control.PTPUnicastClient {
	var out []control.PTPUnicastClient
	for _, c := range cs {
		cc := control.PTPUnicastClient{Address: c.Address.String(), Identity: c.Identity, Grants: []control.PTPUnicastGrant{}}
		for _, g := range c.Grants {
			cc.Grants = append(cc.Grants, control.PTPUnicastGrant{Message: g.Message, State: g.State,
				LogInterval: g.LogInterval, Left: g.Left.Seconds()})
		}
		out = append(out, cc)
	}
	return out
}
