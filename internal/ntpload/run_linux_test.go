//go:build linux

package ntpload

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/nts"
)

// responder is a tiny NTP server for tests: for the i-th request it sends
// whatever reply(i, request) returns, from its socket or, for foreign
// replies, from another one.
type responder struct {
	conn, other *net.UDPConn
	reply       func(i int, req []byte) (out [][]byte, foreign bool)

	mu       sync.Mutex
	received int
	sources  map[netip.Addr]int
	ports    map[uint16]bool
}

func startResponder(t *testing.T, reply func(i int, req []byte) ([][]byte, bool)) *responder {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadBuffer(8 << 20)
		t.Cleanup(func() { c.Close() })
		return c
	}
	r := &responder{conn: listen(), other: listen(), reply: reply, sources: map[netip.Addr]int{}, ports: map[uint16]bool{}}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := r.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			i := r.received
			r.received++
			r.sources[from.Addr()]++
			r.ports[from.Port()] = true
			r.mu.Unlock()
			out, foreign := r.reply(i, buf[:n])
			c := r.conn
			if foreign {
				c = r.other
			}
			for _, b := range out {
				_, _ = c.WriteToUDPAddrPort(b, from)
			}
		}
	}()
	return r
}

func (r *responder) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// answer is a stratum-1 response to req; kiss makes it a kiss with that
// code.
func answer(req []byte, kiss string) []byte {
	b := make([]byte, headerLen)
	b[0] = 4<<3 | modeServer
	b[offStratum] = 1
	if kiss != "" {
		b[offStratum] = 0
		copy(b[offRefID:], kiss)
	}
	copy(b[offOrigin:offOrigin+8], req[offTransmit:offTransmit+8])
	return b
}

// want is what a run should count, given the number of requests the
// responder received.
type want struct {
	answered, kissed, unmatched, duplicates, malformed func(n int) int
}

func every(k int) func(n int) int { return func(n int) int { return (n + k - 1) / k } }
func allBut(k int) func(n int) int {
	return func(n int) int { return n - every(k)(n) }
}
func none(int) int  { return 0 }
func all(n int) int { return n }

func TestRunCounts(t *testing.T) {
	tests := []struct {
		name  string
		reply func(i int, req []byte) ([][]byte, bool)
		want  want
	}{
		{"all answered", func(i int, req []byte) ([][]byte, bool) {
			return [][]byte{answer(req, "")}, false
		}, want{all, none, none, none, none}},
		{"every other dropped", func(i int, req []byte) ([][]byte, bool) {
			if i%2 == 1 {
				return nil, false
			}
			return [][]byte{answer(req, "")}, false
		}, want{every(2), none, none, none, none}},
		{"every 4th a RATE kiss", func(i int, req []byte) ([][]byte, bool) {
			if i%4 == 0 {
				return [][]byte{answer(req, "RATE")}, false
			}
			return [][]byte{answer(req, "")}, false
		}, want{allBut(4), every(4), none, none, none}},
		{"every 5th answered twice", func(i int, req []byte) ([][]byte, bool) {
			if i%5 == 0 {
				return [][]byte{answer(req, ""), answer(req, "")}, false
			}
			return [][]byte{answer(req, "")}, false
		}, want{all, none, none, every(5), none}},
		{"every 3rd answered with a client packet", func(i int, req []byte) ([][]byte, bool) {
			if i%3 == 0 {
				b := answer(req, "")
				b[0] = 4<<3 | modeClient
				return [][]byte{b}, false
			}
			return [][]byte{answer(req, "")}, false
		}, want{allBut(3), none, none, none, every(3)}},
		{"every 3rd answered short", func(i int, req []byte) ([][]byte, bool) {
			if i%3 == 0 {
				return [][]byte{answer(req, "")[:40]}, false
			}
			return [][]byte{answer(req, "")}, false
		}, want{allBut(3), none, none, none, every(3)}},
		{"every other with a wrong origin", func(i int, req []byte) ([][]byte, bool) {
			b := answer(req, "")
			if i%2 == 0 {
				binary.BigEndian.PutUint64(b[offOrigin:], binary.BigEndian.Uint64(b[offOrigin:])^1<<40)
			}
			return [][]byte{b}, false
		}, want{allBut(2), none, every(2), none, none}},
		{"every other from another port", func(i int, req []byte) ([][]byte, bool) {
			return [][]byte{answer(req, "")}, i%2 == 0
		}, want{allBut(2), none, every(2), none, none}},
	}
	for _, gso := range []bool{true, false} {
		for _, tt := range tests {
			name := tt.name
			if !gso {
				name += " without GSO"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := startResponder(t, tt.reply)
				o := Options{Server: r.addr(), Sources: 10, Rate: 4000, Duration: 250 * time.Millisecond,
					Burst: 4, NoGSO: !gso, Wait: 200 * time.Millisecond, ServerPID: os.Getpid()}
				res, err := Run(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				r.mu.Lock()
				n, sources := r.received, len(r.sources)
				r.mu.Unlock()
				if uint64(n) != res.Sent || n < 500 || n > 1100 {
					t.Fatalf("sent %d, the responder received %d; want the same, about 1000", res.Sent, n)
				}
				if sources != 10 {
					t.Errorf("%d source addresses seen, want 10", sources)
				}
				got := [5]uint64{res.Answered, res.Kissed, res.Unmatched, res.Duplicates, res.Malformed}
				exp := [5]uint64{uint64(tt.want.answered(n)), uint64(tt.want.kissed(n)), uint64(tt.want.unmatched(n)),
					uint64(tt.want.duplicates(n)), uint64(tt.want.malformed(n))}
				if got != exp {
					t.Fatalf("answered, kissed, unmatched, duplicates, malformed = %v; want %v", got, exp)
				}
				if res.Kissed > 0 && res.Kisses["RATE"] != res.Kissed {
					t.Errorf("kisses by code %v, want all RATE", res.Kisses)
				}
				wantLoss := 1 - float64(exp[0]+exp[1])/float64(n)
				if math.Abs(res.Loss-wantLoss) > 1e-9 {
					t.Errorf("loss %g, want %g", res.Loss, wantLoss)
				}
				if res.Answered > 0 && (res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P999 || res.Latency.P999 > res.Latency.Max*1.02) {
					t.Errorf("latency percentiles out of order: %+v", res.Latency)
				}
				if res.ServerCPU <= 0 || res.PerCPUSecond <= 0 {
					t.Errorf("server CPU %g s, %g responses per CPU-second: want both above 0", res.ServerCPU, res.PerCPUSecond)
				}
			})
		}
	}
}

// TestRunSpread checks the rate, the source addresses and the workers' ports.
func TestRunSpread(t *testing.T) {
	// wantSources is the number of source addresses seen, 0 meaning one
	// for each request.
	tests := []struct {
		name                  string
		o                     Options
		wantSent, wantSources int
		ports                 int
	}{
		{"one source", Options{Sources: 1, Rate: 5000, Duration: 200 * time.Millisecond}, 1000, 1, 1},
		{"two workers share one source", Options{Sources: 1, Workers: 2, Rate: 5000, Duration: 200 * time.Millisecond}, 1000, 1, 2},
		{"a new address for each request", Options{Sources: 100_000, Burst: 1, Rate: 20_000, Duration: 200 * time.Millisecond}, 4000, 0, 1},
		{"three workers, 30 sources", Options{Sources: 30, Workers: 3, Burst: 2, Rate: 6000, Duration: 200 * time.Millisecond}, 1200, 30, 3},
		{"plain sends, bursts of 3", Options{Sources: 7, Burst: 3, NoGSO: true, Rate: 5000, Duration: 200 * time.Millisecond}, 1000, 7, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, func(_ int, req []byte) ([][]byte, bool) { return [][]byte{answer(req, "")}, false })
			tt.o.Server = r.addr()
			res, err := Run(context.Background(), tt.o)
			if err != nil {
				t.Fatal(err)
			}
			// Never above the rate; below it only when the machine is so
			// busy that the sender skips what it could not send in time.
			if r := float64(res.Sent) / float64(tt.wantSent); r > 1.02 || r < 0.8 {
				t.Errorf("sent %d, want %d (+2%%, -20%%)", res.Sent, tt.wantSent)
			}
			if res.Answered != res.Sent || res.Loss != 0 {
				t.Errorf("answered %d of %d", res.Answered, res.Sent)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			want := tt.wantSources
			if want == 0 {
				want = r.received
			}
			if len(r.sources) != want {
				t.Errorf("%d source addresses seen, want %d", len(r.sources), want)
			}
			if len(r.ports) != tt.ports {
				t.Errorf("%d source ports seen, want %d", len(r.ports), tt.ports)
			}
			for a := range r.sources {
				if b := a.As4(); b[0] != 127 || b[3] == 0 || b[3] == 255 {
					t.Errorf("source address %s", a)
				}
			}
		})
	}
}

// TestRunMaximal sends as fast as it can for a moment and cancels.
func TestRunMaximal(t *testing.T) {
	r := startResponder(t, func(_ int, req []byte) ([][]byte, bool) { return [][]byte{answer(req, "")}, false })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Options{Server: r.addr(), Sources: 64, Duration: 10 * time.Second, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seconds > 1 || res.Sent < 10_000 {
		t.Fatalf("sent %d in %.2f s; want a fast run cut short by the context", res.Sent, res.Seconds)
	}
	if res.Answered == 0 || res.Unmatched != 0 || res.Malformed != 0 {
		t.Fatalf("answered %d, unmatched %d, malformed %d", res.Answered, res.Unmatched, res.Malformed)
	}
}

func TestRunNoServer(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	res, err := Run(context.Background(), Options{Server: addr, Rate: 1000, Duration: 50 * time.Millisecond, Wait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Answered != 0 || res.Loss != 1 {
		t.Fatalf("sent %d, answered %d, loss %g; want all lost", res.Sent, res.Answered, res.Loss)
	}
	if _, err := Run(context.Background(), Options{Server: addr, ServerPID: -1}); err == nil {
		t.Fatal("no error for a server process that does not exist")
	}
}

func TestProcessCPU(t *testing.T) {
	deadline := time.Now().Add(30 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	cpu, err := ProcessCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("ProcessCPU(self) = %v, %v", cpu, err)
	}
	threads, err := Threads(os.Getpid())
	if err != nil || len(threads) == 0 {
		t.Fatalf("Threads(self) = %v, %v", threads, err)
	}
	var sum time.Duration
	for _, th := range threads {
		sum += th.CPU
		if th.Processor < 0 || th.Name == "" {
			t.Errorf("thread %+v", th)
		}
	}
	if sum > cpu+time.Duration(len(threads))*10*time.Millisecond {
		t.Errorf("threads' CPU %v exceeds the process's %v", sum, cpu)
	}
	if _, err := ProcessCPU(-1); err == nil {
		t.Error("no error for pid -1")
	}
}

func TestRxqOverflow(t *testing.T) {
	first := unix.CmsgSpace(4)
	b := make([]byte, 2*first)
	putCmsgHeader(b, unix.IPPROTO_IP, unix.IP_TTL, 4) // another control message first
	putCmsgHeader(b[first:], unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 4)
	binary.NativeEndian.PutUint32(b[first+unix.CmsgLen(0):], 77)
	tests := []struct {
		name string
		n    int
		want uint32
		ok   bool
	}{
		{"both", len(b), 77, true},
		{"first only", first, 0, false},
		{"none", 0, 0, false},
		{"cut", first + unix.CmsgLen(4) - 1, 0, false},
	}
	for _, tt := range tests {
		got, ok := rxqOverflow(b, tt.n)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: rxqOverflow = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFindPktinfo(t *testing.T) {
	b := make([]byte, recvOOBLen)
	putCmsgHeader(b, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 4)
	putCmsgHeader(b[unix.CmsgSpace(4):], unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
	dst := [4]byte{127, 1, 2, 3}
	copy(b[unix.CmsgSpace(4)+unix.CmsgLen(0)+8:], dst[:])
	tests := []struct {
		name string
		n    int
		ok   bool
	}{
		{"both", len(b), true},
		{"cut", unix.CmsgSpace(4) + unix.CmsgLen(unix.SizeofInet4Pktinfo) - 1, false},
		{"none", 0, false},
	}
	for _, tt := range tests {
		data, ok := findCmsg(b, tt.n, unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
		if ok != tt.ok || (ok && [4]byte(data[8:12]) != dst) {
			t.Errorf("%s: findCmsg = %v, %v; want the destination %v: %v", tt.name, data, ok, dst, tt.ok)
		}
	}
}

// TestRunNTS: with NTS clients, every request is an NTS request that an
// NTS server accepts (unique identifier, cookie, authenticator), the
// sources are dealt out among the clients, and the responses are counted.
func TestRunNTS(t *testing.T) {
	ring, err := nts.NewKeyRing(time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Rotate(time.Now()); err != nil {
		t.Fatal(err)
	}
	var clients []NTSClient
	for range 3 {
		c2s, s2c := make([]byte, 32), make([]byte, 32)
		_, _ = rand.Read(c2s)
		_, _ = rand.Read(s2c)
		cookies, err := ring.MakeCookies(nts.AEADAESSIVCMAC256, c2s, s2c, 1)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := nts.NewClientSession(nts.AEADAESSIVCMAC256, c2s, s2c)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, NTSClient{Session: sess, Cookie: cookies[0]})
	}
	var mu sync.Mutex
	bad, ids := 0, map[string]bool{}
	r := startResponder(t, func(i int, pkt []byte) ([][]byte, bool) {
		req, err := nts.ReadRequest(pkt, ring)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			bad++
			return nil, false
		}
		ids[string(req.UniqueID)] = true
		out, err := req.AppendResponse(answer(pkt, ""), ring)
		if err != nil {
			bad++
			return nil, false
		}
		return [][]byte{out}, false
	})
	for _, gso := range []bool{true, false} {
		res, err := Run(context.Background(), Options{Server: r.addr(), Sources: 6, Rate: 4000, Duration: 200 * time.Millisecond,
			Burst: 4, NoGSO: !gso, Wait: 200 * time.Millisecond, NTS: clients})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if bad != 0 {
			t.Errorf("GSO %v: the server refused %d requests", gso, bad)
		}
		if uint64(len(ids)) < res.Sent {
			t.Errorf("GSO %v: %d unique identifiers in %d requests", gso, len(ids), res.Sent)
		}
		mu.Unlock()
		if res.Sent < 400 || res.Answered != res.Sent || res.Malformed != 0 || res.Unmatched != 0 {
			t.Errorf("GSO %v: sent %d, answered %d, malformed %d, unmatched %d: want all answered", gso, res.Sent, res.Answered, res.Malformed, res.Unmatched)
		}
		if !res.NTS || res.RequestLen != headerLen+nts.RequestFieldsLen(len(clients[0].Cookie), 0) {
			t.Errorf("result says NTS %v, %d-byte requests", res.NTS, res.RequestLen)
		}
	}
	// Cookies of different lengths are refused.
	short := append([]NTSClient{}, clients...)
	short[1].Cookie = short[1].Cookie[:len(short[1].Cookie)-4]
	if _, err := Run(context.Background(), Options{Server: r.addr(), NTS: short}); err == nil {
		t.Error("cookies of different lengths accepted")
	}
}
