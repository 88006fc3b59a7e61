//go:build linux

package ntpload

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/csptp"
)

// TestRunPTPCounts runs PTP loads against a responder that answers in
// good and bad ways, and checks how the answers are matched and counted.
func TestRunPTPCounts(t *testing.T) {
	sync := func(req []byte) []byte { return ptpAnswer(t, req, protocol.MessageSync, false) }
	announce := func(req []byte) []byte { return ptpAnswer(t, req, protocol.MessageAnnounce, false) }
	csptpSync := func(req []byte) []byte { return ptpAnswer(t, req, protocol.MessageSync, true) }
	otherSeq := func(req []byte) []byte {
		b := csptpSync(req)
		binary.BigEndian.PutUint16(b[ptpSeqOffset:], binary.BigEndian.Uint16(b[ptpSeqOffset:])^0x8000)
		return b
	}
	var prev []byte // the last request "csptp answer to another address" answered
	tests := []struct {
		name     string
		protocol string
		reply    func(req []byte) ([][]byte, bool)
		want     want
		respLen  float64
	}{
		{"sptp", ProtocolSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{sync(r), announce(r)}, false },
			want{all, none, none, none, none}, 44 + 64},
		{"sptp announce first", ProtocolSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{announce(r), sync(r)}, false },
			want{all, none, none, none, none}, 44 + 64},
		{"sptp without announce", ProtocolSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{sync(r)}, false },
			want{none, none, none, none, none}, 0},
		{"sptp sync twice", ProtocolSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{sync(r), sync(r), announce(r)}, false },
			want{all, none, none, all, none}, 44 + 64},
		{"csptp", ProtocolCSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{csptpSync(r)}, false },
			want{all, none, none, none, none}, 66},
		// A second answer to the previous request, which came from another
		// source address, goes to this request's address: it matches no
		// request there. It comes before this request's answer, so the run
		// cannot end before it is counted.
		{"csptp answer to another address", ProtocolCSPTP, func(r []byte) ([][]byte, bool) {
			out := [][]byte{csptpSync(r)}
			if prev != nil {
				out = [][]byte{csptpSync(prev), out[0]}
			}
			prev = append(prev[:0], r...)
			return out, false
		}, want{all, none, func(n int) int { return n - 1 }, none, none}, 66},
		{"csptp from another port", ProtocolCSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{csptpSync(r)}, true },
			want{all, none, none, none, none}, 66},
		{"csptp other sequence", ProtocolCSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{otherSeq(r)}, false },
			want{none, none, all, none, none}, 0},
		{"sptp answer to csptp", ProtocolCSPTP, func(r []byte) ([][]byte, bool) { return [][]byte{sync(r)}, false },
			want{none, none, none, none, all}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, func(_ int, req []byte) ([][]byte, bool) { return tt.reply(req) })
			res, err := Run(context.Background(), Options{Server: r.addr(), Protocol: tt.protocol, Sources: 3, Rate: 2000,
				Duration: 200 * time.Millisecond, Burst: 1, Wait: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			n := r.received
			r.mu.Unlock()
			if n == 0 || uint64(n) != res.Sent {
				t.Fatalf("responder received %d of %d requests", n, res.Sent)
			}
			got := [5]uint64{res.Answered, res.Kissed, res.Unmatched, res.Duplicates, res.Malformed}
			w := [5]uint64{uint64(tt.want.answered(n)), uint64(tt.want.kissed(n)), uint64(tt.want.unmatched(n)), uint64(tt.want.duplicates(n)), uint64(tt.want.malformed(n))}
			if got != w {
				t.Errorf("answered, kissed, unmatched, duplicates, malformed = %v; want %v", got, w)
			}
			if res.ResponseLen != tt.respLen {
				t.Errorf("bytes per answer %.1f, want %.1f", res.ResponseLen, tt.respLen)
			}
			if res.Protocol != tt.protocol {
				t.Errorf("result protocol %q, want %q", res.Protocol, tt.protocol)
			}
		})
	}
}

// systemTimebase is the system clock as a csptp server's timebase.
type systemTimebase struct{}

func (systemTimebase) Now() time.Time                     { return time.Now() }
func (systemTimebase) FromSystem(sys time.Time) time.Time { return sys }

// TestRunCSPTPServer loads timed's CSPTP server, in this process on
// loopback, at a low rate: every request is answered, an answer has the
// length the server says, and a server that refuses to amplify answers
// padded requests only.
func TestRunCSPTPServer(t *testing.T) {
	tests := []struct {
		protocol string
		refuse   bool
		pad      bool
	}{
		{ProtocolSPTP, false, false},
		{ProtocolCSPTP, false, false},
		{ProtocolSPTP, true, false},
		{ProtocolCSPTP, true, false},
		{ProtocolSPTP, true, true},
		{ProtocolCSPTP, true, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/refuse=%v/pad=%v", tt.protocol, tt.refuse, tt.pad), func(t *testing.T) {
			srv, err := csptp.NewServer(csptp.ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Ephemeral: true,
				ClockIdentity: 0x1122334455667788, RefuseAmplification: tt.refuse, Workers: 1}, systemTimebase{}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			stopped := false
			stop := func() {
				if stopped {
					return
				}
				stopped = true
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
			defer stop()
			res, err := Run(context.Background(), Options{Server: srv.Addr(), Protocol: tt.protocol, Pad: tt.pad, Sources: 50,
				Rate: 1000, Duration: 300 * time.Millisecond, Burst: 1, Wait: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			// The server counts an answer after sending it: stop it before
			// reading its counters, so the last answer is counted.
			stop()
			p, _ := ptpProtocol(tt.protocol)
			c := srv.Counters()
			refused := tt.refuse && !tt.pad
			t.Logf("sent %d, answered %d, %d-byte requests, %.0f bytes per answer; server answered %v, dropped %v",
				res.Sent, res.Answered, res.RequestLen, res.ResponseLen, c.Answered, c.Dropped)
			if res.Sent < 100 {
				t.Fatalf("sent %d requests, want about 300", res.Sent)
			}
			if refused {
				if res.Answered != 0 || c.Dropped[csptp.DropTooShort] != res.Sent {
					t.Errorf("answered %d, server dropped %d as too short, of %d; want none answered, all dropped",
						res.Answered, c.Dropped[csptp.DropTooShort], res.Sent)
				}
				return
			}
			if res.Answered != res.Sent || c.Answered[p] != res.Sent || res.Unmatched+res.Duplicates+res.Malformed != 0 {
				t.Errorf("sent %d, answered %d (server: %d), unmatched %d, duplicates %d, malformed %d; want every request answered once",
					res.Sent, res.Answered, c.Answered[p], res.Unmatched, res.Duplicates, res.Malformed)
			}
			if res.ResponseLen != float64(csptp.AnswerLen(p)) {
				t.Errorf("%.1f bytes per answer, want %d", res.ResponseLen, csptp.AnswerLen(p))
			}
			if tt.refuse && res.ResponseLen > float64(res.RequestLen) {
				t.Errorf("refusing to amplify, the server answered %d-byte requests with %.0f bytes", res.RequestLen, res.ResponseLen)
			}
			if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P50 {
				t.Errorf("latency %+v", res.Latency)
			}
		})
	}
}
