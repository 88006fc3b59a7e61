package daemon

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/phc"
	"github.com/timed-project/timed/phc/phctest"
	"github.com/timed-project/timed/ptp"
	"github.com/timed-project/timed/sources"
)

// phcFinder maps interfaces to PHC paths; a missing one has no PHC.
func phcFinder(m map[string]string) func(string) (string, error) {
	return func(ifname string) (string, error) {
		if p, ok := m[ifname]; ok {
			return p, nil
		}
		return "", errors.New("phc: " + ifname + " has no PTP hardware clock")
	}
}

func TestChoosePHC(t *testing.T) {
	find := phcFinder(map[string]string{"eth0": "/dev/ptp0", "eth1": "/dev/ptp0", "eth2": "/dev/ptp1"})
	tests := []struct {
		name     string
		ifaces   []string
		want     string
		wantErr  string   // a config error naming both ports
		portErrs []string // interfaces that cannot run
	}{
		{"one port", []string{"eth0"}, "/dev/ptp0", "", nil},
		{"two ports, one PHC", []string{"eth0", "eth1"}, "/dev/ptp0", "", nil},
		{"two PHCs", []string{"eth0", "eth2"}, "", "ports eth0 and eth2 use different PTP hardware clocks (/dev/ptp0 and /dev/ptp1)", nil},
		{"no PHC on one", []string{"veth0", "eth1"}, "/dev/ptp0", "", []string{"veth0"}},
		{"no PHC at all", []string{"veth0"}, "", "", []string{"veth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, portErrs, err := choosePHC(tt.ifaces, find)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "boundary clock") {
					t.Fatalf("err = %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if path != tt.want {
				t.Errorf("path %q, want %q", path, tt.want)
			}
			if len(portErrs) != len(tt.portErrs) {
				t.Errorf("port errors %v, want for %v", portErrs, tt.portErrs)
			}
			for _, ifname := range tt.portErrs {
				perr := portErrs[ifname]
				if !errors.Is(perr, netstamp.ErrNoHardwareStamps) || !strings.Contains(perr.Error(), "timestamping: software") ||
					!strings.Contains(perr.Error(), ifname) {
					t.Errorf("%s: %v, want an error wrapping ErrNoHardwareStamps that names it and says what to do", ifname, perr)
				}
			}
		})
	}
}

// hardwareFactories are test factories with a virtual system clock sys
// and the PHC dev behind every interface in phcs.
func hardwareFactories(t *testing.T, sys clock.Clock, phcs map[string]string, dev phc.Device,
	newServer func(config.NTPServer, sources.Timebase, *zap.Logger) (sources.Source, error)) factories {
	return factories{
		newEngine: func(c sources.Config, log *zap.Logger) engine { return sources.NewEngine(c, log) },
		newClock: func(config.ClockConfig, *zap.Logger) (clock.Clock, bool, error) {
			return sys, false, nil
		},
		newServer: newServer,
		newPool:   func(config.NTPPool, sources.Timebase, *zap.Logger) poolRunner { return nil },
		listenControl: func(string, *zap.Logger) (net.Listener, string, error) {
			p := filepath.Join(t.TempDir(), "timed.sock")
			return mustListenUnix(t, p), p, nil
		},
		findPHC: phcFinder(phcs),
		openPHC: func(path string) (phc.Device, error) {
			if dev == nil {
				return nil, errors.New("no such device " + path)
			}
			return dev, nil
		},
	}
}

func hardwareConfig(ifaces ...string) *config.Config {
	cfg := &config.Config{
		Clock: config.ClockConfig{Driver: "virtual"},
		Engine: config.EngineConfig{MinAgreeingSources: 1, StepThreshold: 100 * time.Millisecond, StepLimit: 3,
			PanicThreshold: 1000 * time.Second, MaxSlewRatePPM: 500, MaxFrequencyPPM: 500},
	}
	for _, ifname := range ifaces {
		cfg.PTP.Ports = append(cfg.PTP.Ports, config.PTPPort{Interface: ifname, Transport: "udp4", DelayMechanism: "e2e",
			Role: "slave_only", Timestamping: "hardware", AnnounceReceiptTimeout: 3})
	}
	return cfg
}

// Two hardware ports on different PHCs are refused when the daemon is
// made; one port without a PHC leaves the clock alone and is reported.
func TestHardwarePortsConfig(t *testing.T) {
	phcs := map[string]string{"eth0": "/dev/ptp0", "eth1": "/dev/ptp1"}
	sys := clock.NewVirtual(clock.VirtualOptions{})
	_, err := newDaemon(hardwareConfig("eth0", "eth1"), "", zaptest.NewLogger(t), hardwareFactories(t, sys, phcs, nil, nil))
	if err == nil || !strings.Contains(err.Error(), "different PTP hardware clocks") {
		t.Errorf("two PHCs: %v, want a config error", err)
	}

	d, err := newDaemon(hardwareConfig("veth0"), "", zaptest.NewLogger(t), hardwareFactories(t, sys, phcs, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.clk != sys {
		t.Errorf("without a PHC the clock is %s, want the virtual clock", d.clk.Name())
	}
	st := d.PTP()
	if len(st.Ports) != 1 || st.Ports[0].State != "FAULTY" || !strings.Contains(st.Ports[0].Reason, "timestamping: software") {
		t.Errorf("timectl ptp: %+v, want the port FAULTY saying what to do", st.Ports)
	}
	if info := d.Status().Clock; info.Device != "" || info.Tie != nil {
		t.Errorf("clock info %+v, want no PHC", info)
	}
}

// phcTruthSource measures the PHC's UTC time against true time (time.Now)
// every 20 ms, as a perfect server would: the daemon converts its system
// clock stamps through the PHC driver, so the offset is true − PHC.
type phcTruthSource struct {
	sim *phctest.Sim
	clk func() clock.Clock
}

func (phcTruthSource) Name() string { return "192.0.2.1:123" }

func (s phcTruthSource) Run(ctx context.Context, r sources.Reporter) error {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			p := s.clk().(*clock.PHC)
			r.Polled()
			r.Measured(sources.Measurement{
				Local:     p.Now(),
				Offset:    -(s.sim.TrueOffset() - p.UTCOffset()),
				Delay:     100 * time.Microsecond,
				Precision: time.Microsecond,
				Stratum:   1,
				Stamping:  sources.StampKernel,
			})
		}
	}
}

// With a hardware PTP port the engine's clock is the port's PHC (here a
// simulated one, 300 ms and 30 ppm off), a source's measurements steer
// it, and the tie brings the system clock (a virtual one, 3 ms and
// −20 ppm off) within a few µs of the PHC.
func TestPHCDisciplinedAndTied(t *testing.T) {
	sys := clock.NewVirtual(clock.VirtualOptions{Offset: 3 * time.Millisecond, FrequencyPPM: -20})
	sim, err := phctest.NewSim(phctest.Options{Name: "/dev/ptp7", Now: time.Now, System: sys.Now,
		Offset: 37*time.Second + 300*time.Millisecond, FrequencyPPB: 30_000,
		ReadDelay: time.Microsecond, ReadJitter: 200 * time.Nanosecond, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu sync.Mutex
		d  *Daemon
	)
	getClk := func() clock.Clock { mu.Lock(); defer mu.Unlock(); return d.clk }
	cfg := hardwareConfig("sim0")
	cfg.NTP.Servers = []config.NTPServer{server("192.0.2.1", 123)}
	f := hardwareFactories(t, sys, map[string]string{"sim0": "/dev/ptp7"}, sim,
		func(config.NTPServer, sources.Timebase, *zap.Logger) (sources.Source, error) {
			return phcTruthSource{sim: sim, clk: getClk}, nil
		})
	mu.Lock()
	d, err = newDaemon(cfg, "", zap.NewNop(), f)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := d.clk.(*clock.PHC)
	if !ok {
		t.Fatalf("the engine's clock is %T, want the PHC driver", d.clk)
	}
	// The hardware port's timebase converts PHC readings.
	if _, err := ptp.NewSource(ptpSourceConfig(cfg.PTP, cfg.PTP.Ports[0]), d.clk, nil); err != nil {
		t.Errorf("a hardware port on the PHC driver: %v", err)
	}
	start(t, d)
	utcOff := p.UTCOffset()

	// The source steers the PHC to true time.
	deadline := time.Now().Add(30 * time.Second)
	for {
		off := sim.TrueOffset() - utcOff
		if off.Abs() < 100*time.Microsecond && d.Status().Engine.Synchronized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PHC still %v from true time after 30 s; status %+v", off, d.Status().Engine)
		}
		time.Sleep(50 * time.Millisecond)
	}
	steps, adjusts := sim.Counts()
	if steps < 1 || adjusts < 2 {
		t.Errorf("PHC stepped %d times and adjusted %d times, want the engine to step and steer it", steps, adjusts)
	}

	// The tie keeps the system clock on the PHC: 40 more tie updates
	// (5 s at 8 Hz), then every figure within a few µs.
	first := d.Status().Clock.Tie.Updates
	for d.Status().Clock.Tie.Updates < first+40 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("tie: %+v, no 40 updates", d.Status().Clock.Tie)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each sample is the median of 5 comparisons, so that a test
	// goroutine preempted between its two clock readings does not count.
	var worst time.Duration
	var samples []time.Duration
	var tieFreqs []float64
	for range 16 {
		var reads []time.Duration
		for range 5 {
			m, err := sim.Offset() // PHC − system clock
			if err != nil {
				t.Fatal(err)
			}
			reads = append(reads, m.Offset-utcOff)
		}
		slices.Sort(reads)
		worst = max(worst, reads[2].Abs())
		samples = append(samples, reads[2].Abs())
		if tie := d.Status().Clock.Tie; tie != nil {
			tieFreqs = append(tieFreqs, tie.Frequency)
		}
		time.Sleep(125 * time.Millisecond)
	}
	slices.Sort(samples)
	slices.Sort(tieFreqs)
	median := samples[len(samples)/2]
	// All but the two worst: a tie update that comes late on a loaded
	// machine leaves its proportional correction on for longer than the
	// interval it was meant for, and the clock overshoots until the next
	// updates take it back (CI: 67 µs once, with the tie's frequency at
	// −70 ppm at that moment).
	third := samples[len(samples)-3]
	info := d.Status().Clock
	t.Logf("PHC %v from true time, frequency correction %+.3f ppm; system clock from the PHC over 2 s: median %v, third worst %v, worst %v; tie %+v",
		sim.TrueOffset()-utcOff, info.Frequency, median, third, worst, *info.Tie)
	// The median says where the tie holds the clock; the third worst also
	// holds the test's own preemption between two clock readings, which a
	// loaded CI machine stretches (12 µs seen once).
	if median > 5*time.Microsecond || third > 50*time.Microsecond {
		t.Errorf("the tied system clock is %v (median) and %v (third worst) from the PHC, want < 5 µs and < 50 µs", median, third)
	}
	if info.Driver != "phc" || info.Device != "/dev/ptp7" || info.Tie == nil || info.Tie.Clock != "virtual" ||
		info.Tie.Waiting || info.Tie.Steps < 1 || len(tieFreqs) != len(samples) {
		t.Errorf("status clock %+v tie %+v", info, info.Tie)
	}
	// The PHC runs at true time's rate once disciplined: the tie corrects
	// the virtual clock's own −20 ppm. Its last correction also holds the
	// proportional part of the last measurement (0.6 × x / 125 ms: 5 ppm
	// for an x of 1 µs), hence the wide bound.
	if f := tieFreqs[len(tieFreqs)/2]; f < 20-10 || f > 20+10 {
		t.Errorf("tied clock's frequency correction %+.3f ppm (median of %d readings), want about +20 ppm", f, len(tieFreqs))
	}
	if f := info.Frequency; f < -30-2 || f > -30+2 {
		t.Errorf("PHC's frequency correction %+.3f ppm, want about −30 ppm", f)
	}
}
