//go:build linux

package netstamp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// Conn is a UDP socket with kernel send and receive timestamps. ReadFrom and
// WriteTo may be called from different goroutines at the same time; writes
// are serialized.
type Conn struct {
	k      *stampSocket
	fam    int // 4 or 6
	v6only bool
	local  netip.AddrPort
}

// Listen opens a UDP socket bound to laddr. network is "udp4", "udp6" or
// "udp"; with "udp" and the wildcard (or an invalid, zero) address the socket
// serves IPv4 and IPv6. Port 0 picks an ephemeral port.
func Listen(network string, laddr netip.AddrPort) (*Conn, error) {
	keepOnce.Do(keepStampingOn)
	return listen(network, laddr)
}

var keepOnce sync.Once

// keepStampingOn turns the kernel's receive timestamping on for the life of
// the process. Linux enables it lazily (from a work queue) when the first
// socket asks and turns it off when the last one goes, so the first datagrams
// on a fresh socket would arrive without a timestamp. One socket that stays
// open keeps it on; its own datagrams to itself show when it is.
func keepStampingOn() {
	k, err := listen("udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return
	}
	self := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), k.local.Port())
	buf := make([]byte, 8)
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, _, err := k.WriteTo([]byte{0}, self); err != nil {
			return
		}
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(10*time.Millisecond))
		_, _, _, st, err := k.ReadFromContext(ctx, buf)
		cancel()
		if err == nil && st == StampKernel {
			return
		}
		time.Sleep(time.Millisecond)
	}
	// k stays open on purpose: it holds the kernel's timestamping on.
}

func listen(network string, laddr netip.AddrPort) (*Conn, error) {
	fam, v6only, err := family(network, laddr)
	if err != nil {
		return nil, err
	}
	domain := unix.AF_INET
	if fam == 6 {
		domain = unix.AF_INET6
	}
	s, err := socket.Socket(domain, unix.SOCK_DGRAM, unix.IPPROTO_UDP, "netstamp-udp", nil)
	if err != nil {
		return nil, fmt.Errorf("netstamp: socket: %w", err)
	}
	c := &Conn{fam: fam, v6only: v6only}
	if err := c.setup(s, laddr); err != nil {
		s.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setup(s *socket.Conn, laddr netip.AddrPort) error {
	if c.fam == 6 {
		v := 0
		if c.v6only {
			v = 1
		}
		if err := s.SetsockoptInt(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v); err != nil {
			return fmt.Errorf("netstamp: IPV6_V6ONLY: %w", err)
		}
	}
	k, err := newStampSocket(s, LinkOptions{})
	if err != nil {
		return err
	}
	c.k = k
	sa, err := c.sockaddr(laddr, true)
	if err != nil {
		return err
	}
	if err := s.Bind(sa); err != nil {
		return fmt.Errorf("netstamp: bind %s: %w", laddr, err)
	}
	got, err := s.Getsockname()
	if err != nil {
		return fmt.Errorf("netstamp: getsockname: %w", err)
	}
	c.local = addrPortOf(got)
	return nil
}

// sockaddr converts an address to the socket's family. bind allows the
// zero AddrPort (the wildcard).
func (c *Conn) sockaddr(ap netip.AddrPort, bind bool) (unix.Sockaddr, error) {
	if !ap.Addr().IsValid() {
		if !bind {
			return nil, fmt.Errorf("netstamp: no destination address")
		}
		if c.fam == 4 {
			return &unix.SockaddrInet4{Port: int(ap.Port())}, nil
		}
		return &unix.SockaddrInet6{Port: int(ap.Port())}, nil
	}
	return udpSockaddr(c.fam, c.v6only, ap, 0)
}

// udpSockaddr converts a valid address to a socket address of the family
// fam (4 or 6). On a socket bound to an interface (ifindex not 0), IPv6
// link-scoped addresses are sent through that interface whatever their
// zone; elsewhere the zone names the interface.
func udpSockaddr(fam int, v6only bool, ap netip.AddrPort, ifindex int) (unix.Sockaddr, error) {
	a := ap.Addr()
	if fam == 4 {
		if !a.Is4() && !a.Is4In6() {
			return nil, fmt.Errorf("netstamp: %s is not an IPv4 address (the socket is IPv4)", a)
		}
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	}
	if (a.Is4() || a.Is4In6()) && v6only {
		return nil, fmt.Errorf("netstamp: %s is an IPv4 address (the socket is IPv6-only)", a)
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	switch {
	case ifindex != 0:
		if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
			sa.ZoneId = uint32(ifindex)
		}
	case a.Zone() != "":
		ifi, err := net.InterfaceByName(a.Zone())
		if err != nil {
			return nil, fmt.Errorf("netstamp: zone of %s: %w", a, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// addrPortOn is addrPortOf for a socket bound to the interface ifname of
// index ifindex (0 for none): a link-local sender's zone is named after
// that interface without a netlink query (the query would run in the
// calling thread's network namespace).
func addrPortOn(sa unix.Sockaddr, ifindex int, ifname string) netip.AddrPort {
	if sa6, ok := sa.(*unix.SockaddrInet6); ok && ifindex != 0 && int(sa6.ZoneId) == ifindex {
		return netip.AddrPortFrom(netip.AddrFrom16(sa6.Addr).WithZone(ifname), uint16(sa6.Port))
	}
	return addrPortOf(sa)
}

// recvUDP reads one datagram with recv and converts its sender's address
// (see addrPortOn); a datagram that did not fit into b comes with
// ErrTruncated.
func (k *stampSocket) recvUDP(ctx context.Context, b []byte, ifindex int, ifname string) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	n, flags, sa, rx, st, err := k.recv(ctx, b)
	if err != nil {
		return 0, netip.AddrPort{}, time.Time{}, StampUser, err
	}
	from = addrPortOn(sa, ifindex, ifname)
	if flags&unix.MSG_TRUNC != 0 {
		return n, from, rx, st, ErrTruncated
	}
	return n, from, rx, st, nil
}

// LocalAddr returns the address the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// SetReadDeadline sets the time after which a blocked ReadFrom returns an
// error wrapping os.ErrDeadlineExceeded; the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.k.s.SetReadDeadline(t) }

// Close closes the socket; a blocked ReadFrom returns an error wrapping
// net.ErrClosed.
func (c *Conn) Close() error { return c.k.close() }

// ReadFrom reads one datagram into b. rx is the kernel's receive timestamp
// (StampKernel) or, if the kernel gave none, the time read just after the
// read returned (StampUser). Addresses of IPv4 peers on a dual-stack socket
// are returned unmapped.
func (c *Conn) ReadFrom(b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return c.ReadFromContext(context.Background(), b)
}

// ReadFromContext is ReadFrom that also returns when ctx is done.
func (c *Conn) ReadFromContext(ctx context.Context, b []byte) (n int, from netip.AddrPort, rx time.Time, st Stamping, err error) {
	return c.k.recvUDP(ctx, b, 0, "")
}

// WriteTo sends b to the address to. tx is the kernel's transmit timestamp
// when it arrives within TxStampWait (StampKernel), else the time read just
// before the send (StampUser).
func (c *Conn) WriteTo(b []byte, to netip.AddrPort) (tx time.Time, st Stamping, err error) {
	return sendTo(c.k, b, to, c.destination, "", true)
}

// destination converts the destination of a send.
func (c *Conn) destination(to netip.AddrPort) (unix.Sockaddr, error) { return c.sockaddr(to, false) }

// WriteToUnstamped sends b to the address to without asking for a
// transmit timestamp, so it never waits for one.
func (c *Conn) WriteToUnstamped(b []byte, to netip.AddrPort) error {
	_, _, err := sendTo(c.k, b, to, c.destination, "", false)
	return err
}

// SendStampedFromOwnSocket makes WriteTo send from a second socket: the
// same address, an ephemeral port, outside the Go poller, and receiving
// nothing (a socket filter drops every datagram sent to it). Its error
// queue then holds only its own transmit timestamps: on the listening
// socket a flood of requests fills the receive buffer, against which the
// kernel counts the error queue, and it drops the timestamps, so that
// every stamped answer waits the whole TxStampWait. Being outside the
// poller, its frames also leave right after their timestamp (see
// stampSocket.txFD). For servers whose clients take answers from any port
// of the server's address, as SPTP clients do.
func (c *Conn) SendStampedFromOwnSocket() error {
	domain := unix.AF_INET
	if c.fam == 6 {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("netstamp: transmit socket: %w", err)
	}
	fail := func(what string, err error) error {
		unix.Close(fd)
		return fmt.Errorf("netstamp: transmit socket: %s: %w", what, err)
	}
	if c.fam == 6 {
		v := 0
		if c.v6only {
			v = 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if err := dropAllInput(fd); err != nil {
		return fail("SO_ATTACH_FILTER", err)
	}
	sa, err := c.sockaddr(netip.AddrPortFrom(c.local.Addr(), 0), true)
	if err != nil {
		return fail("address", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	return c.k.takeTxSocket(fd)
}
