package ntp

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/internal/testcert"
	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/nts/ke"
	"github.com/timed-project/timed/sources"
)

// selfSigned makes a self-signed certificate for names (DNS names or IP
// literals), usable as its own CA, and returns it with its PEM file.
func selfSigned(t *testing.T, dir string, names ...string) (tls.Certificate, string) {
	c := testcert.New(t, dir, names...)
	return c.TLS, c.CertFile
}

// NTS responder behaviours.
const (
	ntsGood      = iota
	ntsFlipAuth  // flip the last byte (in the authenticator)
	ntsFlipHdr   // flip a byte of the header's transmit time (authenticated data)
	ntsOldID     // answer the request with the NTS fields of the previous one
	ntsPlain     // answer without NTS fields
	ntsNAK       // answer with an NTS NAK
	ntsNeverSent // answer with an origin never sent
	ntsSilent    // do not answer
)

// ntsTestServer is an in-process NTS-KE server and NTS NTP responder on
// 127.0.0.1.
type ntsTestServer struct {
	ring   *nts.KeyRing
	ke     *ke.Server
	kePort int
	caFile string
	conn   *net.UDPConn

	mu      sync.Mutex
	mode    int
	prev    []byte // the previous request
	from    netip.AddrPort
	cookies map[string]int
	reused  int
	reqs    int
}

func newNTSTestServer(t *testing.T) *ntsTestServer {
	t.Helper()
	ring, err := nts.NewKeyRing(time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	cert, caFile := selfSigned(t, t.TempDir(), "127.0.0.1", "localhost", "pool.test")
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	kes, err := ke.NewServer(ke.ServerConfig{Certificate: &cert, Cookies: ring, NTPServer: "127.0.0.1",
		NTPPort: uint16(conn.LocalAddr().(*net.UDPAddr).Port), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = kes.Serve(ctx, ln); close(done) }()
	s := &ntsTestServer{ring: ring, ke: kes, kePort: ln.Addr().(*net.TCPAddr).Port, caFile: caFile, conn: conn, cookies: map[string]int{}}
	go s.serve()
	t.Cleanup(func() { cancel(); conn.Close(); <-done })
	return s
}

func (s *ntsTestServer) setMode(m int) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

func (s *ntsTestServer) exchanges() uint64 { return s.ke.Stats().Exchanges }

// clientConfig is a client of this server: NTS-KE with 127.0.0.1 and the
// test CA; the NTP port (123 here) must come from the key exchange.
func (s *ntsTestServer) clientConfig() ClientConfig {
	return ClientConfig{Address: "127.0.0.1", MinPoll: -6, MaxPoll: -6, NTS: &NTSConfig{Port: s.kePort, CAFile: s.caFile}}
}

// cookieOf returns the body of the request's cookie field.
func cookieOf(pkt []byte) string {
	for b := pkt[HeaderLen:]; len(b) >= 4; {
		typ, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			return ""
		}
		if typ == nts.FieldCookie {
			return string(b[4:n])
		}
		b = b[n:]
	}
	return ""
}

func (s *ntsTestServer) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		rx := time.Now()
		pkt := append([]byte(nil), buf[:n]...)
		p, err := ParsePacket(pkt)
		if err != nil || p.Mode != ModeClient {
			continue
		}
		s.mu.Lock()
		mode, prev := s.mode, s.prev
		s.prev, s.from = pkt, from
		s.reqs++
		c := cookieOf(pkt)
		if s.cookies[c]++; s.cookies[c] > 1 {
			s.reused++
		}
		s.mu.Unlock()
		if out := s.answer(mode, pkt, prev, p.Header, rx); out != nil {
			s.conn.WriteToUDPAddrPort(out, from)
		}
	}
}

// answer makes the response to pkt in the given mode (nil: none).
func (s *ntsTestServer) answer(mode int, pkt, prev []byte, req Header, rx time.Time) []byte {
	h := Header{Leap: sources.LeapNone, Version: 4, Mode: ModeServer, Stratum: 1, Poll: req.Poll, Precision: -20,
		RefID: 0x47505300, Reference: TimestampOf(rx), Origin: req.Transmit, Receive: TimestampOf(rx)}
	rq, err := nts.ReadRequest(pkt, s.ring)
	if err != nil {
		return nil
	}
	switch mode {
	case ntsSilent:
		return nil
	case ntsNAK:
		h.Stratum, h.RefID, h.Leap = 0, binary.BigEndian.Uint32([]byte("NTSN")), sources.LeapUnknown
		out, _ := h.AppendBinary(nil)
		return nts.AppendNAK(out, rq.UniqueID)
	case ntsNeverSent:
		h.Origin ^= 0x5555
	case ntsOldID:
		if prev == nil {
			return nil
		}
		if rq, err = nts.ReadRequest(prev, s.ring); err != nil {
			return nil
		}
	}
	h.Transmit = TimestampOf(time.Now())
	out, _ := h.AppendBinary(nil)
	if mode == ntsPlain {
		return out
	}
	out, err = rq.AppendResponse(out, s.ring)
	if err != nil {
		return nil
	}
	switch mode {
	case ntsFlipAuth:
		out[len(out)-1] ^= 1
	case ntsFlipHdr:
		out[47] ^= 1
	}
	return out
}

func TestNTSClientAuthenticates(t *testing.T) {
	srv := newNTSTestServer(t)
	r := newReporter(fastPoll)
	c, _ := startClient(t, srv.clientConfig(), sysTimebase{}, r)
	for range 20 {
		m := r.measurement(t)
		if !m.Authenticated {
			t.Fatalf("measurement not authenticated: %+v", m)
		}
		if m.Offset.Abs() > 5*time.Millisecond || m.Stratum != 1 {
			t.Fatalf("measurement %+v", m)
		}
	}
	cookies, kes := c.NTSCookies()
	if cookies != ntsCookies || kes != 1 || srv.exchanges() != 1 {
		t.Errorf("cookies %d, key exchanges %d (server %d); want 8 and 1", cookies, kes, srv.exchanges())
	}
	srv.mu.Lock()
	reqs, reused := srv.reqs, srv.reused
	srv.mu.Unlock()
	if reqs < 20 || reused != 0 {
		t.Errorf("%d requests, %d reused a cookie", reqs, reused)
	}
	if d := c.Dropped(); len(d) != 0 {
		t.Errorf("dropped %v", d)
	}
	if got, want := c.RemoteAddr(), srv.conn.LocalAddr().(*net.UDPAddr).AddrPort(); got != want {
		t.Errorf("NTP server %v, want %v (from the key exchange)", got, want)
	}
	st, ok := c.NTSStatus()
	if !ok || st.KEs != 1 || st.Cookies != ntsCookies || st.MaxCookies != ntsCookies || st.AEAD != nts.AEADAESSIVCMAC256 ||
		st.NTPServer != c.RemoteAddr().String() || st.KEError != "" || time.Since(st.LastKE) > 10*time.Second ||
		st.KEServer != fmt.Sprintf("127.0.0.1:%d", srv.kePort) || st.NAKs != 0 || st.AuthFailures != 0 {
		t.Errorf("NTSStatus() = %+v, %v", st, ok)
	}
}

// TestNTSClientRejects checks that tampered, replayed, unauthenticated and
// unsolicited responses are dropped and counted, and that the client goes
// on measuring once the server behaves.
func TestNTSClientRejects(t *testing.T) {
	tests := []struct {
		name string
		mode int
		drop string
	}{
		{"flipped authenticator byte", ntsFlipAuth, DropNTSAuth},
		{"flipped header byte", ntsFlipHdr, DropNTSAuth},
		{"replayed unique identifier", ntsOldID, DropNTSReplay},
		{"plain NTP response", ntsPlain, DropNTSUnauthenticated},
		{"request never sent", ntsNeverSent, DropNeverSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newNTSTestServer(t)
			srv.setMode(tt.mode)
			r := newReporter(fastPoll)
			c, _ := startClient(t, srv.clientConfig(), sysTimebase{}, r)
			waitDropped(t, c, tt.drop, 3)
			select {
			case m := <-r.meas:
				t.Fatalf("measurement from a rejected response: %+v", m)
			default:
			}
			srv.setMode(ntsGood)
			if m := r.measurement(t); !m.Authenticated {
				t.Errorf("measurement not authenticated")
			}
		})
	}
}

func waitDropped(t *testing.T, c *Client, reason string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Dropped()[reason] < n {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %v; want %d of %q", c.Dropped(), n, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNTSClientReplayedResponse sends every response twice: the copy is
// dropped, and each exchange is measured once.
func TestNTSClientReplayedResponse(t *testing.T) {
	srv := newNTSTestServer(t)
	r := newReporter(fastPoll)
	c, _ := startClient(t, srv.clientConfig(), sysTimebase{}, r)
	r.measurement(t)
	// Replay the client's last request to the server: the server answers
	// it again, and the client must drop that answer.
	for range 5 {
		srv.mu.Lock()
		prev, from := srv.prev, srv.from
		srv.mu.Unlock()
		p, _ := ParsePacket(prev)
		if out := srv.answer(ntsGood, prev, nil, p.Header, time.Now()); out != nil {
			srv.conn.WriteToUDPAddrPort(out, from)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := c.Dropped()
	if d[DropDuplicate]+d[DropLate] < 5 {
		t.Errorf("dropped %v; want 5 duplicate or late", d)
	}
}

func TestNTSClientNewKeyExchange(t *testing.T) {
	tests := []struct {
		name string
		mode int
		drop string
	}{
		{"NAK", ntsNAK, DropNTSNAK},
		{"out of cookies", ntsSilent, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newNTSTestServer(t)
			r := newReporter(fastPoll)
			c, _ := startClient(t, srv.clientConfig(), sysTimebase{}, r)
			r.measurement(t)
			srv.setMode(tt.mode)
			deadline := time.Now().Add(5 * time.Second)
			for srv.exchanges() < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("%d key exchanges; want a new one", srv.exchanges())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if tt.drop != "" && c.Dropped()[tt.drop] == 0 {
				t.Errorf("dropped %v; want %q", c.Dropped(), tt.drop)
			}
			srv.setMode(ntsGood)
			for len(r.meas) > 0 {
				<-r.meas
			}
			if m := r.measurement(t); !m.Authenticated {
				t.Errorf("measurement not authenticated")
			}
			if _, kes := c.NTSCookies(); kes < 2 {
				t.Errorf("client made %d key exchanges", kes)
			}
			if st, _ := c.NTSStatus(); tt.drop == DropNTSNAK && st.NAKs == 0 {
				t.Errorf("NTSStatus() = %+v: no NAK counted", st)
			}
		})
	}
}

func TestNTSClientKeyExchangeFails(t *testing.T) {
	srv := newNTSTestServer(t)
	_, otherCA := selfSigned(t, t.TempDir(), "127.0.0.1")
	tests := []struct {
		name string
		cfg  NTSConfig
		want string
	}{
		{"wrong CA", NTSConfig{Port: srv.kePort, CAFile: otherCA}, "not signed by a trusted CA"},
		{"wrong name", NTSConfig{Port: srv.kePort, CAFile: srv.caFile, ServerName: "other.example"}, "not valid for this server name"},
		{"missing CA file", NTSConfig{Port: srv.kePort, CAFile: "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		{"nothing listening", NTSConfig{Port: 1, CAFile: srv.caFile}, "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReporter(fastPoll)
			cfg := srv.clientConfig()
			cfg.NTS = &tt.cfg
			c, _ := startClient(t, cfg, sysTimebase{}, r)
			select {
			case f := <-r.faults:
				if !strings.HasPrefix(f, "NTS key exchange with 127.0.0.1:") || !strings.Contains(f, tt.want) {
					t.Errorf("fault %q; want one containing %q", f, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no fault")
			}
			if !c.Unreachable() {
				t.Error("not unreachable")
			}
			deadline := time.Now().Add(2 * time.Second)
			for st, _ := c.NTSStatus(); !strings.Contains(st.KEError, tt.want) || !st.RetryAt.After(time.Now()) || !st.LastKE.IsZero(); st, _ = c.NTSStatus() {
				if time.Now().After(deadline) {
					t.Fatalf("NTSStatus() = %+v; want the failure %q and a retry time ahead", st, tt.want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

func TestNTSXLeaveIgnored(t *testing.T) {
	cfg := ClientConfig{Address: "127.0.0.1", XLeave: true, NTS: &NTSConfig{}}
	c, err := NewClient(cfg, sysTimebase{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.XLeave {
		t.Error("xleave kept with NTS")
	}
	if c.keServer() != "127.0.0.1:4460" {
		t.Errorf("NTS-KE server %q", c.keServer())
	}
	cfg.NTS = &NTSConfig{Port: 70000}
	if _, err := NewClient(cfg, sysTimebase{}, nil); err == nil {
		t.Error("NTS-KE port 70000 accepted")
	}
}

func TestPoolMemberNTS(t *testing.T) {
	tests := []struct {
		name string
		in   *NTSConfig
		want *NTSConfig
	}{
		{"off", nil, nil},
		{"pool name checked", &NTSConfig{CAFile: "/ca"}, &NTSConfig{CAFile: "/ca", ServerName: "pool.test"}},
		{"own KE server", &NTSConfig{Server: "ke.test", Port: 5}, &NTSConfig{Server: "ke.test", Port: 5}},
		{"name given", &NTSConfig{ServerName: "x.test"}, &NTSConfig{ServerName: "x.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool(PoolConfig{Address: "pool.test", NTS: tt.in}, sysTimebase{}, nil)
			got := p.memberNTS()
			if (got == nil) != (tt.want == nil) || got != nil && !reflect.DeepEqual(*got, *tt.want) {
				t.Errorf("memberNTS() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestNTSPool: each pool member's key exchange goes to its own address and
// must present a certificate for the pool's name.
func TestNTSPool(t *testing.T) {
	tests := []struct {
		name  string
		pool  string
		works bool
	}{
		{"certificate names the pool", "pool.test", true},
		{"certificate does not name the pool", "other.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newNTSTestServer(t)
			res := &fakeResolver{addrs: map[string][]netip.Addr{tt.pool: {netip.MustParseAddr("127.0.0.1")}}}
			p := NewPool(PoolConfig{Address: tt.pool, MinPoll: -6, MaxPoll: -6, Resolver: res,
				NTS: &NTSConfig{Port: srv.kePort, CAFile: srv.caFile}}, sysTimebase{}, zaptest.NewLogger(t))
			reg := newRegistry()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx, reg) }()
			defer func() { cancel(); <-done; reg.wg.Wait() }()
			deadline := time.Now().Add(3 * time.Second)
			for {
				srv.mu.Lock()
				reqs := srv.reqs
				srv.mu.Unlock()
				st := srv.ke.Stats()
				if tt.works && st.Exchanges == 1 && reqs >= 3 {
					break
				}
				if !tt.works && st.TLSErrors > 0 {
					if st.Exchanges != 0 || reqs != 0 {
						t.Errorf("%d key exchanges, %d NTP requests with a certificate that does not name the pool", st.Exchanges, reqs)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("key exchange stats %+v, %d NTP requests", st, reqs)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
