package sources

import (
	"fmt"
	"math"
	"sort"
	"time"

	"go.uber.org/zap"
)

// Engine is the selection and combining engine. It is not safe for
// concurrent use: the daemon serializes calls.
//
// Call pattern: AddSource for every source; Polled when a source sends a
// request; Measured for every measurement; Update after every measurement
// and at least once a second, applying the Correction it returns to the
// clock before the next call.
type Engine struct {
	cfg     Config
	log     *zap.Logger
	epoch   time.Time
	started bool
	now     float64 // local time of the last Update, seconds since epoch
	tl      *timeline
	// unapplied: the last Update changed the clock and Applied has not
	// said when that took effect.
	unapplied bool

	srcs  map[string]*source
	order []string // names in the order added, for stable output

	seq         int // measurements accepted
	lastSeq     int // seq at the last clock update
	updates     int // clock updates made from sources
	steps       int
	lastUpdate  float64
	everSynced  bool
	survivors   []string // the sources combined at the last update
	makeStep    bool
	message     string
	panicLogged bool
	// loggedRef, loggedVote and loggedLeap are what logEvents last said.
	loggedRef              string
	loggedVote, loggedLeap Leap
	lastUnc                float64
	lastFreq               float64 // oscillator correction at the last Update (ratio)
	lastFreqUnc            float64
	holdover               bool
	synchronized           bool
	leap                   Leap // the sources' vote
	lp                     leapState
}

type source struct {
	name      string
	opts      SourceOptions
	f         *filter
	reach     uint8
	polls     int // requests sent
	unanswer  int // requests since the last measurement
	poll      int // current poll exponent
	fault     string
	stepsAt   int // engine step count when last polled
	polledYet bool
	last      Measurement
	lastLocal float64
	seq       int // engine measurement sequence number of the last sample
	samples   int
	dropped   int
	restarts  int // filter restarts after the source's time jumped
	state     SourceState
	reason    string
	// logged is the state last logged (see logEvents).
	logged SourceState
	// outSince is the local time (s) since which a bounded source has been
	// out of the authenticated bound (NaN while within it).
	outSince float64
	// per Update
	x      float64 // estimate of true − raw now
	lambda float64 // half-width of the confidence interval
}

// NewEngine makes an engine with no sources.
func NewEngine(cfg Config, log *zap.Logger) *Engine {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.MinAgreeingSources < 1 {
		cfg.MinAgreeingSources = 1
	}
	if cfg.MaxSlewRate <= 0 {
		cfg.MaxSlewRate = DefaultConfig().MaxSlewRate
	}
	if cfg.MaxFrequency <= 0 {
		cfg.MaxFrequency = DefaultConfig().MaxFrequency
	}
	return &Engine{cfg: cfg, log: log, srcs: map[string]*source{}, message: "waiting for the first measurement",
		lp: leapState{at: math.NaN()}}
}

func (e *Engine) sec(t time.Time) float64 {
	if !e.started {
		e.started = true
		e.epoch = t
		f := e.cfg.InitialFrequency * 1e-6
		if e.cfg.Observe {
			f = 0 // corrections are never applied
		}
		e.tl = newTimeline(0, f)
	}
	return t.Sub(e.epoch).Seconds()
}

// AddSource registers a source by name.
func (e *Engine) AddSource(name string, opts SourceOptions) error {
	if _, ok := e.srcs[name]; ok {
		return fmt.Errorf("sources: %s: a source of that name exists already", name)
	}
	if opts.MinPoll == 0 && opts.MaxPoll == 0 {
		opts.MinPoll, opts.MaxPoll = 6, 10
	}
	if opts.MinPoll < -6 || opts.MaxPoll > 17 || opts.MinPoll > opts.MaxPoll {
		return fmt.Errorf("sources: %s: poll limits %d..%d outside -6..17 or reversed", name, opts.MinPoll, opts.MaxPoll)
	}
	priorVar := 0.0
	if e.cfg.InitialFrequencyUncertainty > 0 {
		u := e.cfg.InitialFrequencyUncertainty * 1e-6
		priorVar = u * u
	}
	e.srcs[name] = &source{name: name, opts: opts, poll: opts.MinPoll,
		f: newFilter(e.cfg.InitialFrequency*1e-6, priorVar), state: StateInitial,
		reason: "no measurement yet", outSince: math.NaN()}
	e.order = append(e.order, name)
	return nil
}

// RemoveSource forgets a source.
func (e *Engine) RemoveSource(name string) {
	if _, ok := e.srcs[name]; !ok {
		return
	}
	delete(e.srcs, name)
	for i, n := range e.order {
		if n == name {
			e.order = append(e.order[:i], e.order[i+1:]...)
			break
		}
	}
}

// Polled records that the source sent a request at local time now.
func (e *Engine) Polled(name string, now time.Time) {
	s := e.srcs[name]
	if s == nil {
		return
	}
	e.sec(now)
	s.reach <<= 1
	s.polls++
	s.unanswer++
	s.stepsAt = e.steps
	s.polledYet = true
}

// Measured feeds one measurement of the named source.
func (e *Engine) Measured(name string, m Measurement) {
	s := e.srcs[name]
	if s == nil {
		return
	}
	l := e.sec(m.Local)
	if s.polledYet && s.stepsAt != e.steps || e.nearLeap(l) {
		// The exchange straddled a clock step or a leap second: its
		// timestamps mix two timescales.
		s.dropped++
		return
	}
	off := m.Offset.Seconds()
	if math.IsNaN(off) || m.Delay < 0 {
		s.dropped++
		return
	}
	s.reach |= 1
	s.unanswer = 0
	e.seq++
	s.seq = e.seq
	s.last = m
	s.lastLocal = l
	s.samples++
	raw := e.tl.raw(l)
	smp := sample{
		u:         raw,
		y:         off + (l - raw),
		offset:    off,
		delay:     e.tl.rawSpan(l, m.Delay.Seconds()),
		precision: m.Precision.Seconds(),
	}
	if s.f.add(smp) {
		s.restarts++
		e.log.Warn("source's time jumped; its filter restarts from the newest samples",
			zap.String("source", name), zap.Float64("offset_s", off))
	}
	e.adaptPoll(s)
}

func (e *Engine) adaptPoll(s *source) {
	target := s.f.pollTarget()
	cur := math.Ldexp(1, s.poll)
	switch {
	case target >= 2*cur && s.poll < s.opts.MaxPoll:
		s.poll++
	case target < cur/2 && s.poll > s.opts.MinPoll:
		s.poll--
	}
}

// Fault sets or (with "") clears the source's fault.
func (e *Engine) Fault(name, reason string) {
	if s := e.srcs[name]; s != nil {
		s.fault = reason
	}
}

// PollInterval is the interval the engine wants the source to poll at.
func (e *Engine) PollInterval(name string) time.Duration {
	s := e.srcs[name]
	if s == nil {
		return 64 * time.Second
	}
	poll := time.Duration(math.Ldexp(float64(time.Second), s.poll))
	if s.f.count() < startupSamples && s.unanswer > 0 && s.unanswer <= startupRetries {
		// With only a few samples the oscillator's frequency is barely
		// known and the clock drifts: a lost response at start is retried
		// soon rather than a whole poll interval later.
		return min(poll, startupRetry)
	}
	return poll
}

// Applied tells the engine that the correction of the last Update took
// effect at now, read from the clock just after it was applied. The engine
// took it as made at the time Update was given; in between the clock ran on
// its previous frequency, which over the milliseconds an update can take
// is tens of microseconds while a large offset is slewed fast. Without
// Applied the engine assumes the correction took effect at once.
func (e *Engine) Applied(now time.Time) {
	if e.unapplied {
		e.unapplied = false
		e.tl.appliedAt(e.sec(now))
	}
}

// MakeStep makes the next Update step the clock by the whole offset,
// whatever the step threshold, step limit and panic threshold say.
func (e *Engine) MakeStep() { e.makeStep = true }

// Frequency and phase steering.
const (
	// corrTimeRatio: a phase error that is no larger than its uncertainty is
	// corrected over this many poll intervals of the reference; larger
	// errors are corrected faster, in proportion to how sure they are.
	corrTimeRatio = 1.5
	// uncertaintySlew: a phase error is corrected within this fraction of
	// the time over which the frequency uncertainty adds up to the phase
	// uncertainty (σx/σf): early on, while the frequency is poorly known,
	// that is seconds; once both are well known, the poll rule above wins.
	uncertaintySlew = 0.3
	// fastCorrection: a phase error beyond this many standard deviations is
	// corrected faster than corrTimeRatio says.
	fastCorrection = 3.0
	// wanderSlew scales the slew rate allowed by the oscillator's wander.
	wanderSlew = 10.0
	// slewingNote: a phase error still being slewed that is larger than
	// this (s) is mentioned in the status message.
	slewingNote = 1e-3
	// combineLimit: a source whose error bound is more than this many times
	// the best source's is not averaged in.
	combineLimit = 3.0
	// maxDistance: a source whose error bound exceeds this (s) is too far.
	maxDistance = 3.0
	// unreachablePolls: a source with no answer to this many requests in a
	// row is unreachable.
	unreachablePolls = 8
	// startupSamples, startupRetries, startupRetry: while a source has
	// fewer samples than this, a lost response is retried after
	// startupRetry, up to startupRetries times in a row.
	startupSamples = 4
	startupRetries = 4
	startupRetry   = 2 * time.Second
	// startupPolls: before the first update, the engine waits for every
	// source to answer or to miss this many requests.
	startupPolls = 4
)

// Update runs selection and combining at local time now and returns what the
// clock must do. Call it after every measurement and at least once a second.
func (e *Engine) Update(now time.Time) Correction {
	c := e.update(now)
	e.logEvents(c.Sync.Leap)
	return c
}

func (e *Engine) update(now time.Time) Correction {
	l := e.sec(now)
	e.now = l
	u := e.tl.raw(l)
	corr := l - u
	freq := e.tl.frequency()

	survivors, ready := e.selectSources(u)
	e.holdover = false
	switch {
	case len(survivors) > 0:
		e.survivors = survivors
	case !ready:
		// Still waiting for sources at start.
		return e.hold(corr, freq)
	case len(e.survivors) > 0 && e.alive(e.survivors):
		// Keep following the last survivors' estimates (holdover).
		e.holdover = true
	default:
		return e.hold(corr, freq)
	}

	combine := e.combine
	if e.holdover {
		combine = e.combineQuiet
	}
	x, xvar, b, bvar, refSrc := combine(u, e.survivors)
	offset := x - corr // true − local now
	e.lastUnc = math.Sqrt(xvar)
	e.lastFreqUnc = math.Sqrt(bvar)

	var step float64
	if !e.holdover {
		if e.cfg.PanicThreshold > 0 && math.Abs(offset) > e.cfg.PanicThreshold.Seconds() && e.everSynced && !e.makeStep {
			if !e.panicLogged {
				e.log.Error("offset exceeds the panic threshold: not correcting the clock; check the sources, or run `timectl makestep` to accept it",
					zap.Float64("offset_s", offset), zap.Duration("panic_threshold", e.cfg.PanicThreshold),
					zap.String("reference", refSrc.name))
				e.panicLogged = true
			}
			e.message = fmt.Sprintf("offset %s exceeds the panic threshold %s: not correcting the clock (run `timectl makestep` to accept it)",
				fmtSeconds(offset), e.cfg.PanicThreshold)
			e.holdover = true
			return e.hold(corr, freq)
		}
		e.panicLogged = false
		newData := e.seq > e.lastSeq
		if newData {
			e.updates++
			e.lastUpdate = l
			e.lastSeq = e.seq
		}
		thr := e.cfg.StepThreshold.Seconds()
		mayStep := e.cfg.StepLimit < 0 || e.updates <= e.cfg.StepLimit
		if e.makeStep || (newData && thr > 0 && math.Abs(offset) > thr && mayStep) {
			step = offset
			e.makeStep = false
		}
	}
	e.everSynced = true
	e.synchronized = !e.holdover
	if e.holdover {
		e.message = "holdover: no source is reachable; the clock runs on the last good frequency"
	} else {
		e.message = fmt.Sprintf("synchronized to %s", refSrc.name)
		if rest := offset - step; math.Abs(rest) > slewingNote && !e.cfg.Observe {
			e.message += fmt.Sprintf("; slewing the clock by %s", fmtSeconds(rest))
		}
	}

	// Frequency: the oscillator's correction, plus a phase slew.
	b = clamp(b, e.cfg.MaxFrequency*1e-6)
	e.lastFreq = b
	phase := offset - step
	poll := math.Ldexp(1, refSrc.poll)
	tau := corrTimeRatio * poll
	if noise := math.Min(refSrc.f.noise, e.lastUnc); noise > 0 {
		// Errors that stand far out of the measurement noise are real:
		// correct them faster.
		ratio := fastCorrection * noise / math.Abs(phase)
		if ratio < 1 {
			tau *= ratio * ratio
		}
	}
	if tc := uncertaintySlew * e.lastUnc / e.lastFreqUnc; tc < tau {
		// While the frequency is uncertain, the clock drifts from the
		// estimate anyway: following the estimate's phase quickly costs
		// little frequency error beside that uncertainty.
		tau = tc
	}
	if q := refSrc.f.est.q; q > 0 && phase != 0 {
		// The oscillator's own wander moves the frequency by about
		// sqrt(q·poll) between samples: slewing at that rate costs nothing
		// that the wander does not cost anyway.
		if tw := math.Abs(phase) / (wanderSlew * math.Sqrt(q*poll)); tw < tau {
			tau = tw
		}
	}
	if refSrc.f.est.q >= fastWander {
		// The wander outruns any smoothing: follow the estimate within a
		// second (the frequency error this costs is the wander's own).
		tau = 1
	}
	if tau < 1 {
		tau = 1
	}
	if e.cfg.Observe {
		phase, step = 0, 0
	}
	slew := clamp(phase/tau, e.cfg.MaxSlewRate*1e-6)
	newFreq := b + slew
	if e.cfg.Observe {
		newFreq = freq
	} else {
		e.unapplied = e.tl.change(l, step, newFreq)
		if step != 0 {
			e.steps++
			e.log.Warn("stepping the clock", zap.Float64("step_s", step), zap.String("reference", refSrc.name))
			e.now = l + step
			e.lastUpdate = l + step
		}
	}
	e.leap = e.voteLeap(e.survivors)
	return Correction{
		Step:      time.Duration(step * 1e9),
		Frequency: newFreq * 1e6,
		Sync: ClockSync{
			Synchronized: e.synchronized,
			Leap:         e.clockLeap(now.Add(time.Duration(step*1e9)), e.leap),
			EstError:     time.Duration(math.Hypot(e.lastUnc, phase) * 1e9),
			MaxError:     time.Duration((e.rootDistance(refSrc) + math.Abs(phase) + 3*e.lastUnc) * 1e9),
		},
	}
}

// hold returns a correction that keeps the clock on its last good
// frequency, without phase corrections.
func (e *Engine) hold(corr, freq float64) Correction {
	e.synchronized = false
	if e.everSynced {
		freq = e.lastFreq
		if !e.holdover {
			e.message = "no usable source: the clock runs on the last good frequency"
		}
	} else {
		e.message = "waiting for sources"
	}
	if !e.cfg.Observe {
		e.unapplied = e.tl.change(e.now, 0, freq)
	}
	return Correction{Frequency: freq * 1e6, Sync: ClockSync{Leap: LeapUnknown, MaxError: 16 * time.Second}}
}

// alive reports whether any of the named sources still has an estimate.
func (e *Engine) alive(names []string) bool {
	for _, n := range names {
		if s := e.srcs[n]; s != nil && s.f.valid {
			return true
		}
	}
	return false
}

// selectSources classifies every source at raw time u and returns the names
// to combine. ready is false while the engine still waits for sources at
// start.
func (e *Engine) selectSources(u float64) (survivors []string, ready bool) {
	ready = true
	var cands []*source
	for _, n := range e.order {
		s := e.srcs[n]
		switch {
		case s.fault != "":
			// The source's own words (a kiss code, a PTP port that lost
			// its master) say more than the polls it missed.
			s.state, s.reason = StateFault, s.fault
			continue
		case s.unanswer >= unreachablePolls || !s.f.valid && s.polls >= startupPolls:
			s.state, s.reason = StateUnreachable, fmt.Sprintf("no answer to the last %d requests", s.unanswer)
			continue
		case !s.f.valid:
			s.state, s.reason = StateInitial, "no measurement yet"
			if !e.everSynced && s.polledYet {
				ready = false // wait for its first answer
			}
			continue
		}
		x, v := s.f.est.at(u)
		s.x = x
		s.lambda = 3*math.Sqrt(v) + s.f.minDelay/2 + e.rootDistance(s)
		switch {
		case s.opts.NoSelect:
			s.state, s.reason = StateNoSelect, "configured noselect: measured, never used"
		case e.cfg.RequireAuthenticated && !s.last.Authenticated:
			s.state, s.reason = StateUnauthenticated, "not authenticated, and require_authenticated is set: measured, never used"
		case s.last.Leap == LeapUnknown:
			s.state, s.reason = StateTooFar, "the source says it is not synchronized"
		case s.lambda > maxDistance:
			s.state, s.reason = StateTooFar, fmt.Sprintf("its error bound %s exceeds %gs", fmtSeconds(s.lambda), maxDistance)
		default:
			cands = append(cands, s)
		}
	}
	if !ready {
		for _, s := range cands {
			s.state, s.reason = StateCandidate, "waiting for the other sources' first measurements"
		}
		return nil, false
	}
	cands = e.applyAuthenticatedBound(cands)
	if len(cands) == 0 {
		return nil, true
	}

	// Intersect the confidence intervals: find the point covered by the most
	// intervals (trusted sources count first).
	type edge struct {
		at      float64
		start   bool
		trusted bool
	}
	edges := make([]edge, 0, 2*len(cands))
	trusted := 0
	for _, s := range cands {
		edges = append(edges, edge{s.x - s.lambda, true, s.opts.Trust}, edge{s.x + s.lambda, false, s.opts.Trust})
		if s.opts.Trust {
			trusted++
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].start && !edges[j].start
	})
	bestN, bestT, n, t := 0, 0, 0, 0
	var lo, hi float64
	for i, ed := range edges {
		if ed.start {
			n++
			if ed.trusted {
				t++
			}
			if t > bestT || t == bestT && n > bestN {
				bestN, bestT = n, t
				lo = ed.at
				hi = edges[i+1].at
			}
		} else {
			n--
			if ed.trusted {
				t--
			}
		}
	}
	agreeing := bestN
	enough := agreeing >= e.cfg.MinAgreeingSources && (2*agreeing > len(cands) || trusted > 0 && 2*bestT > trusted)
	if !enough {
		// Without a majority nobody can be called wrong.
		for _, s := range cands {
			s.state = StateCandidate
			s.reason = fmt.Sprintf("only %d of %d sources agree; need a majority and at least %d", agreeing, len(cands), e.cfg.MinAgreeingSources)
		}
		return nil, true
	}
	var chimers []*source
	for _, s := range cands {
		if s.x-s.lambda <= hi && s.x+s.lambda >= lo {
			chimers = append(chimers, s)
		} else {
			s.state, s.reason = StateFalseticker, "its time disagrees with the majority of sources"
		}
	}
	// Require: at least one required source must be among them.
	needRequired := false
	for _, s := range e.srcs {
		needRequired = needRequired || s.opts.Require
	}
	if needRequired {
		has := false
		for _, s := range chimers {
			has = has || s.opts.Require
		}
		if !has {
			for _, s := range chimers {
				s.state, s.reason = StateCandidate, "no source marked require agrees"
			}
			return nil, true
		}
	}
	// Prefer: when preferred sources agree, only they are combined.
	preferred := chimers[:0:0]
	for _, s := range chimers {
		if s.opts.Prefer {
			preferred = append(preferred, s)
		}
	}
	use := chimers
	if len(preferred) > 0 {
		use = preferred
	}
	best := math.Inf(1)
	for _, s := range use {
		best = math.Min(best, s.lambda)
	}
	for _, s := range chimers {
		switch {
		case len(preferred) > 0 && !s.opts.Prefer:
			s.state, s.reason = StateCandidate, "agrees, but a preferred source is used instead"
		case s.lambda > combineLimit*best:
			s.state, s.reason = StateCandidate, fmt.Sprintf("agrees, but its error bound is more than %g times the best source's", combineLimit)
		default:
			s.state, s.reason = StateCombined, "agrees and is averaged in"
			survivors = append(survivors, s.name)
		}
	}
	return survivors, true
}

// applyAuthenticatedBound sets aside the candidates configured
// bounded_by: authenticated whose confidence interval does not overlap the
// authenticated candidates' (their intersection; their union when they
// disagree among themselves), and returns the others.
func (e *Engine) applyAuthenticatedBound(cands []*source) []*source {
	lo, hi := math.Inf(-1), math.Inf(1)
	ulo, uhi := math.Inf(1), math.Inf(-1)
	auth := 0
	for _, s := range cands {
		if s.last.Authenticated && !s.opts.BoundedByAuthenticated {
			auth++
			lo, hi = math.Max(lo, s.x-s.lambda), math.Min(hi, s.x+s.lambda)
			ulo, uhi = math.Min(ulo, s.x-s.lambda), math.Max(uhi, s.x+s.lambda)
		}
	}
	if lo > hi {
		lo, hi = ulo, uhi
	}
	kept := cands[:0:0]
	for _, s := range cands {
		if !s.opts.BoundedByAuthenticated {
			kept = append(kept, s)
			continue
		}
		var why string
		switch {
		case auth == 0:
			why = "no authenticated source to check it against"
		case s.x+s.lambda < lo || s.x-s.lambda > hi:
			mid, half := (lo+hi)/2, (hi-lo)/2
			why = fmt.Sprintf("its offset %s ± %s lies outside the authenticated sources' %s ± %s",
				fmtSeconds(s.x-e.tl.correction(e.now)), fmtSeconds(s.lambda), fmtSeconds(mid-e.tl.correction(e.now)), fmtSeconds(half))
		}
		if why == "" {
			s.outSince = math.NaN()
			kept = append(kept, s)
			continue
		}
		if math.IsNaN(s.outSince) {
			s.outSince = e.now
			e.log.Warn("source set aside: bounded by the authenticated sources", zap.String("source", s.name), zap.String("reason", why))
		}
		s.state = StateOutOfBound
		s.reason = fmt.Sprintf("bounded_by authenticated, set aside for %s: %s", fmtSeconds(e.now-s.outSince), why)
	}
	return kept
}

// combine weighs the named sources by their variance at raw time u. It
// returns the offset (true − raw) and frequency (ratio) with their variances,
// and the source with the most weight.
// preferredReference breaks a tie in weight between two sources for the
// reference: an authenticated source before one that is not, then the name,
// so that the choice does not depend on the order of the survivors.
func preferredReference(s, than *source) bool {
	if than == nil {
		return true
	}
	if s.last.Authenticated != than.last.Authenticated {
		return s.last.Authenticated
	}
	return s.name < than.name
}

func (e *Engine) combine(u float64, names []string) (x, xvar, b, bvar float64, ref *source) {
	var sw, swx, sw2v, sbw, sbwb float64
	bestW := -1.0
	for _, n := range names {
		s := e.srcs[n]
		if s == nil || !s.f.valid {
			continue
		}
		xs, v := s.f.est.at(u)
		rd := e.rootDistance(s) + s.f.minDelay/2
		w := 1 / (v + rd*rd/3 + 1e-18)
		sw += w
		swx += w * xs
		sw2v += w * w * v
		bv := s.f.est.frequencyVar(u)
		sbw += 1 / bv
		sbwb += s.f.est.b / bv
		if w > bestW || w == bestW && preferredReference(s, ref) {
			bestW, ref = w, s
		}
	}
	x = swx / sw
	xvar = sw2v / (sw * sw)
	b = sbwb / sbw
	bvar = 1 / sbw
	if ref != nil {
		ref.state, ref.reason = StateSelected, "the clock follows it"
		if e.holdover {
			ref.reason = "holdover on its last estimate"
		}
	}
	return x, xvar, b, bvar, ref
}

// rootDistance is the source's own error bound towards its reference.
func (e *Engine) rootDistance(s *source) float64 {
	return s.last.RootDelay.Seconds()/2 + s.last.RootDispersion.Seconds()
}

func (e *Engine) voteLeap(names []string) Leap {
	var ins, del, n int
	for _, name := range names {
		s := e.srcs[name]
		if s == nil {
			continue
		}
		n++
		switch s.last.Leap {
		case LeapInsert:
			ins++
		case LeapDelete:
			del++
		}
	}
	switch {
	case 2*ins > n:
		return LeapInsert
	case 2*del > n:
		return LeapDelete
	}
	return LeapNone
}

// Status reports the engine's state at local time now.
func (e *Engine) Status(now time.Time) Status {
	st := Status{Message: e.message, Updates: e.updates, Steps: e.steps, Leap: e.leap, Stratum: 16}
	if !e.started {
		for _, n := range e.order {
			st.Sources = append(st.Sources, e.sourceStatus(e.srcs[n], 0, 0))
		}
		return st
	}
	l := e.sec(now)
	u := e.tl.raw(l)
	corr := l - u
	st.Synchronized = e.synchronized
	st.Holdover = e.holdover
	st.Frequency = e.tl.frequency() * 1e6
	if e.everSynced {
		st.Frequency = e.lastFreq * 1e6
		st.FrequencyUncertainty = e.lastFreqUnc * 1e6
		st.LastUpdateAgo = l - e.lastUpdate
		if alive := e.alive(e.survivors); alive {
			x, xvar, _, _, ref := e.combineQuiet(u, e.survivors)
			st.Offset = x - corr
			st.Uncertainty = math.Sqrt(xvar)
			if ref != nil {
				st.Reference = ref.name
				st.RefID = ref.last.RefID
				st.Stratum = ref.last.Stratum + 1
				st.RootDelay = ref.last.RootDelay.Seconds() + ref.last.Delay.Seconds()
				st.RootDispersion = ref.last.RootDispersion.Seconds() + st.Uncertainty + math.Abs(st.Offset)
			}
		}
	}
	if !st.Synchronized {
		st.Leap = LeapUnknown
	}
	for _, n := range e.order {
		st.Sources = append(st.Sources, e.sourceStatus(e.srcs[n], u, corr))
	}
	return st
}

// combineQuiet is combine without touching source states.
func (e *Engine) combineQuiet(u float64, names []string) (x, xvar, b, bvar float64, ref *source) {
	saved := make(map[*source][2]string, len(names))
	for _, n := range names {
		if s := e.srcs[n]; s != nil {
			saved[s] = [2]string{string(s.state), s.reason}
		}
	}
	x, xvar, b, bvar, ref = e.combine(u, names)
	for s, v := range saved {
		s.state, s.reason = SourceState(v[0]), v[1]
	}
	return
}

func (e *Engine) sourceStatus(s *source, u, corr float64) SourceStatus {
	ss := SourceStatus{
		Name: s.name, Kind: s.opts.Kind, Address: s.opts.Address, State: s.state, Reason: s.reason,
		Stratum: s.last.Stratum, RefID: s.last.RefID, Leap: s.last.Leap, Authenticated: s.last.Authenticated,
		Reach: s.reach, Poll: s.poll, Samples: s.samples,
		LastOffset: s.last.Offset.Seconds(), Delay: s.last.Delay.Seconds(),
		RootDelay: s.last.RootDelay.Seconds(), RootDispersion: s.last.RootDispersion.Seconds(),
		Dropped: s.dropped, Restarts: s.restarts, Asymmetry: s.f.asymmetry,
		Window: len(s.f.win), Span: s.f.span(), Outliers: s.f.outliers(), Noise: s.f.noise,
		Prefer: s.opts.Prefer, NoSelect: s.opts.NoSelect, Trust: s.opts.Trust, Require: s.opts.Require,
	}
	if s.samples > 0 && e.started {
		ss.LastSampleAgo = e.now - s.lastLocal
	}
	if s.f.valid && e.started {
		x, v := s.f.est.at(u)
		ss.Offset = x - corr
		ss.Uncertainty = math.Sqrt(v)
		ss.MinDelay = s.f.minDelay
		ss.Frequency = s.f.est.b * 1e6
		ss.FrequencyUncertainty = math.Sqrt(s.f.est.frequencyVar(u)) * 1e6
	}
	return ss
}

func clamp(v, limit float64) float64 {
	return math.Max(-limit, math.Min(limit, v))
}

// fmtSeconds writes seconds with a unit that suits the magnitude.
func fmtSeconds(s float64) string {
	a := math.Abs(s)
	switch {
	case a >= 1:
		return fmt.Sprintf("%+.3fs", s)
	case a >= 1e-3:
		return fmt.Sprintf("%+.3fms", s*1e3)
	case a >= 1e-6:
		return fmt.Sprintf("%+.3fµs", s*1e6)
	default:
		return fmt.Sprintf("%+.0fns", s*1e9)
	}
}
