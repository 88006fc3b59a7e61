package sim

import (
	"math"
	"math/rand/v2"
)

// LinearBound is the RMS offset error, measured as the scenarios measure it
// (every second from the sync window to the end, median over seeds), that
// the best linear filter could reach on a scenario with one server on a
// symmetric exponential path: a Kalman filter that knows the oscillator's
// wander and the exact error bound of every sample (half its delay above the
// path's true minimum, so an error variance of excess²/12), polling at the
// minimum interval and steering the clock to its estimate instantly. No
// causal linear estimator does better on average; timed's engine has to
// learn the wander and the minimum delay, and steers smoothly.
func LinearBound(sc *Scenario, seeds int) float64 {
	srv := sc.Servers[0]
	poll := math.Ldexp(1, srv.MinPoll)
	q := sc.Oscillator.Wander * sc.Oscillator.Wander
	const priorFreqVar = 250e-6 * 250e-6 // the engine's prior
	var rms []float64
	for seed := 0; seed < seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		var p00, p01, p11 float64
		var sum, n float64
		for t := 0.0; t < sc.Duration; t += poll {
			e := (rng.ExpFloat64() + rng.ExpFloat64()) * srv.Path.Jitter
			r := e*e/12 + 1e-18
			if t == 0 {
				p00, p01, p11 = r, 0, priorFreqVar
			} else {
				s := p00 + r
				k0, k1 := p00/s, p01/s
				p00, p01, p11 = (1-k0)*p00, (1-k0)*p01, p11-k1*p01
			}
			for d := 0.0; d < poll; d++ {
				if t+d >= sc.SyncWindow && t+d < sc.Duration {
					sum += p00 + 2*d*p01 + d*d*p11 + q*d*d*d/3
					n++
				}
			}
			p00, p01, p11 = p00+2*poll*p01+poll*poll*p11+q*poll*poll*poll/3, p01+poll*p11+q*poll*poll/2, p11+q*poll
		}
		rms = append(rms, math.Sqrt(sum/n))
	}
	return Median(rms)
}
