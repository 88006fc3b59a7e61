package sources

import (
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// rig drives an engine with a simple clock (offset and frequency error
// against true time) and sources that are wrong by a fixed amount.
type rig struct {
	t      *testing.T
	e      *Engine
	logs   *observer.ObservedLogs
	epoch  time.Time
	now    float64 // true time, s
	off    float64 // local − true, s
	osc    float64 // oscillator rate error
	freq   float64 // correction set by the engine (ratio)
	steps  int
	errors map[string]float64 // source name → its time minus true time
	authed map[string]bool    // sources whose measurements are authenticated
	delay  float64
	// jitter > 0 adds queueing delay up to jitter on one side of the path.
	jitter float64
	seq    uint64
	// A leap second: the sources announce leap until true time leapAtTrue,
	// then their time steps; the clock applies it at its own midnight when
	// the engine told it to, as the kernel does.
	leap        Leap
	leapAtTrue  float64
	sawLeap     bool // the engine passed the leap to the clock
	armed       Leap // what the clock was last told
	kernelLeaps int
	leapDone    time.Time // the midnight the clock applied a leap at
}

func newRig(t *testing.T, cfg Config, errors map[string]float64, opts map[string]SourceOptions) *rig {
	core, logs := observer.New(zap.InfoLevel)
	r := &rig{t: t, e: NewEngine(cfg, zap.New(core)), logs: logs,
		epoch: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), errors: errors, delay: 1e-3}
	for name := range errors {
		o := opts[name]
		if o.MinPoll == 0 && o.MaxPoll == 0 {
			o.MinPoll, o.MaxPoll = 0, 4
		}
		if err := r.e.AddSource(name, o); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rig) local() time.Time {
	return r.epoch.Add(time.Duration((r.now + r.off) * 1e9))
}

// measure makes one exchange with a source over a symmetric path.
func (r *rig) measure(name string) {
	r.e.Polled(name, r.local())
	var excess, err float64
	if r.jitter > 0 {
		r.seq = r.seq*6364136223846793005 + 1442695040888963407
		excess = r.jitter * float64(r.seq>>11) / (1 << 53)
		err = excess / 2
		if r.seq&1<<10 != 0 {
			err = -err
		}
	}
	leap := LeapNone
	if r.leap != LeapNone {
		if r.now < r.leapAtTrue {
			leap = r.leap
		} else if r.leap == LeapInsert {
			err-- // POSIX time repeated a second
		} else {
			err++
		}
	}
	m := Measurement{
		Local:   r.local(),
		Offset:  time.Duration((-r.off + r.errors[name] + err) * 1e9),
		Delay:   time.Duration((r.delay + excess) * 1e9),
		Stratum: 1,
		Leap:    leap,

		Authenticated: r.authed[name],
	}
	r.e.Measured(name, m)
}

func (r *rig) update() Correction {
	c := r.e.Update(r.local())
	r.off += c.Step.Seconds()
	if c.Step != 0 {
		r.steps++
	}
	r.freq = c.Frequency * 1e-6
	r.armed = c.Sync.Leap
	if r.armed != LeapNone {
		r.sawLeap = true
	}
	return c
}

// advance moves true time on by one second, and applies a leap second the
// clock was told of when its reading crosses midnight.
func (r *rig) advance() {
	before := r.local()
	r.off += r.osc + r.freq
	r.now++
	mid, ok := leapMidnight(before)
	after := r.local()
	if r.leapDone.Equal(mid) || r.leapDone.Equal(mid.Add(-24*time.Hour)) {
		ok = false // like the kernel, once per midnight
	}
	switch {
	case !ok || r.armed == LeapNone:
	case r.armed == LeapInsert && !after.Before(mid):
		r.off--
		r.kernelLeaps++
		r.leapDone = mid
	case r.armed == LeapDelete && !after.Before(mid.Add(-time.Second)):
		r.off++
		r.kernelLeaps++
		r.leapDone = mid
	}
}

// run advances true time by secs seconds, polling every source every
// `every` seconds and updating every second.
func (r *rig) run(secs, every int, skip func(name string) bool) {
	for i := 0; i < secs; i++ {
		if i%every == 0 {
			for name := range r.errors {
				if skip == nil || !skip(name) {
					r.measure(name)
				} else {
					r.e.Polled(name, r.local())
				}
				r.update()
			}
		}
		r.update()
		r.advance()
	}
}

func (r *rig) states() map[string]SourceState {
	st := r.e.Status(r.local())
	m := map[string]SourceState{}
	for _, s := range st.Sources {
		m[s.Name] = s.State
	}
	return m
}

func TestSelection(t *testing.T) {
	tests := []struct {
		name    string
		errors  map[string]float64
		opts    map[string]SourceOptions
		want    map[string]SourceState // only the states checked
		synced  bool
		inState string  // a reason fragment that must appear
		wantOff float64 // where the clock ends up (local − true)
	}{
		{
			name:   "one source",
			errors: map[string]float64{"a": 0},
			want:   map[string]SourceState{"a": StateSelected},
			synced: true,
		},
		{
			name:   "two agree",
			errors: map[string]float64{"a": 0, "b": 0.0001},
			synced: true,
		},
		{
			name:    "two disagree: no majority",
			errors:  map[string]float64{"a": 0, "b": 1},
			want:    map[string]SourceState{"a": StateCandidate, "b": StateCandidate},
			synced:  false,
			inState: "agree",
		},
		{
			name:   "four, one wrong by 1s",
			errors: map[string]float64{"a": 0, "b": 0, "c": 0, "d": 1},
			want:   map[string]SourceState{"d": StateFalseticker},
			synced: true,
		},
		{
			name:   "five, two wrong by ±0.5s",
			errors: map[string]float64{"a": 0, "b": 0, "c": 0, "d": 0.5, "e": -0.5},
			want:   map[string]SourceState{"d": StateFalseticker, "e": StateFalseticker},
			synced: true,
		},
		{
			name:   "noselect",
			errors: map[string]float64{"a": 0, "b": 0},
			opts:   map[string]SourceOptions{"b": {NoSelect: true}},
			want:   map[string]SourceState{"a": StateSelected, "b": StateNoSelect},
			synced: true,
		},
		{
			name:    "two disagree, one trusted",
			errors:  map[string]float64{"a": 0, "b": 1},
			opts:    map[string]SourceOptions{"b": {Trust: true}},
			want:    map[string]SourceState{"a": StateFalseticker, "b": StateSelected},
			synced:  true,
			wantOff: 1,
		},
		{
			name:   "prefer",
			errors: map[string]float64{"a": 0, "b": 0, "c": 0},
			opts:   map[string]SourceOptions{"c": {Prefer: true}},
			want:   map[string]SourceState{"a": StateCandidate, "b": StateCandidate, "c": StateSelected},
			synced: true,
		},
		{
			name:    "require: the required source is a falseticker",
			errors:  map[string]float64{"a": 0, "b": 0, "c": 1},
			opts:    map[string]SourceOptions{"c": {Require: true}},
			want:    map[string]SourceState{"c": StateFalseticker, "a": StateCandidate},
			synced:  false,
			inState: "require",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, DefaultConfig(), tc.errors, tc.opts)
			r.run(40, 2, nil)
			st := r.e.Status(r.local())
			got := r.states()
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("%s: state %s, want %s (status %+v)", name, got[name], want, st.Sources)
				}
			}
			if st.Synchronized != tc.synced {
				t.Errorf("synchronized = %v, want %v (%s)", st.Synchronized, tc.synced, st.Message)
			}
			if tc.inState != "" {
				found := false
				for _, s := range st.Sources {
					found = found || strings.Contains(s.Reason, tc.inState)
				}
				if !found {
					t.Errorf("no source reason mentions %q: %+v", tc.inState, st.Sources)
				}
			}
			if tc.synced && math.Abs(r.off-tc.wantOff) > 0.002 {
				t.Errorf("clock off by %.6fs after sync", r.off)
			}
		})
	}
}

// With require_authenticated, only authenticated sources steer; without it,
// both do.
func TestRequireAuthenticated(t *testing.T) {
	for _, require := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.RequireAuthenticated = require
		r := newRig(t, cfg, map[string]float64{"nts": 0, "plain": 0}, nil)
		r.authed = map[string]bool{"nts": true}
		r.run(40, 2, nil)
		st := r.e.Status(r.local())
		got := r.states()
		if got["nts"] != StateSelected && got["nts"] != StateCombined {
			t.Errorf("require %v: the authenticated source is %s", require, got["nts"])
		}
		if want := StateUnauthenticated; require && got["plain"] != want {
			t.Errorf("require %v: the plain source is %s, want %s", require, got["plain"], want)
		}
		if !require && got["plain"] == StateUnauthenticated {
			t.Errorf("require %v: the plain source is %s", require, got["plain"])
		}
		if !st.Synchronized {
			t.Errorf("require %v: not synchronized: %s", require, st.Message)
		}
	}
}

func TestStepAndSlew(t *testing.T) {
	tests := []struct {
		name      string
		offset    float64
		cfg       func(*Config)
		wantSteps int
	}{
		{"small offset is slewed", 0.5, nil, 0},
		{"beyond the step threshold at start: stepped", 2, nil, 1},
		{"stepping disabled", 2, func(c *Config) { c.StepThreshold = 0 }, 0},
		{"low threshold", 0.05, func(c *Config) { c.StepThreshold = 10 * time.Millisecond }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r := newRig(t, cfg, map[string]float64{"a": 0}, nil)
			r.off = -tc.offset
			r.run(20, 2, nil)
			if r.steps != tc.wantSteps {
				t.Errorf("steps = %d, want %d", r.steps, tc.wantSteps)
			}
			if tc.wantSteps > 0 && math.Abs(r.off) > 1e-3 {
				t.Errorf("after the step the clock is %.6fs off", r.off)
			}
		})
	}
}

func TestNoStepAfterStepLimit(t *testing.T) {
	r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
	r.run(60, 2, nil) // many updates
	r.errors["a"] = 5 // the source jumps 5 s (below the panic threshold)
	r.run(60, 2, nil)
	if r.steps != 0 {
		t.Fatalf("stepped %d times after the step limit", r.steps)
	}
	if r.off < 0.001 {
		t.Fatalf("clock did not start slewing towards the new time: off %.6f", r.off)
	}
}

func TestPanicThreshold(t *testing.T) {
	r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
	r.run(60, 2, nil)
	r.errors["a"] = 3600
	r.run(60, 2, nil)
	if math.Abs(r.off) > 1e-3 {
		t.Fatalf("clock followed a 1 h jump: off %.3f s", r.off)
	}
	st := r.e.Status(r.local())
	if !strings.Contains(st.Message, "panic threshold") {
		t.Errorf("status message %q does not explain the panic threshold", st.Message)
	}
	if r.logs.FilterMessageSnippet("panic threshold").Len() == 0 {
		t.Errorf("no log line about the panic threshold")
	}
	// makestep accepts it.
	r.e.MakeStep()
	r.run(4, 2, nil)
	if math.Abs(r.off-3600) > 1e-3 {
		t.Fatalf("makestep did not step: off %.3f s", r.off)
	}
}

func TestHoldover(t *testing.T) {
	r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
	r.osc = 20e-6
	r.run(600, 4, nil)
	freq := r.freq
	if math.Abs(r.osc+freq) > 0.1e-6 {
		t.Fatalf("frequency not learned: residual %.3f ppm", (r.osc+freq)*1e6)
	}
	r.run(300, 4, func(string) bool { return true })
	st := r.e.Status(r.local())
	if !st.Holdover || st.Synchronized {
		t.Fatalf("holdover %v synchronized %v; want holdover (%s)", st.Holdover, st.Synchronized, st.Message)
	}
	if math.Abs(r.freq-freq) > 0.05e-6 {
		t.Errorf("frequency changed in holdover: %.3f → %.3f ppm", freq*1e6, r.freq*1e6)
	}
	if math.Abs(r.off) > 1e-3 {
		t.Errorf("holdover drifted %.6f s in 300 s", r.off)
	}
	if got := r.states()["a"]; got != StateUnreachable {
		t.Errorf("source state %s, want unreachable", got)
	}
}

func TestObserveNeverSteers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Observe = true
	r := newRig(t, cfg, map[string]float64{"a": 0}, nil)
	r.off = 2
	r.run(40, 2, nil)
	if r.steps != 0 || r.freq != 0 {
		t.Fatalf("observe mode steered: steps %d freq %g", r.steps, r.freq)
	}
	st := r.e.Status(r.local())
	if math.Abs(st.Offset+2) > 1e-3 {
		t.Fatalf("observed offset %.6f, want -2", st.Offset)
	}
}

func TestLeapVote(t *testing.T) {
	tests := []struct {
		name     string
		epoch    time.Time
		announce []string // sources announcing an insertion
		want     Leap
	}{
		{"majority, last day of the month", time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC), []string{"a", "b"}, LeapInsert},
		{"minority", time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC), []string{"a"}, LeapNone},
		// Announced early: the clock must not insert it at tonight's midnight.
		{"majority, mid-month", time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC), []string{"a", "b", "c"}, LeapNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, DefaultConfig(), map[string]float64{"a": 0, "b": 0, "c": 0}, nil)
			r.epoch = tc.epoch
			r.run(20, 2, nil)
			for _, n := range tc.announce {
				r.e.srcs[n].last.Leap = LeapInsert
			}
			if c := r.update(); c.Sync.Leap != tc.want {
				t.Fatalf("leap %v, want %v", c.Sync.Leap, tc.want)
			}
		})
	}
}

// A leap second announced by the sources on the last day of a month: the
// engine tells the clock, the clock applies it at its midnight (as the
// kernel does), the sources' time steps too, and the clock keeps UTC through
// it without a glitch, a step of the engine's own or a filter restart.
func TestLeapSecond(t *testing.T) {
	for _, kind := range []Leap{LeapInsert, LeapDelete} {
		t.Run(kind.String(), func(t *testing.T) {
			r := newRig(t, DefaultConfig(), map[string]float64{"a": 0, "b": 0, "c": 0}, nil)
			r.epoch = time.Date(2026, 12, 31, 23, 40, 0, 0, time.UTC)
			r.osc = 100e-6
			mid := 20 * 60.0 // true seconds from the epoch to midnight
			d := -1.0        // POSIX time goes back one second
			if kind == LeapDelete {
				d = 1
			}
			r.leap = kind
			r.leapAtTrue = mid
			r.jitter = 20e-6
			const poll = 16
			r.run(20*60-10, poll, nil)
			// From just before midnight on, the clock keeps UTC (POSIX)
			// time, following the leap without a glitch.
			worst := 0.0
			for i := 0; i < 600; i++ {
				if i%poll == 0 {
					for name := range r.errors {
						r.measure(name)
					}
				}
				r.update()
				r.advance()
				if math.Abs(r.now-mid) <= 1 {
					continue // the second of the leap itself
				}
				want := 0.0
				if r.now > mid {
					want = d
				}
				worst = math.Max(worst, math.Abs(r.off-want))
			}
			t.Logf("worst offset from UTC around the leap: %.1f µs", worst*1e6)
			if worst > 20e-6 {
				t.Errorf("around the leap the clock was up to %.1f µs off UTC", worst*1e6)
			}
			if r.steps != 0 {
				t.Errorf("the engine stepped the clock %d times", r.steps)
			}
			if n := r.logs.FilterMessageSnippet("jumped").Len(); n != 0 {
				t.Errorf("%d filters restarted", n)
			}
			if c := r.update(); c.Sync.Leap != LeapNone {
				t.Errorf("after the leap the clock is still told %v", c.Sync.Leap)
			}
		})
	}
}

func TestMeasurementAcrossStepDropped(t *testing.T) {
	r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
	r.off = -5
	r.e.Polled("a", r.local())
	r.e.Measured("a", Measurement{Local: r.local(), Offset: 5 * time.Second, Delay: time.Millisecond})
	r.update() // steps
	if r.steps != 1 {
		t.Fatal("no step")
	}
	r.e.Polled("a", r.local())
	r.e.MakeStep() // a step while the next request is in flight
	r.e.srcs["a"].stepsAt = -1
	before := r.e.srcs["a"].samples
	r.e.Measured("a", Measurement{Local: r.local(), Offset: time.Second, Delay: time.Millisecond})
	if r.e.srcs["a"].samples != before {
		t.Fatal("a measurement that straddled a step was used")
	}
}

func TestPollAdapts(t *testing.T) {
	tests := []struct {
		name     string
		jitter   float64
		min, max int
		want     time.Duration
		atMost   bool // want is an upper bound, not the exact poll
	}{
		// A precise source: the wander soon matters more than its noise,
		// so the poll stays near the minimum.
		{"precise source polls fast", 0, 1, 5, 4 * time.Second, true},
		// A very noisy source: once the window is full the poll rises to
		// the maximum.
		{"noisy source polls slower", 0.2, 1, 5, 32 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := map[string]SourceOptions{"a": {MinPoll: tc.min, MaxPoll: tc.max}}
			r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, opts)
			r.jitter = tc.jitter
			for i := 0; i < 400; i++ {
				p := int(r.e.PollInterval("a").Seconds())
				r.run(p, p, nil)
				p2 := r.e.PollInterval("a")
				if p2 < time.Duration(1<<tc.min)*time.Second || p2 > time.Duration(1<<tc.max)*time.Second {
					t.Fatalf("poll %v outside 2^%d..2^%d s", p2, tc.min, tc.max)
				}
			}
			if got := r.e.PollInterval("a"); got > tc.want || !tc.atMost && got != tc.want {
				t.Errorf("poll %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAddSourceErrors(t *testing.T) {
	e := NewEngine(DefaultConfig(), nil)
	if err := e.AddSource("a", SourceOptions{MinPoll: 4, MaxPoll: 2}); err == nil {
		t.Error("reversed poll limits accepted")
	}
	if err := e.AddSource("a", SourceOptions{MinPoll: -7, MaxPoll: 2}); err == nil {
		t.Error("minpoll -7 accepted")
	}
	if err := e.AddSource("a", SourceOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.AddSource("a", SourceOptions{}); err == nil {
		t.Error("duplicate name accepted")
	}
	e.RemoveSource("a")
	if err := e.AddSource("a", SourceOptions{}); err != nil {
		t.Errorf("re-adding after remove: %v", err)
	}
}

func TestTimeline(t *testing.T) {
	tl := newTimeline(0, 0)
	tl.change(10, 0, 100e-6) // from local 10 s the clock runs 100 ppm fast
	if got := tl.correction(20); math.Abs(got-10*100e-6/(1+100e-6)) > 1e-15 {
		t.Errorf("correction(20) = %g", got)
	}
	tl.change(20, 0.5, 0) // step +0.5 s at local 20 → local 20.5
	want := 10*100e-6/(1+100e-6) + 0.5
	if got := tl.correction(30); math.Abs(got-want) > 1e-12 {
		t.Errorf("correction after step = %g, want %g", got, want)
	}
	if got := tl.raw(30.5); math.Abs(got-(30.5-want)) > 1e-12 {
		t.Errorf("raw = %g", got)
	}
}

func TestStatusSaysWhileSlewing(t *testing.T) {
	r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
	r.off = -0.5 // below the step threshold: slewed
	r.measure("a")
	r.update()
	st := r.e.Status(r.local())
	if !st.Synchronized || !strings.Contains(st.Message, "slewing the clock by +") {
		t.Fatalf("status %q while 0.5 s is being slewed", st.Message)
	}
	r.run(60, 2, nil)
	if st := r.e.Status(r.local()); strings.Contains(st.Message, "slewing") {
		t.Errorf("status %q after the slew", st.Message)
	}
}

// A host that boots far off (no RTC) is corrected at the first
// synchronization, beyond the panic threshold.
func TestFirstSyncIsExemptFromPanicThreshold(t *testing.T) {
	r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
	r.off = -2000 // 2000 s behind; the panic threshold is 1000 s
	r.run(10, 2, nil)
	if r.steps != 1 || math.Abs(r.off) > 1e-3 {
		t.Fatalf("steps %d, clock off %.3f s; want one step to the right time", r.steps, r.off)
	}
}

// bounded_by: authenticated — an unauthenticated source steers only while
// it agrees with the authenticated ones, and status says why it is set
// aside, whatever the majority says.
func TestBoundedByAuthenticated(t *testing.T) {
	bounded := SourceOptions{BoundedByAuthenticated: true}
	tests := []struct {
		name    string
		errors  map[string]float64
		authed  map[string]bool
		opts    map[string]SourceOptions
		want    map[string]SourceState
		reason  string // a fragment of the set-aside source's reason
		wantOff float64
	}{
		{"within the bound: used", map[string]float64{"nts1": 0, "nts2": 0, "ptp": 0.0002},
			map[string]bool{"nts1": true, "nts2": true}, map[string]SourceOptions{"ptp": bounded},
			map[string]SourceState{"ptp": StateCombined}, "", 0.0002 / 3},
		{"outside the bound: set aside", map[string]float64{"nts1": 0, "nts2": 0, "ptp": 0.05},
			map[string]bool{"nts1": true, "nts2": true}, map[string]SourceOptions{"ptp": bounded},
			map[string]SourceState{"ptp": StateOutOfBound}, "outside the authenticated sources'", 0},
		{"two agreeing bounded sources cannot outvote one authenticated", map[string]float64{"nts": 0, "ptp1": 0.05, "ptp2": 0.05},
			map[string]bool{"nts": true}, map[string]SourceOptions{"ptp1": bounded, "ptp2": bounded},
			map[string]SourceState{"nts": StateSelected, "ptp1": StateOutOfBound, "ptp2": StateOutOfBound}, "outside", 0},
		{"no authenticated source: set aside", map[string]float64{"plain": 0, "ptp": 0},
			nil, map[string]SourceOptions{"ptp": bounded},
			map[string]SourceState{"plain": StateSelected, "ptp": StateOutOfBound}, "no authenticated source", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, DefaultConfig(), tc.errors, tc.opts)
			r.authed = tc.authed
			r.run(60, 2, nil)
			st := r.e.Status(r.local())
			got := r.states()
			for name, want := range tc.want {
				// Used is combined, or selected when its weight is the
				// largest (by a hair among equals, so either).
				used := want == StateCombined && got[name] == StateSelected
				if got[name] != want && !used {
					t.Errorf("%s: state %s, want %s (%+v)", name, got[name], want, st.Sources)
				}
			}
			if tc.reason != "" {
				found := false
				for _, s := range st.Sources {
					if s.State == StateOutOfBound {
						found = found || strings.Contains(s.Reason, tc.reason) && strings.Contains(s.Reason, "set aside for")
					}
				}
				if !found {
					t.Errorf("no set-aside source's reason mentions %q: %+v", tc.reason, st.Sources)
				}
			}
			if !st.Synchronized || math.Abs(r.off-tc.wantOff) > 0.0005 {
				t.Errorf("synchronized %v, clock off by %.6f s; want synchronized, off by %.6f s", st.Synchronized, r.off, tc.wantOff)
			}
		})
	}
}

// TestFaultOutranksUnreachable: a source that stops measuring and says why
// (a PTP port whose master went) is shown with its own reason, not as
// merely unreachable, and the clock holds over; without a fault it is
// unreachable.
func TestFaultOutranksUnreachable(t *testing.T) {
	const why = "listening: announce receipt timeout: no announce from master 0a0a0a.fffe.000020-1 for 3s"
	tests := []struct {
		name       string
		fault      string
		wantState  SourceState
		wantReason string
	}{
		{"fault reported", why, StateFault, why},
		{"no fault", "", StateUnreachable, "no answer to the last"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, DefaultConfig(), map[string]float64{"a": 0}, nil)
			r.run(120, 4, nil)
			r.e.Fault("a", tt.fault)
			r.run(60, 4, func(string) bool { return true })
			st := r.e.Status(r.local())
			if len(st.Sources) != 1 {
				t.Fatalf("%d sources, want 1", len(st.Sources))
			}
			if s := st.Sources[0]; s.State != tt.wantState || !strings.Contains(s.Reason, tt.wantReason) {
				t.Errorf("source %s: %q, want %s: %q", s.State, s.Reason, tt.wantState, tt.wantReason)
			}
			if !st.Holdover || st.Synchronized || !strings.Contains(st.Message, "holdover") {
				t.Errorf("holdover %t, synchronized %t, message %q; want holdover", st.Holdover, st.Synchronized, st.Message)
			}
		})
	}
}
