package daemon

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/sources"
)

// fakeEngine steps by the last measured offset (once) and reports what it
// was told. Its methods are called under the daemon's lock, but tests read
// it from other goroutines, hence its own mutex.
type fakeEngine struct {
	mu        sync.Mutex
	cfg       sources.Config
	opts      map[string]sources.SourceOptions
	added     []string
	removed   []string
	polled    map[string]int
	measured  map[string][]sources.Measurement
	faults    map[string]string
	pending   time.Duration
	synced    bool
	steps     int
	updates   int
	makeSteps int
	freq      float64
	stepOK    bool
}

func newFakeEngine(cfg sources.Config) *fakeEngine {
	return &fakeEngine{cfg: cfg, opts: map[string]sources.SourceOptions{}, polled: map[string]int{},
		measured: map[string][]sources.Measurement{}, faults: map[string]string{}, freq: cfg.InitialFrequency}
}

func (e *fakeEngine) AddSource(name string, o sources.SourceOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.opts[name]; ok {
		return fmt.Errorf("duplicate %s", name)
	}
	e.opts[name] = o
	e.added = append(e.added, name)
	return nil
}

func (e *fakeEngine) RemoveSource(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.opts, name)
	e.removed = append(e.removed, name)
}

func (e *fakeEngine) Polled(name string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.polled[name]++
}

func (e *fakeEngine) Measured(name string, m sources.Measurement) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.measured[name] = append(e.measured[name], m)
	e.pending = m.Offset
}

func (e *fakeEngine) Applied(time.Time) {}

func (e *fakeEngine) Fault(name, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults[name] = reason
}

func (e *fakeEngine) PollInterval(string) time.Duration { return time.Millisecond }

func (e *fakeEngine) Update(time.Time) sources.Correction {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := sources.Correction{Frequency: e.freq}
	if e.pending != 0 {
		c.Step = e.pending
		e.pending = 0
		e.steps++
		e.updates++
		e.synced = true
	}
	c.Sync.Synchronized = e.synced
	return c
}

func (e *fakeEngine) Status(time.Time) sources.Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := sources.Status{Synchronized: e.synced, Frequency: e.freq, FrequencyUncertainty: 0.25,
		Steps: e.steps, Updates: e.updates}
	for n, o := range e.opts {
		st.Sources = append(st.Sources, sources.SourceStatus{Name: n, Kind: o.Kind, Address: o.Address,
			State: sources.StateSelected})
	}
	sort.Slice(st.Sources, func(i, j int) bool { return st.Sources[i].Name < st.Sources[j].Name })
	return st
}

func (e *fakeEngine) names() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ns []string
	for n := range e.opts {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

func (e *fakeEngine) MakeStep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.makeSteps++
}

// fakeSource reports each measurement it is sent, then waits for ctx.
type fakeSource struct {
	name   string
	in     chan sources.Measurement
	fail   error        // returned at once by Run when set
	bursts atomic.Int32 // calls of Burst
}

func (s *fakeSource) Burst() { s.bursts.Add(1) }

func (s *fakeSource) Name() string { return s.name }

func (s *fakeSource) Run(ctx context.Context, r sources.Reporter) error {
	if s.fail != nil {
		return s.fail
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-s.in:
			r.Polled()
			r.Fault("")
			_ = r.PollInterval()
			r.Measured(m)
		}
	}
}

// world is the set of fake sources a test daemon makes, with counts of how
// often each was constructed (a restart makes it again).
type world struct {
	mu     sync.Mutex
	made   map[string]int
	srcs   map[string]*fakeSource
	failOn map[string]error
}

func newWorld() *world {
	return &world{made: map[string]int{}, srcs: map[string]*fakeSource{}, failOn: map[string]error{}}
}

func (w *world) source(name string) *fakeSource {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.srcs[name]
	if s == nil {
		s = &fakeSource{name: name, in: make(chan sources.Measurement)}
		w.srcs[name] = s
	}
	return s
}

func (w *world) count(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.made[name]
}

func (w *world) newServer(sc config.NTPServer, _ sources.Timebase, _ *zap.Logger) (sources.Source, error) {
	name := net.JoinHostPort(sc.Address, fmt.Sprint(sc.Port))
	w.mu.Lock()
	w.made[name]++
	err := w.failOn[name]
	w.mu.Unlock()
	if err != nil {
		return &fakeSource{name: name, fail: err}, nil
	}
	return w.source(name), nil
}

// fakePool adds MaxSources members named ADDRESS#i and waits for ctx.
type fakePool struct {
	w  *world
	pc config.NTPPool
}

func (p fakePool) Run(ctx context.Context, reg sources.Registry) error {
	for i := range p.pc.MaxSources {
		src := p.w.source(fmt.Sprintf("%s#%d", p.pc.Address, i))
		if err := reg.Add(src, sources.SourceOptions{Kind: "ntp", Address: src.name}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// testDaemon makes a daemon with fake sources and engine, a virtual clock
// unless clk is given, and a control socket in a temporary directory.
func testDaemon(t *testing.T, cfg *config.Config, cfgPath string, w *world, clk clock.Clock, eng func(sources.Config) engine) (*Daemon, *fakeEngine) {
	t.Helper()
	var fe *fakeEngine
	if eng == nil {
		eng = func(c sources.Config) engine { fe = newFakeEngine(c); return fe }
	}
	f := factories{
		newEngine: func(c sources.Config, _ *zap.Logger) engine {
			e := eng(c)
			if f, ok := e.(*fakeEngine); ok && fe == nil {
				fe = f
			}
			return e
		},
		newClock: func(c config.ClockConfig, log *zap.Logger) (clock.Clock, bool, error) {
			if clk != nil {
				return clk, false, nil
			}
			return buildClock(c, log)
		},
		newServer: w.newServer,
		newPool: func(pc config.NTPPool, _ sources.Timebase, _ *zap.Logger) poolRunner {
			return fakePool{w: w, pc: pc}
		},
		listenControl: func(path string, log *zap.Logger) (net.Listener, string, error) {
			p := filepath.Join(t.TempDir(), "timed.sock")
			return mustListenUnix(t, p), p, nil
		},
	}
	d, err := newDaemon(cfg, cfgPath, zaptest.NewLogger(t), f)
	if err != nil {
		t.Fatal(err)
	}
	return d, fe
}

func mustListenUnix(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// start runs d until the test ends; it returns a function that stops d and
// waits for Run to return.
func start(t *testing.T, d *Daemon) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("daemon not ready after 5 s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return 10 s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
