package peers

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestNTPAnswers checks the NTP probe against a fake server on loopback:
// only a server-mode reply that echoes the request counts.
func TestNTPAnswers(t *testing.T) {
	tests := []struct {
		name  string
		reply func(req []byte) []byte // nil: no reply
		want  bool
	}{
		{"good", func(req []byte) []byte { return reply(req, 4, true) }, true},
		{"silent", nil, false},
		{"client mode", func(req []byte) []byte { return reply(req, 3, true) }, false},
		{"wrong origin", func(req []byte) []byte { return reply(req, 4, false) }, false},
		{"short", func(req []byte) []byte { return reply(req, 4, true)[:47] }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				buf := make([]byte, 1024)
				n, from, err := c.ReadFromUDP(buf)
				if err != nil || tc.reply == nil {
					return
				}
				_, _ = c.WriteToUDP(tc.reply(buf[:n]), from)
			}()
			addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
			if got := ntpAnswers(addr, 300*time.Millisecond); got != tc.want {
				t.Errorf("ntpAnswers = %v, want %v", got, tc.want)
			}
		})
	}
}

func reply(req []byte, mode byte, echo bool) []byte {
	b := make([]byte, 48)
	b[0] = 4<<3 | mode
	if echo {
		copy(b[24:32], req[40:48])
	}
	return b
}

func TestNTPRequest(t *testing.T) {
	a := ntpRequest()
	if len(a) != 48 || a[0] != 0x23 {
		t.Fatalf("request %x", a)
	}
	time.Sleep(time.Microsecond)
	if b := ntpRequest(); string(a[40:]) == string(b[40:]) {
		t.Errorf("two requests share a transmit timestamp %x", a[40:])
	}
}
