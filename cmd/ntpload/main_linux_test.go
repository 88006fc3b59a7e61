//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/ntpload"
)

// echoServer answers every datagram with a server-mode copy whose origin
// timestamp is the request's transmit timestamp.
func echoServer(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 48 {
				continue
			}
			copy(buf[24:32], buf[40:48])
			buf[0], buf[1] = 4<<3|4, 1
			_, _ = c.WriteToUDPAddrPort(buf[:48], from)
		}
	}()
	return c.LocalAddr().String()
}

func TestRun(t *testing.T) {
	addr := echoServer(t)
	tests := []struct {
		name   string
		output string
		check  func(t *testing.T, out string)
	}{
		{"json", "json", func(t *testing.T, out string) {
			var r ntpload.Result
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if r.Sent == 0 || r.Answered != r.Sent || r.Sources != 3 || r.Offered != 2000 {
				t.Fatalf("result %+v", r)
			}
		}},
		{"text", "text", func(t *testing.T, out string) {
			for _, want := range []string{"2000 req/s", "from 3 source addresses", "loss", "0.0000%", "p99.9"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"-o", tt.output, "-sources", "3", "-rate", "2000", "-d", "100ms", "-wait", "100ms", addr}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			tt.check(t, stdout.String())
		})
	}
}
