package peers

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// WaitNTP waits up to 10 s until addr answers NTP client requests, and
// fails the test if it does not, or if p, the server, exits first.
func WaitNTP(t testing.TB, addr netip.AddrPort, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("%s exited: %v\n%s", p.Name(), p.Err(), p.Tail(20))
		}
		if ntpAnswers(addr, 200*time.Millisecond) {
			return
		}
	}
	t.Fatalf("%s does not answer NTP on %s\n%s", p.Name(), addr, p.Tail(20))
}

// ntpRequest is a client-mode NTPv4 packet whose transmit timestamp is
// random-looking, as a client's should be.
func ntpRequest() []byte {
	b := make([]byte, 48)
	b[0] = 0<<6 | 4<<3 | 3 // LI 0, VN 4, mode 3
	now := time.Now().UnixNano()
	for i := 0; i < 8; i++ {
		b[40+i] = byte(now >> (8 * i))
	}
	return b
}

// ntpAnswers sends one NTP request to addr and reports whether a server
// reply to it (mode 4, our transmit timestamp as its origin) came back
// within timeout.
func ntpAnswers(addr netip.AddrPort, timeout time.Duration) bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return false
	}
	defer c.Close()
	req := ntpRequest()
	if _, err := c.Write(req); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	return err == nil && n >= 48 && buf[0]&7 == 4 && bytes.Equal(buf[24:32], req[40:48])
}
