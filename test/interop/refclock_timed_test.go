//go:build linux

package interop

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestRefclockTimed: timed itself with a reference clock, end to end. Its
// virtual clock starts 200 ms and +50 ppm off; a writer in the test sends
// chrony SOCK samples (the system time, offset 0: the system clock is the
// reference) to the socket timed listens on, once a second. timed's SOCK
// refclock is selected, the engine synchronizes, its clock comes within
// 1 ms of the system clock in 30 s and stays within 50 µs RMS, and
// `timectl sources` shows the source with its kind and socket. (The SOCK
// test against gpsd is TestRefclockSOCK; gpsd writes SOCK pulses only,
// which need a PPS device this machine does not have.)
func TestRefclockTimed(t *testing.T) {
	t.Parallel() // exact samples: the load of the NTP tests beside it does not matter
	binaries(t)
	path := filepath.Join(t.TempDir(), "chrony.ttyT0.sock")
	cfg := simulatedStart
	cfg.NoSources = true
	cfg.Extra = "refclocks:\n  - {kind: sock, path: " + path + ", delay: 1us}\n"
	tp := startTimed(t, cfg, "")

	feedSock(t, path)

	smp := tp.sample(time.Second)
	time.Sleep(syncWithin + rmsWindow)
	r := checkSync(t, "sock refclock", smp.Stop())
	if r.FirstSync < 0 || r.FirstSync > syncWithin {
		t.Errorf("not within 1 ms of the reference within %v (first at %v)", syncWithin, fmtAt(r.FirstSync))
	}
	if r.RMS > rmsLimit {
		t.Errorf("RMS offset %.1f µs over %v, want < %.0f µs", r.RMS*1e6, rmsWindow, rmsLimit*1e6)
	}
	st, err := tp.status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Engine.Sources) != 1 {
		t.Fatalf("sources %+v, want the one refclock", st.Engine.Sources)
	}
	if s := st.Engine.Sources[0]; s.Kind != "sock" || s.Address != path || s.State != "selected" {
		t.Errorf("source %+v, want the sock refclock on %s, selected", s, path)
	}
}

// feedSock sends a chrony SOCK sample to the socket at path once a second
// until the test ends: the system time with offset 0, so that the system
// clock is the reference. It keeps trying until timed has made the socket.
func feedSock(t *testing.T, path string) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conn *net.UnixConn
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				if conn != nil {
					conn.Close()
				}
				return
			case <-tick.C:
			}
			if conn == nil {
				c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
				if err != nil {
					continue // timed has not made the socket yet
				}
				conn = c
			}
			_, _ = conn.Write(refclockSockSample(time.Now(), 0, false))
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}
