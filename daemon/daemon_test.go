package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/sources"
)

func server(addr string, port int) config.NTPServer {
	return config.NTPServer{Address: addr, Port: port, MinPoll: 6, MaxPoll: 10}
}

func virtualConfig(offset time.Duration) *config.Config {
	return &config.Config{
		Clock:  config.ClockConfig{Driver: "virtual", Simulate: config.SimulateConfig{Offset: offset}},
		Engine: config.EngineConfig{MinAgreeingSources: 1, StepThreshold: time.Second, StepLimit: 3},
	}
}

// A fake source's measurement goes through its Reporter to the engine, and
// the engine's correction moves the virtual clock.
func TestReporterMovesVirtualClock(t *testing.T) {
	cfg := virtualConfig(-200 * time.Millisecond)
	cfg.NTP.Servers = []config.NTPServer{server("192.0.2.1", 123)}
	w := newWorld()
	d, fe := testDaemon(t, cfg, "", w, nil, nil)
	v, ok := d.clk.(*clock.Virtual)
	if !ok {
		t.Fatalf("clock is %T, want *clock.Virtual", d.clk)
	}
	if off := v.OffsetFromSystem(); off > -199*time.Millisecond {
		t.Fatalf("virtual clock starts %v from the system clock, want -200ms", off)
	}
	start(t, d)
	src := w.source("192.0.2.1:123")
	src.in <- sources.Measurement{Local: d.clk.Now(), Offset: 200 * time.Millisecond}
	eventually(t, "the step to be applied", func() bool {
		off := v.OffsetFromSystem()
		return off > -time.Millisecond && off < time.Millisecond
	})
	fe.mu.Lock()
	if fe.polled["192.0.2.1:123"] != 1 || len(fe.measured["192.0.2.1:123"]) != 1 {
		t.Errorf("engine saw polled=%d measured=%d, want 1 and 1", fe.polled["192.0.2.1:123"], len(fe.measured["192.0.2.1:123"]))
	}
	if got := fe.opts["192.0.2.1:123"]; got.Kind != "ntp" || got.Address != "192.0.2.1:123" || got.MinPoll != 6 || got.MaxPoll != 10 {
		t.Errorf("source options %+v", got)
	}
	fe.mu.Unlock()
	if st := d.Status(); !st.Engine.Synchronized || st.Clock.Driver != "virtual" || st.Clock.OffsetFromSystem > 1e-3 || st.Clock.OffsetFromSystem < -1e-3 {
		t.Errorf("status %+v", st)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Reload adds and removes sources by diffing and keeps unchanged ones
// running, with their state, in the engine.
func TestReloadDiff(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "timed.yaml")
	writeFile(t, path, `
clock: {driver: virtual}
drift_file: ""
ntp:
  servers:
    - {address: 192.0.2.1}
    - {address: 192.0.2.2}
    - {address: 192.0.2.3}
  pools:
    - {address: pool.example, max_sources: 2}
`)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	d, fe := testDaemon(t, cfg, path, w, nil, nil)
	start(t, d)
	all := []string{"192.0.2.1:123", "192.0.2.2:123", "192.0.2.3:123", "pool.example#0", "pool.example#1"}
	eventually(t, "all sources registered", func() bool { return reflect.DeepEqual(fe.names(), all) })

	// Keep .1, drop .2, change .3's options, add .4, drop the pool.
	writeFile(t, path, `
clock: {driver: virtual}
drift_file: ""
ntp:
  servers:
    - {address: 192.0.2.1}
    - {address: 192.0.2.3, prefer: true}
    - {address: 192.0.2.4, port: 1123}
`)
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1:123", "192.0.2.3:123", "192.0.2.4:1123"}
	eventually(t, "the new sources registered", func() bool { return reflect.DeepEqual(fe.names(), want) })

	fe.mu.Lock()
	removed := slices.Clone(fe.removed)
	prefer := fe.opts["192.0.2.3:123"].Prefer
	fe.mu.Unlock()
	slices.Sort(removed)
	if wantRemoved := []string{"192.0.2.2:123", "192.0.2.3:123", "pool.example#0", "pool.example#1"}; !reflect.DeepEqual(removed, wantRemoved) {
		t.Errorf("removed %v, want %v", removed, wantRemoved)
	}
	if !prefer {
		t.Error("192.0.2.3 was not restarted with prefer")
	}
	if n := w.count("192.0.2.1:123"); n != 1 {
		t.Errorf("unchanged server made %d times, want 1", n)
	}
	if n := w.count("192.0.2.3:123"); n != 2 {
		t.Errorf("changed server made %d times, want 2", n)
	}

	// The kept server still reports through its reporter.
	w.source("192.0.2.1:123").in <- sources.Measurement{Offset: time.Millisecond}
	eventually(t, "a measurement from the kept server", func() bool {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		return len(fe.measured["192.0.2.1:123"]) == 1
	})

	// An invalid file changes nothing.
	writeFile(t, path, "ntp:\n  servers:\n    - {address: 192.0.2.9, port: 99999}\n")
	err = d.Reload()
	if err == nil || !strings.Contains(err.Error(), "port") {
		t.Fatalf("Reload of an invalid file: %v, want an error about the port", err)
	}
	if got := fe.names(); !reflect.DeepEqual(got, want) {
		t.Errorf("after a failed reload: %v, want %v", got, want)
	}
}

// Sections that need a restart are left alone on reload.
func TestReloadKeepsRestartSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timed.yaml")
	writeFile(t, path, "clock: {driver: virtual}\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := testDaemon(t, cfg, path, newWorld(), nil, nil)
	start(t, d)
	writeFile(t, path, "clock: {driver: none}\nengine: {step_limit: 7}\n")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.Clock.Driver != "virtual" || d.cfg.Engine.StepLimit != 3 {
		t.Errorf("restart sections changed on reload: %+v %+v", d.cfg.Clock, d.cfg.Engine)
	}
	if d.clk.Name() != "virtual" {
		t.Errorf("clock is now %s", d.clk.Name())
	}
}

func TestReloadBeforeRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timed.yaml")
	writeFile(t, path, "clock: {driver: virtual}\n")
	cfg, _ := config.Load(path)
	d, _ := testDaemon(t, cfg, path, newWorld(), nil, nil)
	if err := d.Reload(); err == nil {
		t.Error("Reload before Run succeeded")
	}
}

// A server that fails is faulted in the engine and tried again.
func TestServerRestartsAfterFailure(t *testing.T) {
	old := retryMin
	retryMin = 10 * time.Millisecond
	t.Cleanup(func() { retryMin = old })
	cfg := virtualConfig(0)
	cfg.NTP.Servers = []config.NTPServer{server("192.0.2.7", 123)}
	w := newWorld()
	w.failOn["192.0.2.7:123"] = errors.New("kiss code DENY")
	d, fe := testDaemon(t, cfg, "", w, nil, nil)
	start(t, d)
	eventually(t, "retries", func() bool { return w.count("192.0.2.7:123") >= 3 })
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if got := fe.faults["192.0.2.7:123"]; got != "kiss code DENY" {
		t.Errorf("fault %q", got)
	}
	if len(fe.added) != 1 {
		t.Errorf("source added %d times, want once (state kept across restarts)", len(fe.added))
	}
}

// sysClock is a stand-in for the system clock that records what it is told.
type sysClock struct {
	mu    sync.Mutex
	freq  float64
	steps []time.Duration
	sync  sources.ClockSync
}

func (c *sysClock) Now() time.Time                   { return time.Now() }
func (c *sysClock) FromSystem(t time.Time) time.Time { return t }
func (c *sysClock) Name() string                     { return "system" }
func (c *sysClock) Frequency() (float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.freq, nil
}
func (c *sysClock) SetFrequency(ppm float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.freq = ppm
	return nil
}
func (c *sysClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, d)
	return nil
}
func (c *sysClock) SetSync(s sources.ClockSync) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sync = s
	return nil
}

// The drift file is read at start into the engine and the clock, and the
// engine's frequency is written at stop after synchronization.
func TestDriftFile(t *testing.T) {
	drift := filepath.Join(t.TempDir(), "sub", "drift")
	if err := os.MkdirAll(filepath.Dir(drift), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := clock.WriteDrift(drift, -12.5, 0.5); err != nil {
		t.Fatal(err)
	}
	cfg := virtualConfig(0)
	cfg.Clock.Driver = "system"
	cfg.DriftFile = drift
	cfg.NTP.Servers = []config.NTPServer{server("192.0.2.1", 123)}
	w := newWorld()
	clk := &sysClock{}
	d, fe := testDaemon(t, cfg, "", w, clk, nil)
	if fe.cfg.InitialFrequency != -12.5 || fe.cfg.InitialFrequencyUncertainty != 0.5 {
		t.Errorf("engine initial frequency %v ± %v, want -12.5 ± 0.5", fe.cfg.InitialFrequency, fe.cfg.InitialFrequencyUncertainty)
	}
	if f, _ := clk.Frequency(); f != -12.5 {
		t.Errorf("clock frequency at start %v, want -12.5", f)
	}
	stop := start(t, d)
	fe.mu.Lock()
	fe.freq = 33.25
	fe.mu.Unlock()
	w.source("192.0.2.1:123").in <- sources.Measurement{Offset: 3 * time.Second}
	eventually(t, "synchronized", func() bool { return d.Status().Engine.Synchronized })
	stop()
	ppm, unc, err := clock.ReadDrift(drift)
	if err != nil || ppm != 33.25 || unc != 0.25 {
		t.Errorf("drift after stop: %v ± %v (%v), want 33.25 ± 0.25", ppm, unc, err)
	}
	clk.mu.Lock()
	defer clk.mu.Unlock()
	if !reflect.DeepEqual(clk.steps, []time.Duration{3 * time.Second}) || clk.freq != 33.25 || !clk.sync.Synchronized {
		t.Errorf("clock got steps %v, frequency %v, sync %+v", clk.steps, clk.freq, clk.sync)
	}
}

// A run that never synchronized leaves the drift file alone, and a missing
// drift file is a first start, not an error.
func TestDriftNotWrittenUnsynchronized(t *testing.T) {
	drift := filepath.Join(t.TempDir(), "drift")
	cfg := virtualConfig(0)
	cfg.DriftFile = drift
	d, fe := testDaemon(t, cfg, "", newWorld(), &sysClock{}, nil)
	if fe.cfg.InitialFrequencyUncertainty != 0 {
		t.Errorf("initial uncertainty %v without a drift file", fe.cfg.InitialFrequencyUncertainty)
	}
	stop := start(t, d)
	stop()
	if _, err := os.Stat(drift); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("drift file written without synchronization: %v", err)
	}
}

// The virtual clock never gets a drift file.
func TestNoDriftWithVirtualClock(t *testing.T) {
	cfg := virtualConfig(0)
	cfg.DriftFile = filepath.Join(t.TempDir(), "drift")
	d, _ := testDaemon(t, cfg, "", newWorld(), nil, nil)
	if d.driftPath != "" {
		t.Errorf("drift path %q with the virtual clock", d.driftPath)
	}
}

func TestMakeStep(t *testing.T) {
	var se *fakeEngine
	d, _ := testDaemon(t, virtualConfig(0), "", newWorld(), nil, func(c sources.Config) engine {
		se = newFakeEngine(c)
		return se
	})
	if err := d.MakeStep(); err != nil || se.makeSteps != 1 {
		t.Errorf("MakeStep: %v, engine called %d times", err, se.makeSteps)
	}
}

func TestBuildClock(t *testing.T) {
	log := zap.NewNop()
	for _, tc := range []struct {
		driver      string
		wantName    string
		wantObserve bool
		wantErr     bool
	}{
		{driver: "virtual", wantName: "virtual"},
		{driver: "none", wantName: "none", wantObserve: true},
		{driver: "sundial", wantErr: true},
	} {
		c, obs, err := buildClock(config.ClockConfig{Driver: tc.driver}, log)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s: no error", tc.driver)
			}
			continue
		}
		if err != nil || c.Name() != tc.wantName || obs != tc.wantObserve {
			t.Errorf("%s: %v %v %v", tc.driver, c, obs, err)
		}
	}
	// Without CAP_SYS_TIME the system driver falls back to the virtual clock.
	if !clock.CanSetTime() {
		c, _, err := buildClock(config.ClockConfig{Driver: "system"}, log)
		if err != nil || c.Name() != "virtual" {
			t.Errorf("system without CAP_SYS_TIME: %v %v", c, err)
		}
	}
}

func TestEngineConfig(t *testing.T) {
	got := engineConfig(config.EngineConfig{MinAgreeingSources: 2, StepThreshold: time.Second, StepLimit: -1,
		PanicThreshold: time.Hour, MaxSlewRatePPM: 500, MaxFrequencyPPM: 400, RequireAuthenticated: true})
	want := sources.Config{MinAgreeingSources: 2, StepThreshold: time.Second, StepLimit: -1,
		PanicThreshold: time.Hour, MaxSlewRate: 500, MaxFrequency: 400, RequireAuthenticated: true}
	if got != want {
		t.Errorf("engineConfig = %+v, want %+v", got, want)
	}
}

// Every PTP port setting starts, and a reload to a hardware-timestamping
// port is accepted (applied at the next restart).
func TestPTPSettingsStart(t *testing.T) {
	for _, port := range []string{
		"{interface: eth0}",
		"{interface: eth0, role: master_only}",
		"{interface: eth0, role: slave_only, delay_mechanism: p2p}",
		"{interface: eth0, role: slave_only, timestamping: hardware}",
		"{interface: eth0, role: slave_only, unicast_masters: [192.0.2.1]}",
	} {
		path := filepath.Join(t.TempDir(), "timed.yaml")
		writeFile(t, path, "clock: {driver: virtual}\nptp: {ports: ["+port+"]}\n")
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(cfg, path, nil); err != nil {
			t.Errorf("%s: %v", port, err)
		}
	}
	path := filepath.Join(t.TempDir(), "timed.yaml")
	writeFile(t, path, "clock: {driver: virtual}\n")
	cfg, _ := config.Load(path)
	d, _ := testDaemon(t, cfg, path, newWorld(), nil, nil)
	start(t, d)
	writeFile(t, path, "clock: {driver: virtual}\nptp: {ports: [{interface: eth0, timestamping: hardware}]}\n")
	if err := d.Reload(); err != nil {
		t.Errorf("Reload with a hardware-timestamping port (applied at the next restart): %v", err)
	}
}
