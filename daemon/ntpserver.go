package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/ntp/clientlog"
	ntpserver "github.com/timed-project/timed/ntp/server"
	"github.com/timed-project/timed/sources"
)

// ntpServer is the running NTP server, its NTS service (nil when NTS is
// off) and when it started.
type ntpServer struct {
	srv     *ntpserver.Server
	nts     *ntsService
	cfg     config.ServerConfig
	started time.Time
}

// close stops the NTP server and its NTS service.
func (n *ntpServer) close() {
	n.srv.Close()
	if n.nts != nil {
		n.nts.close()
	}
}

// serverConfig maps the `server:` section to the server's configuration.
func serverConfig(c config.ServerConfig) ntpserver.Config {
	r := c.RateLimit
	return ntpserver.Config{
		Listen:      c.Listen,
		Workers:     c.Workers,
		Interleaved: c.Interleaved,
		Allow:       c.Allow,
		Deny:        c.Deny,
		DenyKiss:    c.DenyResponse == "kiss",
		Clients: clientlog.Config{
			Size:     c.ClientTableSize,
			Interval: r.Interval, Burst: r.Burst, KissEvery: r.KissEvery,
			PrefixV4: r.PrefixIPv4, PrefixV6: r.PrefixIPv6, PrefixInterval: r.PrefixInterval, PrefixBurst: r.PrefixBurst,
		},
		LocalStratum: c.LocalStratum,
	}
}

// startNTPServer binds and starts the NTP server of cfg and its NTS
// service (nil when no server is configured).
func (d *Daemon) startNTPServer(cfg config.ServerConfig) (*ntpServer, error) {
	return d.startNTPServerWith(cfg, nil)
}

// startNTPServerWith is startNTPServer with an NTS service already running
// for cfg (nil: start one if cfg asks for it). On error a service it
// started is stopped; keep is the caller's.
func (d *Daemon) startNTPServerWith(cfg config.ServerConfig, keep *ntsService) (*ntpServer, error) {
	if len(cfg.Listen) == 0 {
		return nil, nil
	}
	ns := keep
	if ns == nil {
		var err error
		if ns, err = startNTS(cfg, d.log.Named("nts")); err != nil {
			return nil, err
		}
	}
	sc := serverConfig(cfg)
	if ns != nil {
		sc.NTS = ns.ring
	}
	srv, err := ntpserver.New(sc, d.clk, d.log.Named("server"))
	if err != nil {
		if ns != nil && keep == nil {
			ns.close()
		}
		return nil, fmt.Errorf("daemon: %w", err)
	}
	srv.Start()
	return &ntpServer{srv: srv, nts: ns, cfg: cfg, started: time.Now()}, nil
}

// reloadNTPServerLocked moves the NTP server to cfg: updated on its
// sockets when the listen addresses and workers stay, else started,
// stopped or replaced (new sockets, an empty client table). When the new
// settings cannot be applied, the old ones stay.
func (d *Daemon) reloadNTPServerLocked(cfg config.ServerConfig) {
	old := d.ntp
	if old != nil && old.nts != nil && sameNTS(old.cfg, cfg) {
		old.nts.reloadCertificate()
	}
	if old != nil && reflect.DeepEqual(old.cfg, cfg) || old == nil && len(cfg.Listen) == 0 {
		return
	}
	if old != nil && slices.Equal(old.cfg.Listen, cfg.Listen) && old.cfg.Workers == cfg.Workers {
		if !sameNTS(old.cfg, cfg) {
			d.reloadNTSLocked(old, &cfg)
		}
		sc := serverConfig(cfg)
		if old.nts != nil {
			sc.NTS = old.nts.ring
		}
		if err := old.srv.Update(sc); err != nil {
			d.log.Error("reload: the new server settings cannot be applied; the NTP server keeps its old ones", zap.Error(err))
			return
		}
		old.cfg = cfg
		d.log.Info("reload: NTP server settings changed")
		return
	}
	var keep *ntsService
	if old != nil && old.nts != nil {
		if sameNTS(old.cfg, cfg) {
			keep = old.nts
		} else {
			// Its ports may be wanted by the new one.
			old.nts.close()
			old.nts = nil
			d.log.Info("reload: NTS-KE server stopped for new settings")
		}
	}
	next, err := d.startNTPServerWith(cfg, keep)
	if err != nil {
		msg := "reload: the new server settings cannot be applied; the NTP server keeps its old ones"
		if errors.Is(err, syscall.EACCES) {
			msg += " (a port below 1024 can be bound only at start: restart timed)"
		}
		d.log.Error(msg, zap.Error(err))
		return
	}
	if old != nil {
		old.srv.Close()
		if old.nts != nil && old.nts != keep {
			old.nts.close()
		}
	}
	if next == nil && keep != nil {
		keep.close()
	}
	d.ntp = next
	if next == nil {
		d.log.Info("reload: NTP server stopped")
		return
	}
	d.feedNTPServerLocked(d.eng.Status(d.clk.Now()))
	d.log.Info("reload: NTP server restarted with the new settings")
}

// reloadNTSLocked replaces the NTS service of the running server n with
// that of cfg. When the new one cannot start, NTS stays off (the error is
// logged) and cfg says so, so that the next reload tries again.
func (d *Daemon) reloadNTSLocked(n *ntpServer, cfg *config.ServerConfig) {
	if n.nts != nil {
		n.nts.close()
		n.nts = nil
	}
	ns, err := startNTS(*cfg, d.log.Named("nts"))
	if err != nil {
		d.log.Error("reload: NTS cannot start with the new settings; NTS is off until they are fixed", zap.Error(err))
		cfg.NTS.Listen = nil
		return
	}
	n.nts = ns
	if ns == nil {
		d.log.Info("reload: NTS stopped")
	} else {
		d.log.Info("reload: NTS restarted with the new settings")
	}
}

// feedNTPServerLocked tells the NTP server what the engine knows.
func (d *Daemon) feedNTPServerLocked(st sources.Status) {
	if d.ntp == nil {
		return
	}
	d.ntp.srv.SetState(d.serverState(st))
}

// serverState is what an NTP server on this clock may claim. A clock
// timed does not steer (the `none` driver) is never served as
// synchronized.
func (d *Daemon) serverState(st sources.Status) ntpserver.State {
	if !st.Synchronized || d.observe {
		return ntpserver.State{Leap: st.Leap}
	}
	now := d.clk.Now()
	return ntpserver.State{
		Synchronized:         true,
		Leap:                 st.Leap,
		Stratum:              st.Stratum,
		RefID:                d.refIDLocked(st.Reference),
		RootDelay:            seconds(st.RootDelay),
		RootDispersion:       seconds(st.RootDispersion),
		RefTime:              now.Add(-seconds(st.LastUpdateAgo)),
		FrequencyUncertainty: st.FrequencyUncertainty * 1e-6,
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// refIDLocked is the reference ID of the source named name: a reference
// clock's configured refid (GPS, PPS, ...), or its IP address (RFC 5905) as
// the source reports it or as its name gives it.
func (d *Daemon) refIDLocked(name string) uint32 {
	for _, rc := range d.refclockConfigs() {
		if rc.Name == name {
			return refclockRefID(rc.RefID)
		}
	}
	if r, ok := d.running[name]; ok {
		if a, ok := r.src.(interface{ RemoteAddr() netip.AddrPort }); ok {
			if ap := a.RemoteAddr(); ap.IsValid() {
				return ntpserver.RefIDOf(ap.Addr())
			}
		}
	}
	host := name
	if h, _, err := net.SplitHostPort(name); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return ntpserver.RefIDOf(a)
	}
	return 0
}

// ServerStats returns the NTP server's counters. It implements
// control.Backend.
func (d *Daemon) ServerStats() control.ServerStatsReply {
	d.mu.Lock()
	n := d.ntp
	var ns *ntsService
	if n != nil {
		ns = n.nts
	}
	d.mu.Unlock()
	if n == nil {
		var out control.ServerStatsReply
		d.csptpServerStats(&out)
		return out
	}
	st := n.srv.Stats()
	w := n.srv.Served()
	out := control.ServerStatsReply{
		Enabled: true, Workers: st.Workers, Uptime: time.Since(n.started).Seconds(),
		Received: st.Received, Answered: st.Answered, Interleaved: st.Interleaved,
		KissRate: st.KissRate, KissDeny: st.KissDeny, Dropped: st.Dropped,
		UserRxStamps: st.UserRxStamps, TxStamps: st.TxStamps,
		Clients: st.Clients, ClientTableSize: st.ClientTableSize,
		Stratum: w.Stratum, Leap: w.Leap, RefID: w.RefID,
	}
	if ns != nil {
		out.NTS = ns.stats(st.NTS, st.NTSNAK)
	}
	for _, a := range n.srv.Addrs() {
		out.Listen = append(out.Listen, a.String())
	}
	d.csptpServerStats(&out)
	return out
}

// Clients returns the NTP server's busiest clients. It implements
// control.Backend.
func (d *Daemon) Clients(limit int) control.ClientsReply {
	d.mu.Lock()
	n := d.ntp
	d.mu.Unlock()
	if n == nil {
		return control.ClientsReply{}
	}
	out := control.ClientsReply{Enabled: true, Clients: []control.ClientInfo{}}
	for _, c := range n.srv.Clients(limit) {
		out.Clients = append(out.Clients, control.ClientInfo{
			Address: c.Addr.String(), Requests: c.Requests, Served: c.Served, Kissed: c.Kissed, Dropped: c.Dropped,
			Rate: c.Rate, LastSeenAgo: c.LastSeen.Seconds(), Interleaved: c.Interleaved,
		})
	}
	return out
}
