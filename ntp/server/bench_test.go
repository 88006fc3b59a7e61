package server

import (
	"net/netip"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ntp/clientlog"
)

// discardConn is a socket that sends nowhere.
type discardConn struct{}

func (discardConn) ReadBatch([]netstamp.Message) (int, error) { return 0, nil }
func (discardConn) WriteBatch(m []netstamp.Message) (int, int, error) {
	return len(m), 0, nil
}

// BenchmarkServe measures the server's own work per request (everything but
// the system calls): checks, access lists, the client table with rate
// limits, and the reply.
func BenchmarkServe(b *testing.B) {
	w, _ := socketless(b, Config{Interleaved: true,
		Deny:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Clients: clientlog.Config{Size: 65536, Interval: time.Millisecond, Burst: 16, KissEvery: 4, PrefixV4: 24, PrefixV6: 48, PrefixInterval: time.Microsecond, PrefixBurst: 256}})
	benchServe(b, w, request(4, 1, 0, 0))
}

// benchServe passes batches of req from ever new client addresses through
// w and reports the time per request.
func benchServe(b *testing.B, w *worker, req []byte) {
	w.conn = discardConn{}
	in := make([]netstamp.Message, batch)
	for i := range in {
		in[i] = netstamp.Message{Buf: make([]byte, maxRequest), N: len(req), RxTime: time.Now()}
		copy(in[i].Buf, req)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for i := range in {
			n++
			in[i].Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(n >> 16), byte(n >> 8), byte(n)}), 123)
		}
		w.serve(in)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/request")
}
