package sim

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

// ideal is a test controller with the engine's call pattern: it follows the
// first source it was given, stepping the whole measured offset away and
// correcting the frequency by the drift seen since the previous measurement.
// On a perfect network it steers perfectly, so it checks the simulator's
// plumbing (signs, timestamps, corrections) independently of the engine.
type ideal struct {
	cfg       sources.Config
	log       *zap.Logger
	first     string
	poll      time.Duration
	pending   *sources.Measurement
	prevLocal time.Time
	havePrev  bool
	freq      float64
	lastMeas  time.Time
}

func newIdeal(cfg sources.Config, log *zap.Logger) Engine {
	return &ideal{cfg: cfg, log: log, poll: 16 * time.Second}
}

func (e *ideal) AddSource(name string, _ sources.SourceOptions) error {
	if e.first == "" {
		e.first = name
	}
	return nil
}
func (e *ideal) Polled(string, time.Time) {}
func (e *ideal) Measured(name string, m sources.Measurement) {
	if name == e.first {
		e.pending = &m
	}
}
func (e *ideal) PollInterval(string) time.Duration { return e.poll }

func (e *ideal) Update(now time.Time) sources.Correction {
	m := e.pending
	e.pending = nil
	if m == nil {
		return sources.Correction{Frequency: e.freq}
	}
	if p := e.cfg.PanicThreshold; p > 0 && (m.Offset > p || m.Offset < -p) {
		e.log.Warn("offset beyond the panic threshold: not correcting", zap.Duration("offset", m.Offset))
		return sources.Correction{Frequency: e.freq}
	}
	e.lastMeas = now
	if e.havePrev {
		e.freq += m.Offset.Seconds() / m.Local.Sub(e.prevLocal).Seconds() * 1e6
	}
	e.prevLocal, e.havePrev = m.Local.Add(m.Offset), true
	return sources.Correction{Step: m.Offset, Frequency: e.freq}
}

func (e *ideal) Status(now time.Time) sources.Status {
	ago := now.Sub(e.lastMeas).Seconds()
	return sources.Status{
		Holdover:    ago > 3*e.poll.Seconds(),
		Uncertainty: 1e-4 + 1e-8*math.Pow(ago, 1.5),
		Sources:     []sources.SourceStatus{{Name: e.first, State: sources.StateSelected}},
	}
}

func TestIdealPerfectNetwork(t *testing.T) {
	sc := chronyModel("p", "perfect")
	sc.Oscillator.Wander = 0
	sc.Servers[0].Path = Path{Delay: 100e-6}
	sc.Servers[0].IBurst = true
	res, err := Run(sc, Options{Seed: 1, NewEngine: newIdeal})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RMS %.3g s, max %.3g s, freq %.3g ppm, sync %g s", res.RMSOffset, res.MaxOffset, res.RMSFreq, res.SyncTime)
	if res.MaxOffset > 10e-9 || res.RMSFreq > 1e-4 || res.SyncTime > 2 {
		t.Fatalf("the ideal controller does not steer perfectly: %+v", res)
	}
	if len(res.Steps) == 0 || math.Abs(res.Steps[0].Step+0.1) > 1e-6 {
		t.Fatalf("first step %+v, want ≈ -0.1 s", res.Steps)
	}
}

func TestIdealWithJitter(t *testing.T) {
	res, err := Run(chronyModel("j", "jitter"), Options{Seed: 3, NewEngine: newIdeal})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RMS %.3g s, max %.3g s, freq %.3g ppm, sync %g s", res.RMSOffset, res.MaxOffset, res.RMSFreq, res.SyncTime)
	// The ideal controller trusts every sample, so it is noisy, but with
	// 100 µs jitter it must stay well within a millisecond.
	if res.RMSOffset > 300e-6 || res.SyncTime > 300 {
		t.Fatalf("result %+v", res)
	}
}

func TestIdealFollowsAWrongServer(t *testing.T) {
	for _, off := range []float64{1, -0.5} {
		sc := chronyModel("w", "wrong")
		sc.Servers[0].Path = Path{Delay: 1e-3}
		sc.Servers[0].Offset = off
		res, err := Run(sc, Options{Seed: 1, NewEngine: newIdeal})
		if err != nil {
			t.Fatal(err)
		}
		// Following a server whose clock reads t+off puts the local clock
		// off ahead of true time.
		if math.Abs(res.RMSOffset-math.Abs(off)) > 1e-6 {
			t.Fatalf("server %+g s: RMS error %g, want %g", off, res.RMSOffset, math.Abs(off))
		}
	}
}

func TestDeterminism(t *testing.T) {
	run := func(seed uint64) *Result {
		sc := chronyModel("d", "determinism")
		sc.Servers = append(sc.Servers, server(2))
		sc.Servers[1].Path = Path{Delay: 1e-3, Jitter: 1e-3, Pareto: 2.5, Loss: 0.2, SpikeProb: 0.01, SpikeSize: 0.01}
		sc.Servers[1].Noise = 1e-4
		sc.Oscillator.SwingPPM, sc.Oscillator.SwingPeriod = 1, 3600
		sc.Duration = 3000
		res, err := Run(sc, Options{Seed: seed, NewEngine: newIdeal})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b, c := run(5), run(5), run(6)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different results:\n%+v\n%+v", a, b)
	}
	if a.RMSOffset == c.RMSOffset {
		t.Fatalf("different seeds, same RMS offset %g", a.RMSOffset)
	}
}

func TestSuiteWithIdeal(t *testing.T) {
	s := NewSuite(3)
	s.NewEngine = newIdeal
	o7 := s.Run("7")
	if o7.Err != nil {
		t.Fatal(o7.Err)
	}
	for _, r := range o7.Results {
		if r.LogMatches < 1 {
			t.Errorf("seed %d: the panic log line was not counted", r.Seed)
		}
		if v := r.Extra[ExtraMaxAfterStep]; v > 1 {
			t.Errorf("seed %d: the clock moved %g s after the server's step", r.Seed, v)
		}
	}
	o8 := s.Run("8")
	o1 := s.Run("1") // already run for 8's limit
	if o8.Err != nil || o1.Err != nil {
		t.Fatal(o8.Err, o1.Err)
	}
	if want := 1.5 * o1.Rows[1].Median; o8.Rows[0].Limit != want {
		t.Errorf("scenario 8's limit %g, want 1.5 × scenario 1's RMS = %g", o8.Rows[0].Limit, want)
	}
	o6 := s.Run("6a")
	if o6.Err != nil {
		t.Fatal(o6.Err)
	}
	if o6.Rows[0].Median != 0 || !o6.Rows[0].Pass {
		t.Errorf("6a with a controller that follows the first (good) server: %v", o6.Rows[0])
	}
	if o6.Rows[1].Median > 1000 {
		t.Errorf("6a: %v", o6.Rows[1])
	}
	md := Markdown([]*Outcome{o1, o6, o7, o8})
	for _, want := range []string{"| 1. defaults, slewing only | time to sync |", "| 7. the only server steps by 1 hour |", "75 µs"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	for _, o := range []*Outcome{o1, o6, o7, o8} {
		for _, r := range o.Rows {
			t.Log(r)
		}
	}
}

func TestHoldoverProbeWithIdeal(t *testing.T) {
	var sc *Scenario
	for _, s := range Scenarios() {
		if s.Name == "9" {
			sc = s
		}
	}
	res, err := Run(sc, Options{Seed: 2, NewEngine: newIdeal})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("holdover: max error %.3g s, ratio %.3g, reported %g s, at end %g",
		res.Extra[ExtraHoldoverError], res.Extra[ExtraHoldoverRatio], res.Extra[ExtraHoldoverSeconds], res.Extra[ExtraHoldoverAtEnd])
	if res.Extra[ExtraHoldoverAtEnd] != 1 {
		t.Errorf("holdover at end not recorded")
	}
	// 7200 s minus the 3 polls (48 s) before the ideal controller calls it
	// holdover.
	if v := res.Extra[ExtraHoldoverSeconds]; v < 7100 || v > 7200 {
		t.Errorf("holdover seconds %g", v)
	}
	if e := res.Extra[ExtraHoldoverError]; e <= 0 || e > 0.1 {
		t.Errorf("holdover error %g", e)
	}
}

func TestEngineErrorsAreReported(t *testing.T) {
	// The engine's AddSource error stops the run with the scenario named.
	sc := chronyModel("e", "error")
	_, err := Run(sc, Options{NewEngine: func(sources.Config, *zap.Logger) Engine { return failing{newRecorder(time.Second)} }})
	if err == nil || !strings.Contains(err.Error(), "scenario e") || !strings.Contains(err.Error(), "no thanks") {
		t.Fatalf("error %v", err)
	}
}

type failing struct{ *recorder }

func (failing) AddSource(string, sources.SourceOptions) error { return errNoThanks }

var errNoThanks = &noThanks{}

type noThanks struct{}

func (*noThanks) Error() string { return "no thanks" }
