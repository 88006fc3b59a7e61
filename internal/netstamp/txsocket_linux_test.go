package netstamp

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// With SendStampedFromOwnSocket, stamped sends leave from another port of
// the same address with kernel timestamps, unstamped ones from the
// listening port; a flood that fills the listening socket's receive
// buffer, and one sent to the transmit socket's own port, do not cost the
// stamped sends their timestamps.
func TestSendStampedFromOwnSocket(t *testing.T) {
	for _, tc := range []struct {
		name, network string
		bind          netip.AddrPort
		peer          netip.Addr
	}{
		{"ipv4", "udp4", netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddr("127.0.0.1")},
		{"dual stack", "udp", netip.AddrPort{}, netip.MustParseAddr("::1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listenOrSkip(t, tc.network, tc.bind)
			if err := srv.SendStampedFromOwnSocket(); err != nil {
				t.Fatal(err)
			}
			cli := listenOrSkip(t, tc.network, tc.bind)
			cliAddr := netip.AddrPortFrom(tc.peer, cli.LocalAddr().Port())
			srvAddr := netip.AddrPortFrom(tc.peer, srv.LocalAddr().Port())
			read := func() netip.AddrPort {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				buf := make([]byte, 64)
				_, from, _, _, err := cli.ReadFromContext(ctx, buf)
				if err != nil {
					t.Fatal(err)
				}
				return from
			}

			// The listening socket's receive buffer full: nobody reads it.
			flood := listenOrSkip(t, tc.network, tc.bind)
			for range 20000 {
				if err := flood.WriteToUnstamped(make([]byte, 48), srvAddr); err != nil {
					t.Fatal(err)
				}
			}
			var txPort uint16
			for i := range 50 {
				start := time.Now()
				tx, st, err := srv.WriteTo([]byte("stamped"), cliAddr)
				took := time.Since(start)
				if err != nil || st != StampKernel || tx.IsZero() {
					t.Fatalf("send %d: %v %v %v", i, tx, st, err)
				}
				if took > TxStampWait/2 {
					t.Errorf("send %d waited %v for its timestamp", i, took)
				}
				from := read()
				if from.Addr().Unmap() != tc.peer.Unmap() || from.Port() == srv.LocalAddr().Port() {
					t.Fatalf("stamped datagram from %v, want %v and a port other than %d", from, tc.peer, srv.LocalAddr().Port())
				}
				if txPort == 0 {
					txPort = from.Port()
					// Flood the transmit socket's port too: it takes
					// nothing in.
					for range 20000 {
						if err := flood.WriteToUnstamped(make([]byte, 48), netip.AddrPortFrom(tc.peer, txPort)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if err := srv.WriteToUnstamped([]byte("plain"), cliAddr); err != nil {
				t.Fatal(err)
			}
			if from := read(); from.Port() != srv.LocalAddr().Port() {
				t.Errorf("unstamped datagram from port %d, want the listening port %d", from.Port(), srv.LocalAddr().Port())
			}
		})
	}
}
