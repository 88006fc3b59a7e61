package daemon

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/ntp"
	ntpserver "github.com/timed-project/timed/ntp/server"
	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/nts/ke"
	"github.com/timed-project/timed/sources"
)

// runtimeSources are the NTP servers and pools added with `timectl add`.
// They are started through the reload path (apply), kept across reloads
// until removed, and forgotten at a restart.
type runtimeSources struct {
	servers []config.NTPServer
	pools   []config.NTPPool
}

// sourceName is the name of an NTP server or pool: host:port.
func sourceName(address string, port int) string {
	return net.JoinHostPort(address, strconv.Itoa(port))
}

// withRuntimeSources adds the sources added at runtime to the NTP section of
// a configuration just read, unless the file lists them too.
func (d *Daemon) withRuntimeSources(cfg *config.Config) {
	d.mu.Lock()
	rt := d.added
	d.mu.Unlock()
	for _, s := range rt.servers {
		if findSource(cfg.NTP, sourceName(s.Address, s.Port)) == "" {
			cfg.NTP.Servers = append(cfg.NTP.Servers, s)
		}
	}
	for _, p := range rt.pools {
		if findSource(cfg.NTP, sourceName(p.Address, p.Port)) == "" {
			cfg.NTP.Pools = append(cfg.NTP.Pools, p)
		}
	}
}

// findSource returns the name of the server or pool of n that is called
// name (host:port) or, when the address alone is given, has that address;
// "" when there is none.
func findSource(n config.NTPConfig, name string) string {
	var byAddr []string
	for _, s := range n.Servers {
		sn := sourceName(s.Address, s.Port)
		if sn == name {
			return sn
		}
		if s.Address == name {
			byAddr = append(byAddr, sn)
		}
	}
	for _, p := range n.Pools {
		pn := sourceName(p.Address, p.Port)
		if pn == name {
			return pn
		}
		if p.Address == name {
			byAddr = append(byAddr, pn)
		}
	}
	if len(byAddr) == 1 {
		return byAddr[0]
	}
	return ""
}

// addEntry turns the arguments of "add" into a server or pool entry the
// way the configuration file would (same defaults, same checks).
func addEntry(a control.AddArgs) (*config.NTPConfig, error) {
	if a.Prefer && a.Type == control.AddPool {
		return nil, errors.New("prefer applies to servers only")
	}
	entry := map[string]any{"address": a.Address}
	if a.Port != 0 {
		entry["port"] = a.Port
	}
	for key, on := range map[string]bool{"iburst": a.IBurst, "nts": a.NTS, "prefer": a.Prefer} {
		if on {
			entry[key] = true
		}
	}
	if a.MinPoll != nil {
		entry["minpoll"] = *a.MinPoll
	}
	if a.MaxPoll != nil {
		entry["maxpoll"] = *a.MaxPoll
	}
	list := "servers"
	if a.Type == control.AddPool {
		list = "pools"
	}
	data, err := yaml.Marshal(map[string]any{"ntp": map[string]any{list: []any{entry}}})
	if err != nil {
		return nil, fmt.Errorf("daemon: add: %w", err)
	}
	cfg, err := config.Parse("timectl add", data)
	if err != nil {
		return nil, err
	}
	return &cfg.NTP, nil
}

// AddSource starts an NTP server or pool given on the command line through
// the reload path (update), and keeps it across reloads until RemoveSource. It
// implements control.Backend.
func (d *Daemon) AddSource(a control.AddArgs) (control.AddReply, error) {
	entry, err := addEntry(a)
	if err != nil {
		return control.AddReply{}, err
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.mu.Lock()
	cfg := *d.cfg
	d.mu.Unlock()
	var name string
	switch {
	case len(entry.Servers) == 1:
		s := entry.Servers[0]
		name = sourceName(s.Address, s.Port)
		if findSource(cfg.NTP, name) == name {
			return control.AddReply{}, fmt.Errorf("%s is a source already", name)
		}
		cfg.NTP.Servers = append(slices.Clone(cfg.NTP.Servers), s)
	case len(entry.Pools) == 1:
		p := entry.Pools[0]
		name = sourceName(p.Address, p.Port)
		if findSource(cfg.NTP, name) == name {
			return control.AddReply{}, fmt.Errorf("%s is a source already", name)
		}
		cfg.NTP.Pools = append(slices.Clone(cfg.NTP.Pools), p)
	default:
		return control.AddReply{}, errors.New("no server or pool given")
	}
	if _, _, _, err := d.update(&cfg); err != nil {
		return control.AddReply{}, fmt.Errorf("daemon: %w", err)
	}
	d.mu.Lock()
	d.added.servers = append(d.added.servers, entry.Servers...)
	d.added.pools = append(d.added.pools, entry.Pools...)
	d.mu.Unlock()
	d.log.Info("source added at runtime (kept across reloads, forgotten at restart)", zap.String("source", name), zap.String("type", a.Type))
	return control.AddReply{Name: name}, nil
}

// RemoveSource stops an NTP server or pool, whether it came from the file
// or from AddSource; one from the file comes back at the next reload. It
// implements control.Backend.
func (d *Daemon) RemoveSource(source string) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.mu.Lock()
	cfg := *d.cfg
	_, running := d.running[source]
	d.mu.Unlock()
	name := findSource(cfg.NTP, source)
	if name == "" {
		if running {
			return fmt.Errorf("%s is not an NTP server or pool of its own (a pool member goes with its pool; PTP ports and reference clocks are removed in the file)", source)
		}
		return fmt.Errorf("no NTP server or pool %q (timectl sources lists them)", source)
	}
	isNot := func(address string, port int) bool { return sourceName(address, port) != name }
	cfg.NTP.Servers = slices.DeleteFunc(slices.Clone(cfg.NTP.Servers), func(s config.NTPServer) bool { return !isNot(s.Address, s.Port) })
	cfg.NTP.Pools = slices.DeleteFunc(slices.Clone(cfg.NTP.Pools), func(p config.NTPPool) bool { return !isNot(p.Address, p.Port) })
	if _, _, _, err := d.update(&cfg); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.mu.Lock()
	d.added.servers = slices.DeleteFunc(d.added.servers, func(s config.NTPServer) bool { return !isNot(s.Address, s.Port) })
	d.added.pools = slices.DeleteFunc(d.added.pools, func(p config.NTPPool) bool { return !isNot(p.Address, p.Port) })
	d.mu.Unlock()
	d.log.Info("source removed at runtime", zap.String("source", name))
	return nil
}

// isRuntimeLocked reports whether the running source r was added at
// runtime (a server, or a member of a pool, added with AddSource); d.mu is
// held.
func (d *Daemon) isRuntimeLocked(r *reporter) bool {
	for _, s := range d.added.servers {
		if r.pool == "" && sourceName(s.Address, s.Port) == r.name {
			return true
		}
	}
	for _, p := range d.added.pools {
		if r.pool != "" && sourceName(p.Address, p.Port) == r.pool {
			return true
		}
	}
	return false
}

// markRuntimeLocked sets Runtime on the sources added at runtime; d.mu is
// held.
func (d *Daemon) markRuntimeLocked(st *sources.Status) {
	for i := range st.Sources {
		if r := d.running[st.Sources[i].Name]; r != nil {
			st.Sources[i].Runtime = d.isRuntimeLocked(r)
		}
	}
}

// Burst makes the NTP sources, or the one named (a pool by its name: all
// its members), send a quick burst of requests now. It implements
// control.Backend.
func (d *Daemon) Burst(source string) (control.BurstReply, error) {
	d.mu.Lock()
	out := control.BurstReply{Sources: []string{}}
	for name, r := range d.running {
		b, ok := r.src.(interface{ Burst() })
		if !ok || source != "" && source != name && source != r.pool {
			continue
		}
		b.Burst()
		out.Sources = append(out.Sources, name)
	}
	d.mu.Unlock()
	slices.Sort(out.Sources)
	if source != "" && len(out.Sources) == 0 {
		return out, fmt.Errorf("no NTP source %q (timectl sources lists them)", source)
	}
	d.log.Info("burst", zap.Strings("sources", out.Sources))
	return out, nil
}

// SourceStats is what each source's filter knows. It implements
// control.Backend.
func (d *Daemon) SourceStats() control.SourceStatsReply {
	d.mu.Lock()
	st := d.eng.Status(d.clk.Now())
	d.markRuntimeLocked(&st)
	d.mu.Unlock()
	out := control.SourceStatsReply{Sources: make([]control.SourceStats, 0, len(st.Sources))}
	for _, s := range st.Sources {
		out.Sources = append(out.Sources, control.SourceStats{
			Name: s.Name, Kind: s.Kind, Runtime: s.Runtime,
			Samples: s.Samples, Window: s.Window, Span: s.Span, Outliers: s.Outliers,
			Valid:  s.Uncertainty > 0,
			Offset: s.Offset, StdDev: s.Uncertainty, Noise: s.Noise,
			Frequency: s.Frequency, FrequencyUncertainty: s.FrequencyUncertainty,
			MinDelay: s.MinDelay, Poll: s.Poll, Restarts: s.Restarts, Dropped: s.Dropped,
		})
	}
	return out
}

// ntsClient is a source that uses NTS (ntp.Client).
type ntsClient interface {
	NTSStatus() (ntp.NTSStatus, bool)
}

// NTS is the NTS state of every NTS source and of the server. It implements
// control.Backend.
func (d *Daemon) NTS() control.NTSReply {
	now := time.Now()
	out := control.NTSReply{Clients: []control.NTSClientStatus{}}
	d.mu.Lock()
	var names []string
	for name := range d.running {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c, ok := d.running[name].src.(ntsClient)
		if !ok {
			continue
		}
		if st, ok := c.NTSStatus(); ok {
			out.Clients = append(out.Clients, ntsClientStatus(name, st, now))
		}
	}
	n := d.ntp
	d.mu.Unlock()
	if n != nil && n.nts != nil {
		out.Server = ntsServerStatus(n, now)
	}
	return out
}

// ntsClientStatus is the control form of an NTS client's state at now.
func ntsClientStatus(name string, st ntp.NTSStatus, now time.Time) control.NTSClientStatus {
	c := control.NTSClientStatus{
		Name: name, KEServer: st.KEServer, KEs: st.KEs, NTPServer: st.NTPServer,
		Cookies: st.Cookies, MaxCookies: st.MaxCookies, NAKs: st.NAKs, AuthFailures: st.AuthFailures,
	}
	switch {
	case st.KEError != "":
		c.KEState, c.KEError = "failed", st.KEError
		c.RetryIn = max(0, st.RetryAt.Sub(now).Seconds())
	case st.LastKE.IsZero():
		c.KEState = "pending"
	default:
		c.KEState = "ok"
	}
	if !st.LastKE.IsZero() {
		c.LastKEAgo = now.Sub(st.LastKE).Seconds()
		c.AEAD = aeadName(st.AEAD)
	}
	return c
}

// aeadName is the IANA name of an AEAD algorithm.
func aeadName(id uint16) string {
	if id == nts.AEADAESSIVCMAC256 {
		return "AEAD_AES_SIV_CMAC_256"
	}
	return "AEAD " + strconv.Itoa(int(id))
}

// ntsServerStatus is the server side of NTS.
func ntsServerStatus(n *ntpServer, now time.Time) *control.NTSServerStatus {
	st := n.srv.Stats()
	out := &control.NTSServerStatus{NTSServerStats: *n.nts.stats(st.NTS, st.NTSNAK)}
	out.CookiesIssued = out.Exchanges * ke.CookiesPerResponse
	out.CookiesAccepted = st.NTS
	out.CookiesRejected = st.Dropped[ntpserver.DropNTSCookie]
	if id, created, ok := n.nts.ring.Current(); ok {
		out.KeyID = fmt.Sprintf("%08x", id)
		out.KeyRotatesIn = max(0, created.Add(n.nts.cfg.KeyRotation).Sub(now).Seconds())
	}
	return out
}
