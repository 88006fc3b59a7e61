package csptp

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkServerAnswer is the server's work for one request after it was
// read: parse and build the answer; for SPTP also send its Sync and
// Announce (to a loopback socket that does not read) and count it (a
// CSPTP answer is sent and counted with its worker's batch).
func BenchmarkServerAnswer(b *testing.B) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	s, err := NewServer(ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Ephemeral: true, Workers: 1}, shiftedClock(0), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, p := range []Protocol{CSPTP, SPTP} {
		b.Run(p.String(), func(b *testing.B) {
			req, err := (&Request{Protocol: p, SequenceID: 7, Source: clientPort}).AppendBinary(nil)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, maxAnswer)
			sptpBuf := make([]byte, 0, maxAnswer)
			rx := time.Now()
			var last []byte
			b.ReportAllocs()
			for b.Loop() {
				last = s.answer(req, to, rx, buf, sptpBuf)
			}
			if p == CSPTP && len(last) != AnswerLen(CSPTP) {
				b.Fatalf("CSPTP answer of %d octets, want %d", len(last), AnswerLen(CSPTP))
			}
			if got := s.Counters().Answered[SPTP]; p == SPTP && got == 0 {
				b.Fatal("answered no SPTP request")
			}
		})
	}
}
