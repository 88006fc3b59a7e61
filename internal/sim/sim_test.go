package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

func TestClockIntegrationNoWander(t *testing.T) {
	for _, tc := range []struct {
		name     string
		l0, ppm  float64
		advances []float64
	}{
		{"ahead fast", 0.1, 100, []float64{0.25, 1, 1.5, 7.3, 100, 1000.001, 10000}},
		{"behind slow", -0.5, -37.5, []float64{3, 3, 3.9, 500, 86400}},
		{"exact", 0, 0, []float64{0.1, 12345.678}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock(Oscillator{FrequencyPPM: tc.ppm}, tc.l0, rand.New(rand.NewPCG(1, 1)))
			for _, at := range tc.advances {
				c.Advance(at)
				want := tc.l0 + at*(1+tc.ppm*1e-6)
				if got := c.Reading(); math.Abs(got-want) > 1e-9 {
					t.Errorf("L(%g) = %.12f, want %.12f", at, got, want)
				}
				wantErr := tc.l0 + at*tc.ppm*1e-6
				if got := c.Error(); math.Abs(got-wantErr) > 1e-13 {
					t.Errorf("E(%g) = %.15g, want %.15g", at, got, wantErr)
				}
				if got := c.RateError(); got != tc.ppm {
					t.Errorf("rate error %g, want %g", got, tc.ppm)
				}
			}
		})
	}
}

func TestClockCorrections(t *testing.T) {
	c := NewClock(Oscillator{FrequencyPPM: 100}, 0.1, nil)
	c.Advance(10) // E = 0.1 + 1e-3
	if err := c.Step(-101 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if math.Abs(c.Error()) > 1e-12 {
		t.Fatalf("after step E = %g, want 0", c.Error())
	}
	if err := c.SetFrequency(-100); err != nil {
		t.Fatal(err)
	}
	c.Advance(1000)
	if math.Abs(c.Error()) > 1e-12 || c.RateError() != 0 {
		t.Fatalf("with F = -e: E = %g, rate %g; want 0, 0", c.Error(), c.RateError())
	}
	if err := c.SetFrequency(-90); err != nil {
		t.Fatal(err)
	}
	c.Advance(1100) // +10 ppm for 100 s = 1 ms
	if math.Abs(c.Error()-1e-3) > 1e-12 {
		t.Fatalf("E = %g, want 1e-3", c.Error())
	}
	if f, _ := c.Frequency(); f != -90 {
		t.Fatalf("Frequency() = %g", f)
	}
	if s := c.Steps(); len(s) != 1 || s[0].At != 10 || s[0].Step != -0.101 {
		t.Fatalf("steps %+v", s)
	}
	// Now reads Epoch + L, FromSystem is the identity.
	want := Epoch.Add(time.Duration(math.Round((1100 + 1e-3) * 1e9)))
	if got := c.Now(); !got.Equal(want) || !c.FromSystem(got).Equal(got) {
		t.Fatalf("Now() = %v, want %v", got, want)
	}
}

func TestClockSwingIsIntegratedExactly(t *testing.T) {
	osc := Oscillator{FrequencyPPM: 3, SwingPPM: 2, SwingPeriod: 600}
	c := NewClock(osc, 0, nil)
	// Numerical integration of the rate error, Simpson's rule.
	const n = 200000
	end := 1234.5
	h := end / n
	f := func(t float64) float64 { return osc.FrequencyPPM + osc.SwingPPM*math.Sin(2*math.Pi*t/osc.SwingPeriod) }
	sum := f(0) + f(end)
	for i := 1; i < n; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		sum += w * f(float64(i)*h)
	}
	want := sum * h / 3 * 1e-6
	for _, at := range []float64{0.3, 17, 299.99, 600, 1000.5, end} {
		c.Advance(at)
	}
	if math.Abs(c.Error()-want) > 1e-13 {
		t.Fatalf("E = %.15g, want %.15g", c.Error(), want)
	}
}

func TestWanderVariance(t *testing.T) {
	const (
		clocks = 4000
		steps  = 100
		sigma  = 1e-9
	)
	var sum, sum2 float64
	for i := range clocks {
		c := NewClock(Oscillator{Wander: sigma}, 0, rand.New(rand.NewPCG(uint64(i), 7)))
		c.Advance(steps + 0.5) // steps at 1, 2, ..., 100
		f := c.RateError() * 1e-6
		sum += f
		sum2 += f * f
	}
	mean := sum / clocks
	variance := sum2/clocks - mean*mean
	want := steps * sigma * sigma
	if r := variance / want; r < 0.9 || r > 1.1 {
		t.Fatalf("variance of the frequency after %d s = %.3g, want ≈ %.3g (ratio %.3f)", steps, variance, want, r)
	}
	if math.Abs(mean) > 4*math.Sqrt(want/clocks) {
		t.Fatalf("mean %.3g is not ≈ 0", mean)
	}
}

func TestSamplerMeans(t *testing.T) {
	const n = 200000
	for _, tc := range []struct {
		name string
		path Path
		up   bool
		want float64
		tol  float64
	}{
		{"exponential", Path{Jitter: 1}, true, 1, 0.01},
		{"pareto 3", Path{Jitter: 1, Pareto: 3}, true, 1, 0.03},
		{"pareto 2.5", Path{Jitter: 1, Pareto: 2.5}, false, 1, 0.05},
		{"base plus scaled asymmetric", Path{Delay: 100e-6, Jitter: 500e-6, Up: 0.06, Down: 1.94}, true, 100e-6 + 30e-6, 0.5e-6},
		{"down direction", Path{Delay: 100e-6, Jitter: 500e-6, Up: 0.06, Down: 1.94}, false, 100e-6 + 970e-6, 10e-6},
		{"spikes", Path{SpikeProb: 0.1, SpikeSize: 1}, true, 0.1, 0.005},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(42, 1))
			var sum float64
			for range n {
				d, _ := tc.path.draw(r, tc.up)
				sum += d
			}
			if m := sum / n; math.Abs(m-tc.want) > tc.tol {
				t.Fatalf("mean %.6g, want %.6g ± %.2g", m, tc.want, tc.tol)
			}
		})
	}
}

func TestLossRate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	p := Path{Loss: 0.3}
	lost := 0
	const n = 100000
	for range n {
		if _, ok := p.draw(r, true); !ok {
			lost++
		}
	}
	if f := float64(lost) / n; math.Abs(f-0.3) > 0.01 {
		t.Fatalf("lost %.3f, want 0.3", f)
	}
}

func TestExchangeArithmetic(t *testing.T) {
	// The client is E ahead; the path takes up and down; the server holds
	// the request for proc.
	for _, tc := range []struct {
		name                  string
		e, up, down, proc, t0 float64
	}{
		{"symmetric", 0.1, 100e-6, 100e-6, 0, 5000},
		{"behind", -0.25, 3e-3, 3e-3, 1e-4, 99999.5},
		{"asymmetric", 0, 10e-6, 190e-6, 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := exchange{
				t1: tc.t0 + tc.e,
				t2: tc.t0 + tc.up,
				t3: tc.t0 + tc.up + tc.proc,
				t4: tc.t0 + tc.up + tc.proc + tc.down + tc.e,
			}
			wantOff := -tc.e + (tc.up-tc.down)/2
			if got := x.offset(); math.Abs(got-wantOff) > 1e-11 {
				t.Errorf("offset %.12g, want %.12g", got, wantOff)
			}
			if got := x.delay(); math.Abs(got-(tc.up+tc.down)) > 1e-11 {
				t.Errorf("delay %.12g, want %.12g", got, tc.up+tc.down)
			}
			if got := x.local(); math.Abs(got-(x.t1+x.t4)/2) > 1e-11 {
				t.Errorf("local %.12g", got)
			}
		})
	}
}

// recorder is an engine that records what it is given and never corrects.
type recorder struct {
	added    map[string]sources.SourceOptions
	polled   map[string][]time.Time
	measured map[string][]sources.Measurement
	updates  int
	poll     time.Duration
}

func newRecorder(poll time.Duration) *recorder {
	return &recorder{added: map[string]sources.SourceOptions{}, polled: map[string][]time.Time{},
		measured: map[string][]sources.Measurement{}, poll: poll}
}

func (r *recorder) AddSource(name string, o sources.SourceOptions) error {
	r.added[name] = o
	return nil
}
func (r *recorder) Polled(name string, now time.Time) { r.polled[name] = append(r.polled[name], now) }
func (r *recorder) Measured(name string, m sources.Measurement) {
	r.measured[name] = append(r.measured[name], m)
}
func (r *recorder) PollInterval(string) time.Duration { return r.poll }
func (r *recorder) Update(time.Time) sources.Correction {
	r.updates++
	return sources.Correction{}
}
func (r *recorder) Status(time.Time) sources.Status { return sources.Status{} }

func TestRunMeasuresLikeAClient(t *testing.T) {
	srv := server(1)
	srv.Path = Path{Delay: 250e-6} // perfect, symmetric
	srv.Offset = 0.02
	srv.IBurst = true
	sc := &Scenario{Name: "t", Duration: 100, InitialOffset: 0.1, Servers: []Server{srv}}
	rec := newRecorder(16 * time.Second)
	res, err := Run(sc, Options{Seed: 1, NewEngine: func(sources.Config, *zap.Logger) Engine { return rec }})
	if err != nil {
		t.Fatal(err)
	}
	if o := rec.added[srv.Name]; o.Kind != "ntp" || o.MinPoll != 6 || o.MaxPoll != 10 || o.Address != srv.Name {
		t.Errorf("options %+v", o)
	}
	// Burst at 0, 2, 4, 6, then every 16 s: 22, 38, 54, 70, 86 (102 > 100).
	wantSends := []float64{0, 2, 4, 6, 22, 38, 54, 70, 86}
	p := rec.polled[srv.Name]
	if len(p) != len(wantSends) {
		t.Fatalf("%d polls, want %d", len(p), len(wantSends))
	}
	for i, at := range p {
		want := Epoch.Add(time.Duration((wantSends[i] + 0.1) * 1e9))
		if d := at.Sub(want); d < -time.Nanosecond || d > time.Nanosecond {
			t.Errorf("poll %d at %v, want %v", i, at, want)
		}
	}
	ms := rec.measured[srv.Name]
	if len(ms) != len(wantSends) || res.Responses != len(ms) || res.Polls != len(p) {
		t.Fatalf("%d measurements, result %+v", len(ms), res)
	}
	for i, m := range ms {
		// The clock is 0.1 ahead, the server 0.02 ahead: offset -0.08.
		if m.Offset != -80*time.Millisecond || m.Delay != 500*time.Microsecond {
			t.Errorf("measurement %d: offset %v delay %v", i, m.Offset, m.Delay)
		}
		wantLocal := Epoch.Add(time.Duration((wantSends[i] + 0.1 + 250e-6) * 1e9))
		if d := m.Local.Sub(wantLocal); d < -time.Nanosecond || d > time.Nanosecond {
			t.Errorf("measurement %d: local %v, want %v", i, m.Local, wantLocal)
		}
		if m.Stratum != 1 || m.Precision != time.Microsecond || m.Stamping != sources.StampKernel {
			t.Errorf("measurement %d: %+v", i, m)
		}
	}
	// Update once a second (0..100) and after every measurement.
	if want := 101 + len(ms); rec.updates != want || res.Updates != want {
		t.Errorf("%d updates, want %d", rec.updates, want)
	}
	// No corrections: the error is the start offset throughout.
	if math.Abs(res.RMSOffset-0.1) > 1e-12 || res.MaxOffset != 0.1 || !math.IsInf(res.SyncTime, 1) {
		t.Errorf("result %+v", res)
	}
}

func TestRunLossAndOutage(t *testing.T) {
	srv := server(1)
	srv.Path.Loss = 0.3
	srv.Down = []Interval{{1000, 2000}}
	sc := &Scenario{Name: "t", Duration: 100000, Servers: []Server{srv}}
	rec := newRecorder(8 * time.Second)
	res, err := Run(sc, Options{Seed: 9, NewEngine: func(sources.Config, *zap.Logger) Engine { return rec }})
	if err != nil {
		t.Fatal(err)
	}
	frac := float64(res.Responses) / float64(res.Polls)
	// 0.7² of the exchanges complete, minus the outage (1% of the time).
	if want := 0.49 * 0.99; math.Abs(frac-want) > 0.02 {
		t.Errorf("%d of %d answered (%.3f), want ≈ %.3f", res.Responses, res.Polls, frac, want)
	}
	for _, m := range rec.measured[srv.Name] {
		if l := m.Local.Sub(Epoch).Seconds(); l >= 1000 && l < 2000 {
			t.Fatalf("measurement during the outage at %g", l)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() *Scenario { return chronyModel("v", "") }
	for _, tc := range []struct {
		name   string
		change func(*Scenario)
		want   string
	}{
		{"no servers", func(s *Scenario) { s.Servers = nil }, "no servers"},
		{"pareto", func(s *Scenario) { s.Servers[0].Path.Pareto = 1 }, "pareto"},
		{"poll", func(s *Scenario) { s.Servers[0].MinPoll = 11 }, "minpoll"},
		{"twice", func(s *Scenario) { s.Servers = append(s.Servers, s.Servers[0]) }, "twice"},
		{"loss", func(s *Scenario) { s.Servers[0].Path.Loss = 2 }, "probabilities"},
		{"duration", func(s *Scenario) { s.Duration = 0 }, "duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.change(s)
			_, err := Run(s, Options{NewEngine: func(sources.Config, *zap.Logger) Engine { return newRecorder(time.Second) }})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestMedianAndFormat(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1, math.Inf(1), math.Inf(1), 2}, math.Inf(1)},
	} {
		if got := Median(tc.v); got != tc.want {
			t.Errorf("Median(%v) = %g, want %g", tc.v, got, tc.want)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
	for v, want := range map[float64]string{12.345: "12.3 µs", math.Inf(1): "never", 123456: "123456 µs"} {
		if got := FormatValue(v, "µs"); got != want {
			t.Errorf("FormatValue(%g) = %q, want %q", v, got, want)
		}
	}
}

func TestScenariosAreValid(t *testing.T) {
	names := map[string]bool{}
	for _, sc := range Scenarios() {
		if err := sc.validate(); err != nil {
			t.Errorf("scenario %s: %v", sc.Name, err)
		}
		if names[sc.Name] {
			t.Errorf("scenario %s twice", sc.Name)
		}
		names[sc.Name] = true
		if len(sc.Checks) == 0 {
			t.Errorf("scenario %s has no checks", sc.Name)
		}
	}
	if len(names) != 11 {
		t.Errorf("%d scenarios, want 11 (1-5, 6a, 6b, 7-10)", len(names))
	}
}

// A source sampled fast (as a PTP port is, 8 to 128 times a second) on a
// quiet path: the filter keeps what left its window (128 samples are two
// seconds at 64 Hz), so offset and frequency come out far better than one
// window of data could give.
func TestFastSource(t *testing.T) {
	sc := chronyModel("fast", "64 Hz source")
	sc.Duration = 600
	sc.Servers[0].Path = Path{Delay: 20e-6, Jitter: 2e-6}
	sc.Servers[0].MinPoll, sc.Servers[0].MaxPoll = -6, -6
	var rms, freq []float64
	for seed := range 3 {
		r, err := Run(sc, Options{Seed: uint64(seed)})
		if err != nil {
			t.Fatal(err)
		}
		rms = append(rms, r.RMSOffset)
		freq = append(freq, r.RMSFreq)
	}
	t.Logf("64 Hz, 2 µs jitter: RMS offset %.0f ns, RMS frequency error %.4f ppm (median of 3)", Median(rms)*1e9, Median(freq))
	if Median(rms) > 60e-9 || Median(freq) > 0.02 {
		t.Errorf("RMS offset %.0f ns, frequency %.4f ppm; want at most 60 ns and 0.02 ppm", Median(rms)*1e9, Median(freq))
	}
}

// A source polled twice a second from a loaded host: 30% of the packets
// each way wait 1 ms (a thread that waited for a CPU). From 200 ms off
// the clock slews at up to a twelfth at first, so the delays the clock
// reads are that much off too. Every seed must end within a few µs: a
// clean sample's band must not widen with the delayed ones, an asymmetry
// learned from the short delays must not move the delayed samples, and a
// delay read during the slew is taken in the oscillator's time.
func TestDelayBursts(t *testing.T) {
	for _, start := range []float64{0, 0.2} {
		sc := &Scenario{Name: "bursts", Duration: 33, SyncWindow: 13, InitialOffset: start,
			Oscillator: Oscillator{FrequencyPPM: 50, Wander: 1e-9},
			Servers: []Server{{Name: "s", Path: Path{Delay: 4e-6, Jitter: 1e-6, SpikeProb: 0.3, SpikeSize: 1e-3},
				MinPoll: -1, MaxPoll: -1, Precision: 1e-6, Stratum: 1}}}
		var rms []float64
		var bad []string
		for seed := range uint64(100) {
			r, err := Run(sc, Options{Seed: seed + 1})
			if err != nil {
				t.Fatal(err)
			}
			rms = append(rms, r.RMSOffset)
			if r.RMSOffset > 20e-6 {
				bad = append(bad, fmt.Sprintf("seed %d: %.0f µs RMS, max %.0f µs", seed+1, r.RMSOffset*1e6, r.MaxOffset*1e6))
			}
		}
		t.Logf("from %g s off: RMS offset median %.2f µs over 100 seeds", start, Median(rms)*1e6)
		if len(bad) > 0 {
			t.Errorf("from %g s off, %d of 100 seeds over 20 µs RMS:\n%s", start, len(bad), strings.Join(bad, "\n"))
		}
	}
}
