// Package sim is a deterministic simulator of a host keeping time over NTP:
// true time, a local oscillator with frequency error, wander and a
// temperature swing, network paths with jitter, asymmetry, loss and spikes,
// and servers that are good, noisy, wrong, stepping or unreachable. It drives
// the engine (sources.Engine) through the same calls the daemon makes and
// measures the local clock against true time.
//
// Everything is event driven from a seed (math/rand/v2 PCG): no wall clock,
// no goroutines, so one seed always gives the same result, bit for bit.
//
// Conventions: true time t is in float64 seconds from Epoch; the local clock
// reads L(t) = t + E(t); "offset" in results is E (positive: the local clock
// is ahead). Poll intervals the engine asks for are taken as seconds of true
// time (they differ from local seconds by at most the clock's rate error,
// < 0.1%).
package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/timed-project/timed/sources"
)

// Engine is what the simulator drives; *sources.Engine satisfies it.
type Engine interface {
	AddSource(name string, opts sources.SourceOptions) error
	Polled(name string, now time.Time)
	Measured(name string, m sources.Measurement)
	PollInterval(name string) time.Duration
	Update(now time.Time) sources.Correction
	Status(now time.Time) sources.Status
}

var _ Engine = (*sources.Engine)(nil)

// NewEngineFunc makes the engine for one run.
type NewEngineFunc func(cfg sources.Config, log *zap.Logger) Engine

// DefaultEngine makes a *sources.Engine.
func DefaultEngine(cfg sources.Config, log *zap.Logger) Engine { return sources.NewEngine(cfg, log) }

// Timing constants of the simulated client.
const (
	// ResponseTimeout: a response later than this after its request is
	// dropped, as a client gives up waiting.
	ResponseTimeout = 1.0
	// BurstCount requests BurstSpacing seconds apart are sent at start by a
	// server with IBurst.
	BurstCount   = 4
	BurstSpacing = 2.0
	// SyncOffset and SyncFrequency define "synchronized" for time to sync:
	// |offset| below SyncOffset seconds and |frequency error| below
	// SyncFrequency ppm.
	SyncOffset    = 1e-3
	SyncFrequency = 500.0
)

// Point is the state at one whole second of true time, given to probes.
type Point struct {
	T      float64 // true time, s
	Offset float64 // local clock error L − t, s (positive: ahead)
	Freq   float64 // total rate error (oscillator + correction), ppm
	r      *runner
}

// Status asks the engine for its status now (it costs an engine call, so
// probes ask only when they need it).
func (p *Point) Status() sources.Status { return p.r.eng.Status(p.r.clk.Now()) }

// Clock is the simulated clock (read only: do not change it from a probe).
func (p *Point) Clock() *Clock { return p.r.clk }

// Probe watches a run: it is called at every whole second of true time from
// 0 to the end, before the engine's update of that second, and may record
// figures in r.Extra or failures in r.Failures.
type Probe func(p *Point, r *Result)

// Options are the settings of one run.
type Options struct {
	Seed uint64
	// NewEngine makes the engine (nil: DefaultEngine).
	NewEngine NewEngineFunc
	// Log receives the engine's log as well (nil: nowhere).
	Log *zap.Logger
	// Probe is called with the scenario's own probe.
	Probe Probe
}

// Result is what one run measured. Offsets are in seconds, frequencies in
// ppm. The statistics cover the samples from the scenario's SyncWindow on.
type Result struct {
	Seed      uint64
	Samples   int
	RMSOffset float64
	MaxOffset float64
	RMSFreq   float64
	// SyncTime is the earliest whole second after which every sample has
	// |offset| < SyncOffset and |frequency error| < SyncFrequency (+Inf if
	// the last sample does not).
	SyncTime float64
	// Steps the engine made the clock take.
	Steps []StepRecord
	// Counts of what happened.
	Polls, Responses, Updates int
	// Status is the engine's status at the end.
	Status sources.Status
	// LogMatches counts the engine's log entries (info level and above)
	// whose message contains the scenario's LogMatch.
	LogMatches int
	// Extra holds the figures probes record.
	Extra map[string]float64
	// Failures lists what probes found wrong.
	Failures []string
}

// Failf records a failure (probes use it).
func (r *Result) Failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Max records v under name if it exceeds what is there (or nothing is).
func (r *Result) Max(name string, v float64) {
	if old, ok := r.Extra[name]; !ok || v > old {
		r.Extra[name] = v
	}
}

type eventKind uint8

const (
	evSend    eventKind = iota // send a request
	evArrive                   // a response arrives back
	evTimeout                  // the request's wait is over: schedule the next
)

type event struct {
	t    float64
	seq  uint64
	kind eventKind
	srv  int
	x    exchange
}

type serverState struct {
	*Server
	rng   *rand.Rand
	burst int     // requests of the burst still to send
	wait  bool    // a request is outstanding
	sent  float64 // true time of the last request
}

type runner struct {
	sc      *Scenario
	clk     *Clock
	eng     Engine
	servers []*serverState
	queue   []event // kept sorted by (t, seq), earliest last
	seq     uint64
	res     *Result
}

func (r *runner) push(e event) {
	r.seq++
	e.seq = r.seq
	i, _ := slices.BinarySearchFunc(r.queue, e, func(a, b event) int {
		// descending order: earliest at the end
		switch {
		case a.t > b.t:
			return -1
		case a.t < b.t:
			return 1
		case a.seq > b.seq:
			return -1
		case a.seq < b.seq:
			return 1
		}
		return 0
	})
	r.queue = slices.Insert(r.queue, i, e)
}

// Run simulates the scenario once.
func Run(sc *Scenario, opt Options) (*Result, error) {
	if err := sc.validate(); err != nil {
		return nil, fmt.Errorf("sim: scenario %s: %w", sc.Name, err)
	}
	newEngine := opt.NewEngine
	if newEngine == nil {
		newEngine = DefaultEngine
	}
	cfg := sources.DefaultConfig()
	if sc.Configure != nil {
		sc.Configure(&cfg)
	}
	log := zap.NewNop()
	var observed *observer.ObservedLogs
	if sc.LogMatch != "" {
		var core zapcore.Core
		core, observed = observer.New(zap.InfoLevel)
		log = zap.New(core)
	}
	if opt.Log != nil {
		if observed != nil {
			log = zap.New(zapcore.NewTee(log.Core(), opt.Log.Core()))
		} else {
			log = opt.Log
		}
	}

	res := &Result{Seed: opt.Seed, Extra: map[string]float64{}, SyncTime: math.Inf(1)}
	r := &runner{
		sc:  sc,
		clk: NewClock(sc.Oscillator, sc.InitialOffset, rand.New(rand.NewPCG(opt.Seed, 1))),
		eng: newEngine(cfg, log),
		res: res,
	}
	for i := range sc.Servers {
		s := &sc.Servers[i]
		if err := r.eng.AddSource(s.Name, s.options()); err != nil {
			return nil, fmt.Errorf("sim: scenario %s: %w", sc.Name, err)
		}
		st := &serverState{Server: s, rng: rand.New(rand.NewPCG(opt.Seed, 1000+uint64(i)))}
		if s.IBurst {
			st.burst = BurstCount - 1
		}
		r.servers = append(r.servers, st)
		r.push(event{t: 0, kind: evSend, srv: i})
	}
	var probes []Probe
	if sc.NewProbe != nil {
		probes = append(probes, sc.NewProbe())
	}
	if opt.Probe != nil {
		probes = append(probes, opt.Probe)
	}

	var sumO, sumF float64
	lastBad := -1.0
	end := math.Floor(sc.Duration)
	for k := 0.0; k <= end; k++ {
		for len(r.queue) > 0 && r.queue[len(r.queue)-1].t <= k {
			e := r.queue[len(r.queue)-1]
			r.queue = r.queue[:len(r.queue)-1]
			if err := r.handle(e); err != nil {
				return nil, err
			}
		}
		r.clk.Advance(k)
		p := Point{T: k, Offset: r.clk.Error(), Freq: r.clk.RateError(), r: r}
		if math.Abs(p.Offset) >= SyncOffset || math.Abs(p.Freq) >= SyncFrequency {
			lastBad = k
		}
		if k >= sc.SyncWindow {
			res.Samples++
			sumO += p.Offset * p.Offset
			sumF += p.Freq * p.Freq
			res.MaxOffset = max(res.MaxOffset, math.Abs(p.Offset))
		}
		for _, pr := range probes {
			pr(&p, res)
		}
		if err := r.update(); err != nil {
			return nil, err
		}
	}
	if res.Samples > 0 {
		res.RMSOffset = math.Sqrt(sumO / float64(res.Samples))
		res.RMSFreq = math.Sqrt(sumF / float64(res.Samples))
	}
	if lastBad < end {
		res.SyncTime = lastBad + 1
	}
	res.Steps = r.clk.Steps()
	res.Status = r.eng.Status(r.clk.Now())
	if observed != nil {
		res.LogMatches = observed.FilterMessageSnippet(sc.LogMatch).Len()
	}
	return res, nil
}

// update asks the engine what to do now and does it: step first, then the
// frequency, then the sync status.
func (r *runner) update() error {
	c := r.eng.Update(r.clk.Now())
	r.res.Updates++
	if c.Step != 0 {
		if err := r.clk.Step(c.Step); err != nil {
			return err
		}
	}
	if err := r.clk.SetFrequency(c.Frequency); err != nil {
		return err
	}
	return r.clk.SetSync(c.Sync)
}

func (r *runner) handle(e event) error {
	r.clk.Advance(e.t)
	s := r.servers[e.srv]
	switch e.kind {
	case evSend:
		r.send(e.t, e.srv, s)
	case evArrive:
		if !s.wait {
			return nil // late: the client stopped waiting
		}
		s.wait = false
		x := e.x
		x.t4 = r.clk.Reading()
		r.res.Responses++
		r.eng.Measured(s.Name, r.measurement(s, x))
		if err := r.update(); err != nil {
			return err
		}
		r.next(e.t, e.srv, s)
	case evTimeout:
		if s.wait {
			s.wait = false
			r.next(e.t, e.srv, s)
		}
	default:
		return errors.New("sim: unknown event")
	}
	return nil
}

// send makes one request of server i at true time t.
func (r *runner) send(t float64, i int, s *serverState) {
	r.eng.Polled(s.Name, r.clk.Now())
	r.res.Polls++
	s.wait = true
	s.sent = t
	x := exchange{t1: r.clk.Reading()}
	// Draw everything for this exchange up front so that the random
	// sequence does not depend on which packets are lost.
	up, okUp := s.Path.draw(s.rng, true)
	down, okDown := s.Path.draw(s.rng, false)
	noise := 0.0
	if s.Noise > 0 {
		noise = s.Noise * s.rng.NormFloat64()
	}
	arrive := t + up + s.Processing + down
	if okUp && okDown && !s.down(t+up) && arrive-t <= ResponseTimeout {
		x.t2 = s.clockAt(t+up) + noise
		x.t3 = x.t2 + s.Processing
		r.push(event{t: arrive, kind: evArrive, srv: i, x: x})
		return
	}
	r.push(event{t: t + ResponseTimeout, kind: evTimeout, srv: i})
}

// next schedules server i's next request after the one sent at t0 is over
// (answered or timed out at t).
func (r *runner) next(t float64, i int, s *serverState) {
	var at float64
	if s.burst > 0 {
		s.burst--
		at = s.sent + BurstSpacing
	} else {
		at = s.sent + r.eng.PollInterval(s.Name).Seconds()
	}
	if at <= t {
		at = math.Nextafter(t, math.Inf(1))
	}
	r.push(event{t: at, kind: evSend, srv: i})
}

func (r *runner) measurement(s *serverState, x exchange) sources.Measurement {
	return sources.Measurement{
		Local:          toTime(x.local()),
		Offset:         seconds(x.offset()),
		Delay:          seconds(x.delay()),
		RootDelay:      seconds(s.RootDelay),
		RootDispersion: seconds(s.RootDispersion),
		Precision:      seconds(s.Precision),
		Stratum:        s.Stratum,
		Leap:           s.Leap,
		RefID:          s.RefID,
		Authenticated:  s.Authenticated,
		Stamping:       sources.StampKernel,
	}
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }
