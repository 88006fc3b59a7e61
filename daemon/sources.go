package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/internal/wait"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/sources"
)

// How long a failed source or pool waits before it is tried again: the
// delay doubles from retryMin up to retryMax, and starts over after a run
// that lasted retryReset.
var (
	retryMin   = 15 * time.Second
	retryMax   = time.Hour
	retryReset = 10 * time.Minute
)

// reporter is a source's line to the engine. Its methods lock the daemon;
// once the source is removed they do nothing.
type reporter struct {
	d       *Daemon
	name    string
	src     sources.Source
	removed bool // guarded by d.mu
	// pool is the name of the pool the source belongs to; "" for others.
	pool string
	// cancel and done belong to sources started through a Registry (pool
	// members); nil for configured servers, whose task owns them.
	cancel context.CancelFunc
	done   chan struct{}
}

var _ sources.Reporter = (*reporter)(nil)

func (r *reporter) Polled() {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if !r.removed {
		r.d.eng.Polled(r.name, r.d.clk.Now())
	}
}

// Measured feeds the measurement to the engine and applies at once what the
// engine then wants of the clock.
func (r *reporter) Measured(m sources.Measurement) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if r.removed {
		return
	}
	r.d.eng.Measured(r.name, m)
	r.d.updateLocked()
}

func (r *reporter) Fault(reason string) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if !r.removed {
		r.d.eng.Fault(r.name, reason)
	}
}

func (r *reporter) PollInterval() time.Duration {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if r.removed {
		return time.Second
	}
	return r.d.eng.PollInterval(r.name)
}

// register adds a source to the engine under its name.
func (d *Daemon) register(src sources.Source, opts sources.SourceOptions) (*reporter, error) {
	name := src.Name()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.running[name]; dup {
		return nil, fmt.Errorf("daemon: source %s: already running", name)
	}
	if err := d.eng.AddSource(name, opts); err != nil {
		return nil, fmt.Errorf("daemon: source %s: %w", name, err)
	}
	r := &reporter{d: d, name: name, src: src}
	d.running[name] = r
	return r, nil
}

// unregister forgets a source in the engine; its reporter goes quiet.
func (d *Daemon) unregister(r *reporter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.removed {
		return
	}
	r.removed = true
	if d.running[r.name] == r {
		delete(d.running, r.name)
	}
	d.eng.RemoveSource(r.name)
}

// task is a goroutine running a configured server or pool.
type task struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (t *task) stop() {
	t.cancel()
	<-t.done
}

// startTask runs fn in a goroutine under ctx.
func (d *Daemon) startTask(ctx context.Context, fn func(ctx context.Context)) *task {
	ctx, cancel := context.WithCancel(ctx)
	t := &task{cancel: cancel, done: make(chan struct{})}
	d.tasks.Go(func() {
		defer close(t.done)
		fn(ctx)
	})
	return t
}

// startSourcesLocked starts the servers and pools of n that are not running
// yet, in the order of the file. Duplicates are ignored with a warning.
func (d *Daemon) startSourcesLocked(n config.NTPConfig) {
	if d.ctx.Err() != nil {
		return // stopping
	}
	for _, sc := range n.Servers {
		if _, ok := d.servers[sc]; ok {
			continue
		}
		d.servers[sc] = d.startTask(d.ctx, func(ctx context.Context) { d.runServer(ctx, sc) })
	}
	for _, pc := range n.Pools {
		if _, ok := d.pools[pc]; ok {
			continue
		}
		d.pools[pc] = d.startTask(d.ctx, func(ctx context.Context) { d.runPool(ctx, pc) })
	}
}

// stopAllSources stops every server and pool and waits for them.
func (d *Daemon) stopAllSources() {
	d.mu.Lock()
	var ts []*task
	for k, t := range d.servers {
		ts = append(ts, t)
		delete(d.servers, k)
	}
	for k, t := range d.pools {
		ts = append(ts, t)
		delete(d.pools, k)
	}
	ts = append(ts, d.ptpPorts...)
	ts = append(ts, d.csptpClients...)
	ts = append(ts, d.gptpTasks...)
	ts = append(ts, d.refclocks...)
	d.ptpPorts, d.csptpClients, d.gptpTasks, d.refclocks = nil, nil, nil, nil
	d.mu.Unlock()
	for _, t := range ts {
		t.cancel()
	}
	d.tasks.Wait()
}

// serverOptions are the engine options of a configured NTP server.
func serverOptions(sc config.NTPServer) sources.SourceOptions {
	return sources.SourceOptions{
		Kind:     "ntp",
		Address:  net.JoinHostPort(sc.Address, strconv.Itoa(sc.Port)),
		MinPoll:  sc.MinPoll,
		MaxPoll:  sc.MaxPoll,
		Prefer:   sc.Prefer,
		NoSelect: sc.NoSelect,
		Trust:    sc.Trust,
		Require:  sc.Require,

		BoundedByAuthenticated: sc.BoundedByAuthenticated,
	}
}

// runServer runs one configured NTP server until ctx is done.
func (d *Daemon) runServer(ctx context.Context, sc config.NTPServer) {
	opts := serverOptions(sc)
	log := d.log.With(zap.String("server", opts.Address))
	d.runSource(ctx, "ntp server", log, opts, func() (sources.Source, error) { return d.f.newServer(sc, d.clk, log) })
}

// runSource runs the source newSource makes until ctx is done. A source
// that cannot be set up (its name does not resolve yet, its interface is
// down) or that stops with an error is made and tried again later;
// meanwhile the engine shows its fault. The engine keeps the source's state
// across such restarts.
func (d *Daemon) runSource(ctx context.Context, what string, log *zap.Logger, opts sources.SourceOptions, newSource func() (sources.Source, error)) {
	var rep *reporter
	defer func() {
		if rep != nil {
			d.unregister(rep)
		}
	}()
	delay := retryMin
	for {
		src, err := newSource()
		if err == nil && (rep == nil || rep.name != src.Name()) {
			if rep != nil {
				d.unregister(rep)
				rep = nil
			}
			rep, err = d.register(src, opts)
		}
		if err == nil {
			start := time.Now()
			log.Debug("source started", zap.String("source", src.Name()))
			err = src.Run(ctx, rep)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("stopped without an error")
			}
			rep.Fault(err.Error())
			if time.Since(start) >= retryReset {
				delay = retryMin
			}
		}
		log.Warn(what+" failed; trying again later", zap.Error(err), zap.Duration("retry_in", delay))
		if !wait.For(ctx, delay) {
			return
		}
		delay = min(2*delay, retryMax)
	}
}

// runPool runs one configured pool until ctx is done; the pool adds and
// removes its servers through a registry that remembers them, so that they
// all go when the pool does.
func (d *Daemon) runPool(ctx context.Context, pc config.NTPPool) {
	log := d.log.With(zap.String("pool", net.JoinHostPort(pc.Address, strconv.Itoa(pc.Port))))
	reg := &poolRegistry{d: d, ctx: ctx, log: log, name: sourceName(pc.Address, pc.Port), members: map[string]*reporter{}}
	defer reg.removeAll()
	delay := retryMin
	for {
		start := time.Now()
		err := d.f.newPool(pc, d.clk, log).Run(ctx, reg)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped without an error")
		}
		reg.removeAll()
		if time.Since(start) >= retryReset {
			delay = retryMin
		}
		log.Warn("ntp pool failed; trying again later", zap.Error(err), zap.Duration("retry_in", delay))
		if !wait.For(ctx, delay) {
			return
		}
		delay = min(2*delay, retryMax)
	}
}

// poolRegistry is the sources.Registry a pool adds its servers through.
// A member that stops with an error keeps its fault in the engine until the
// pool removes it.
type poolRegistry struct {
	d    *Daemon
	ctx  context.Context
	log  *zap.Logger
	name string // the pool's

	members map[string]*reporter // guarded by d.mu
}

func (p *poolRegistry) Add(src sources.Source, opts sources.SourceOptions) error {
	name := src.Name()
	rep, err := p.d.register(src, opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	rep.cancel, rep.done = cancel, make(chan struct{})
	p.d.mu.Lock()
	rep.pool = p.name
	p.members[name] = rep
	p.d.mu.Unlock()
	p.d.tasks.Go(func() {
		defer close(rep.done)
		err := src.Run(ctx, rep)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped without an error")
		}
		p.log.Warn("pool server stopped", zap.String("source", name), zap.Error(err))
		rep.Fault(err.Error())
	})
	p.log.Info("pool server added", zap.String("source", name), zap.String("address", opts.Address))
	return nil
}

func (p *poolRegistry) Remove(name string) {
	p.d.mu.Lock()
	rep := p.members[name]
	delete(p.members, name)
	p.d.mu.Unlock()
	if rep == nil {
		return
	}
	p.d.unregister(rep)
	rep.cancel()
	<-rep.done
	p.log.Info("pool server removed", zap.String("source", name))
}

func (p *poolRegistry) removeAll() {
	p.d.mu.Lock()
	names := make([]string, 0, len(p.members))
	for n := range p.members {
		names = append(names, n)
	}
	p.d.mu.Unlock()
	for _, n := range names {
		p.Remove(n)
	}
}

func newNTPServer(sc config.NTPServer, tb sources.Timebase, log *zap.Logger, everSynced *atomic.Bool) (sources.Source, error) {
	return ntp.NewClient(ntp.ClientConfig{
		Address: sc.Address,
		Port:    sc.Port,
		IBurst:  sc.IBurst,
		XLeave:  sc.XLeave,
		MinPoll: sc.MinPoll,
		MaxPoll: sc.MaxPoll,
		NTS:     ntsClientConfig(sc.NTS, everSynced),
	}, tb, log)
}

// ntsClientConfig is the ntp package's form of an `nts:` key (nil: off).
// everSynced tells whether the clock has been synchronized yet.
func ntsClientConfig(n config.NTSClient, everSynced *atomic.Bool) *ntp.NTSConfig {
	if !n.Enabled {
		return nil
	}
	c := &ntp.NTSConfig{Server: n.Server, Port: n.Port, CAFile: n.CA}
	if n.IgnoreDatesUntilSynced && everSynced != nil {
		c.IgnoreDates = func() bool { return !everSynced.Load() }
	}
	return c
}

func newNTPPool(pc config.NTPPool, tb sources.Timebase, log *zap.Logger, everSynced *atomic.Bool) poolRunner {
	return ntp.NewPool(ntp.PoolConfig{
		Address:    pc.Address,
		Port:       pc.Port,
		MaxSources: pc.MaxSources,
		IBurst:     pc.IBurst,
		XLeave:     pc.XLeave,
		MinPoll:    pc.MinPoll,
		MaxPoll:    pc.MaxPoll,
		NTS:        ntsClientConfig(pc.NTS, everSynced),
	}, tb, log)
}
