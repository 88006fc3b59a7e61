// Package daemon wires timed together from its configuration: the clock, the
// engine, every time source, the control socket and the metrics endpoint.
// It owns the goroutines, reloads the configuration on request (sources are
// added and removed without disturbing the others) and saves the
// oscillator's frequency in the drift file.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/facebook/time/ptp/protocol"
	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/gptp"
	"github.com/timed-project/timed/phc"
	"github.com/timed-project/timed/ptp"
	"github.com/timed-project/timed/sources"
)

// engine is what the daemon needs of sources.Engine; tests substitute it.
type engine interface {
	AddSource(name string, opts sources.SourceOptions) error
	RemoveSource(name string)
	Polled(name string, now time.Time)
	Measured(name string, m sources.Measurement)
	Fault(name, reason string)
	PollInterval(name string) time.Duration
	Update(now time.Time) sources.Correction
	Applied(now time.Time)
	Status(now time.Time) sources.Status
	MakeStep()
}

// poolRunner is an NTP pool: it adds and removes its servers through reg.
type poolRunner interface {
	Run(ctx context.Context, reg sources.Registry) error
}

// factories make the parts the daemon runs; tests replace them.
type factories struct {
	newEngine func(cfg sources.Config, log *zap.Logger) engine
	newClock  func(cfg config.ClockConfig, log *zap.Logger) (clk clock.Clock, observe bool, err error)
	newServer func(sc config.NTPServer, tb sources.Timebase, log *zap.Logger) (sources.Source, error)
	newPool   func(pc config.NTPPool, tb sources.Timebase, log *zap.Logger) poolRunner
	// listenControl makes the control socket; it returns the path used.
	listenControl func(path string, log *zap.Logger) (ln net.Listener, used string, err error)
	// everSynced is set once the clock has been synchronized: NTS sources
	// configured to ignore certificate dates until then read it.
	everSynced *atomic.Bool
	// findPHC and openPHC find and open the PTP hardware clock of a PTP
	// port with hardware timestamps (nil: phc.FindByInterface, phc.Open).
	findPHC func(ifname string) (path string, err error)
	openPHC func(path string) (phc.Device, error)
	// lockDown drops the capabilities and installs the seccomp filter once
	// start-up is done (nil: neither, as in the daemon's own tests, whose
	// process must stay as it is).
	lockDown func(d *Daemon, cfg *config.Config)
}

// Intervals of the daemon's housekeeping.
const (
	updateInterval = time.Second // engine.Update without new measurements
	driftInterval  = time.Hour   // drift file while synchronized
)

// Daemon is a running timed. Make it with New, then call Run.
type Daemon struct {
	log     *zap.Logger
	f       factories
	clk     clock.Clock
	observe bool
	hw      hardwareClock // the PHC and the tie, with hardware timestamps

	reloadMu sync.Mutex // serializes Reload
	cfgPath  string     // guarded by reloadMu

	mu         sync.Mutex // guards all below; serializes every engine call
	eng        engine
	cfg        *config.Config // the configuration in force
	driftPath  string         // "" when no drift file is kept
	everSynced bool
	synced     bool
	freqSet    bool
	lastFreq   float64
	applyErrs  map[string]string // last error per clock operation, to log changes only
	ctx        context.Context   // Run's context; nil until Run
	running    map[string]*reporter
	servers    map[config.NTPServer]*task
	ptpPorts   []*task
	refclocks  []*task
	ptpSources map[string]*ptp.Source // by interface, the latest of each port
	// csptpClients are the CSPTP servers' tasks, csptp the responder (nil
	// when none), csptpIdentity the clock identity of both.
	csptpClients []*task
	// gptpTasks are the gPTP ports' tasks, gptpPortsBy the latest port of
	// each interface.
	gptpTasks     []*task
	gptpPortsBy   map[string]*gptp.Port
	csptp         *csptpService
	csptpIdentity protocol.ClockIdentity
	// refclockReaders are the reference clocks' readers by name, the
	// latest of each.
	refclockReaders map[string]refclockReader
	// refclockIO is what the reference clocks opened at start-up.
	refclockIO heldRefclockIO
	pools      map[config.NTPPool]*task
	added      runtimeSources // sources added with `timectl add`
	ntp        *ntpServer     // the NTP server; nil when none is configured

	tasks sync.WaitGroup // every source and pool goroutine

	ready       chan struct{}
	socketPath  string // set before ready closes
	metricsAddr string // set before ready closes

	notify *notifier // systemd's notification socket; nil without one
}

// New builds the daemon from cfg: the clock, the drift file's frequency and
// the engine. cfgPath is the file cfg came from, read again on Reload; empty
// means cfg is the embedded default, and Reload then reads
// config.DefaultPath if it has appeared since. Nothing runs until Run.
func New(cfg *config.Config, cfgPath string, log *zap.Logger) (*Daemon, error) {
	return newDaemon(cfg, cfgPath, log, defaultFactories())
}

// Run runs timed until ctx is done: New, then Daemon.Run.
func Run(ctx context.Context, cfg *config.Config, cfgPath string, log *zap.Logger) error {
	d, err := New(cfg, cfgPath, log)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

func newDaemon(cfg *config.Config, cfgPath string, log *zap.Logger, f factories) (*Daemon, error) {
	if log == nil {
		log = zap.NewNop()
	}
	clk, observe, err := f.newClock(cfg.Clock, log)
	if err != nil {
		return nil, err
	}
	hw, clk, err := setupHardwareClock(cfg, clk, observe, f, log)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		log:             log,
		f:               f,
		clk:             clk,
		observe:         observe,
		hw:              hw,
		cfgPath:         cfgPath,
		cfg:             cfg,
		applyErrs:       map[string]string{},
		running:         map[string]*reporter{},
		servers:         map[config.NTPServer]*task{},
		ptpSources:      map[string]*ptp.Source{},
		csptpIdentity:   newClockIdentity(),
		gptpPortsBy:     map[string]*gptp.Port{},
		refclockReaders: map[string]refclockReader{},
		pools:           map[config.NTPPool]*task{},
		ready:           make(chan struct{}),
		notify:          newNotifier(os.Getenv("NOTIFY_SOCKET"), readyTimeout, log),
	}
	ecfg := engineConfig(cfg.Engine)
	ecfg.Observe = observe
	d.setDriftPath(cfg.DriftFile)
	if d.driftPath != "" {
		if err := os.MkdirAll(filepath.Dir(d.driftPath), 0o755); err != nil {
			log.Warn("the drift file's directory cannot be made; the frequency will not be saved",
				zap.String("drift_file", d.driftPath), zap.Error(err))
		}
		ppm, unc, err := clock.ReadDrift(d.driftPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			log.Info("no drift file yet (first start): the oscillator's frequency error is unknown",
				zap.String("drift_file", d.driftPath))
		case err != nil:
			log.Warn("drift file unreadable; starting with an unknown frequency", zap.Error(err))
		default:
			ecfg.InitialFrequency, ecfg.InitialFrequencyUncertainty = ppm, unc
			if err := clk.SetFrequency(ppm); err != nil {
				log.Error("cannot set the clock's frequency from the drift file", zap.Error(err))
			} else {
				d.freqSet, d.lastFreq = true, ppm
			}
			log.Info("frequency from the drift file", zap.String("drift_file", d.driftPath),
				zap.Float64("frequency_ppm", ppm), zap.Float64("uncertainty_ppm", unc))
		}
	}
	if !d.freqSet && !observe {
		// Without a drift file the engine starts from whatever frequency
		// the clock runs at now (the kernel keeps it across restarts), so
		// that its idea of the raw oscillator matches the clock's.
		if ppm, err := clk.Frequency(); err == nil {
			ecfg.InitialFrequency = ppm
		}
	}
	d.eng = f.newEngine(ecfg, log.Named("engine"))
	return d, nil
}

// setDriftPath decides whether a drift file is kept. It is, for the system
// clock only: the frequency of a virtual clock includes its simulated error
// and that of the `none` clock is never applied, so saving either would
// mislead the next start with the system clock.
func (d *Daemon) setDriftPath(path string) {
	d.driftPath = ""
	if path == "" {
		return
	}
	if d.clk.Name() != "system" {
		d.log.Debug("drift file not used with this clock", zap.String("clock", d.clk.Name()))
		return
	}
	d.driftPath = path
}

// engineConfig maps the `engine:` section to the engine's configuration.
func engineConfig(e config.EngineConfig) sources.Config {
	return sources.Config{
		MinAgreeingSources: e.MinAgreeingSources,
		StepThreshold:      e.StepThreshold,
		StepLimit:          e.StepLimit,
		PanicThreshold:     e.PanicThreshold,
		MaxSlewRate:        e.MaxSlewRatePPM,
		MaxFrequency:       e.MaxFrequencyPPM,

		RequireAuthenticated: e.RequireAuthenticated,
	}
}

// buildClock makes the configured clock driver. observe is true when the
// clock cannot be steered (the `none` driver).
func buildClock(cfg config.ClockConfig, log *zap.Logger) (clock.Clock, bool, error) {
	switch cfg.Driver {
	case "", "system":
		if !clock.CanSetTime() {
			log.Warn("no CAP_SYS_TIME: running with the virtual clock; the system clock will not be disciplined")
			return clock.NewVirtual(clock.VirtualOptions{}), false, nil
		}
		c, err := clock.NewSystem(log.Named("clock"))
		if err != nil {
			log.Warn("the system clock driver is unavailable: running with the virtual clock; the system clock will not be disciplined",
				zap.Error(err))
			return clock.NewVirtual(clock.VirtualOptions{}), false, nil
		}
		return c, false, nil
	case "virtual":
		return clock.NewVirtual(clock.VirtualOptions{
			Offset:       cfg.Simulate.Offset,
			FrequencyPPM: cfg.Simulate.FrequencyPPM,
		}), false, nil
	case "none":
		return clock.NewNone(), true, nil
	default:
		return nil, false, fmt.Errorf("daemon: clock driver %q: want system, virtual or none", cfg.Driver)
	}
}

// Ready is closed once Run listens on the control socket (and the metrics
// endpoint) and has started the sources.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// ControlSocket is the path of the control socket; valid once Ready is
// closed (it differs from the configured one after a fallback).
func (d *Daemon) ControlSocket() string {
	<-d.ready
	return d.socketPath
}

// MetricsAddr is the address the metrics endpoint listens on ("" when off);
// valid once Ready is closed.
func (d *Daemon) MetricsAddr() string {
	<-d.ready
	return d.metricsAddr
}

// Run starts the control socket, the metrics endpoint and every source, and
// steers the clock until ctx is done. Then it stops the sources and saves
// the drift file. It returns an error if the control socket or the metrics
// endpoint cannot be set up; Run may be called once.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()

	ntpSrv, err := d.startNTPServer(cfg.Server)
	if err != nil {
		return err
	}
	defer func() {
		d.mu.Lock()
		if d.ntp != nil {
			d.ntp.close()
			d.ntp = nil
		}
		d.mu.Unlock()
	}()
	d.mu.Lock()
	d.ntp = ntpSrv
	d.feedNTPServerLocked(d.eng.Status(d.clk.Now()))
	d.mu.Unlock()
	csptpSrv, err := d.startCSPTPServer(cfg.CSPTP)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.csptp = csptpSrv
	d.mu.Unlock()
	// Least privilege: binding the server's ports was the only use of
	// CAP_NET_BIND_SERVICE, unless a PTP port on UDP may have to bind ports
	// 319 and 320 again (after its interface went away and came back).
	if ptpUsesUDP(cfg.PTP) {
		d.log.Info("keeping CAP_NET_BIND_SERVICE: PTP ports bind UDP ports 319 and 320 whenever they (re)open")
	} else if had, err := dropBindCapability(); err != nil {
		d.log.Warn("cannot drop CAP_NET_BIND_SERVICE", zap.Error(err))
	} else if had {
		d.log.Info("dropped CAP_NET_BIND_SERVICE: the sockets are bound")
	}
	keepNetAdmin(cfg.PTP, d.log)
	defer d.hw.close()

	ln, sockPath, err := d.f.listenControl(cfg.Control.Socket, d.log)
	if err != nil {
		return err
	}
	var (
		metricsSrv *metricsServer
		bg         sync.WaitGroup
	)
	if cfg.Metrics.Listen != "" {
		metricsSrv, err = listenMetrics(cfg.Metrics.Listen, newMetricsRegistry(d.Status, d.ServerStats), d.log)
		if err != nil {
			ln.Close()
			return err
		}
		d.metricsAddr = metricsSrv.addr()
		bg.Go(func() { metricsSrv.serve(ctx) })
	}
	d.socketPath = sockPath
	bg.Go(func() { d.hw.run(ctx) })
	if csptpSrv != nil {
		bg.Go(func() { csptpSrv.serve(ctx, d.log) })
	}
	srv := control.NewServer(d, d.log.Named("control"), changeGID(d.log))
	bg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			d.log.Error("control socket stopped", zap.Error(err))
		}
	})

	// Before the lock-down: attaching SHM units may need CAP_IPC_OWNER.
	refclockIO := holdRefclockIO(cfg.Refclocks, d.log)
	defer refclockIO.release()

	d.mu.Lock()
	d.ctx = ctx
	d.refclockIO = refclockIO
	d.startSourcesLocked(cfg.NTP)
	d.startPTPLocked(cfg.PTP)
	d.startGPTPLocked(cfg.GPTP)
	d.startCSPTPLocked(cfg.CSPTP)
	d.startRefclocksLocked(cfg.Refclocks)
	d.mu.Unlock()
	if d.f.lockDown != nil {
		d.f.lockDown(d, cfg)
	}
	d.log.Info("timed running", zap.String("clock", d.clk.Name()), zap.String("control_socket", sockPath),
		zap.String("metrics", d.metricsAddr), zap.Int("ntp_servers", len(cfg.NTP.Servers)),
		zap.Int("ntp_pools", len(cfg.NTP.Pools)))
	close(d.ready)
	d.notify.start(ctx)

	d.loop(ctx)
	d.notify.stopping()

	d.stopAllSources()
	cancel()
	bg.Wait()
	d.saveDrift(true)
	d.log.Info("timed stopped")
	return nil
}

// loop runs the engine once a second and saves the drift file every hour.
func (d *Daemon) loop(ctx context.Context) {
	upd := time.NewTicker(updateInterval)
	defer upd.Stop()
	drift := time.NewTicker(driftInterval)
	defer drift.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-upd.C:
			d.mu.Lock()
			d.updateLocked()
			d.mu.Unlock()
		case <-drift.C:
			d.saveDrift(false)
		}
	}
}

// updateLocked asks the engine what the clock must do now and does it,
// and tells the NTP server.
func (d *Daemon) updateLocked() {
	d.applyLocked(d.eng.Update(d.clk.Now()))
	if d.ntp != nil {
		d.feedNTPServerLocked(d.eng.Status(d.clk.Now()))
	}
}

// applyLocked carries a correction out on the clock: step, then
// frequency, then the synchronization status. Failures are logged (once
// per distinct error), never fatal.
func (d *Daemon) applyLocked(c sources.Correction) {
	if c.Step != 0 {
		err := d.clk.Step(c.Step)
		if d.noteErr("step", err) == nil {
			msg := "clock stepped"
			if d.everSynced {
				d.log.Warn(msg, zap.Duration("step", c.Step), zap.Float64("step_s", c.Step.Seconds()))
			} else {
				d.log.Info(msg+" at start-up", zap.Duration("step", c.Step), zap.Float64("step_s", c.Step.Seconds()))
			}
		}
	}
	if !d.freqSet || c.Frequency != d.lastFreq {
		if d.noteErr("frequency", d.clk.SetFrequency(c.Frequency)) == nil {
			d.freqSet, d.lastFreq = true, c.Frequency
		}
	}
	// The engine took the correction as made when it was computed; it
	// took effect now.
	d.eng.Applied(d.clk.Now())
	d.noteErr("sync", d.clk.SetSync(c.Sync))
	if c.Sync.Synchronized != d.synced {
		d.synced = c.Sync.Synchronized
		if d.synced {
			d.everSynced = true
			if d.f.everSynced != nil {
				d.f.everSynced.Store(true)
			}
			d.log.Info("clock synchronized", zap.Duration("est_error", c.Sync.EstError))
		} else {
			d.log.Warn("clock no longer synchronized")
		}
		d.notify.syncChanged(c.Sync)
	}
}

// noteErr logs err when it differs from the last error of the same
// operation, and logs the recovery; it returns err.
func (d *Daemon) noteErr(op string, err error) error {
	prev := d.applyErrs[op]
	switch {
	case err == nil && prev != "":
		delete(d.applyErrs, op)
		d.log.Info("clock "+op+" works again", zap.String("previous_error", prev))
	case err != nil && err.Error() != prev:
		d.applyErrs[op] = err.Error()
		d.log.Error("clock "+op+" failed", zap.String("clock", d.clk.Name()), zap.Error(err))
	}
	return err
}

// saveDrift writes the engine's frequency to the drift file: periodically
// only while synchronized, at stop if the clock was ever synchronized in
// this run (so a run that never synchronized does not overwrite a good
// file).
func (d *Daemon) saveDrift(stopping bool) {
	d.mu.Lock()
	path := d.driftPath
	st := d.eng.Status(d.clk.Now())
	ever := d.everSynced
	d.mu.Unlock()
	if path == "" || (!st.Synchronized && !(stopping && ever)) {
		return
	}
	if err := clock.WriteDrift(path, st.Frequency, st.FrequencyUncertainty); err != nil {
		d.log.Warn("cannot write the drift file; carrying on", zap.Error(err))
		return
	}
	d.log.Debug("drift file written", zap.String("drift_file", path),
		zap.Float64("frequency_ppm", st.Frequency), zap.Float64("uncertainty_ppm", st.FrequencyUncertainty))
}

// Status is the engine's status and the clock's, as `timectl status`
// shows them. It implements control.Backend.
func (d *Daemon) Status() control.StatusReply {
	d.mu.Lock()
	st := d.eng.Status(d.clk.Now())
	d.markRuntimeLocked(&st)
	d.mu.Unlock()
	info := control.ClockInfo{Driver: d.clk.Name()}
	if v, ok := d.clk.(interface{ OffsetFromSystem() time.Duration }); ok {
		info.OffsetFromSystem = v.OffsetFromSystem().Seconds()
	}
	if f, err := d.clk.Frequency(); err == nil {
		info.Frequency = f
	}
	d.hw.clockInfo(&info)
	return control.StatusReply{Engine: st, Clock: info, Refclocks: d.refclockInfo()}
}

// MakeStep lets the next correction step the clock whatever the step limit.
// It implements control.Backend.
func (d *Daemon) MakeStep() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.eng.MakeStep()
	d.log.Info("makestep: the next correction may step the clock")
	d.updateLocked()
	return nil
}

// changeGID is the group whose members may change timed through the
// control socket besides root: "timed" if it exists, else none (-1).
func changeGID(log *zap.Logger) int {
	g, err := user.LookupGroup("timed")
	if err != nil {
		return -1
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	log.Debug("members of group timed may change timed", zap.Int("gid", gid))
	return gid
}

func defaultFactories() factories {
	ever := new(atomic.Bool)
	return factories{
		newEngine: func(cfg sources.Config, log *zap.Logger) engine { return sources.NewEngine(cfg, log) },
		newClock:  buildClock,
		newServer: func(sc config.NTPServer, tb sources.Timebase, log *zap.Logger) (sources.Source, error) {
			return newNTPServer(sc, tb, log, ever)
		},
		newPool: func(pc config.NTPPool, tb sources.Timebase, log *zap.Logger) poolRunner {
			return newNTPPool(pc, tb, log, ever)
		},
		everSynced: ever,
		findPHC:    phc.FindByInterface,
		openPHC:    phc.Open,
		lockDown:   (*Daemon).lockDown,
		listenControl: func(path string, log *zap.Logger) (net.Listener, string, error) {
			return listenControl(path, log, os.Getenv("XDG_RUNTIME_DIR"))
		},
	}
}
