package netstamp

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

func TestMulticastVeth(t *testing.T) {
	p := newVeth(t)
	cases := []struct {
		name    string
		network string
		group   netip.Addr
		from    func(i int) func(netip.Addr) bool // sender address check for a send from side i
	}{
		{"udp4 primary", "udp4", netip.MustParseAddr("224.0.1.129"), func(i int) func(netip.Addr) bool {
			return func(a netip.Addr) bool { return a == p[i].Addr.Addr() }
		}},
		{"udp4 peer delay", "udp4", netip.MustParseAddr("224.0.0.107"), func(i int) func(netip.Addr) bool {
			return func(a netip.Addr) bool { return a == p[i].Addr.Addr() }
		}},
		{"udp6 primary", "udp6", netip.MustParseAddr("ff0e::181"), func(i int) func(netip.Addr) bool {
			return func(a netip.Addr) bool { return a == p[i].Addr6.Addr() }
		}},
		{"udp6 peer delay", "udp6", netip.MustParseAddr("ff02::6b"), func(i int) func(netip.Addr) bool {
			// Link-local scope: the sender's link-local address, zoned
			// with the receiver's interface.
			return func(a netip.Addr) bool { return a.IsLinkLocalUnicast() && a.Zone() == p[1-i].Iface }
		}},
	}
	const port = 31319
	for _, tc := range cases {
		for _, own := range []bool{false, true} {
			name := tc.name
			if own && tc.network != "udp4" {
				continue
			}
			if own {
				name += ", own transmit socket"
			}
			t.Run(name, func(t *testing.T) { multicastVeth(t, p, tc.network, tc.group, port, own, tc.from) })
		}
	}
}

// multicastVeth exchanges stamped multicast and unicast datagrams between
// the two sides of p, each with a socket on port joined to group; with own
// each sends its stamped datagrams from its own transmit socket
// (SendStampedFromOwnSocket), which must change nothing the other side
// sees and take nothing from the listening socket.
func multicastVeth(t *testing.T, p [2]peers.VethEnd, network string, group netip.Addr, port uint16, own bool, fromSide func(int) func(netip.Addr) bool) {
	conns := openPair(t, p, func(i int) (*MulticastConn, error) {
		c, err := ListenMulticast(network, p[i].Iface, port, LinkOptions{})
		if err == nil && own {
			if err = c.SendStampedFromOwnSocket(netip.AddrPortFrom(group, port)); err != nil {
				c.Close()
			}
		}
		return c, err
	}, group)
	for i, c := range conns {
		if c.LocalAddr().Port() != port {
			t.Fatalf("side %d: bound to %v, want port %d", i, c.LocalAddr(), port)
		}
	}
	var maxD time.Duration
	buf := make([]byte, 128)
	for seq := range 20 {
		from, to := seq%2, 1-seq%2
		src, d := exchange(t, seq, conns[from], conns[to], netip.AddrPortFrom(group, port), buf)
		if !fromSide(from)(src.Addr()) || src.Port() != port {
			t.Errorf("seq %d: from %v, not side %d's address and port %d", seq, src, from, port)
		}
		maxD = max(maxD, d)
	}
	t.Logf("largest rx - tx: %v", maxD)
	// Multicast loop is off: no side read its own datagrams.
	for i := range 2 {
		conns[i].SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, src, _, _, err := conns[i].ReadFrom(buf); err == nil {
			t.Errorf("side %d read %d more bytes from %v (its own, looped back?)", i, n, src)
		}
	}
	// Unicast on the same sockets to the peer's address and port, both
	// ways: unstamped, and stamped (from the transmit socket with own,
	// which must not take the other side's unicast either).
	addr := func(i int) netip.AddrPort {
		if network == "udp6" {
			return netip.AddrPortFrom(p[i].Addr6.Addr(), port)
		}
		return netip.AddrPortFrom(p[i].Addr.Addr(), port)
	}
	for seq := range 4 {
		from, to := seq%2, 1-seq%2
		if err := conns[from].WriteToUnstamped([]byte("general"), addr(to)); err != nil {
			t.Fatal(err)
		}
		conns[to].SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, _, rxst, err := conns[to].ReadFrom(buf)
		if err != nil || string(buf[:n]) != "general" || rxst != StampKernel {
			t.Errorf("unicast to side %d: got %q, %v, %v; want \"general\" with a kernel stamp", to, buf[:n], rxst, err)
		}
		if src, _ := exchange(t, seq, conns[from], conns[to], addr(to), buf); src != addr(from) {
			t.Errorf("stamped unicast to side %d: from %v, want %v", to, src, addr(from))
		}
	}
}

// TestTxStampsMatchedUnderBurst sends a burst without reading between sends
// and checks that every transmit timestamp falls within its own send call,
// in order: a stamp given to the wrong send would fall outside it.
func TestTxStampsMatchedUnderBurst(t *testing.T) {
	p := newVeth(t)
	ports := [2]uint16{0, 31320}
	conns := openPair[*MulticastConn, netip.Addr](t, p, func(i int) (*MulticastConn, error) {
		return ListenMulticast("udp4", p[i].Iface, ports[i], LinkOptions{})
	})
	a := conns[0]
	to := netip.AddrPortFrom(p[1].Addr.Addr(), 31320)
	var last time.Time
	for i := range 200 {
		// Every fourth send asks for no stamp: the counter must skip it.
		if i%4 == 3 {
			if err := a.WriteToUnstamped([]byte{byte(i)}, to); err != nil {
				t.Fatal(err)
			}
			continue
		}
		before := time.Now()
		tx, st, err := a.WriteTo([]byte{byte(i)}, to)
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if st != StampKernel || tx.Before(before) || tx.After(after) || !tx.After(last) {
			t.Fatalf("send %d: tx %v (%v) not within [%v, %v] after the previous %v", i, tx, st, before, after, last)
		}
		last = tx
	}
}

func TestHardwareStampsUnavailable(t *testing.T) {
	p := newVeth(t)
	cases := []struct {
		name string
		open func() (func() error, error)
	}{
		{"udp4 on veth", func() (func() error, error) {
			c, err := ListenMulticast("udp4", p[0].Iface, 0, LinkOptions{HardwareStamps: true})
			if err != nil {
				return nil, err
			}
			return c.Close, nil
		}},
		{"udp6 on veth", func() (func() error, error) {
			c, err := ListenMulticast("udp6", p[0].Iface, 0, LinkOptions{HardwareStamps: true})
			if err != nil {
				return nil, err
			}
			return c.Close, nil
		}},
		{"l2 on veth", func() (func() error, error) {
			c, err := ListenPacket(p[0].Iface, 0x88F7, LinkOptions{HardwareStamps: true})
			if err != nil {
				return nil, err
			}
			return c.Close, nil
		}},
		{"udp4 on lo", func() (func() error, error) {
			c, err := ListenMulticast("udp4", "lo", 0, LinkOptions{HardwareStamps: true})
			if err != nil {
				return nil, err
			}
			return c.Close, nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				closer func() error
				oerr   error
			)
			peers.InNetns(t, p[0].Netns, func() { closer, oerr = tc.open() })
			if oerr == nil {
				closer()
				t.Fatal("hardware timestamps accepted on an interface without them")
			}
			if !errors.Is(oerr, ErrNoHardwareStamps) {
				t.Fatalf("error %v does not wrap ErrNoHardwareStamps", oerr)
			}
			t.Logf("%v", oerr)
		})
	}
}

func TestListenMulticastErrors(t *testing.T) {
	lo := "lo"
	cases := []struct {
		name    string
		network string
		ifname  string
		opts    LinkOptions
		join    string
	}{
		{"bad network", "udp", lo, LinkOptions{}, ""},
		{"no such interface", "udp4", "nosuch0", LinkOptions{}, ""},
		{"hop limit", "udp4", lo, LinkOptions{HopLimit: 256}, ""},
		{"join unicast", "udp4", lo, LinkOptions{}, "10.0.0.1"},
		{"join ipv6 group on ipv4", "udp4", lo, LinkOptions{}, "ff0e::181"},
		{"join ipv4 group on ipv6", "udp6", lo, LinkOptions{}, "224.0.1.129"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ListenMulticast(tc.network, tc.ifname, 0, tc.opts)
			if tc.join == "" {
				if err == nil {
					c.Close()
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				if tc.network == "udp6" {
					testenv.Missing(t, fmt.Sprintf("IPv6 on lo (%v)", err))
				}
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.JoinGroup(netip.MustParseAddr(tc.join)); err == nil {
				t.Fatalf("joined %s", tc.join)
			}
		})
	}
	// A transmit socket of its own: IPv4 only, connected to an IPv4 group.
	for _, tc := range []struct{ network, notFrom string }{
		{"udp4", "10.0.0.1:319"},
		{"udp4", "[ff0e::181]:319"},
		{"udp6", "[ff0e::181]:319"},
	} {
		c, err := ListenMulticast(tc.network, lo, 0, LinkOptions{})
		if err != nil {
			if tc.network == "udp6" {
				testenv.Missing(t, fmt.Sprintf("IPv6 on lo (%v)", err))
			}
			t.Fatal(err)
		}
		if err := c.SendStampedFromOwnSocket(netip.MustParseAddrPort(tc.notFrom)); err == nil {
			t.Errorf("%s: transmit socket connected to %s", tc.network, tc.notFrom)
		}
		c.Close()
	}
}
