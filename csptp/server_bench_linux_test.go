package csptp

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkServerAnswer is the server's work for one request after it was
// read: parse, build the answer, send it (to a loopback socket that does
// not read), count it.
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
			out := make([]byte, 0, maxMessage)
			rx := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				s.answer(req, to, rx, out)
			}
			if got := s.Counters().Answered[p]; got == 0 {
				b.Fatalf("answered no %s request", p)
			}
		})
	}
}
