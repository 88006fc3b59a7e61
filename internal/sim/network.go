package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/timed-project/timed/sources"
)

// Path is the network between the client and one server. Every packet in
// each direction draws its delay independently:
//
//	delay = Delay + Jitter·m·X (+ SpikeSize with probability SpikeProb)
//
// where m is Up (client→server) or Down (server→client) and X is
// Exponential(1), or, when Pareto > 1, a Pareto (Lomax) variate of that shape
// scaled to mean 1: X = (Pareto−1)·(U^(−1/Pareto) − 1).
type Path struct {
	Delay  float64 // base one-way delay, s
	Jitter float64 // jitter scale, s
	Pareto float64 // shape of the Pareto jitter (> 1); 0: exponential
	// Up and Down multiply the jitter of each direction (asymmetry); zero
	// means 1.
	Up, Down float64
	// Loss is the probability that a packet is lost, per packet and
	// direction.
	Loss float64
	// SpikeProb is the probability that a packet is delayed by SpikeSize
	// more (per packet and direction).
	SpikeProb float64
	SpikeSize float64
}

func (p Path) validate() error {
	switch {
	case p.Delay < 0 || p.Jitter < 0 || p.SpikeSize < 0 || p.Up < 0 || p.Down < 0:
		return errors.New("negative delay, jitter, multiplier or spike")
	case p.Pareto != 0 && p.Pareto <= 1:
		return fmt.Errorf("pareto shape %g must be > 1 (finite mean)", p.Pareto)
	case p.Loss < 0 || p.Loss > 1 || p.SpikeProb < 0 || p.SpikeProb > 1:
		return errors.New("probabilities must lie in [0, 1]")
	}
	return nil
}

// jitterSample draws X (mean 1).
func (p Path) jitterSample(r *rand.Rand) float64 {
	if p.Pareto > 1 {
		return paretoUnit(r, p.Pareto)
	}
	return r.ExpFloat64()
}

// paretoUnit draws a Lomax (Pareto type II) variate of the given shape,
// scaled to mean 1.
func paretoUnit(r *rand.Rand, shape float64) float64 {
	u := 1 - r.Float64() // (0, 1]
	return (shape - 1) * (math.Pow(u, -1/shape) - 1)
}

// draw returns one packet's delay, or ok=false when it is lost. up selects
// the client→server direction. The random numbers drawn do not depend on the
// outcome, so one lost packet does not shift the rest of the sequence.
func (p Path) draw(r *rand.Rand, up bool) (delay float64, ok bool) {
	m := p.Down
	if up {
		m = p.Up
	}
	if m == 0 {
		m = 1
	}
	x := p.jitterSample(r)
	lost := r.Float64() < p.Loss
	spike := r.Float64() < p.SpikeProb
	delay = p.Delay + p.Jitter*m*x
	if spike {
		delay += p.SpikeSize
	}
	return delay, !lost
}

// Interval is a half-open span [From, To) of true time, in seconds.
type Interval struct{ From, To float64 }

func (iv Interval) contains(t float64) bool { return t >= iv.From && t < iv.To }

// Server is one simulated NTP server and the path to it.
type Server struct {
	// Name identifies it to the engine (and is its Address).
	Name string
	Path Path
	// Offset is a fixed error of its clock: its time is t + Offset.
	Offset float64
	// Noise is the standard deviation of a Gaussian error added to its
	// clock at each exchange (the same draw for its receive and transmit
	// timestamps), s.
	Noise float64
	// At true time StepAt its clock jumps by StepBy (when StepBy ≠ 0).
	StepAt, StepBy float64
	// Down lists spans during which requests get no response.
	Down []Interval
	// Processing is T3 − T2, s.
	Processing float64
	// What it announces.
	Stratum        uint8
	RefID          uint32
	RootDelay      float64
	RootDispersion float64
	Leap           sources.Leap
	// Precision is the timestamps' resolution both ends combined, s.
	Precision float64
	// Client side: iburst and poll limits (log2 s), and the selection
	// options.
	IBurst           bool
	MinPoll, MaxPoll int
	Prefer, NoSelect bool
	Trust, Require   bool
	// Authenticated: its measurements are authenticated (NTS).
	// BoundedByAuthenticated: the client uses it only while it agrees with
	// the authenticated servers.
	Authenticated, BoundedByAuthenticated bool
}

// clockAt is the server's clock at true time t, before noise.
func (s *Server) clockAt(t float64) float64 {
	c := t + s.Offset
	if s.StepBy != 0 && t >= s.StepAt {
		c += s.StepBy
	}
	return c
}

func (s *Server) down(t float64) bool {
	for _, iv := range s.Down {
		if iv.contains(t) {
			return true
		}
	}
	return false
}

func (s *Server) options() sources.SourceOptions {
	return sources.SourceOptions{
		Kind: "ntp", Address: s.Name,
		MinPoll: s.MinPoll, MaxPoll: s.MaxPoll,
		Prefer: s.Prefer, NoSelect: s.NoSelect, Trust: s.Trust, Require: s.Require,
		BoundedByAuthenticated: s.BoundedByAuthenticated,
	}
}

func (s *Server) validate() error {
	if s.Name == "" {
		return errors.New("server without a name")
	}
	if err := s.Path.validate(); err != nil {
		return fmt.Errorf("server %s: path: %w", s.Name, err)
	}
	if s.Noise < 0 || s.Processing < 0 || s.Precision < 0 {
		return fmt.Errorf("server %s: negative noise, processing or precision", s.Name)
	}
	if s.MinPoll > s.MaxPoll {
		return fmt.Errorf("server %s: minpoll %d > maxpoll %d", s.Name, s.MinPoll, s.MaxPoll)
	}
	return nil
}

// exchange holds the four timestamps of one client/server exchange, as
// seconds since Epoch.
type exchange struct {
	t1, t2, t3, t4 float64
}

// offset and delay as an NTP client computes them.
func (x exchange) offset() float64 { return ((x.t2 - x.t1) + (x.t3 - x.t4)) / 2 }
func (x exchange) delay() float64  { return (x.t4 - x.t1) - (x.t3 - x.t2) }
func (x exchange) local() float64  { return x.t1 + (x.t4-x.t1)/2 }
