package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
)

// Reload reads the configuration file again and applies it: NTP servers and
// pools that were added are started, those removed are stopped, and those
// unchanged keep running with their state. A server whose options changed
// is restarted. Sections that need a restart (clock, engine, control,
// metrics, log) are reported in the log and left as they are. An invalid
// file changes nothing: the errors are logged and returned. Sources added
// with AddSource are kept unless the file lists them. It implements
// control.Backend.
func (d *Daemon) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.notify.reloading()
	defer d.notify.reloaded()
	cfg, path, err := d.loadConfig()
	if err != nil {
		d.log.Error("reload: the configuration is invalid; still running on the previous one",
			zap.String("file", path), zap.Errors("errors", splitErrors(err)))
		return err // config errors name the file, line and key
	}
	d.withRuntimeSources(cfg)
	if err := d.apply(cfg); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if path != "" {
		d.cfgPath = path
	}
	return nil
}

// loadConfig reads the configuration file; without one, it is
// config.DefaultPath if it exists now, else the embedded default.
func (d *Daemon) loadConfig() (*config.Config, string, error) {
	path := d.cfgPath
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); errors.Is(err, fs.ErrNotExist) {
			d.log.Info("reload: no " + config.DefaultPath + "; keeping the embedded default configuration")
			return config.Default(), "", nil
		}
		path = config.DefaultPath
	}
	cfg, err := config.Load(path)
	return cfg, path, err
}

// splitErrors unpacks errors.Join.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// apply moves the running daemon to cfg and logs what it did.
func (d *Daemon) apply(cfg *config.Config) error {
	added, removed, kept, err := d.update(cfg)
	if err != nil {
		return err
	}
	d.log.Info("configuration reloaded", zap.Int("sources_added", added),
		zap.Int("sources_removed", removed), zap.Int("sources_kept", kept))
	return nil
}

// update moves the running daemon to cfg and returns how many NTP servers
// and pools it started, stopped and kept.
func (d *Daemon) update(cfg *config.Config) (added, removed, kept int, err error) {
	d.mu.Lock()
	if d.ctx == nil {
		d.mu.Unlock()
		return 0, 0, 0, errors.New("timed is not running")
	}
	old := d.cfg
	for _, s := range []struct {
		name     string
		old, new any
	}{
		{"clock", old.Clock, cfg.Clock},
		{"engine", old.Engine, cfg.Engine},
		{"ptp", old.PTP, cfg.PTP},
		{"gptp", old.GPTP, cfg.GPTP},
		{"csptp", old.CSPTP, cfg.CSPTP},
		{"refclocks", old.Refclocks, cfg.Refclocks},
		{"control", old.Control, cfg.Control},
		{"metrics", old.Metrics, cfg.Metrics},
		{"log", old.Log, cfg.Log},
		{"seccomp", old.Seccomp, cfg.Seccomp},
	} {
		if !reflect.DeepEqual(s.old, s.new) {
			d.log.Warn("reload: the "+s.name+" section changed; restart timed to apply it", zap.String("section", s.name))
		}
	}
	next := *old
	next.NTP = cfg.NTP
	next.DriftFile = cfg.DriftFile
	next.Server = cfg.Server
	d.cfg = &next
	d.reloadNTPServerLocked(cfg.Server)
	if cfg.DriftFile != old.DriftFile {
		d.setDriftPath(cfg.DriftFile)
	}

	wantServers := map[config.NTPServer]bool{}
	for _, s := range cfg.NTP.Servers {
		if wantServers[s] {
			d.log.Warn("reload: server listed twice; using it once", zap.String("server", s.Address))
		}
		wantServers[s] = true
	}
	wantPools := map[config.NTPPool]bool{}
	for _, p := range cfg.NTP.Pools {
		wantPools[p] = true
	}
	stop, kept := dropUnwanted(d.servers, wantServers)
	stopPools, keptPools := dropUnwanted(d.pools, wantPools)
	stop = append(stop, stopPools...)
	removed, kept = len(stop), kept+keptPools
	d.mu.Unlock()

	// Stop first, so that a server re-added with new options does not meet
	// its old self in the engine.
	for _, t := range stop {
		t.stop()
	}

	d.mu.Lock()
	before := len(d.servers) + len(d.pools)
	d.startSourcesLocked(cfg.NTP)
	added = len(d.servers) + len(d.pools) - before
	d.mu.Unlock()
	return added, removed, kept, nil
}

// dropUnwanted removes from running the tasks whose key is not wanted and
// returns them (to be stopped), with how many were kept.
func dropUnwanted[K comparable](running map[K]*task, want map[K]bool) (stop []*task, kept int) {
	for k, t := range running {
		if !want[k] {
			stop = append(stop, t)
			delete(running, k)
			continue
		}
		kept++
	}
	return stop, kept
}
