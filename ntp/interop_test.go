package ntp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/sources"
)

// chronyd's local reference: refid 127.127.1.1.
const chronyLocalRefID = 0x7f7f0101

func TestInteropChronyd(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		stratum int
	}{{"127.0.0.1", 1}, {"::1", 3}} {
		stratum := tc.stratum
		srv := peers.StartChronyServer(t, peers.ChronyOptions{Addr: netip.MustParseAddr(tc.addr), Stratum: stratum})
		r := newReporter(time.Second / 16)
		cfg := ClientConfig{Address: srv.Addr.Addr().String(), Port: int(srv.Addr.Port()), IBurst: true, MinPoll: -4, MaxPoll: -4}
		c, _ := startClient(t, cfg, sysTimebase{}, r)
		var worst, maxDelay time.Duration
		for i := range 10 {
			m := r.measurement(t)
			worst = max(worst, m.Offset.Abs())
			maxDelay = max(maxDelay, m.Delay)
			if m.Offset.Abs() >= time.Millisecond || m.Delay >= time.Millisecond || m.Delay < 0 {
				t.Errorf("measurement %d: offset %v delay %v", i, m.Offset, m.Delay)
			}
			if int(m.Stratum) != stratum || m.RefID != chronyLocalRefID || m.Leap != sources.LeapNone {
				t.Errorf("stratum %d refid %#x leap %v; want %d %#x none", m.Stratum, m.RefID, m.Leap, stratum, chronyLocalRefID)
			}
			if i > 0 && m.Stamping != wantKernel() {
				t.Errorf("stamping %v", m.Stamping)
			}
			if m.Precision <= 0 || m.Precision > time.Millisecond {
				t.Errorf("precision %v", m.Precision)
			}
		}
		t.Logf("chronyd on %s stratum %d: worst |offset| %v, max delay %v, dropped %v", c.Name(), stratum, worst, maxDelay, c.Dropped())
		if d := c.Dropped(); len(d) != 0 {
			t.Errorf("dropped packets from chronyd: %v", d)
		}
	}
}
