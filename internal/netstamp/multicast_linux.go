//go:build linux

package netstamp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// MulticastConn is a UDP socket bound to a port on one network interface
// that sends and receives multicast (and unicast) datagrams with kernel or
// hardware send and receive timestamps, as PTP over UDP needs. ReadFrom and
// the writes may be called from different goroutines at the same time;
// writes are serialized.
type MulticastConn struct {
	link
	fam   int
	hops  int
	local netip.AddrPort
}

// ListenMulticast opens a UDP socket (network "udp4" or "udp6") bound to
// the wildcard address and port on the interface ifname (SO_BINDTODEVICE,
// SO_REUSEADDR so that ports on several interfaces can share a port
// number). Multicast datagrams it sends leave through ifname, with the hop
// limit of opts and without a copy looped back to this host. It joins no
// group until JoinGroup. Port 0 picks an ephemeral port.
func ListenMulticast(network, ifname string, port uint16, opts LinkOptions) (*MulticastConn, error) {
	keepOnce.Do(keepStampingOn)
	var fam, domain int
	switch network {
	case "udp4":
		fam, domain = 4, unix.AF_INET
	case "udp6":
		fam, domain = 6, unix.AF_INET6
	default:
		return nil, fmt.Errorf("netstamp: unsupported network %q for multicast (want udp4 or udp6)", network)
	}
	if opts.HopLimit < 0 || opts.HopLimit > 255 {
		return nil, fmt.Errorf("netstamp: hop limit %d out of range 0..255", opts.HopLimit)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("netstamp: interface %q: %w", ifname, err)
	}
	s, err := socket.Socket(domain, unix.SOCK_DGRAM, unix.IPPROTO_UDP, "netstamp-mcast", nil)
	if err != nil {
		return nil, fmt.Errorf("netstamp: socket: %w", err)
	}
	c := &MulticastConn{link: link{ifname: ifname, ifindex: ifi.Index}, fam: fam}
	if err := c.setup(s, port, opts); err != nil {
		s.Close()
		return nil, fmt.Errorf("netstamp: %s multicast socket on %s port %d: %w", network, ifname, port, err)
	}
	return c, nil
}

func (c *MulticastConn) setup(s *socket.Conn, port uint16, opts LinkOptions) error {
	hops := opts.HopLimit
	if hops == 0 {
		hops = 1
	}
	if err := s.SetsockoptInt(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := s.SetsockoptString(unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.ifname); err != nil {
		return fmt.Errorf("SO_BINDTODEVICE: %w", err)
	}
	if err := c.stamp(s, opts, unix.HWTSTAMP_FILTER_PTP_V2_L4_EVENT); err != nil {
		return err
	}
	c.hops = hops
	if err := c.k.control(c.sendOptions); err != nil {
		return err
	}
	if err := s.Bind(c.wildcard(port)); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	got, err := s.Getsockname()
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	c.local = addrPortOf(got)
	return nil
}

// wildcard is the socket address of the wildcard address and port.
func (c *MulticastConn) wildcard(port uint16) unix.Sockaddr {
	if c.fam == 4 {
		return &unix.SockaddrInet4{Port: int(port)}
	}
	return &unix.SockaddrInet6{Port: int(port)}
}

// sendOptions sets on fd what the datagrams it sends need: multicast out
// of the interface with the hop limit, no copy looped back, IPv6 only for
// an IPv6 socket.
func (c *MulticastConn) sendOptions(fd int) error {
	type opt struct {
		name       string
		level, opt int
		value      int
	}
	var opts []opt
	if c.fam == 4 {
		mreq := &unix.IPMreqn{Ifindex: int32(c.ifindex)}
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
			return fmt.Errorf("IP_MULTICAST_IF: %w", err)
		}
		opts = []opt{
			{"IP_MULTICAST_LOOP", unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0},
			{"IP_MULTICAST_TTL", unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, c.hops},
		}
	} else {
		opts = []opt{
			{"IPV6_V6ONLY", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1},
			{"IPV6_MULTICAST_IF", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, c.ifindex},
			{"IPV6_MULTICAST_LOOP", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0},
			{"IPV6_MULTICAST_HOPS", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, c.hops},
		}
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.value); err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
	}
	return nil
}

// SendStampedFromOwnSocket makes WriteTo send from a second socket on the
// same interface and port, outside the Go poller, so that nothing wakes
// between a datagram's transmit timestamp and its departure. On a socket
// in the poller the timestamp wakes the poller's thread, and where that
// thread sleeps on another CPU of a virtual machine the wake-up (an
// inter-processor interrupt, a VM exit) holds the datagram up between its
// timestamp and the wire. Measured on a veth in this project's VM (from
// the transmit timestamp to the receiver's): 4.2–5.4 µs median and
// 7.8–9.4 µs at the 90th percentile from the listening socket, 2.5 and
// 2.9 µs from a socket of its own; a PTP slave's Delay_Reqs next to a
// ptp4l master, 7.9 µs median and 21.6 µs at the 90th percentile, against
// 2.5 and 2.8 µs (and the master's Syncs, from ptp4l, 2.2 and 2.6 µs).
//
// The second socket receives nothing: it is connected to notFrom, an
// address no datagram comes from (the multicast group it sends to), which
// keeps the kernel from handing it what arrives at the port, and a socket
// filter drops anything else.
// Its datagrams keep the port as their source, as masters that answer a
// request's source expect. IPv4 only: connecting fixes a socket's source
// address, and an IPv6 interface has several, of different scopes, each
// right for other destinations.
func (c *MulticastConn) SendStampedFromOwnSocket(notFrom netip.AddrPort) error {
	if c.fam != 4 {
		return errors.New("netstamp: a transmit socket of its own is for IPv4 only")
	}
	if !notFrom.Addr().Is4() || !notFrom.Addr().IsMulticast() {
		return fmt.Errorf("netstamp: transmit socket: %s is not an IPv4 multicast address", notFrom.Addr())
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("netstamp: transmit socket: %w", err)
	}
	fail := func(what string, err error) error {
		unix.Close(fd)
		return fmt.Errorf("netstamp: transmit socket on %s: %s: %w", c.ifname, what, err)
	}
	if err := dropAllInput(fd); err != nil {
		return fail("SO_ATTACH_FILTER", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.ifname); err != nil {
		return fail("SO_BINDTODEVICE", err)
	}
	if err := c.sendOptions(fd); err != nil {
		return fail("options", err)
	}
	if err := unix.Bind(fd, c.wildcard(c.local.Port())); err != nil {
		return fail("bind", err)
	}
	peer, err := c.sockaddr(notFrom)
	if err != nil {
		return fail("address", err)
	}
	if err := unix.Connect(fd, peer); err != nil {
		return fail("connect", err)
	}
	return c.k.takeTxSocket(fd)
}

// JoinGroup joins the multicast group on the socket's interface.
func (c *MulticastConn) JoinGroup(group netip.Addr) error {
	if !group.IsMulticast() {
		return fmt.Errorf("netstamp: join %s: not a multicast address", group)
	}
	if c.fam == 4 {
		if !group.Is4() {
			return fmt.Errorf("netstamp: join %s: not an IPv4 group (the socket is IPv4)", group)
		}
		mreq := &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(c.ifindex)}
		return c.join(group, func(fd int) error { return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq) })
	}
	if !group.Is6() || group.Is4In6() {
		return fmt.Errorf("netstamp: join %s: not an IPv6 group (the socket is IPv6)", group)
	}
	mreq := &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(c.ifindex)}
	return c.join(group, func(fd int) error { return unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq) })
}

// LocalAddr returns the address the socket is bound to (the wildcard
// address and its port).
func (c *MulticastConn) LocalAddr() netip.AddrPort { return c.local }

// ReadFrom reads one datagram into b. rx is its receive timestamp: the
// kernel's (StampKernel) or the interface's (StampHardware), or, when none
// came with it, the time read just after the read (StampUser). A link-local
// sender's address carries the interface's name as its zone.
func (c *MulticastConn) ReadFrom(b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return c.ReadFromContext(context.Background(), b)
}

// ReadFromContext is ReadFrom that also returns when ctx is done.
func (c *MulticastConn) ReadFromContext(ctx context.Context, b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return c.k.recvUDP(ctx, b, c.ifindex, c.ifname)
}

func (c *MulticastConn) sockaddr(to netip.AddrPort) (unix.Sockaddr, error) {
	if !to.Addr().IsValid() || to.Port() == 0 {
		return nil, fmt.Errorf("netstamp: bad destination %v", to)
	}
	return udpSockaddr(c.fam, true, to, c.ifindex)
}

// WriteTo sends b to the address to and returns its transmit timestamp:
// the kernel's (StampKernel) or the interface's (StampHardware) when it
// comes back within the wait of LinkOptions, matched to this send by its
// counter. Without it the time read before the send is returned
// (StampUser), or, with hardware stamps, an error wrapping ErrNoTxStamp.
func (c *MulticastConn) WriteTo(b []byte, to netip.AddrPort) (tx time.Time, st Stamping, err error) {
	return sendTo(c.k, b, to, c.sockaddr, c.ifname, true)
}

// WriteToUnstamped sends b to the address to without asking for a
// transmit timestamp.
func (c *MulticastConn) WriteToUnstamped(b []byte, to netip.AddrPort) error {
	_, _, err := sendTo(c.k, b, to, c.sockaddr, c.ifname, false)
	return err
}
