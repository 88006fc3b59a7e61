package server

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/ntp/clientlog"
	"github.com/timed-project/timed/nts"
)

// ntsClient is one NTS-KE session's worth of client state: its keys and a
// cookie sealed by ring.
type ntsClient struct {
	sess    *nts.ClientSession
	cookies [][]byte
}

func newNTSClient(t testing.TB, ring *nts.KeyRing) *ntsClient {
	t.Helper()
	c2s, s2c := make([]byte, nts.KeySize), make([]byte, nts.KeySize)
	rand.Read(c2s)
	rand.Read(s2c)
	sess, err := nts.NewClientSession(nts.AEADAESSIVCMAC256, c2s, s2c)
	if err != nil {
		t.Fatal(err)
	}
	cookies, err := ring.MakeCookies(nts.AEADAESSIVCMAC256, c2s, s2c, 8)
	if err != nil {
		t.Fatal(err)
	}
	return &ntsClient{sess: sess, cookies: cookies}
}

// request builds an NTS request with transmit timestamp xmt.
func (c *ntsClient) request(t testing.TB, xmt ntp.Timestamp, placeholders int) ([]byte, nts.UniqueID) {
	t.Helper()
	pkt, id, err := c.sess.AppendRequest(request(4, xmt, 0, 0), c.cookies[0], placeholders)
	if err != nil {
		t.Fatal(err)
	}
	c.cookies = c.cookies[1:]
	return pkt, id
}

func newRing(t testing.TB) *nts.KeyRing {
	t.Helper()
	ring, err := nts.NewKeyRing(time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	return ring
}

// ntsWorker is a socketless worker whose counters Stats reads.
func ntsWorker(t testing.TB, cfg Config) (*worker, *captureConn) {
	w, cc := socketless(t, cfg)
	w.s.workers = []*worker{w}
	return w, cc
}

// serveOne passes one datagram from `from` through the worker and returns
// the reply (nil when none).
func serveOne(w *worker, cc *captureConn, pkt []byte, from netip.Addr) []byte {
	in := []netstamp.Message{{Buf: make([]byte, maxRequest), N: len(pkt), Addr: netip.AddrPortFrom(from, 123), RxTime: time.Now()}}
	copy(in[0].Buf, pkt)
	cc.sent = cc.sent[:0]
	w.serve(in)
	if len(cc.sent) == 0 {
		return nil
	}
	return cc.sent[0].Buf
}

func TestNTS(t *testing.T) {
	ring := newRing(t)
	other := newRing(t)
	tests := []struct {
		name         string
		placeholders int
		foreign      bool         // cookie sealed by another server
		tamper       func([]byte) // applied to the request
		want         string       // "time", "nak" or "none"
		drop         string
	}{
		{name: "round trip", want: "time"},
		{name: "seven placeholders", placeholders: 7, want: "time"},
		{name: "cookie of another server", foreign: true, want: "nak", drop: DropNTSCookie},
		{name: "header tampered", tamper: func(b []byte) { b[offTransmit] ^= 1 }, want: "nak", drop: DropNTSAuth},
		{name: "cookie tampered", tamper: func(b []byte) { b[ntp.HeaderLen+4+nts.UniqueIDLen+4+30] ^= 0x80 }, want: "nak", drop: DropNTSCookie},
		{name: "authenticator tampered", tamper: func(b []byte) { b[len(b)-1] ^= 1 }, want: "nak", drop: DropNTSAuth},
		{name: "no authenticator", want: "none", drop: DropNTSMalformed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, cc := ntsWorker(t, Config{NTS: ring, Clients: clientlog.Config{Size: 64}})
			c := newNTSClient(t, ring)
			if tt.foreign {
				c = newNTSClient(t, other)
			}
			xmt := ntp.Timestamp(0x1000 + i)
			req, id := c.request(t, xmt, tt.placeholders)
			if tt.tamper != nil {
				tt.tamper(req)
			}
			if tt.name == "no authenticator" {
				req = req[:ntp.HeaderLen+4+nts.UniqueIDLen+4+nts.CookieLen]
			}
			resp := serveOne(w, cc, req, netip.MustParseAddr("127.0.0.1"))
			st := w.s.Stats()
			if tt.drop != "" && st.Dropped[tt.drop] != 1 {
				t.Errorf("dropped %v, want one %q", st.Dropped, tt.drop)
			}
			if len(resp) > len(req) {
				t.Fatalf("%d-byte response to a %d-byte request", len(resp), len(req))
			}
			switch tt.want {
			case "none":
				if resp != nil {
					t.Fatalf("answered with %d bytes, want nothing", len(resp))
				}
				return
			case "nak":
				_, err := c.sess.VerifyResponse(resp, id)
				if !errors.Is(err, nts.ErrNAK) {
					t.Fatalf("VerifyResponse: %v, want an NTS NAK", err)
				}
				if st.NTSNAK != 1 || st.Answered != 0 {
					t.Errorf("NAKs %d answered %d, want 1 0", st.NTSNAK, st.Answered)
				}
				return
			}
			cookies, err := c.sess.VerifyResponse(resp, id)
			if err != nil {
				t.Fatalf("VerifyResponse: %v", err)
			}
			if len(cookies) != 1+tt.placeholders {
				t.Errorf("%d new cookies, want %d", len(cookies), 1+tt.placeholders)
			}
			p, err := ntp.ParsePacket(resp[:ntp.HeaderLen])
			if err != nil {
				t.Fatal(err)
			}
			if p.Origin != xmt || p.Stratum != 2 || p.Receive == 0 || p.Transmit < p.Receive&^rxFlag {
				t.Errorf("header: origin %#x stratum %d receive %#x transmit %#x", p.Origin, p.Stratum, p.Receive, p.Transmit)
			}
			if st.NTS != 1 || st.Answered != 1 {
				t.Errorf("NTS %d answered %d, want 1 1", st.NTS, st.Answered)
			}
			// The new cookies work.
			c.cookies = cookies
			req2, id2 := c.request(t, xmt+1, 0)
			if _, err := c.sess.VerifyResponse(serveOne(w, cc, req2, netip.MustParseAddr("127.0.0.1")), id2); err != nil {
				t.Errorf("request with a new cookie: %v", err)
			}
		})
	}
}

// TestNTSPlainAndRateLimit: with NTS on, a plain request and one with
// non-NTS extension fields are answered as before, and the rate limit
// applies to NTS requests as to plain ones.
func TestNTSPlainAndRateLimit(t *testing.T) {
	ring := newRing(t)
	w, cc := ntsWorker(t, Config{NTS: ring, Clients: clientlog.Config{Size: 64, Interval: time.Hour, Burst: 2, KissEvery: 1}})
	c := newNTSClient(t, ring)
	from := netip.MustParseAddr("127.0.0.9")
	for i, want := range []string{"time", "time", "RATE", "RATE"} {
		req, id := c.request(t, ntp.Timestamp(i+1), 0)
		resp := serveOne(w, cc, req, from)
		_, err := c.sess.VerifyResponse(resp, id)
		switch want {
		case "time":
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		default:
			p, perr := ntp.ParsePacket(resp)
			if perr != nil || len(resp) != ntp.HeaderLen {
				t.Fatalf("request %d: %d-byte reply (%v), want a RATE kiss", i, len(resp), perr)
			}
			if k, ok := p.CheckResponse().(*ntp.KissError); !ok || k.Code != "RATE" {
				t.Errorf("request %d: %v, want a RATE kiss", i, p.CheckResponse())
			}
		}
	}
	for _, tt := range []struct {
		name string
		req  []byte
	}{
		{"plain", request(4, 7, 0, 0)},
		{"legacy MAC", append(request(4, 7, 0, 0), bytes.Repeat([]byte{1}, 20)...)},
		{"zero padding", append(request(4, 7, 0, 0), make([]byte, 64)...)},
	} {
		resp := serveOne(w, cc, tt.req, netip.MustParseAddr("127.0.0.10"))
		if len(resp) != ntp.HeaderLen {
			t.Errorf("%s: %d-byte reply, want a plain one", tt.name, len(resp))
		}
	}
}

// BenchmarkServeNTS measures the worker's NTS path per request: reading
// and authenticating the request, opening the cookie, sealing a new one
// and the response. Compare with BenchmarkServe (plain).
func BenchmarkServeNTS(b *testing.B) {
	ring := newRing(b)
	w, _ := ntsWorker(b, Config{NTS: ring, Clients: clientlog.Config{Size: 65536}})
	req, _ := newNTSClient(b, ring).request(b, 1, 0)
	benchServe(b, w, req)
	if st := w.s.Stats(); st.NTS != st.Received {
		b.Fatalf("%d NTS responses of %d requests (%v)", st.NTS, st.Received, st.Dropped)
	}
}
