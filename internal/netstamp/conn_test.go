package netstamp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

func listenOrSkip(t *testing.T, network string, addr netip.AddrPort) *Conn {
	t.Helper()
	c, err := Listen(network, addr)
	if err != nil {
		if network == "udp6" || addr.Addr().Is6() {
			testenv.Missing(t, fmt.Sprintf("IPv6 loopback (%v)", err))
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantStamping() Stamping {
	if runtime.GOOS == "linux" {
		return StampKernel
	}
	return StampUser
}

func TestLoopbackExchange(t *testing.T) {
	cases := []struct {
		name     string
		network  string
		bind     netip.AddrPort
		loopback netip.Addr
	}{
		{"ipv4", "udp4", netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddr("127.0.0.1")},
		{"ipv6", "udp6", netip.MustParseAddrPort("[::1]:0"), netip.MustParseAddr("::1")},
		{"ipv4 on wildcard", "udp4", netip.AddrPort{}, netip.MustParseAddr("127.0.0.1")},
		{"dual stack, ipv4 peer", "udp", netip.AddrPort{}, netip.MustParseAddr("127.0.0.1")},
		{"dual stack, ipv6 peer", "udp", netip.AddrPort{}, netip.MustParseAddr("::1")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := listenOrSkip(t, tc.network, tc.bind)
			b := listenOrSkip(t, tc.network, tc.bind)
			if a.LocalAddr().Port() == 0 {
				t.Fatalf("no ephemeral port: %v", a.LocalAddr())
			}
			to := netip.AddrPortFrom(tc.loopback, b.LocalAddr().Port())
			for i := range 20 {
				msg := []byte{byte(i), 1, 2, 3}
				before := time.Now()
				tx, txst, err := a.WriteTo(msg, to)
				if err != nil {
					t.Fatal(err)
				}
				if txst != wantStamping() {
					t.Errorf("send %d: tx stamping %v, want %v", i, txst, wantStamping())
				}
				buf := make([]byte, 64)
				b.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, from, rx, rxst, err := b.ReadFrom(buf)
				after := time.Now()
				if err != nil {
					t.Fatal(err)
				}
				if n != len(msg) || buf[0] != byte(i) {
					t.Fatalf("got %x, want %x", buf[:n], msg)
				}
				if from.Port() != a.LocalAddr().Port() || from.Addr() != tc.loopback {
					t.Errorf("from %v, want %v port %d", from, tc.loopback, a.LocalAddr().Port())
				}
				if rxst != wantStamping() {
					t.Errorf("rx stamping %v, want %v", rxst, wantStamping())
				}
				if tx.Before(before) || tx.After(rx) || rx.After(after) {
					t.Errorf("want before %v ≤ tx %v ≤ rx %v ≤ after %v", before, tx, rx, after)
				}
				if d := after.Sub(rx); d > 10*time.Millisecond {
					t.Errorf("rx timestamp %v before the read returned", d)
				}
			}
		})
	}
}

func TestReadDeadlineAndClose(t *testing.T) {
	c := listenOrSkip(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, _, _, err := c.ReadFrom(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	c.SetReadDeadline(time.Time{})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, _, _, err = c.ReadFromContext(ctx, make([]byte, 10))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context deadline", err)
	}

	done := make(chan error, 1)
	go func() {
		_, _, _, _, err := c.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("err after close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadFrom did not return after Close")
	}
	if _, _, err := c.WriteTo([]byte{1}, netip.MustParseAddrPort("127.0.0.1:9")); err == nil {
		t.Error("WriteTo on a closed socket succeeded")
	}
}

func TestTruncated(t *testing.T) {
	a := listenOrSkip(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	b := listenOrSkip(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if _, _, err := a.WriteTo(make([]byte, 100), b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, _, _, err := b.ReadFrom(make([]byte, 48))
	if !errors.Is(err, ErrTruncated) || n != 48 {
		t.Fatalf("n=%d err=%v, want 48 and ErrTruncated", n, err)
	}
}

func TestListenErrors(t *testing.T) {
	cases := []struct {
		network string
		addr    string
	}{
		{"udp4", "[::1]:0"},
		{"udp6", "127.0.0.1:0"},
		{"tcp", "127.0.0.1:0"},
	}
	for _, tc := range cases {
		if c, err := Listen(tc.network, netip.MustParseAddrPort(tc.addr)); err == nil {
			c.Close()
			t.Errorf("Listen(%s, %s) succeeded", tc.network, tc.addr)
		}
	}
	c := listenOrSkip(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if _, _, err := c.WriteTo([]byte{1}, netip.MustParseAddrPort("[::1]:123")); err == nil {
		t.Error("IPv6 destination on an IPv4 socket accepted")
	}
}

func TestNetworkFor(t *testing.T) {
	for a, want := range map[string]string{"192.0.2.1": "udp4", "::ffff:192.0.2.1": "udp4", "2001:db8::1": "udp6"} {
		if got := NetworkFor(netip.MustParseAddr(a)); got != want {
			t.Errorf("NetworkFor(%s) = %s, want %s", a, got, want)
		}
	}
}

// Many sends in a row each get their own kernel timestamp, in order.
func TestTxStampsMatchSends(t *testing.T) {
	a := listenOrSkip(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	b := listenOrSkip(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	var last time.Time
	for i := range 200 {
		tx, st, err := a.WriteTo([]byte{byte(i)}, b.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		if st != wantStamping() {
			t.Fatalf("send %d: stamping %v", i, st)
		}
		if tx.Before(last) {
			t.Fatalf("send %d: tx %v before the previous %v", i, tx, last)
		}
		last = tx
		b.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, _, _, err := b.ReadFrom(make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
	}
}
