//go:build linux

package interop

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/gpsd"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/sources"
)

// gpsdSystemTimebase is the system clock as the disciplined clock.
type gpsdSystemTimebase struct{}

func (gpsdSystemTimebase) Now() time.Time                   { return time.Now() }
func (gpsdSystemTimebase) FromSystem(t time.Time) time.Time { return t }

// gpsdRecorder is a sources.Reporter that records what the client reports.
type gpsdRecorder struct {
	mu       sync.Mutex
	measured []sources.Measurement
	faults   []string
}

func (r *gpsdRecorder) Polled() {}
func (r *gpsdRecorder) Measured(m sources.Measurement) {
	r.mu.Lock()
	r.measured = append(r.measured, m)
	r.mu.Unlock()
}
func (r *gpsdRecorder) Fault(reason string) {
	r.mu.Lock()
	r.faults = append(r.faults, reason)
	r.mu.Unlock()
}
func (r *gpsdRecorder) PollInterval() time.Duration { return time.Second }

func (r *gpsdRecorder) snapshot() ([]sources.Measurement, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.measured), slices.Clone(r.faults)
}

func (r *gpsdRecorder) measurements() []sources.Measurement {
	m, _ := r.snapshot()
	return m
}

// gpsdFeed is a stepped gpsfake fed one epoch of generated NMEA each
// second, at the second the epoch's sentences name: the truth the test
// compares with.
type gpsdFeed struct {
	start time.Time
	mu    sync.Mutex
	sent  map[int64]time.Time // Unix second of the epoch -> when it was fed
	// skew is how late (ns; negative: early) each epoch is fed after the
	// second it names: 0 makes gpsd right, anything else wrong by -skew.
	skew atomic.Int64
	stop context.CancelFunc
	done chan struct{}
}

// startGpsdFeed writes n epochs of NMEA starting a few seconds from now,
// starts gpsfake single-stepping on port and feeds it one epoch at each
// whole second.
func startGpsdFeed(t *testing.T, port, n int) (*peers.SteppedGpsfake, *gpsdFeed) {
	t.Helper()
	start := time.Now().Truncate(time.Second).Add(4 * time.Second)
	file := filepath.Join(t.TempDir(), "gps.nmea")
	if err := os.WriteFile(file, peers.GenerateNMEA(start, n), 0o644); err != nil {
		t.Fatal(err)
	}
	g := peers.StartGpsfakeStepped(t, file, port)
	if time.Now().After(start) {
		t.Fatalf("gpsfake took more than 4 s to start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &gpsdFeed{start: start, sent: map[int64]time.Time{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for i := range n {
			at := start.Add(time.Duration(i)*time.Second + time.Duration(f.skew.Load()))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			now := time.Now()
			if err := g.Feed(peers.NMEASentencesPerEpoch); err != nil {
				return
			}
			f.mu.Lock()
			f.sent[start.Unix()+int64(i)] = now
			f.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return g, f
}

// sentAt is when the epoch of Unix second sec was fed.
func (f *gpsdFeed) sentAt(sec int64) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.sent[sec]
	return t, ok
}

// gpsdCheck checks measurements against the truth: the reference time
// of each (Local + Offset) must be a whole second that was fed, and the
// offset must agree within the measurement's uncertainty with the epoch's
// true offset (the second it names minus when it was fed) and with zero
// (the system clock is the local clock). It logs the latency from feeding gpsfake to gpsd's
// arrival stamp, and the offsets.
func gpsdCheck(t *testing.T, what string, f *gpsdFeed, ms []sources.Measurement) {
	t.Helper()
	var lat, off []float64
	for _, m := range ms {
		ref := m.Local.Add(m.Offset)
		if ref.Nanosecond() != 0 {
			t.Errorf("%s: reference time %v is not a whole second", what, ref)
			continue
		}
		sent, ok := f.sentAt(ref.Unix())
		if !ok {
			t.Errorf("%s: reference time %v: no such epoch was fed", what, ref)
			continue
		}
		// The fed epoch's true offset from the system clock is how late it
		// was fed; the measurement must agree with it within its
		// uncertainty, and so must the offset from the system clock itself.
		truth := ref.Sub(sent)
		if math.Abs(float64(m.Offset-truth)) > float64(m.RootDispersion) || math.Abs(float64(m.Offset)) > float64(m.RootDispersion) {
			t.Errorf("%s: offset %v at %v (truth %v) is off by more than the uncertainty %v", what, m.Offset, m.Local, truth, m.RootDispersion)
		}
		if m.RootDispersion != gpsd.DefaultTOFFUncertainty || m.Stratum != 0 || m.Delay != 0 || m.RefID != 0x47505300 {
			t.Errorf("%s: measurement %+v: want root dispersion %v, stratum 0, delay 0, refid GPS", what, m, gpsd.DefaultTOFFUncertainty)
		}
		lat = append(lat, float64(m.Local.Sub(sent))/1e6)
		off = append(off, float64(m.Offset)/1e6)
	}
	if len(lat) == 0 {
		return
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	t.Logf("%s: %d measurements; latency feed → gpsd stamp: mean %.3f ms, min %.3f ms, max %.3f ms; offset: mean %.3f ms, min %.3f ms, max %.3f ms",
		what, len(lat), mean(lat), slices.Min(lat), slices.Max(lat), mean(off), slices.Min(off), slices.Max(off))
}

// TestGpsd: gpsfake (single-stepped by the test, one epoch of NMEA
// generated at the current time fed at the second it names) and
// gpsd.Client on the system clock. The client's TOFF measurements must
// name epochs the test fed, with offsets within the default uncertainty
// (the system clock is the truth; what remains is the latency through
// gpsfake, the pty and gpsd, logged). gpsfake is then stopped: the client's
// status and fault say it is disconnected and retrying; gpsfake is started
// again on the same port, and the client reconnects and measures again.
func TestGpsd(t *testing.T) {
	testenv.RequireRoot(t)
	port := peers.FreeTCPPort(t)
	const epochs = 60
	g, feed := startGpsdFeed(t, port, epochs)

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := gpsd.NewClient(gpsd.ClientConfig{Address: addr}, gpsdSystemTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := &gpsdRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, rec) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitMeasured := func(what string, from, n int, within time.Duration) []sources.Measurement {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ms, faults := rec.snapshot()
			if len(ms) >= from+n {
				return ms[from:]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d measurements within %v, want %d; faults %q; status %+v", what, len(ms)-from, within, n, faults, c.Status())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	first := waitMeasured("first run", 0, 10, 30*time.Second)
	gpsdCheck(t, "first run", feed, first)
	st := c.Status()
	if !st.Connected || st.Mode != 3 || st.Samples < 10 || st.Reason != "" {
		t.Errorf("status while measuring: %+v, want connected, mode 3, ≥ 10 samples, no reason", st)
	}
	t.Logf("status while measuring: %+v", st)

	// gpsd goes away.
	feed.stop()
	<-feed.done
	stopping := time.Now()
	g.Stop()
	stopped := time.Now()
	measuredBefore := len(first)
	var reason string
	for {
		st := c.Status()
		if !st.Connected && strings.Contains(st.Reason, "retrying in") {
			reason = st.Reason
			break
		}
		if time.Since(stopped) > 10*time.Second {
			t.Fatalf("status 10 s after gpsd stopped: %+v, want disconnected and retrying", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(reason, "gpsd at "+addr+": ") {
		t.Errorf("status reason %q, want it to name gpsd at %s", reason, addr)
	}
	_, faults := rec.snapshot()
	if !slices.ContainsFunc(faults, func(f string) bool {
		return strings.HasPrefix(f, "gpsd at "+addr+": ") && strings.Contains(f, "retrying in")
	}) {
		t.Errorf("faults %q: none says gpsd at %s is being retried", faults, addr)
	}
	t.Logf("gpsfake stopped in %v; then the status said %q; faults so far %q", stopped.Sub(stopping).Round(time.Millisecond), reason, faults)
	time.Sleep(2 * time.Second)
	st = c.Status()
	if st.Connected {
		t.Errorf("connected while gpsd is down: %+v", st)
	}
	t.Logf("while gpsd is down: %q", st.Reason)

	// gpsd comes back on the same port.
	ms, _ := rec.snapshot()
	_, feed2 := startGpsdFeed(t, port, epochs)
	restarted := time.Now()
	second := waitMeasured("after restart", len(ms), 5, 90*time.Second)
	gpsdCheck(t, "after restart", feed2, second)
	t.Logf("measuring again %v after gpsfake was restarted (%d measurements before the stop)", time.Since(restarted).Round(time.Millisecond), measuredBefore)
	if st := c.Status(); !st.Connected || st.Reason != "" {
		t.Errorf("status after reconnecting: %+v, want connected without reason", st)
	}
}
