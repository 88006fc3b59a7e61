package server

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/ntp/clientlog"
	"github.com/timed-project/timed/sources"
)

// testClock is a virtual clock 1.5 s ahead of the system clock.
func testClock(t *testing.T) *clock.Virtual {
	t.Helper()
	v := clock.NewVirtual(clock.VirtualOptions{Offset: 1500 * time.Millisecond})
	return v
}

func startServer(t *testing.T, cfg Config, tb sources.Timebase) *Server {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	}
	if cfg.Clients.Size == 0 {
		cfg.Clients = clientlog.Config{Size: 1024, Burst: 1}
	}
	s, err := New(cfg, tb, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Close() })
	return s
}

// exchange sends req from a socket bound to from and returns the answer, or
// nil after the timeout.
func exchange(t *testing.T, conn *net.UDPConn, to netip.AddrPort, req []byte, timeout time.Duration) []byte {
	t.Helper()
	if _, err := conn.WriteToUDPAddrPort(req, to); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2048)
	n, _, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func clientConn(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func request(version uint8, xmt, org, rx ntp.Timestamp) []byte {
	h := ntp.Header{Version: version, Mode: ntp.ModeClient, Poll: 6, Transmit: xmt, Origin: org, Receive: rx}
	b, _ := h.AppendBinary(nil)
	return b
}

func TestServesTrueFields(t *testing.T) {
	vc := testClock(t)
	s := startServer(t, Config{}, vc)
	ref := vc.Now().Add(-10 * time.Second)
	s.SetState(State{Synchronized: true, Leap: sources.LeapInsert, Stratum: 3, RefID: RefIDOf(netip.MustParseAddr("192.0.2.7")),
		RootDelay: 2 * time.Millisecond, RootDispersion: time.Millisecond, RefTime: ref, FrequencyUncertainty: 5e-6})
	c := clientConn(t, "127.0.0.1:0")
	xmt := ntp.Timestamp(0x1234567890abcdef)
	before := vc.Now()
	resp := exchange(t, c, s.Addrs()[0], request(4, xmt, 0, 0), time.Second)
	after := vc.Now()
	if resp == nil {
		t.Fatal("no response")
	}
	if len(resp) != ntp.HeaderLen {
		t.Fatalf("response of %d bytes", len(resp))
	}
	p, err := ntp.ParsePacket(resp)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ntp.ModeServer || p.Version != 4 || p.Leap != sources.LeapInsert || p.Stratum != 3 || p.RefID != 0xc0000207 || p.Origin != xmt {
		t.Errorf("header %+v", p.Header)
	}
	if d := p.RootDelay.Duration(); d < 1990*time.Microsecond || d > 2010*time.Microsecond {
		t.Errorf("root delay %v, want 2ms", d)
	}
	// 10 s since the update at 15 ppm + 5 ppm: 1 ms + 200 µs.
	if d := p.RootDispersion.Duration(); d < 1190*time.Microsecond || d > 1230*time.Microsecond {
		t.Errorf("root dispersion %v, want about 1.2ms", d)
	}
	if got := p.Reference.Time(ref); got.Sub(ref).Abs() > time.Microsecond {
		t.Errorf("reference time %v, want %v", got, ref)
	}
	rx, tx := p.Receive.Time(before), p.Transmit.Time(before)
	if rx.Before(before.Add(-time.Millisecond)) || tx.After(after) || tx.Before(rx) {
		t.Errorf("receive %v transmit %v not within the exchange %v..%v on the virtual clock", rx, tx, before, after)
	}
	if p.Receive&rxFlag == 0 || p.Transmit&rxFlag != 0 {
		t.Errorf("flag bits: receive %v transmit %v", p.Receive, p.Transmit)
	}
	if p.Precision > -10 || p.Precision < -30 {
		t.Errorf("precision %d", p.Precision)
	}
	st := s.Stats()
	if st.Received != 1 || st.Answered != 1 || st.UserRxStamps != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnsynchronizedAndLocal(t *testing.T) {
	vc := testClock(t)
	tests := []struct {
		name    string
		local   int
		stratum uint8
		leap    sources.Leap
		refID   uint32
	}{
		{"unsynchronized", 0, 16, sources.LeapUnknown, 0},
		{"local stratum", 10, 10, sources.LeapNone, 0x7f7f0101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{LocalStratum: tt.local}, vc)
			c := clientConn(t, "127.0.0.1:0")
			resp := exchange(t, c, s.Addrs()[0], request(3, 42, 0, 0), time.Second)
			p, err := ntp.ParsePacket(resp)
			if err != nil {
				t.Fatal(err)
			}
			if p.Stratum != tt.stratum || p.Leap != tt.leap || p.RefID != tt.refID || p.Version != 3 {
				t.Errorf("stratum %d leap %d refid %#x version %d; want %d %d %#x 3", p.Stratum, p.Leap, p.RefID, p.Version, tt.stratum, tt.leap, tt.refID)
			}
			// Once a source is selected, the server follows it.
			s.SetState(State{Synchronized: true, Stratum: 2, RefID: 7, RefTime: vc.Now()})
			p, _ = ntp.ParsePacket(exchange(t, c, s.Addrs()[0], request(4, 43, 0, 0), time.Second))
			if p.Stratum != 2 || p.RefID != 7 || p.Leap != sources.LeapNone {
				t.Errorf("after sync: stratum %d refid %d leap %d", p.Stratum, p.RefID, p.Leap)
			}
		})
	}
}

// TestInterleaved runs the client side of RFC 9769 by hand. A request that
// echoes a receive timestamp of ours marks the client as interleaved: its
// answer is still basic (nothing was captured for the answer before), but
// the kernel's transmit time of that answer is kept, and the next request
// gets it.
func TestInterleaved(t *testing.T) {
	vc := testClock(t)
	s := startServer(t, Config{Interleaved: true, Clients: clientlog.Config{Size: 64, Burst: 1}}, vc)
	s.SetState(State{Synchronized: true, Stratum: 2, RefTime: vc.Now()})
	c := clientConn(t, "127.0.0.1:0")
	srv := s.Addrs()[0]
	first, _ := ntp.ParsePacket(exchange(t, c, srv, request(4, 100, 0, 0), time.Second))
	if first.Origin != 100 {
		t.Fatalf("first response origin %v", first.Origin)
	}
	// Interleaved requests: origin = the server's last receive timestamp,
	// receive = our own receive time of that answer (here any distinctive
	// value).
	second, _ := ntp.ParsePacket(exchange(t, c, srv, request(4, 200, first.Receive, 0xdead0000beef0000), time.Second))
	if second.Origin != 200 {
		t.Fatalf("second response origin %v, want a basic answer (200)", second.Origin)
	}
	myRx := ntp.Timestamp(0xdead0000beef1111)
	third, _ := ntp.ParsePacket(exchange(t, c, srv, request(4, 300, second.Receive, myRx), time.Second))
	if third.Origin != myRx {
		t.Fatalf("third response origin %v, want the request's receive field %v (interleaved)", third.Origin, myRx)
	}
	// Its transmit time is when the second answer left: after the second
	// receive, before the third.
	now := vc.Now()
	tx, rx2, rx3 := third.Transmit.Time(now), second.Receive.Time(now), third.Receive.Time(now)
	if tx.Before(rx2) || !tx.Before(rx3) {
		t.Errorf("interleaved transmit %v not between the receives %v and %v", tx, rx2, rx3)
	}
	// A basic request from the same client gets a basic answer.
	fourth, _ := ntp.ParsePacket(exchange(t, c, srv, request(4, 400, 0, 0), time.Second))
	if fourth.Origin != 400 {
		t.Errorf("basic request answered with origin %v", fourth.Origin)
	}
	st := s.Stats()
	if st.Interleaved != 1 || st.TxStamps < 2 {
		t.Errorf("interleaved %d, kernel transmit stamps %d; want 1 and at least 2", st.Interleaved, st.TxStamps)
	}
	top := s.Clients(10)
	if len(top) != 1 || !top[0].Interleaved || top[0].Requests != 4 {
		t.Errorf("clients %+v", top)
	}
}

func TestDropsAndKisses(t *testing.T) {
	vc := testClock(t)
	s := startServer(t, Config{
		Deny:     []netip.Prefix{netip.MustParsePrefix("127.0.0.66/32")},
		Allow:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")},
		DenyKiss: true,
		Clients:  clientlog.Config{Size: 64, Interval: time.Hour, Burst: 2, KissEvery: 1},
	}, vc)
	srv := s.Addrs()[0]
	good := request(4, 1, 0, 0)
	tests := []struct {
		name, from string
		req        []byte
		wantLen    int    // 0: no answer
		wantCode   string // kiss code
	}{
		{"short", "127.0.0.1:0", good[:47], 0, ""},
		{"version 0", "127.0.0.1:0", append([]byte{0<<3 | 3}, good[1:]...), 0, ""},
		{"version 5", "127.0.0.1:0", append([]byte{5<<3 | 3}, good[1:]...), 0, ""},
		{"server mode", "127.0.0.1:0", append([]byte{4<<3 | 4}, good[1:]...), 0, ""},
		{"control mode", "127.0.0.1:0", append([]byte{2<<3 | 6}, good[1:]...), 0, ""},
		{"oversized", "127.0.0.1:0", append(append([]byte{}, good...), make([]byte, maxRequest)...), 0, ""},
		{"denied", "127.0.0.66:0", good, 48, "DENY"},
		{"not allowed", "127.0.1.1:0", good, 48, "DENY"},
		{"extension field", "127.0.0.2:0", append(append([]byte{}, good...), make([]byte, 64)...), 48, ""},
		{"first of burst", "127.0.0.3:0", good, 48, ""},
		{"second of burst", "127.0.0.3:0", good, 48, ""},
		{"over the limit", "127.0.0.3:0", good, 48, "RATE"},
	}
	conns := map[string]*net.UDPConn{}
	for _, tt := range tests {
		c := conns[tt.from]
		if c == nil {
			c = clientConn(t, tt.from)
			conns[tt.from] = c
		}
		resp := exchange(t, c, srv, tt.req, 200*time.Millisecond)
		if len(resp) != tt.wantLen {
			t.Errorf("%s: %d-byte answer, want %d", tt.name, len(resp), tt.wantLen)
			continue
		}
		if resp == nil {
			continue
		}
		if len(resp) > len(tt.req) {
			t.Errorf("%s: answer of %d bytes to a request of %d", tt.name, len(resp), len(tt.req))
		}
		p, err := ntp.ParsePacket(resp)
		code := ""
		if err == nil {
			err = p.CheckResponse()
		}
		if k, ok := err.(*ntp.KissError); ok {
			code = k.Code
		}
		if code != tt.wantCode {
			t.Errorf("%s: kiss %q, want %q (%v)", tt.name, code, tt.wantCode, err)
		}
		if binary.BigEndian.Uint64(resp[offOrigin:]) != 1 {
			t.Errorf("%s: origin does not echo the request", tt.name)
		}
	}
	st := s.Stats()
	want := map[string]uint64{DropShort: 1, DropVersion: 2, DropMode: 2, DropOversized: 1, DropDenied: 2, DropRateLimited: 1}
	for r, n := range want {
		if st.Dropped[r] != n {
			t.Errorf("dropped %q: %d, want %d", r, st.Dropped[r], n)
		}
	}
	if st.Received != uint64(len(tests)) || st.Answered != 3 || st.KissDeny != 2 || st.KissRate != 1 {
		t.Errorf("received %d answered %d deny %d rate %d; want %d 3 2 1", st.Received, st.Answered, st.KissDeny, st.KissRate, len(tests))
	}
}

// TestMultiHomed: on a wildcard address the reply leaves from the address
// the request came to; IPv6 is served too.
func TestMultiHomed(t *testing.T) {
	vc := testClock(t)
	s := startServer(t, Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0"), netip.MustParseAddrPort("[::1]:0")}}, vc)
	addrs := s.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs() = %v", addrs)
	}
	c := clientConn(t, "127.0.0.1:0")
	for _, dst := range []string{"127.0.0.1", "127.0.0.2", "127.3.4.5"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(dst), addrs[0].Port())
		if _, err := c.WriteToUDPAddrPort(request(4, 9, 0, 0), to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 128)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || n != ntp.HeaderLen || from != to {
			t.Errorf("request to %s: %d bytes from %s, %v; want 48 from %s", to, n, from, err, to)
		}
	}
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		testenv.Missing(t, "an IPv6 loopback address: "+err.Error())
	}
	defer c6.Close()
	if resp := exchange(t, c6, addrs[1], request(4, 10, 0, 0), time.Second); len(resp) != ntp.HeaderLen {
		t.Errorf("IPv6: %d-byte answer", len(resp))
	}
}

// TestUpdate changes the settings of a running server on its sockets.
func TestUpdate(t *testing.T) {
	vc := testClock(t)
	s := startServer(t, Config{}, vc)
	c := clientConn(t, "127.0.0.1:0")
	srv := s.Addrs()[0]
	exchange(t, c, srv, request(4, 1, 0, 0), time.Second)
	cfg := s.cfg
	cfg.LocalStratum = 7
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	p, _ := ntp.ParsePacket(exchange(t, c, srv, request(4, 2, 0, 0), time.Second))
	if p.Stratum != 7 {
		t.Errorf("stratum %d after the update, want 7", p.Stratum)
	}
	if top := s.Clients(5); len(top) != 1 || top[0].Requests != 2 {
		t.Errorf("the client table did not survive an update that kept its settings: %+v", top)
	}
	cfg.Deny = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Clients.Size = 128
	if err := s.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if resp := exchange(t, c, srv, request(4, 3, 0, 0), 200*time.Millisecond); resp != nil {
		t.Errorf("denied client answered")
	}
	if st := s.Stats(); st.ClientTableSize != 128 || st.Dropped[DropDenied] != 1 {
		t.Errorf("after the second update: %+v", st)
	}
	cfg.Listen = append(cfg.Listen, netip.MustParseAddrPort("127.0.0.1:0"))
	if err := s.Update(cfg); err == nil {
		t.Error("Update with another listen address: no error")
	}
}
