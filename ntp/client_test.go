package ntp

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/sources"
)

// sysTimebase is the system clock, optionally shifted (to pretend it is
// another year).
type sysTimebase struct{ shift time.Duration }

func (s sysTimebase) Now() time.Time                   { return time.Now().Add(s.shift) }
func (s sysTimebase) FromSystem(t time.Time) time.Time { return t.Add(s.shift) }

// reporter records what a client reports.
type reporter struct {
	interval time.Duration
	mu       sync.Mutex
	polled   []time.Time
	meas     chan sources.Measurement
	faults   chan string
}

func newReporter(interval time.Duration) *reporter {
	return &reporter{interval: interval, meas: make(chan sources.Measurement, 100), faults: make(chan string, 100)}
}

func (r *reporter) Polled() {
	r.mu.Lock()
	r.polled = append(r.polled, time.Now())
	r.mu.Unlock()
}
func (r *reporter) Measured(m sources.Measurement) { r.meas <- m }
func (r *reporter) Fault(s string)                 { r.faults <- s }
func (r *reporter) PollInterval() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.interval
}
func (r *reporter) setInterval(d time.Duration) {
	r.mu.Lock()
	r.interval = d
	r.mu.Unlock()
}
func (r *reporter) polls() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.polled...)
}

func (r *reporter) measurement(t *testing.T) sources.Measurement {
	t.Helper()
	select {
	case m := <-r.meas:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no measurement")
	}
	return sources.Measurement{}
}

func (r *reporter) fault(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-r.faults:
			if f == want {
				return
			}
		case <-deadline:
			t.Fatalf("no fault %q", want)
		}
	}
}

// fakeServer is an NTP server on 127.0.0.1 whose answers a test shapes.
type fakeServer struct {
	conn  *net.UDPConn
	other *net.UDPConn // a second socket, for replies from the wrong port
	shift time.Duration
	// respond returns the packets to send for a request; nil means the
	// standard good answer.
	mu      sync.Mutex
	respond func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort)
	reqs    int
}

func newFakeServer(t *testing.T) *fakeServer { t.Helper(); return newShiftedServer(t, 0) }

// newShiftedServer serves time shift ahead of the system clock.
func newShiftedServer(t *testing.T, shift time.Duration) *fakeServer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	o, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{conn: c, other: o, shift: shift}
	t.Cleanup(func() { c.Close(); o.Close() })
	go s.serve()
	return s
}

func (s *fakeServer) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (s *fakeServer) setRespond(f func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort)) {
	s.mu.Lock()
	s.respond = f
	s.mu.Unlock()
}

func (s *fakeServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs
}

func (s *fakeServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		rx := time.Now().Add(s.shift)
		p, err := ParsePacket(buf[:n])
		if err != nil || p.Mode != ModeClient {
			continue
		}
		s.mu.Lock()
		s.reqs++
		f := s.respond
		s.mu.Unlock()
		if f == nil {
			f = goodAnswer
		}
		f(s, p.Header, rx, from)
	}
}

func (s *fakeServer) answer(req Header, rx time.Time) Header {
	return Header{
		Leap: sources.LeapNone, Version: 4, Mode: ModeServer, Stratum: 2, Poll: req.Poll, Precision: -20,
		RootDelay: ShortOf(3 * time.Millisecond), RootDispersion: ShortOf(5 * time.Millisecond), RefID: 0xc0000201,
		Reference: TimestampOf(rx.Add(-time.Minute)), Origin: req.Transmit, Receive: TimestampOf(rx),
		Transmit: TimestampOf(time.Now().Add(s.shift)),
	}
}

func (s *fakeServer) send(h Header, to netip.AddrPort, fromOther bool) {
	b, _ := h.AppendBinary(nil)
	c := s.conn
	if fromOther {
		c = s.other
	}
	c.WriteToUDPAddrPort(b, to)
}

func goodAnswer(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
	s.send(s.answer(req, rx), from, false)
}

func startClient(t *testing.T, cfg ClientConfig, tb sources.Timebase, r *reporter) (*Client, chan error) {
	t.Helper()
	c, err := NewClient(cfg, tb, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return c, done
}

func clientCfg(a netip.AddrPort) ClientConfig {
	return ClientConfig{Address: a.Addr().String(), Port: int(a.Port()), MinPoll: -6, MaxPoll: -6}
}

const fastPoll = time.Second / 64

func wantKernel() sources.Stamping {
	if runtime.GOOS == "linux" {
		return sources.StampKernel
	}
	return sources.StampUser
}

func TestClientExchange(t *testing.T) {
	srv := newFakeServer(t)
	r := newReporter(fastPoll)
	c, _ := startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	if c.Name() != srv.addr().String() {
		t.Errorf("Name() = %q, want %q", c.Name(), srv.addr())
	}
	for i := range 5 {
		before := time.Now()
		m := r.measurement(t)
		// Server and client share the system clock, so the offset can be
		// no larger than half the delay (plus the timestamps' resolution).
		if m.Offset.Abs() > m.Delay/2+50*time.Microsecond || m.Delay < 0 || m.Delay > 50*time.Millisecond {
			t.Errorf("measurement %d: offset %v delay %v", i, m.Offset, m.Delay)
		}
		if m.Local.Before(before.Add(-100*time.Millisecond)) || m.Local.After(time.Now()) {
			t.Errorf("local time %v not around now", m.Local)
		}
		if m.Stratum != 2 || m.RefID != 0xc0000201 || m.Leap != sources.LeapNone {
			t.Errorf("stratum %d refid %#x leap %v", m.Stratum, m.RefID, m.Leap)
		}
		if (m.RootDelay-3*time.Millisecond).Abs() > 20*time.Microsecond || (m.RootDispersion-5*time.Millisecond).Abs() > 20*time.Microsecond {
			t.Errorf("root delay %v dispersion %v", m.RootDelay, m.RootDispersion)
		}
		if m.Precision < 953*time.Nanosecond || m.Precision > 100*time.Microsecond {
			t.Errorf("precision %v", m.Precision)
		}
		if i > 0 && m.Stamping != wantKernel() { // the very first may lack a stamp
			t.Errorf("stamping %v, want %v", m.Stamping, wantKernel())
		}
	}
	if n := len(r.polls()); n < 5 {
		t.Errorf("Polled called %d times for 5 measurements", n)
	}
	if c.Unreachable() {
		t.Error("unreachable while answering")
	}
}

// A server one second ahead, with the local clock just before the NTP era
// rollover of 2036-02-07 and the server just after it.
func TestClientOffsetAcrossEra(t *testing.T) {
	era1 := time.Date(2036, 2, 7, 6, 28, 16, 0, time.UTC)
	shift := time.Until(era1.Add(-500 * time.Millisecond))
	srv := newShiftedServer(t, shift+time.Second)
	r := newReporter(fastPoll)
	startClient(t, clientCfg(srv.addr()), sysTimebase{shift: shift}, r)
	m := r.measurement(t)
	if (m.Offset - time.Second).Abs() > time.Millisecond {
		t.Errorf("offset %v, want 1s", m.Offset)
	}
	if m.Local.Year() != 2036 {
		t.Errorf("local time %v", m.Local)
	}
	if m.Delay > 5*time.Millisecond {
		t.Errorf("delay %v", m.Delay)
	}
}

func TestClientRejectsSpoofing(t *testing.T) {
	srv := newFakeServer(t)
	srv.setRespond(func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
		forged := s.answer(req, rx)
		forged.Origin ^= 1
		forged.Transmit = TimestampOf(time.Now().Add(time.Hour)) // would move us an hour
		s.send(forged, from, false)
		wrongPort := s.answer(req, rx)
		wrongPort.Transmit = TimestampOf(time.Now().Add(time.Hour))
		s.send(wrongPort, from, true)
		kiss := s.answer(req, rx) // a forged DENY must not demobilize us
		kiss.Stratum, kiss.RefID, kiss.Origin = 0, 0x44454e59, 12345
		s.send(kiss, from, false)
		good := s.answer(req, rx)
		s.send(good, from, false)
		s.send(good, from, false) // duplicate
		garbage := []byte("not an ntp packet at all")
		s.conn.WriteToUDPAddrPort(garbage, from)
	})
	r := newReporter(fastPoll)
	c, done := startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	for range 5 {
		m := r.measurement(t)
		if m.Offset.Abs() > 10*time.Millisecond {
			t.Fatalf("spoofed offset accepted: %v", m.Offset)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
	time.Sleep(2 * fastPoll)
	d := c.Dropped()
	for _, reason := range []string{DropNeverSent, DropWrongSource, DropDuplicate, DropMalformed} {
		if d[reason] < 4 {
			t.Errorf("dropped %q: %d, want ≥ 4 (all: %v)", reason, d[reason], d)
		}
	}
	// Exactly one measurement per request at most.
	if got, polls := 5+len(r.meas), len(r.polls()); got > polls {
		t.Errorf("%d measurements for %d requests", got, polls)
	}
}

func TestClientKissRate(t *testing.T) {
	srv := newFakeServer(t)
	var mu sync.Mutex
	kisses := 1
	srv.setRespond(func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
		h := s.answer(req, rx)
		mu.Lock()
		if kisses > 0 {
			kisses--
			h.Stratum, h.RefID = 0, 0x52415445 // RATE
		}
		mu.Unlock()
		s.send(h, from, false)
	})
	interval := 50 * time.Millisecond
	r := newReporter(interval)
	startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	r.measurement(t) // the second request is answered
	p := r.polls()
	if len(p) < 2 {
		t.Fatalf("%d polls", len(p))
	}
	// The client spaces the starts of its sends; the reporter notes each
	// poll after its send, so the first send's own time may shorten the
	// gap seen here a little (CI saw 99.6 ms).
	if gap := p[1].Sub(p[0]); gap < 2*interval-interval/5 {
		t.Errorf("after RATE the next request came %v later, want about %v (the normal interval is %v)", gap, 2*interval, interval)
	}
	// After a good response the normal interval is back.
	r.measurement(t)
	r.measurement(t)
	p = r.polls()
	if gap := p[len(p)-1].Sub(p[len(p)-2]); gap >= 2*interval {
		t.Errorf("interval stayed backed off: %v", gap)
	}
}

func TestClientKissDeny(t *testing.T) {
	for _, code := range []uint32{0x44454e59, 0x52535452} {
		srv := newFakeServer(t)
		srv.setRespond(func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
			h := s.answer(req, rx)
			h.Stratum, h.RefID = 0, code
			s.send(h, from, false)
		})
		r := newReporter(fastPoll)
		c, done := startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
		select {
		case err := <-done:
			want := KissCode(code)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Run returned %v, want a %s error", err, want)
			}
			done <- err // for the cleanup
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after DENY")
		}
		r.fault(t, "server sent kiss-of-death "+KissCode(code)+": it refuses to serve us")
		if !c.Demobilized() {
			t.Error("not demobilized")
		}
		if srv.requests() != 1 {
			t.Errorf("%d requests sent, want 1", srv.requests())
		}
	}
}

func TestClientUnreachableAndBack(t *testing.T) {
	srv := newFakeServer(t)
	srv.setRespond(func(*fakeServer, Header, time.Time, netip.AddrPort) {})
	r := newReporter(fastPoll)
	c, _ := startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	r.fault(t, "no response to the last 8 requests")
	if !c.Unreachable() {
		t.Error("Unreachable() false after 8 lost requests")
	}
	srv.setRespond(nil)
	r.measurement(t)
	r.fault(t, "")
	if c.Unreachable() {
		t.Error("still unreachable after a response")
	}
}

// When a request times out, the client asks the engine again: at start the
// engine wants a lost response retried long before the poll interval ends.
func TestClientReplansAfterTimeout(t *testing.T) {
	srv := newFakeServer(t)
	srv.setRespond(func(*fakeServer, Header, time.Time, netip.AddrPort) {})
	r := newReporter(time.Minute)
	startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	deadline := time.Now().Add(2 * time.Second)
	for len(r.polls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no first request")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.setInterval(100 * time.Millisecond) // the engine now wants a quick retry
	deadline = time.Now().Add(8 * time.Second)
	for len(r.polls()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the lost request was not retried before the minute-long poll interval ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gap := r.polls()[1].Sub(r.polls()[0]); gap > 6*time.Second {
		t.Errorf("retry after %v; want it right after the 4 s response time-out", gap)
	}
}

func TestClientUnsynchronizedServer(t *testing.T) {
	srv := newFakeServer(t)
	srv.setRespond(func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
		h := s.answer(req, rx)
		h.Leap = sources.LeapUnknown
		s.send(h, from, false)
	})
	r := newReporter(fastPoll)
	startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	r.fault(t, "server unsynchronized (leap indicator 3)")
	select {
	case m := <-r.meas:
		t.Errorf("measurement from an unsynchronized server: %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
	srv.setRespond(nil)
	r.measurement(t)
	r.fault(t, "")
}

func TestClientV3Server(t *testing.T) {
	srv := newFakeServer(t)
	srv.setRespond(func(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
		h := s.answer(req, rx)
		h.Version = 3
		s.send(h, from, false)
	})
	r := newReporter(fastPoll)
	startClient(t, clientCfg(srv.addr()), sysTimebase{}, r)
	if m := r.measurement(t); m.Offset.Abs() > time.Millisecond {
		t.Errorf("offset %v", m.Offset)
	}
}

type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
	calls int
}

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	a, ok := f.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, nil
}

func TestClientResolves(t *testing.T) {
	srv := newFakeServer(t)
	res := &fakeResolver{addrs: map[string][]netip.Addr{"ntp.test": {srv.addr().Addr()}}}
	r := newReporter(fastPoll)
	c, _ := startClient(t, ClientConfig{Address: "ntp.test", Port: int(srv.addr().Port()), MinPoll: -6, MaxPoll: 0, Resolver: res}, sysTimebase{}, r)
	if want := "ntp.test:" + itoa(int(srv.addr().Port())); c.Name() != want {
		t.Errorf("Name() = %q, want %q", c.Name(), want)
	}
	r.measurement(t)

	bad := newReporter(fastPoll)
	c2, _ := startClient(t, ClientConfig{Address: "missing.test", MinPoll: -6, MaxPoll: -6, Resolver: res}, sysTimebase{}, bad)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-bad.faults:
			if strings.HasPrefix(f, "cannot resolve missing.test") {
				if !c2.Unreachable() {
					t.Error("unresolvable name is not unreachable")
				}
				return
			}
		case <-deadline:
			t.Fatal("no fault for an unresolvable name")
		}
	}
}

func itoa(i int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(i)).String()[len("0.0.0.0:"):]
}

func TestNewClientValidates(t *testing.T) {
	cases := []struct {
		cfg  ClientConfig
		ok   bool
		name string
	}{
		{ClientConfig{Address: "192.0.2.1"}, true, "192.0.2.1:123"},
		{ClientConfig{Address: "2001:db8::1", Port: 1123}, true, "[2001:db8::1]:1123"},
		{ClientConfig{Address: "time.example", MinPoll: -6, MaxPoll: 17}, true, "time.example:123"},
		{ClientConfig{}, false, ""},
		{ClientConfig{Address: "x", Port: 70000}, false, ""},
		{ClientConfig{Address: "x", MinPoll: -7, MaxPoll: 4}, false, ""},
		{ClientConfig{Address: "x", MinPoll: 4, MaxPoll: 18}, false, ""},
		{ClientConfig{Address: "x", MinPoll: 8, MaxPoll: 6}, false, ""},
	}
	for _, tc := range cases {
		c, err := NewClient(tc.cfg, sysTimebase{}, nil)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err = %v", tc.cfg, err)
			continue
		}
		if tc.ok && c.Name() != tc.name {
			t.Errorf("Name() = %q, want %q", c.Name(), tc.name)
		}
	}
}

func TestSessionInterval(t *testing.T) {
	cases := []struct {
		name      string
		poll      time.Duration
		burst     int
		rateFloor time.Duration
		want      time.Duration
	}{
		{"engine's interval", 64 * time.Second, 0, 0, 64 * time.Second},
		{"iburst", 64 * time.Second, 3, 0, 2 * time.Second},
		{"iburst with a short poll", time.Second / 4, 3, 0, time.Second / 4},
		{"below the limit", time.Millisecond, 0, 0, time.Second / 64},
		{"above the limit", 1 << 20 * time.Second, 0, 0, 1 << 17 * time.Second},
		{"RATE floor", 16 * time.Second, 0, 64 * time.Second, 64 * time.Second},
		{"RATE ends the burst", 16 * time.Second, 2, 64 * time.Second, 64 * time.Second},
	}
	for _, tc := range cases {
		s := &session{r: newReporter(tc.poll), burstLeft: tc.burst, rateFloor: tc.rateFloor}
		if got := s.interval(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for d, want := range map[time.Duration]int8{time.Second / 64: -6, time.Second / 3: -2, time.Second: 0, 64 * time.Second: 6, 100 * time.Second: 6} {
		if got := log2(d); got != want {
			t.Errorf("log2(%v) = %d, want %d", d, got, want)
		}
	}
}

// xleaveServer scripts a server of interleaved mode (RFC 9769) on a
// fakeServer. It reads the transmit time of a basic response slowSend
// before the response really leaves, as a server without kernel transmit
// timestamps does, and remembers when each response really left. An
// interleaved request (origin = the receive timestamp of one of its
// responses) gets that time in the transmit field and its receive field
// as the origin.
type xleaveServer struct {
	xleaveScript
	tb *steppedTimebase

	mu          sync.Mutex
	sent        map[Timestamp]Timestamp // receive timestamp of each response → when it left
	reqs        []Header
	interleaved []bool // whether the response to each request was interleaved
}

// xleaveScript is what an xleaveServer does besides answering.
type xleaveScript struct {
	interleave bool                      // answers interleaved requests in interleaved mode
	lose       func(n int) bool          // the response to request n (from 1) is lost on the way
	forget     func(n int) bool          // before answering request n the server forgets all it sent
	forge      bool                      // forged interleaved responses come before every interleaved one
	step       func(n int) time.Duration // after answering request n, step the client's clock by this
}

func (x *xleaveServer) respond(s *fakeServer, req Header, rx time.Time, from netip.AddrPort) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.reqs = append(x.reqs, req)
	n := len(x.reqs)
	if x.forget != nil && x.forget(n) {
		clear(x.sent)
	}
	h := s.answer(req, rx)
	tx, known := x.sent[req.Origin]
	inter := x.interleave && req.Origin != 0 && known
	x.interleaved = append(x.interleaved, inter)
	if inter {
		h.Origin, h.Transmit = req.Receive, tx
		if x.forge {
			for _, origin := range []Timestamp{req.Receive ^ 1<<20, req.Origin, req.Receive + 1} {
				f := h
				f.Origin, f.Transmit = origin, TimestampOf(time.Now().Add(time.Hour))
				s.send(f, from, false)
			}
		}
	}
	time.Sleep(slowSend)
	// On loopback the client's kernel stamps the response during the send
	// call: the time just before it is the closer one.
	x.sent[h.Receive] = TimestampOf(time.Now().Add(s.shift))
	if x.lose == nil || !x.lose(n) {
		s.send(h, from, false)
	}
	if x.step != nil {
		if d := x.step(n); d != 0 {
			go func() {
				time.Sleep(10 * time.Millisecond) // the client has handled the response
				x.tb.shift.Add(int64(d))
			}()
		}
	}
}

func (x *xleaveServer) requests() ([]Header, []bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]Header(nil), x.reqs...), append([]bool(nil), x.interleaved...)
}

// steppedTimebase is the system clock shifted by an amount that can step.
type steppedTimebase struct{ shift atomic.Int64 }

func (s *steppedTimebase) Now() time.Time { return time.Now().Add(time.Duration(s.shift.Load())) }
func (s *steppedTimebase) FromSystem(t time.Time) time.Time {
	return t.Add(time.Duration(s.shift.Load()))
}

// slowSend is how long the scripted server's basic transmit timestamps come
// before the true send: a basic measurement's offset is off by half of it
// (or more, when the server's sleep overshoots), its delay by all of it.
const slowSend = 10 * time.Millisecond

// preciseLimit bounds the error of a measurement with the true transmit
// time: the fake server reads it in user space, just before the send, and
// a loaded machine may delay either end by a millisecond or so. A basic
// measurement is off by slowSend/2.
const preciseLimit = slowSend / 4

// usedBasicTransmit tells a measurement made with the scripted server's
// early basic transmit time.
func usedBasicTransmit(m sources.Measurement) bool {
	return m.Offset < -slowSend/4 && m.Delay > slowSend/2
}

func TestClientInterleaved(t *testing.T) {
	lost := func(ns ...int) func(int) bool {
		return func(n int) bool { return slices.Contains(ns, n) }
	}
	cases := []struct {
		name  string
		srv   xleaveScript
		n     int // measurements to take
		check func(t *testing.T, ms []sources.Measurement, modes ModeCounts, reqs []Header, inter []bool, dropped map[string]uint64)
	}{
		{
			name: "interleaved exchanges",
			srv:  xleaveScript{interleave: true},
			n:    10,
			check: func(t *testing.T, ms []sources.Measurement, modes ModeCounts, reqs []Header, inter []bool, _ map[string]uint64) {
				allPrecise(t, ms, 0)
				if modes.Basic != 0 || modes.Interleaved < 10 || !modes.LastInterleaved {
					t.Errorf("modes %+v, want only interleaved", modes)
				}
				if !reqs[0].Origin.IsZero() || !reqs[0].Receive.IsZero() {
					t.Errorf("first request origin %v receive %v, want zero (basic)", reqs[0].Origin, reqs[0].Receive)
				}
				for i, r := range reqs[1:] {
					if r.Origin.IsZero() || r.Receive.IsZero() || r.Receive == r.Transmit {
						t.Errorf("request %d: origin %v receive %v transmit %v: not interleaved", i+2, r.Origin, r.Receive, r.Transmit)
					}
					if r.Receive == reqs[i].Receive || r.Transmit == reqs[i].Transmit {
						t.Errorf("request %d repeats a cookie of the one before", i+2)
					}
				}
			},
		},
		{
			name: "server without interleaved mode",
			srv:  xleaveScript{},
			n:    8,
			check: func(t *testing.T, ms []sources.Measurement, modes ModeCounts, reqs []Header, _ []bool, _ map[string]uint64) {
				for i, m := range ms {
					if !usedBasicTransmit(m) {
						t.Errorf("basic measurement %d: offset %v delay %v, want about %v and %v", i, m.Offset, m.Delay, -slowSend/2, slowSend)
					}
				}
				if modes.Interleaved != 0 || modes.Basic < 8 || modes.LastInterleaved {
					t.Errorf("modes %+v, want only basic", modes)
				}
				if reqs[2].Origin.IsZero() {
					t.Error("the client stopped asking for interleaved mode")
				}
			},
		},
		{
			name: "lost responses",
			srv:  xleaveScript{interleave: true, lose: lost(4, 9, 10)},
			n:    10,
			check: func(t *testing.T, ms []sources.Measurement, modes ModeCounts, reqs []Header, inter []bool, d map[string]uint64) {
				allPrecise(t, ms, 0)
				// After a lost response the next request is basic: no
				// measurement mixes exchanges that did not follow each other.
				for _, n := range []int{5, 11} {
					if !reqs[n-1].Origin.IsZero() || !reqs[n-1].Receive.IsZero() {
						t.Errorf("request %d after a lost response: origin %v receive %v, want basic", n, reqs[n-1].Origin, reqs[n-1].Receive)
					}
				}
				if !inter[5] || !inter[11] {
					t.Errorf("the server's answers to requests 6 and 12 were not interleaved: %v", inter)
				}
				if modes.Basic != 0 {
					t.Errorf("modes %+v: the basic measurement of the exchange after a loss was not replaced", modes)
				}
			},
		},
		{
			name: "forged interleaved responses",
			srv:  xleaveScript{interleave: true, forge: true},
			n:    8,
			check: func(t *testing.T, ms []sources.Measurement, modes ModeCounts, _ []Header, _ []bool, d map[string]uint64) {
				allPrecise(t, ms, 0)
				if d[DropNeverSent] < 3*7 {
					t.Errorf("dropped %v, want ≥ 21 never sent", d)
				}
			},
		},
		{
			name: "server forgets its transmit times",
			srv:  xleaveScript{interleave: true, forget: func(n int) bool { return n == 6 }},
			n:    10,
			check: func(t *testing.T, ms []sources.Measurement, modes ModeCounts, _ []Header, inter []bool, _ map[string]uint64) {
				if inter[5] || !inter[6] {
					t.Errorf("interleaved answers %v, want basic only to request 6", inter)
				}
				// Exchange 5's true transmit time is lost with the server's
				// state, so it goes unmeasured; exchange 6's basic
				// measurement is held back and replaced.
				allPrecise(t, ms, 0)
				if modes.Basic != 0 || modes.Interleaved < 10 {
					t.Errorf("modes %+v, want only interleaved", modes)
				}
			},
		},
		{
			name: "clock step between exchanges",
			srv:  xleaveScript{interleave: true, step: func(n int) time.Duration { return map[int]time.Duration{4: 20 * time.Millisecond}[n] }},
			n:    8,
			check: func(t *testing.T, ms []sources.Measurement, modes ModeCounts, reqs []Header, _ []bool, _ map[string]uint64) {
				// Before the step the offset is 0, after it -20 ms; nothing
				// in between.
				allPrecise(t, ms, -20*time.Millisecond)
				if !reqs[4].Origin.IsZero() {
					t.Errorf("request 5 after the step: origin %v, want basic", reqs[4].Origin)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t)
			x := &xleaveServer{xleaveScript: tc.srv, tb: &steppedTimebase{}, sent: map[Timestamp]Timestamp{}}
			srv.setRespond(x.respond)
			// The server takes slowSend to answer: poll well after that.
			r := newReporter(5 * slowSend)
			cfg := clientCfg(srv.addr())
			cfg.XLeave = true
			c, _ := startClient(t, cfg, x.tb, r)
			var ms []sources.Measurement
			for i := range tc.n {
				m := r.measurement(t)
				if i > 0 && !m.Local.After(ms[i-1].Local) {
					t.Errorf("measurement %d at %v, not after the one before (%v)", i, m.Local, ms[i-1].Local)
				}
				ms = append(ms, m)
			}
			modes := c.Modes()
			reqs, inter := x.requests()
			tc.check(t, ms, modes, reqs, inter, c.Dropped())
			if t.Failed() {
				for i, m := range ms {
					t.Logf("measurement %d: offset %v delay %v", i, m.Offset, m.Delay)
				}
			}
		})
	}
}

// allPrecise checks that every measurement used a true transmit time: an
// offset of 0 or of alt, and a delay well below the server's slow send.
func allPrecise(t *testing.T, ms []sources.Measurement, alt time.Duration) {
	t.Helper()
	for i, m := range ms {
		if m.Offset.Abs() > preciseLimit && (m.Offset-alt).Abs() > preciseLimit {
			t.Errorf("measurement %d: offset %v, want within %v of 0 or %v", i, m.Offset, preciseLimit, alt)
		}
		if m.Delay > slowSend/2 {
			t.Errorf("measurement %d: delay %v includes the server's slow send (%v)", i, m.Delay, slowSend)
		}
	}
}
