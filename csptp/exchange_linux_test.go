package csptp

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/sources"
)

// shiftedClock is a Timebase offset from the system clock by a fixed amount.
type shiftedClock time.Duration

func (c shiftedClock) Now() time.Time                   { return time.Now().Add(time.Duration(c)) }
func (c shiftedClock) FromSystem(t time.Time) time.Time { return t.Add(time.Duration(c)) }

// recorder is a sources.Reporter that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	polled   int
	measured []sources.Measurement
	fault    string
	got      chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 100)} }

func (r *recorder) Polled() { r.mu.Lock(); r.polled++; r.mu.Unlock() }
func (r *recorder) Measured(m sources.Measurement) {
	r.mu.Lock()
	r.measured = append(r.measured, m)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}
func (r *recorder) Fault(reason string)         { r.mu.Lock(); r.fault = reason; r.mu.Unlock() }
func (r *recorder) PollInterval() time.Duration { return 20 * time.Millisecond }

// waitMeasurements waits until r has n measurements or the time is up.
func (r *recorder) waitMeasurements(t *testing.T, n int) []sources.Measurement {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.measured) >= n {
			m := append([]sources.Measurement(nil), r.measured...)
			r.mu.Unlock()
			return m
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("%d measurements after 10 s, want %d", len(r.measured), n)
		}
	}
}

// startServer runs a server on an ephemeral loopback port whose clock is
// offset by shift from the system clock.
func startServer(t *testing.T, shift time.Duration, refuse bool) *Server {
	t.Helper()
	q := Quality{UTCOffset: 37, UTCOffsetValid: true, StepsRemoved: 1}
	q.ClockQuality = protocol.ClockQuality{ClockClass: 6, ClockAccuracy: protocol.ClockAccuracyMicrosecond10, OffsetScaledLogVariance: 0x4e5d}
	s, err := NewServer(ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Ephemeral: true, ClockIdentity: serverPort.ClockIdentity,
		Quality: func() Quality { return q }, RefuseAmplification: refuse, Workers: 2}, shiftedClock(shift), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// runClient runs a client against server until the test ends.
func runClient(t *testing.T, cfg ClientConfig) (*Client, *recorder) {
	t.Helper()
	c, err := NewClient(cfg, shiftedClock(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c, r
}

// TestExchange runs client and server over loopback with kernel
// timestamps; the server's clock is ahead or behind by a known amount.
func TestExchange(t *testing.T) {
	tests := []struct {
		name     string
		protocol Protocol
		shift    time.Duration
		pad      bool
		refuse   bool
	}{
		{"SPTP, server 5 ms ahead", SPTP, 5 * time.Millisecond, false, false},
		{"SPTP, server 1.234567 s behind", SPTP, -1234567 * time.Microsecond, false, false},
		{"CSPTP, server 3 ms ahead", CSPTP, 3 * time.Millisecond, false, false},
		{"SPTP padded, server refuses amplification", SPTP, 2 * time.Millisecond, true, true},
		{"CSPTP padded, server refuses amplification", CSPTP, -2 * time.Millisecond, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.shift, tt.refuse)
			c, r := runClient(t, ClientConfig{Server: s.Addr(), Protocol: tt.protocol, Pad: tt.pad, Timeout: 200 * time.Millisecond})
			ms := r.waitMeasurements(t, 5)
			// The median lies within 100 µs, every offset within 1 ms:
			// a one-step CSPTP answer carries the server's user-space
			// reading of its send time, which the scheduler can delay, and
			// on a loaded machine an SPTP transmit timestamp may come too
			// late and be read in user space too.
			var errs []time.Duration
			kernel := 0
			for _, m := range ms {
				d := (m.Offset - tt.shift).Abs()
				errs = append(errs, d)
				if d > time.Millisecond {
					t.Errorf("offset %s, want %s ± 1 ms", m.Offset, tt.shift)
				}
				if m.Delay < 0 || m.Delay > 5*time.Millisecond {
					t.Errorf("delay %s", m.Delay)
				}
				if m.Stamping == sources.StampKernel {
					kernel++
				}
				if since := time.Since(m.Local); since < 0 || since > 10*time.Second {
					t.Errorf("local time %s is %s ago", m.Local, since)
				}
				if tt.protocol == SPTP && (m.Stratum != 2 || m.RootDispersion != 10*time.Microsecond || m.Leap != sources.LeapNone) {
					t.Errorf("stratum %d, root dispersion %s, leap %s; want 2, 10µs, none", m.Stratum, m.RootDispersion, m.Leap)
				}
			}
			// A transmit timestamp that comes too late is read in user
			// space; most must come from the kernel.
			if kernel < len(ms)/2+1 {
				t.Errorf("%d of %d measurements with kernel timestamps, want most", kernel, len(ms))
			}
			slices.Sort(errs)
			if med := errs[len(errs)/2]; med > 100*time.Microsecond {
				t.Errorf("median offset error %s, want ≤ 100 µs", med)
			}
			t.Logf("%d offsets: median error %s, largest %s; first delay %s", len(errs), errs[len(errs)/2], errs[len(errs)-1], ms[0].Delay)
			st := c.Status()
			if st.State != "ok" || st.Measurements < 5 || st.LastOffset == 0 {
				t.Errorf("status %+v", st)
			}
			// The server counts an answer after sending it: the client may
			// have measured before the count went up.
			got := s.Counters().Answered[tt.protocol]
			for deadline := time.Now().Add(time.Second); got < 5 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
				got = s.Counters().Answered[tt.protocol]
			}
			if got < 5 {
				t.Errorf("server answered %d %s requests, want ≥ 5", got, tt.protocol)
			}
		})
	}
}

// TestServerDrops sends the server what it must not answer and checks
// that nothing comes back and the drop is counted by its reason.
func TestServerDrops(t *testing.T) {
	sptp, _ := (&Request{Protocol: SPTP, SequenceID: 1, Source: clientPort}).AppendBinary(nil)
	csptp, _ := (&Request{Protocol: CSPTP, SequenceID: 1, Source: clientPort}).AppendBinary(nil)
	tests := []struct {
		name   string
		refuse bool
		b      []byte
		reason string
	}{
		{"garbage", false, []byte("hello, are you a time server?"), DropMalformed},
		{"Follow_Up", false, mutate(sptp, func(b []byte) []byte { b[0] = 0x08; return b }), DropUnexpected},
		{"unpadded SPTP", true, sptp, DropTooShort},
		{"unpadded CSPTP", true, csptp, DropTooShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, 0, tt.refuse)
			conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(s.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tt.b); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, err := conn.Read(make([]byte, 100)); err == nil {
				t.Errorf("got a %d-octet answer", n)
			}
			c := s.Counters()
			if c.Dropped[tt.reason] != 1 || len(c.Answered) != 0 {
				t.Errorf("counters %+v, want one drop %q", c, tt.reason)
			}
		})
	}
}

// TestClientRejectsSpoofed answers the client's CSPTP request with a
// wrong sequence id and from a wrong address before the true answer; only
// the true answer may be measured.
func TestClientRejectsSpoofed(t *testing.T) {
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	// Another address: answers are matched on the server's address, not
	// its port (ptp4u answers from one ephemeral port per worker).
	spoofer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	const shift = 7 * time.Millisecond
	c, r := runClient(t, ClientConfig{Server: server.LocalAddr().(*net.UDPAddr).AddrPort(), Protocol: CSPTP, Timeout: time.Second})

	buf := make([]byte, 200)
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := server.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	rx := time.Now().Add(shift + 37*time.Second)
	req, err := ParseRequest(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	answer := func(seq uint16, offset time.Duration) []byte {
		q := req
		q.SequenceID = seq
		t2 := protocol.NewTimestamp(rx.Add(offset))
		t3 := protocol.NewTimestamp(time.Now().Add(shift + 37*time.Second + offset))
		b, err := appendCSPTPResponse(nil, &q, serverPort, t2, t3, defaultQuality())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A wrong sequence id from the server, the right one from elsewhere,
	// both claiming the server is an hour ahead; then the true answer.
	if _, err := server.WriteToUDPAddrPort(answer(req.SequenceID+1000, time.Hour), from); err != nil {
		t.Fatal(err)
	}
	if _, err := spoofer.WriteToUDPAddrPort(answer(req.SequenceID, time.Hour), from); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := server.WriteToUDPAddrPort(answer(req.SequenceID, 0), from); err != nil {
		t.Fatal(err)
	}
	ms := r.waitMeasurements(t, 1)
	// User-space stamps on the fake server's side: a few ms of slack.
	if d := ms[0].Offset - shift; d > 5*time.Millisecond || d < -5*time.Millisecond {
		t.Errorf("offset %s, want about %s", ms[0].Offset, shift)
	}
	st := c.Status()
	if st.Dropped[DropMismatched] != 1 || st.Dropped[DropWrongSource] != 1 {
		t.Errorf("dropped %v, want one %q and one %q", st.Dropped, DropMismatched, DropWrongSource)
	}
}
