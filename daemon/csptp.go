package daemon

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/csptp"
	"github.com/timed-project/timed/ptp"
	"github.com/timed-project/timed/sources"
)

// csptpOptions are the engine options of a configured CSPTP server.
func csptpOptions(s config.CSPTPServer) sources.SourceOptions {
	return sources.SourceOptions{
		Kind: "csptp", Address: s.String(), MinPoll: s.MinPoll, MaxPoll: s.MaxPoll,
		Prefer: s.Prefer, NoSelect: s.NoSelect, Trust: s.Trust, Require: s.Require,
		BoundedByAuthenticated: s.BoundedByAuthenticated,
	}
}

// csptpClientConfig is the csptp.ClientConfig of a configured server.
func csptpClientConfig(s config.CSPTPServer, id protocol.ClockIdentity) csptp.ClientConfig {
	p := csptp.SPTP
	if s.Protocol == "csptp" {
		p = csptp.CSPTP
	}
	return csptp.ClientConfig{Server: s.AddrPort(), Protocol: p, MinPoll: s.MinPoll, MaxPoll: s.MaxPoll,
		Pad: s.Pad, ClockIdentity: id}
}

// startCSPTPLocked starts a task per configured CSPTP server.
func (d *Daemon) startCSPTPLocked(c config.CSPTPConfig) {
	if d.ctx.Err() != nil {
		return
	}
	for _, s := range c.Servers {
		cc := csptpClientConfig(s, d.csptpIdentity)
		d.csptpClients = append(d.csptpClients, d.startTask(d.ctx, func(ctx context.Context) {
			log := d.log.With(zap.String("csptp_server", s.String()))
			d.runSource(ctx, "csptp server", log, csptpOptions(s), func() (sources.Source, error) {
				return csptp.NewClient(cc, d.clk, log)
			})
		}))
	}
}

// csptpService is the CSPTP/SPTP responder on each listen address.
type csptpService struct {
	servers []*csptp.Server
}

// startCSPTPServer binds the CSPTP responder's sockets (before the
// daemon gives up CAP_NET_BIND_SERVICE); nil when none is configured.
func (d *Daemon) startCSPTPServer(c config.CSPTPConfig) (*csptpService, error) {
	if len(c.Listen) == 0 {
		return nil, nil
	}
	leaps := d.leapTable()
	svc := &csptpService{}
	for _, a := range c.Listen {
		srv, err := csptp.NewServer(csptp.ServerConfig{Listen: a, ClockIdentity: d.csptpIdentity,
			Quality: func() csptp.Quality { return d.csptpQuality(leaps) }, RefuseAmplification: c.RefuseAmplification},
			d.clk, d.log.Named("csptp").With(zap.Stringer("listen", a)))
		if err != nil {
			svc.close()
			return nil, fmt.Errorf("csptp: listen %s: %w", a, err)
		}
		svc.servers = append(svc.servers, srv)
	}
	d.log.Info("CSPTP server listening", zap.Int("addresses", len(svc.servers)), zap.Bool("refuse_amplification", c.RefuseAmplification))
	return svc, nil
}

// serve answers on every address until ctx is done.
func (s *csptpService) serve(ctx context.Context, log *zap.Logger) {
	done := make(chan struct{}, len(s.servers))
	for _, srv := range s.servers {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
				log.Error("CSPTP server stopped", zap.Stringer("listen", srv.Addr()), zap.Error(err))
			}
		}()
	}
	for range s.servers {
		<-done
	}
}

// close closes sockets a failed start left bound.
func (s *csptpService) close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

// stats are the responder's counters for `timectl serverstats`.
func (s *csptpService) stats() *control.CSPTPServerStats {
	out := &control.CSPTPServerStats{Answered: map[string]uint64{}, Dropped: map[string]uint64{}}
	for _, srv := range s.servers {
		out.Listen = append(out.Listen, srv.Addr().String())
		c := srv.Counters()
		for p, n := range c.Answered {
			out.Answered[p.String()] += n
		}
		for r, n := range c.Dropped {
			out.Dropped[r] += n
		}
	}
	return out
}

// csptpQuality is what the CSPTP responder announces (SPTP's Announce):
// the clock's quality as a PTP master would announce it, and TAI − UTC
// from the leap-seconds list.
func (d *Daemon) csptpQuality(leaps ptp.LeapTable) csptp.Quality {
	tp := leaps.TimeProperties(d.clk.Now())
	return csptp.Quality{Quality: d.ptpQuality(), UTCOffset: tp.CurrentUTCOffset, UTCOffsetValid: tp.CurrentUTCOffsetValid,
		Leap61: tp.Leap61, Leap59: tp.Leap59}
}

// leapTable is the system's leap-seconds list, or none (TAI − UTC 37 s,
// not marked valid) with a warning.
func (d *Daemon) leapTable() ptp.LeapTable {
	t, path, err := ptp.LoadLeapTable()
	if err != nil {
		d.log.Warn("no leap-seconds list: CSPTP answers carry a UTC offset of 37 s, not marked valid", zap.Error(err))
		return ptp.LeapTable{}
	}
	d.log.Debug("leap-seconds list", zap.String("file", path), zap.Time("expires", t.Expires))
	return t
}

// newClockIdentity is a random EUI-64 style clock identity (the FF FE in
// the middle, the locally administered bit set) for the CSPTP client and
// server, which have no interface to take a MAC address from.
func newClockIdentity() protocol.ClockIdentity {
	var b [8]byte
	_, _ = rand.Read(b[:])
	b[0] = b[0]&^1 | 2
	b[3], b[4] = 0xff, 0xfe
	var id uint64
	for _, x := range b {
		id = id<<8 | uint64(x)
	}
	return protocol.ClockIdentity(id)
}

// csptpServerStats adds the CSPTP responder's counters to serverstats.
func (d *Daemon) csptpServerStats(out *control.ServerStatsReply) {
	d.mu.Lock()
	s := d.csptp
	d.mu.Unlock()
	if s != nil {
		out.CSPTP = s.stats()
	}
}
