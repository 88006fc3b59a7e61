package daemon

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/sources"
)

// truthSource measures the virtual clock against the system clock (the
// truth here) every few milliseconds, as a perfect server would.
type truthSource struct {
	name string
	v    *clock.Virtual
}

func (s truthSource) Name() string { return s.name }

func (s truthSource) Run(ctx context.Context, r sources.Reporter) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Polled()
			r.Measured(sources.Measurement{
				Local:     s.v.Now(),
				Offset:    -s.v.OffsetFromSystem(),
				Delay:     100 * time.Microsecond,
				Precision: time.Microsecond,
				Stratum:   1,
				Stamping:  sources.StampKernel,
			})
		}
	}
}

// With the real engine, measurements through the Reporter bring a virtual
// clock started 200 ms and 50 ppm off to the system clock.
func TestRealEngineSyncsVirtualClock(t *testing.T) {
	cfg := virtualConfig(200 * time.Millisecond)
	cfg.Clock.Simulate.FrequencyPPM = 50
	cfg.Engine = config.EngineConfig{MinAgreeingSources: 1, StepThreshold: time.Second, StepLimit: 3,
		PanicThreshold: 1000 * time.Second, MaxSlewRatePPM: 83333.333, MaxFrequencyPPM: 500}
	cfg.NTP.Servers = []config.NTPServer{server("192.0.2.1", 123)}
	var v *clock.Virtual
	w := newWorld()
	d, _ := testDaemon(t, cfg, "", w, nil, func(c sources.Config) engine {
		return sources.NewEngine(c, zap.NewNop())
	})
	v = d.clk.(*clock.Virtual)
	d.f.newServer = func(sc config.NTPServer, _ sources.Timebase, _ *zap.Logger) (sources.Source, error) {
		return truthSource{name: "192.0.2.1:123", v: v}, nil
	}
	start(t, d)
	deadline := time.Now().Add(20 * time.Second)
	for {
		off := v.OffsetFromSystem()
		if off < time.Millisecond && off > -time.Millisecond && d.Status().Engine.Synchronized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("virtual clock still %v from the system clock after 20 s; status %+v", off, d.Status().Engine)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
