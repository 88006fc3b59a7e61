package ntp

import (
	"testing"
	"time"
)

// Burst sends a request at once and the next ones two seconds apart, while
// the poll interval is a minute.
func TestClientBurst(t *testing.T) {
	srv := newFakeServer(t)
	r := newReporter(time.Minute)
	cfg := clientCfg(srv.addr())
	cfg.MinPoll, cfg.MaxPoll = 6, 6
	c, _ := startClient(t, cfg, sysTimebase{}, r)
	r.measurement(t) // the first request goes at once
	time.Sleep(100 * time.Millisecond)
	if n := srv.requests(); n != 1 {
		t.Fatalf("%d requests before the burst, want 1", n)
	}
	start := time.Now()
	c.Burst()
	c.Burst() // asked twice before it starts: one burst
	var at []time.Duration
	for range 2 {
		r.measurement(t)
		at = append(at, time.Since(start))
	}
	if at[0] > 500*time.Millisecond || at[1] < 1500*time.Millisecond || at[1] > 3*time.Second {
		t.Errorf("burst measurements after %v, want the first at once and the second about 2 s later", at)
	}
	if _, ok := c.NTSStatus(); ok {
		t.Error("NTSStatus of a client without NTS reports ok")
	}
}
