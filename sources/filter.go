package sources

import (
	"math"
	"sort"
)

// The per-source filter.
//
// Samples are kept in the timescale of the free-running oscillator ("raw
// time", u): the engine knows every correction it made to the clock, so it
// can undo them, and the filter then sees a smooth signal — the oscillator's
// offset from the source, y = T − u — that the steering never disturbs (the
// feed-forward design RADclock uses). The state is that offset and its rate
// (x, b), tracked by a Kalman filter whose process noise models the
// oscillator's random-walk frequency wander.
//
// On every new sample the filter is run again over the whole window (at most
// windowSize samples; a 2×2 filter costs nothing) for a grid of wander
// levels, and the level with the greatest likelihood wins. Re-running lets
// every sample be weighted by the path delay as it is known now: a sample's
// error can be no larger than half its delay in excess of the path's minimum
// delay, so samples near the minimum are trusted most, and the minimum is
// re-learned as samples come and go.
//
// That bound is used as a bound, not only as a variance: each update
// conditions the Gaussian state on the sample lying within ±half its excess
// delay (plus the timestamps' own Gaussian noise) and moment-matches the
// result back to a Gaussian (assumed-density filtering). A sample whose
// band is wide next to the prediction then moves the estimate little, and a
// narrow one pins it; on large jitter this beats the best linear filter
// (sim.LinearBound) by about a quarter.

const (
	windowSize = 128
	// outlierSigma: an innovation beyond this many standard deviations is an
	// outlier (not used, but counted in the likelihood as this many sigma).
	outlierSigma = 5.0
	// stepSamples consecutive outliers on one side that agree with each other
	// mean the source's time jumped: the filter restarts from them.
	stepSamples = 3
	// priorFrequencyVar is the variance of the frequency before any data
	// when no drift file gives it: (250 ppm)², half the largest frequency error
	// a clock may have.
	priorFrequencyVar = 250e-6 * 250e-6
	// measurementFloor is the smallest measurement error assumed (s).
	measurementFloor = 100e-9
	// timestampAllowance is how far a sample's timestamps may be off
	// beyond their stated precision (s): a server's transmit time read
	// before its send, a thread that waited for the CPU, a clock step
	// between a request and its response. Half a sample's delay plus
	// this bounds its error whatever the path's minimum delay.
	timestampAllowance = 1e-3
)

// wanderGrid holds the random-walk frequency noise levels (spectral density,
// 1/s) the filter chooses among.
var wanderGrid = [...]float64{1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12}

// fastWander is the wander (1/s) from which a source's clock is followed
// at once: a frequency random walk of 0.1 ppm/√s or more (an oscillator in
// a changing temperature, a virtual machine's clock) moves the phase within
// one poll interval by more than the estimate's error, so smoothing the
// steering only adds lag.
const fastWander = 1e-14

// wanderPrior is the typical wander of a quartz oscillator in a stable room,
// and wanderPriorDecades how far (in decades, one sigma) it may be off.
const (
	wanderPrior        = 1e-18
	wanderPriorDecades = 2.0
)

type sample struct {
	u         float64 // raw time of the measurement
	y         float64 // true minus raw time at u
	offset    float64 // the measured offset (true minus local), for status
	delay     float64
	precision float64
	outlier   bool
}

type estimate struct {
	u        float64 // raw time of the last sample used
	x, b     float64 // offset (T − u) and its rate at u
	p00      float64 // variances and covariance
	p01, p11 float64
	q        float64 // wander (1/s)
}

// at extrapolates the estimate to raw time u: the offset, and its variance.
func (e *estimate) at(u float64) (x, variance float64) {
	d := u - e.u
	x = e.x + e.b*d
	variance = e.p00 + 2*d*e.p01 + d*d*e.p11
	if d > 0 {
		variance += e.q * d * d * d / 3
	}
	return x, variance
}

// frequencyVar is the variance of the rate at raw time u.
func (e *estimate) frequencyVar(u float64) float64 {
	d := u - e.u
	if d < 0 {
		d = 0
	}
	return e.p11 + e.q*d
}

type filter struct {
	// win is the window, oldest first: a slice of buf that slides forward
	// as samples come, so that a new sample copies no history.
	win   []sample
	buf   []sample
	est   estimate
	valid bool
	// priorB and priorBVar give the frequency before the first sample.
	priorB, priorBVar float64
	minDelay          float64
	// noise is the typical measurement error (s, one sigma) of recent
	// samples: the median over the window.
	noise float64
	// asymmetry is the fraction of the excess delay by which samples were
	// corrected (0 for a symmetric path).
	asymmetry float64
	// hist is the estimate from the samples that have left the window
	// (when histValid), at the time of the last of them.
	hist      estimate
	histValid bool
	// wander is the index in wanderGrid of the level last chosen, and added
	// counts the samples taken.
	wander int
	added  int
	w      *work
}

func newFilter(priorB, priorBVar float64) *filter {
	if priorBVar <= 0 {
		priorBVar = priorFrequencyVar
	}
	buf := make([]sample, 2*windowSize)
	return &filter{priorB: priorB, priorBVar: priorBVar, buf: buf, win: buf[:0]}
}

// add takes a new sample and re-estimates. It returns true when the sample
// made the filter restart because the source's time jumped.
func (f *filter) add(s sample) (jumped bool) {
	if len(f.win) > 0 && s.u <= f.win[len(f.win)-1].u {
		// Out of order or duplicate: raw time never runs backwards.
		return false
	}
	if len(f.win) == windowSize {
		f.fold()
		f.win = f.win[1:]
	}
	if len(f.win) == cap(f.win) {
		// The window has slid to the end of its buffer (twice the window):
		// move it back to the start, once every windowSize samples.
		f.win = f.buf[:copy(f.buf, f.win)]
	}
	f.win = append(f.win, s)
	f.added++
	f.estimate()
	if f.jumpedTo() {
		keep := f.win[len(f.win)-stepSamples:]
		f.win = append(f.win[:0], keep...)
		f.histValid = false
		f.estimate()
		return true
	}
	return false
}

// span is the raw time from the oldest sample in the window to the newest
// (seconds; 0 with fewer than two).
func (f *filter) span() float64 {
	if len(f.win) < 2 {
		return 0
	}
	return f.win[len(f.win)-1].u - f.win[0].u
}

// outliers counts the samples in the window the estimate left out.
func (f *filter) outliers() int {
	n := 0
	for i := range f.win {
		if f.win[i].outlier {
			n++
		}
	}
	return n
}

// jumpedTo reports whether the newest samples are outliers on one side that
// agree with each other: the source's time jumped.
func (f *filter) jumpedTo() bool {
	n := len(f.win)
	if n < 2*stepSamples {
		return false
	}
	last := f.win[n-stepSamples:]
	sign := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range last {
		if !s.outlier {
			return false
		}
		x, _ := f.est.at(s.u)
		r := s.y - x
		// Delay above the path's minimum moves a sample's offset by up to
		// half of it: a run of samples delayed on one side of the path (a
		// host under load, a queue that builds) looks like a jump but is
		// not one, and restarting from them would make their delay the
		// path's minimum and steer the clock by their error. A jump moves
		// the offset by more than the whole excess delay.
		if math.Abs(r) <= math.Max(0, s.delay-f.minDelay) {
			return false
		}
		sg := 1
		if r < 0 {
			sg = -1
		}
		if sign != 0 && sg != sign {
			return false
		}
		sign = sg
		lo = math.Min(lo, s.y)
		hi = math.Max(hi, s.y)
	}
	// They agree with each other far better than with the old estimate.
	x, _ := f.est.at(last[0].u)
	return hi-lo < math.Abs(last[0].y-x)/4
}

// measurementVar is a sample's error variance given the path's minimum delay
// and how sure we are of that minimum.
// scale (0..1] shrinks the delay term once an asymmetry has been taken out.
func measurementVar(s *sample, minDelay, minDelayErr, scale float64) float64 {
	g, h := measurementNoise(s, minDelay, minDelayErr, scale)
	return g + h*h/3
}

// measurementNoise splits a sample's error into a Gaussian part (the
// timestamps' precision; variance g) and a bounded part: queueing delay
// moves the offset by at most half the excess delay, uniformly within
// ±h.
func measurementNoise(s *sample, minDelay, minDelayErr, scale float64) (g, h float64) {
	excess := s.delay - minDelay
	if excess < 0 {
		excess = 0
	}
	excess += minDelayErr
	if whole := s.delay + timestampAllowance; s.delay > 0 && excess > whole {
		// However little is known of the minimum, a path's delay is never
		// negative: half the whole delay bounds the error, give or take
		// the timestamps' own errors. With few samples on a jittery path
		// this is the tighter bound.
		excess = whole
	}
	return measurementFloor*measurementFloor + s.precision*s.precision/3, math.Sqrt(math.Max(scale, 0.1)) * excess / 2
}

func (f *filter) estimate() {
	n := len(f.win)
	if n == 0 {
		f.valid = false
		return
	}
	if f.w == nil {
		f.w = newWork(windowSize)
	}
	w := f.w.resize(n)
	for i := range f.win {
		w.sorted[i] = f.win[i].delay
	}
	sort.Float64s(w.sorted)
	median := w.sorted[n/2]
	// The minimum delay is that of the newer half of a full window: when
	// the path changes (a route, a queue that stays, a busier host), an old
	// minimum would make every later sample look delayed.
	f.minDelay = math.Inf(1)
	for i := max(0, n-minDelaySpan); i < n; i++ {
		f.minDelay = math.Min(f.minDelay, f.win[i].delay)
	}
	spread := median - f.minDelay
	if q := spreadQuartiles * (w.sorted[n/4] - f.minDelay); n >= spreadMinSamples && q < spread {
		spread = math.Max(q, 0)
	}
	minDelayErr := spread / math.Sqrt(math.Sqrt(float64(n)))
	if wanderGrid[f.wander] >= fastWander && f.added > asymmetryMinSamples {
		// With a wander this large only the newest few samples say where
		// the clock is, and each one's band counts: the minimum's
		// distance above the path's is taken at its expected size, which
		// shrinks as 1/√n for a delay density that rises from the
		// minimum, instead of the cautious 1/n^¼. Only once the window
		// holds as many samples as the asymmetry estimate needs: before
		// that the wander chosen rests mostly on the prior.
		minDelayErr = spread / math.Sqrt(float64(n))
	}
	if n == 1 {
		minDelayErr = f.minDelay / 4
	}
	for i := range f.win {
		w.excess[i] = math.Max(0, f.win[i].delay-f.minDelay)
		w.ys[i] = f.win[i].y
		w.gvar[i], w.half[i] = measurementNoise(&f.win[i], f.minDelay, minDelayErr, 1)
		w.vars[i] = w.gvar[i] + w.half[i]*w.half[i]/3
	}
	copy(w.sorted, w.vars)
	sort.Float64s(w.sorted)
	f.noise = math.Sqrt(w.sorted[n/2])

	f.search(w)
	f.asymmetry = 0
	if n >= asymmetryMinSamples {
		// Queueing delay on one side of the path shows up as offsets that
		// move with the delay: each sample is then off by a fraction of its
		// excess delay, which can be measured and taken out.
		tail := asymmetryTail * spread
		if a, ok := asymmetry(w.excess, w.innov, w.svar, w.bestOutlier, tail); ok {
			f.asymmetry = a
			for i := range f.win {
				if w.excess[i] > tail {
					// The slope was measured on the common delays: a
					// sample delayed far beyond them (on either side)
					// keeps its offset and its whole band.
					continue
				}
				w.ys[i] = f.win[i].y - a*w.excess[i]
				w.gvar[i], w.half[i] = measurementNoise(&f.win[i], f.minDelay, minDelayErr, 1-4*a*a)
				w.vars[i] = w.gvar[i] + w.half[i]*w.half[i]/3
			}
			f.search(w)
		}
	}
	for i := range f.win {
		f.win[i].outlier = w.bestOutlier[i]
	}
	f.valid = true
}

// The spread of the delays (the median's excess over the minimum) scales
// how far the minimum may lie above the path's. When more than half the
// packets are delayed (a host under load at a fast poll, or by chance
// among a young window's few samples) the median is one of the delayed
// ones, and every sample's band, the cleanest's too, would widen by the
// delay's size. For queueing delays, whose density is highest at the
// path's minimum or rises from it, the median's excess is at most 3 times
// the lower quartile's (2 for a uniform, 2.4 for an exponential, under 3
// for any Pareto); spreadQuartiles times the lower quartile's excess
// therefore caps the spread only when the median sits in a second cluster
// of delayed packets, and only once the window holds spreadMinSamples
// samples.
const (
	spreadQuartiles  = 3
	spreadMinSamples = 16
)

// minDelaySpan is how many of the newest samples the minimum delay is
// taken over.
const minDelaySpan = 64

// asymmetryMinSamples is how many samples the asymmetry estimate needs.
const asymmetryMinSamples = 16

// work holds the scratch slices of an estimate, allocated once per filter
// so that frequent samples (PTP sends up to 128 a second) make no garbage.
type work struct {
	excess, ys, vars, sorted []float64
	gvar, half               []float64 // the parts of vars (measurementNoise)
	outlier, bestOutlier     []bool
	innov, svar              []float64 // innovations and their variances
	bestInnov, bestSvar      []float64
}

func newWork(n int) *work {
	return &work{
		excess: make([]float64, n), ys: make([]float64, n), vars: make([]float64, n), sorted: make([]float64, n),
		gvar: make([]float64, n), half: make([]float64, n),
		outlier: make([]bool, n), bestOutlier: make([]bool, n),
		innov: make([]float64, n), svar: make([]float64, n),
		bestInnov: make([]float64, n), bestSvar: make([]float64, n),
	}
}

// resize returns w with every slice n long (n ≤ the capacity).
func (w *work) resize(n int) *work {
	w.excess, w.ys, w.vars, w.sorted = w.excess[:n], w.ys[:n], w.vars[:n], w.sorted[:n]
	w.gvar, w.half = w.gvar[:n], w.half[:n]
	w.outlier, w.bestOutlier = w.outlier[:n], w.bestOutlier[:n]
	w.innov, w.svar, w.bestInnov, w.bestSvar = w.innov[:n], w.svar[:n], w.bestInnov[:n], w.bestSvar[:n]
	return w
}

// search runs the filter for every wander level and keeps the most likely.
func (f *filter) search(w *work) {
	best := math.Inf(-1)
	n := len(w.ys)
	lo, hi := 0, len(wanderGrid)-1
	if n == windowSize && f.added%fullSearchEvery != 0 {
		// The wander changes slowly: between full searches only the
		// levels next to the last choice are tried.
		lo, hi = max(lo, f.wander-1), min(hi, f.wander+1)
	}
	for i := lo; i <= hi; i++ {
		q := wanderGrid[i]
		est, ll := f.run(q, w.ys, w.vars, w)
		// A weak prior keeps the choice sensible while samples are few.
		d := math.Log10(q/wanderPrior) / wanderPriorDecades
		ll -= 0.5 * d * d * math.Max(1, 16/float64(n))
		if ll > best {
			best = ll
			f.est = est
			f.wander = i
			copy(w.bestOutlier, w.outlier)
			copy(w.bestInnov, w.innov)
			copy(w.bestSvar, w.svar)
		}
	}
	w.innov, w.bestInnov = w.bestInnov, w.innov
	w.svar, w.bestSvar = w.bestSvar, w.svar
}

// fullSearchEvery: with a full window, every wander level is tried once in
// this many samples.
const fullSearchEvery = 16

// asymmetryTail: samples whose excess delay is more than this many times
// the median excess are left out of the asymmetry regression, and its
// slope is not applied to them. A rare, long
// delay on one side of the path (a send that waited for the CPU) says
// nothing about how the common, short delays split between the two sides,
// and with its leverage it would set the slope for all of them.
const asymmetryTail = 5

// asymmetry regresses the innovations on the excess delay (with an
// intercept, weighted by the innovation variance; samples with an excess
// above tail left out when tail > 0) and returns the slope when it is
// significant, clamped to the physical range ±1/2.
func asymmetry(excess, innov, svar []float64, outlier []bool, tail float64) (float64, bool) {
	skip := func(i int) bool { return outlier[i] || tail > 0 && excess[i] > tail }
	var sw, se, sr float64
	for i := 2; i < len(innov); i++ {
		if skip(i) {
			continue
		}
		w := 1 / svar[i]
		sw += w
		se += w * excess[i]
		sr += w * innov[i]
	}
	if sw == 0 {
		return 0, false
	}
	me, mr := se/sw, sr/sw
	var see, ser, srr float64
	for i := 2; i < len(innov); i++ {
		if skip(i) {
			continue
		}
		w := 1 / svar[i]
		de, dr := excess[i]-me, innov[i]-mr
		see += w * de * de
		ser += w * de * dr
		srr += w * dr * dr
	}
	if see <= 0 {
		return 0, false
	}
	a := ser / see
	// The slope's standard error from the residual scatter.
	res := math.Max(srr-a*ser, 0) / sw
	se2 := res / (see / sw) / float64(len(innov))
	if a*a < 9*se2 {
		return 0, false
	}
	return math.Max(-0.5, math.Min(0.5, a)), true
}

// run filters the window with wander q and returns the final estimate and
// the log-likelihood of the innovations (outliers counted at outlierSigma).
func (f *filter) run(q float64, ys, vars []float64, w *work) (estimate, float64) {
	s0 := f.win[0]
	e := estimate{u: s0.u, x: ys[0], b: f.priorB, p00: vars[0], p11: f.priorBVar, q: q}
	if f.histValid {
		// The samples that left the window still count, through hist.
		e, _, _ = f.hist.predict(s0.u, q).update(ys[0], w.gvar[0], w.half[0], vars[0])
	}
	w.outlier[0] = false
	ll := 0.0
	for i := 1; i < len(f.win); i++ {
		s := &f.win[i]
		p := e.predict(s.u, q)
		nu := ys[i] - p.x
		sv := p.p00 + vars[i]
		w.innov[i], w.svar[i] = nu, sv
		z2 := nu * nu / sv
		out := i >= 3 && z2 > outlierSigma*outlierSigma
		w.outlier[i] = out
		if out {
			e = p
			if i >= 2 {
				ll -= 0.5 * (outlierSigma*outlierSigma + math.Log(sv))
			}
			continue
		}
		var lli float64
		e, lli, _ = p.update(ys[i], w.gvar[i], w.half[i], vars[i])
		if i >= 2 {
			ll += math.Max(lli, -0.5*(outlierSigma*outlierSigma+math.Log(sv)))
		}
	}
	return e, ll
}

// predict is e carried forward to raw time u with wander q.
func (e estimate) predict(u, q float64) estimate {
	d := u - e.u
	return estimate{
		u:   u,
		x:   e.x + e.b*d,
		b:   e.b,
		p00: e.p00 + 2*d*e.p01 + d*d*e.p11 + q*d*d*d/3,
		p01: e.p01 + d*e.p11 + q*d*d/2,
		p11: e.p11 + q*d,
		q:   q,
	}
}

// update conditions the prediction p on a sample y whose error is Gaussian
// (variance gv) plus bounded (±h), of total variance r. It returns the
// estimate and the log-likelihood of y (up to the constant run leaves out):
// the exact one when the bound matters (truncatedUpdate), else the
// Gaussian one of the Kalman update.
func (p estimate) update(y, gv, h, r float64) (estimate, float64, bool) {
	if ne, ll, ok := truncatedUpdate(p.x, p.b, p.p00, p.p01, p.p11, y, gv, h); ok {
		ne.u, ne.q = p.u, p.q
		return ne, ll, true
	}
	nu := y - p.x
	sv := p.p00 + r
	k0, k1 := p.p00/sv, p.p01/sv
	return estimate{
		u:   p.u,
		x:   p.x + k0*nu,
		b:   p.b + k1*nu,
		p00: (1 - k0) * p.p00,
		p01: (1 - k0) * p.p01,
		p11: p.p11 - k1*p.p01,
		q:   p.q,
	}, -0.5 * (nu*nu/sv + math.Log(sv)), false
}

// fold takes the oldest sample of the window, about to leave it, into
// hist: the estimate from every sample that left, which starts each run
// over the window. A source sampling fast (PTP at 128 Hz fills the window
// in a second) so keeps what it learned of the frequency, with no history
// kept.
func (f *filter) fold() {
	if !f.valid || f.w == nil || len(f.w.ys) == 0 || f.win[0].outlier {
		return
	}
	w, s := f.w, &f.win[0]
	if !f.histValid {
		f.hist = estimate{u: s.u, x: w.ys[0], b: f.priorB, p00: w.vars[0], p11: f.priorBVar, q: f.est.q}
		f.histValid = true
		return
	}
	f.hist, _, _ = f.hist.predict(s.u, f.est.q).update(w.ys[0], w.gvar[0], w.half[0], w.vars[0])
}

// count is the number of samples in the window.
func (f *filter) count() int { return len(f.win) }

// last returns the newest sample.
func (f *filter) last() *sample {
	if len(f.win) == 0 {
		return nil
	}
	return &f.win[len(f.win)-1]
}

// pollTarget is the poll interval (s) the filter wants. Until its window is
// full it wants samples as fast as allowed (more samples, faster
// convergence). Then it wants about samplesPerWander samples within the
// time over which the oscillator's wander grows to the measurement noise:
// samples older than that say little about the clock now, so polling faster
// buys little accuracy and costs the server load.
func (f *filter) pollTarget() float64 {
	if !f.valid || len(f.win) < windowSize {
		return 1e-3
	}
	span := math.Cbrt(3 * f.noise * f.noise / f.est.q)
	return span / samplesPerWander
}

// samplesPerWander is how many samples the filter wants within the wander's
// time scale.
const samplesPerWander = 32

// truncatedUpdate is the exact update of a Gaussian prior (x, b with
// covariance p) by a sample y = x + g + u, g Gaussian with variance gv and u
// uniform on ±h, moment-matched back to a Gaussian. It returns the
// log-likelihood of y (plus log √(2π), the scale run uses). ok is false when
// the uniform part is too small to matter (use the Kalman update) or the
// sample lies too far out to compute.
func truncatedUpdate(x, b, p00, p01, p11, y, gv, h float64) (e estimate, ll float64, ok bool) {
	sv := p00 + gv
	sig := math.Sqrt(sv)
	if h < 1e-3*sig {
		return e, 0, false
	}
	lo, hi := (y-h-x)/sig, (y+h-x)/sig
	var z float64
	if lo > 0 {
		z = 0.5 * (math.Erfc(lo/math.Sqrt2) - math.Erfc(hi/math.Sqrt2))
	} else if hi < 0 {
		z = 0.5 * (math.Erfc(-hi/math.Sqrt2) - math.Erfc(-lo/math.Sqrt2))
	} else {
		z = 1 - 0.5*math.Erfc(hi/math.Sqrt2) - 0.5*math.Erfc(-lo/math.Sqrt2)
	}
	if !(z > 1e-12) {
		return e, 0, false
	}
	plo, phi := math.Exp(-lo*lo/2)/math.Sqrt(2*math.Pi), math.Exp(-hi*hi/2)/math.Sqrt(2*math.Pi)
	m := (plo - phi) / z
	v := 1 + (lo*plo-hi*phi)/z - m*m
	mw, vw := sig*m, sv*math.Max(v, 0)
	k0, k1 := p00/sv, p01/sv
	e = estimate{
		x:   x + k0*mw,
		b:   b + k1*mw,
		p00: p00 - k0*p00 + k0*k0*vw,
		p01: p01 - k0*p01 + k0*k1*vw,
		p11: p11 - k1*p01 + k1*k1*vw,
	}
	return e, math.Log(z/(2*h)) + 0.5*math.Log(2*math.Pi), true
}
