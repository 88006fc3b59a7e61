package server

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/timed-project/timed/clock"
	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ntp"
	"github.com/timed-project/timed/ntp/clientlog"
	"go.uber.org/zap"
)

// captureConn keeps what a worker sends.
type captureConn struct{ sent []netstamp.Message }

func (c *captureConn) ReadBatch([]netstamp.Message) (int, error) { return 0, nil }
func (c *captureConn) WriteBatch(msgs []netstamp.Message) (int, int, error) {
	for _, m := range msgs {
		m.Buf = append([]byte(nil), m.Buf...)
		c.sent = append(c.sent, m)
	}
	return len(msgs), 0, nil
}

// socketless builds a server and one worker without sockets.
func socketless(t testing.TB, cfg Config) (*worker, *captureConn) {
	cl, err := clientlog.New(cfg.Clients)
	if err != nil {
		t.Fatal(err)
	}
	vc := clock.NewVirtual(clock.VirtualOptions{})
	s := &Server{cfg: cfg, tb: vc, log: zap.NewNop(), prec: -20, start: time.Now()}
	s.set.Store(&settings{Config: cfg, clients: cl})
	s.SetState(State{Synchronized: true, Stratum: 2, RefTime: vc.Now()})
	cc := &captureConn{}
	w := &worker{s: s, conn: cc}
	w.init()
	return w, cc
}

// FuzzServe feeds arbitrary datagrams through the request path: nothing
// panics, every reply is a server-mode packet no longer than its request,
// and its origin echoes the request. NTS is on.
func FuzzServe(f *testing.F) {
	f.Add(request(4, 1, 0, 0), byte(1))
	f.Add(request(3, 1, 0, 0), byte(2))
	f.Add(request(4, 5, 0x101, 7), byte(3))
	f.Add(append(request(4, 1, 0, 0), make([]byte, 20)...), byte(4))
	f.Add([]byte{0x1b}, byte(5))
	// NTS: an authentic request, and one with a cookie of another server.
	ring := newRing(f)
	req, _ := newNTSClient(f, ring).request(f, 1, 2)
	f.Add(req, byte(6))
	req, _ = newNTSClient(f, newRing(f)).request(f, 1, 0)
	f.Add(req, byte(7))
	w, cc := socketless(f, Config{Interleaved: true, DenyKiss: true, NTS: ring,
		Deny:    []netip.Prefix{netip.MustParsePrefix("127.0.0.200/32")},
		Clients: clientlog.Config{Size: 64, Interval: time.Second, Burst: 4, KissEvery: 2}})
	f.Fuzz(func(t *testing.T, data []byte, from byte) {
		if len(data) > maxRequest {
			data = data[:maxRequest]
		}
		in := []netstamp.Message{{Buf: make([]byte, maxRequest), N: len(data),
			Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, from}), 123), RxTime: time.Now()}}
		copy(in[0].Buf, data)
		cc.sent = cc.sent[:0]
		w.serve(in)
		if len(cc.sent) > 1 {
			t.Fatalf("%d replies to one request", len(cc.sent))
		}
		for _, m := range cc.sent {
			if len(m.Buf) > len(data) {
				t.Fatalf("reply of %d bytes to a request of %d", len(m.Buf), len(data))
			}
			if ntp.Mode(m.Buf[0]&7) != ntp.ModeServer {
				t.Fatalf("reply in mode %d", m.Buf[0]&7)
			}
			org := binary.BigEndian.Uint64(m.Buf[offOrigin:])
			if org != binary.BigEndian.Uint64(data[offTransmit:]) && org != binary.BigEndian.Uint64(data[offReceive:]) {
				t.Fatalf("origin %x echoes nothing of the request", org)
			}
		}
	})
}
