package sources

import (
	"math"
	"math/rand/v2"
	"testing"
)

// posterior integrates the exact posterior of x (prior N(mu, p00)) given
// y = x + g + u, g ~ N(0, gv), u ~ U(−h, h), on a fine grid.
func posterior(mu, p00, y, gv, h float64) (mean, variance float64) {
	sd := math.Sqrt(p00)
	lo, hi := mu-12*sd, mu+12*sd
	const n = 200000
	dx := (hi - lo) / n
	g := math.Sqrt(gv)
	var w0, w1, w2 float64
	for i := 0; i < n; i++ {
		x := lo + (float64(i)+0.5)*dx
		prior := math.Exp(-(x - mu) * (x - mu) / (2 * p00))
		like := 0.5*math.Erfc(-(y-x+h)/(g*math.Sqrt2)) - 0.5*math.Erfc(-(y-x-h)/(g*math.Sqrt2))
		w := prior * like
		w0 += w
		w1 += w * x
		w2 += w * x * x
	}
	mean = w1 / w0
	return mean, w2/w0 - mean*mean
}

func TestTruncatedUpdate(t *testing.T) {
	tests := []struct {
		name            string
		mu, p00, y, h   float64
		wantOK          bool
		checkAgainstInt bool
	}{
		{"band wide next to the prediction", 0, 1e-8, 2e-5, 1e-3, true, true},
		{"band narrow next to the prediction", 0, 1e-8, 5e-5, 1e-6, true, true},
		{"band as wide as the prediction", 0, 1e-8, 1e-4, 1e-4, true, true},
		{"band on the prediction's edge", 0, 1e-8, 4e-4, 2e-4, true, true},
		{"band negligible: the Kalman update is used", 0, 1e-8, 1e-5, 1e-9, false, false},
		{"band far outside the prediction", 0, 1e-8, 1, 1e-4, false, false},
	}
	const gv = 1e-14
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A correlated frequency: b moves with x by p01/p00.
			p01, p11 := 0.5e-10, 1e-12
			e, ll, ok := truncatedUpdate(tc.mu, 0, tc.p00, p01, p11, tc.y, gv, tc.h)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if math.IsNaN(ll) || math.IsInf(ll, 0) {
				t.Errorf("log-likelihood %v", ll)
			}
			mean, variance := posterior(tc.mu, tc.p00, tc.y, gv, tc.h)
			sd := math.Sqrt(tc.p00)
			if math.Abs(e.x-mean) > 1e-3*sd {
				t.Errorf("x = %.6g, exact posterior mean %.6g", e.x, mean)
			}
			if math.Abs(e.p00-variance) > 1e-3*tc.p00 {
				t.Errorf("p00 = %.6g, exact posterior variance %.6g", e.p00, variance)
			}
			// b follows x through their covariance.
			if want := p01 / tc.p00 * (e.x - tc.mu); math.Abs(e.b-want) > 1e-6*math.Abs(want)+1e-18 {
				t.Errorf("b = %.6g, want %.6g", e.b, want)
			}
			if e.p00 <= 0 || e.p11 <= 0 || e.p01*e.p01 > e.p00*e.p11*(1+1e-9) {
				t.Errorf("covariance not positive definite: %g %g %g", e.p00, e.p01, e.p11)
			}
		})
	}
}

// A wide band that contains the whole prediction says almost nothing; a
// linear filter would have taken its variance h²/3 at face value.
func TestTruncatedUpdateWideBandChangesLittle(t *testing.T) {
	e, _, ok := truncatedUpdate(0, 0, 1e-10, 0, 1e-12, 3e-4, 1e-16, 1e-3)
	if !ok {
		t.Fatal("not ok")
	}
	if math.Abs(e.x) > 1e-9 || e.p00 < 0.99e-10 {
		t.Errorf("x = %g, p00 = %g: a band 100 times wider than the prediction moved it", e.x, e.p00)
	}
	k := kalmanX(0, 1e-10, 3e-4, 1e-16+1e-6/3)
	if math.Abs(k) < math.Abs(e.x) {
		t.Errorf("linear update moved x by %g, bounded update by %g", k, e.x)
	}
}

func kalmanX(mu, p00, y, r float64) float64 { return mu + p00/(p00+r)*(y-mu) }

// A source sampling fast (PTP at 128 Hz) keeps a window of windowSize
// samples in a fixed buffer: nothing grows and no sample allocates.
func TestFilterWindowSlidesWithoutGrowing(t *testing.T) {
	f := newFilter(0, 0)
	buf := &f.buf[0]
	u := 0.0
	add := func() {
		u += 1.0 / 128
		f.add(sample{u: u, y: 1e-6 * math.Sin(u), delay: 20e-6, precision: 1e-8})
	}
	for range 3 * windowSize {
		add()
	}
	if allocs := testing.AllocsPerRun(5*windowSize, add); allocs != 0 {
		t.Errorf("%.1f allocations per sample, want 0", allocs)
	}
	if len(f.win) != windowSize || &f.buf[0] != buf || cap(f.buf) != 2*windowSize {
		t.Errorf("window %d samples, buffer %d (moved: %v); want %d in the same %d", len(f.win), cap(f.buf), &f.buf[0] != buf, windowSize, 2*windowSize)
	}
	for i := 1; i < len(f.win); i++ {
		if f.win[i].u <= f.win[i-1].u {
			t.Fatalf("window out of order at %d", i)
		}
	}
	if last := f.last(); last.u != u {
		t.Errorf("newest sample at %g, want %g", last.u, u)
	}
}

// When the path's delay rises for good (here from 3 µs to 5 µs, with a
// one-sided queue after the change), the minimum delay follows within
// minDelaySpan samples: the asymmetry correction then starts from the new
// shortest delay, and the estimate is not pulled off by the old one.
func TestFilterFollowsPathChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := newFilter(0, 0)
	u := 0.0
	for i := range 100 { // all in one window
		u++
		s := sample{u: u, delay: 3e-6, precision: 1e-8}
		if i >= 10 {
			q := rng.ExpFloat64() * 1e-6 // queueing on the way back only
			s.delay, s.y = 5e-6+q, -q/2
		}
		f.add(s)
	}
	x, _ := f.est.at(u)
	if math.Abs(f.minDelay-5e-6) > 0.2e-6 {
		t.Errorf("minimum delay %.2f µs, want about 5 µs (the path's new one)", f.minDelay*1e6)
	}
	if math.Abs(x) > 0.2e-6 {
		t.Errorf("offset estimate %+.2f µs (asymmetry %.2f), want within 0.2 µs of 0", x*1e6, f.asymmetry)
	}
}

// A run of samples delayed on one side of the path (a host under load for a
// few seconds at a fast poll) looks like the source's time jumping: after
// a one-sided queue on the way back has taught the filter its asymmetry,
// 1 ms of delay on the way out puts each such sample far outside its
// corrected band, and three in a row are outliers on one side that agree.
// But their offsets are what their excess delay explains (+500 µs for
// 1 ms): the filter keeps its window, its minimum delay and its estimate.
// The same run at the path's usual delay is a jump.
func TestFilterDelayBurstIsNoJump(t *testing.T) {
	for _, tt := range []struct {
		name       string
		delay, y   float64 // of the burst's samples
		wantJump   bool
		wantOffset float64
	}{
		{"one-sided delay burst", 1008e-6, 500e-6, false, 0},
		{"the source's time jumps", 8e-6, 2e-3, true, 2e-3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			f := newFilter(0, 0)
			u := 0.0
			add := func(delay, y float64) bool {
				u += 0.5
				return f.add(sample{u: u, y: y + rng.NormFloat64()*0.3e-6, delay: delay + rng.ExpFloat64()*1e-6, precision: 1e-6})
			}
			for range 60 {
				q := rng.ExpFloat64() * 50e-6 // queueing on the way back
				add(8e-6+q, -q/2)
			}
			jumped := false
			for range 6 {
				jumped = add(tt.delay, tt.y) || jumped
			}
			if jumped != tt.wantJump {
				t.Errorf("restarted for a jump: %v, want %v", jumped, tt.wantJump)
			}
			if !tt.wantJump && f.minDelay > 12e-6 {
				t.Errorf("minimum delay %.1f µs after the burst, want the path's (about 9 µs)", f.minDelay*1e6)
			}
			x, _ := f.est.at(u)
			if math.Abs(x-tt.wantOffset) > 5e-6 {
				t.Errorf("estimate %+.1f µs, want within 5 µs of %+.1f µs", x*1e6, tt.wantOffset*1e6)
			}
		})
	}
}

// A fast-polling source on a loaded host: 30% of the packets each way are
// 1 ms late, so about half the samples carry a delay, and in a young
// window more than half (here the first 40 samples: 3 of every 5). The
// median delay is then a delayed one; it must not widen the bands of the
// clean samples, which pin the estimate. And the way out queues more than
// the way back, so the filter learns an asymmetry from the common, short
// delays: it must not apply it to the samples delayed 1 ms (it would move
// them by hundreds of µs, and the filter after them): their own band
// bounds their error.
func TestFilterManyDelayedSamples(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 6))
		f := newFilter(0, 0)
		u := 0.0
		delayed := 0
		for i := range 200 {
			u += 0.5
			up, down := rng.ExpFloat64()*1e-6, rng.ExpFloat64()*0.3e-6
			if i < 40 && i%5 < 3 || i >= 40 && rng.Float64() < 0.3 {
				up += 1e-3
			}
			if i >= 40 && rng.Float64() < 0.3 {
				down += 1e-3
			}
			if up+down > 500e-6 {
				delayed++
			}
			if f.add(sample{u: u, y: (down - up) / 2, delay: 8e-6 + up + down, precision: 1e-6}) {
				t.Fatalf("seed %d, sample %d: the filter restarted for a jump", seed, i)
			}
			if i < 30 {
				continue
			}
			x, v := f.est.at(u)
			if math.Abs(x) > 5e-6 || math.Sqrt(v) > 5e-6 {
				t.Fatalf("seed %d, sample %d (%d of them delayed 1 ms, asymmetry %.2f): estimate %+.1f µs ± %.1f µs, want within 5 µs of 0 and as sure",
					seed, i, delayed, f.asymmetry, x*1e6, math.Sqrt(v)*1e6)
			}
		}
	}
}
