package netstamp

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUDPSockaddr checks the destination conversion Conn and MulticastConn
// share: families, IPv6-only sockets, and the zone of link-scoped
// addresses (the bound interface's index, or else the zone looked up).
func TestUDPSockaddr(t *testing.T) {
	const bound = 7 // an interface index the socket is bound to
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		fam      int
		v6only   bool
		to       string
		ifindex  int
		wantErr  bool
		wantAddr string // "" with wantErr
		wantZone uint32
	}{
		{"v4 on v4", 4, false, "192.0.2.1:319", 0, false, "192.0.2.1", 0},
		{"mapped v4 on v4", 4, false, "[::ffff:192.0.2.1]:319", 0, false, "192.0.2.1", 0},
		{"v6 on v4", 4, false, "[2001:db8::1]:319", 0, true, "", 0},
		{"v4 on dual stack", 6, false, "192.0.2.1:319", 0, false, "::ffff:192.0.2.1", 0},
		{"v4 on v6-only", 6, true, "192.0.2.1:319", bound, true, "", 0},
		{"global on bound", 6, true, "[2001:db8::1]:319", bound, false, "2001:db8::1", 0},
		{"link-local on bound", 6, true, "[fe80::1]:319", bound, false, "fe80::1", bound},
		{"zoned link-local on bound keeps the interface", 6, true, "[fe80::1%lo]:319", bound, false, "fe80::1", bound},
		{"link-local group on bound", 6, true, "[ff02::6b]:320", bound, false, "ff02::6b", bound},
		{"zone looked up when unbound", 6, false, "[fe80::1%lo]:123", 0, false, "fe80::1", uint32(lo.Index)},
		{"unknown zone", 6, false, "[fe80::1%nosuch0]:123", 0, true, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tc.to)
			sa, err := udpSockaddr(tc.fam, tc.v6only, ap, tc.ifindex)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("%v: no error", sa)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var (
				got  netip.Addr
				port int
				zone uint32
			)
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				got, port = netip.AddrFrom4(sa.Addr), sa.Port
			case *unix.SockaddrInet6:
				got, port, zone = netip.AddrFrom16(sa.Addr), sa.Port, sa.ZoneId
			}
			if got.String() != tc.wantAddr || port != int(ap.Port()) || zone != tc.wantZone {
				t.Errorf("got %v port %d zone %d, want %s port %d zone %d", got, port, zone, tc.wantAddr, ap.Port(), tc.wantZone)
			}
		})
	}
}

// TestAddrPortOn checks the sender addresses Conn and MulticastConn
// return: unmapped IPv4, and link-local senders zoned with the bound
// interface's name without a lookup.
func TestAddrPortOn(t *testing.T) {
	ll := netip.MustParseAddr("fe80::2").As16()
	cases := []struct {
		name    string
		sa      unix.Sockaddr
		ifindex int
		ifname  string
		want    string
	}{
		{"v4", &unix.SockaddrInet4{Port: 319, Addr: [4]byte{192, 0, 2, 1}}, 0, "", "192.0.2.1:319"},
		{"mapped v4", &unix.SockaddrInet6{Port: 319, Addr: netip.MustParseAddr("::ffff:192.0.2.1").As16()}, 0, "", "192.0.2.1:319"},
		{"link-local on the bound interface", &unix.SockaddrInet6{Port: 320, Addr: ll, ZoneId: 4242}, 4242, "vtest0", "[fe80::2%vtest0]:320"},
		{"unzoned", &unix.SockaddrInet6{Port: 320, Addr: ll}, 4242, "vtest0", "[fe80::2]:320"},
		{"not a UDP address", &unix.SockaddrLinklayer{}, 0, "", "invalid AddrPort"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := addrPortOn(tc.sa, tc.ifindex, tc.ifname).String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
