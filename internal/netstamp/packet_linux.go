//go:build linux

package netstamp

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// PacketConn is an Ethernet socket (AF_PACKET, SOCK_DGRAM) on one network
// interface for one EtherType, as PTP over Ethernet needs: frames are sent
// to a destination MAC address and read with their source MAC address and
// kernel or hardware receive timestamps; stamped sends return their
// transmit timestamps. The Ethernet header is the kernel's business: the
// bytes read and written are the frame's payload. Opening one needs
// CAP_NET_RAW. ReadFrom and the writes may be called from different
// goroutines at the same time; writes are serialized.
type PacketConn struct {
	link
	hw        net.HardwareAddr
	etherType uint16
}

// htons converts a 16-bit value to network byte order, as the protocol
// fields of AF_PACKET want it.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ListenPacket opens an Ethernet socket on the interface ifname for frames
// of the given EtherType (0x88F7 for PTP). It receives frames sent to the
// interface's own address and, after JoinGroup, to multicast groups;
// frames this socket sends are not read back.
func ListenPacket(ifname string, etherType uint16, opts LinkOptions) (*PacketConn, error) {
	keepOnce.Do(keepStampingOn)
	if etherType < 0x0600 {
		return nil, fmt.Errorf("netstamp: EtherType %#04x is a length, not a type (want at least 0x0600)", etherType)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("netstamp: interface %q: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("netstamp: interface %s has no Ethernet address (%q)", ifname, ifi.HardwareAddr)
	}
	s, err := socket.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(etherType)), "netstamp-packet", nil)
	if err != nil {
		return nil, fmt.Errorf("netstamp: packet socket on %s (needs CAP_NET_RAW): %w", ifname, err)
	}
	c := &PacketConn{link: link{ifname: ifname, ifindex: ifi.Index}, hw: ifi.HardwareAddr, etherType: etherType}
	if err := c.setup(s, opts); err != nil {
		s.Close()
		return nil, fmt.Errorf("netstamp: packet socket on %s for EtherType %#04x: %w", ifname, etherType, err)
	}
	return c, nil
}

func (c *PacketConn) setup(s *socket.Conn, opts LinkOptions) error {
	// Frames this socket sends would otherwise come back to it as
	// PACKET_OUTGOING copies. Kernels before 4.20 lack the option;
	// ReadFrom skips such copies too.
	_ = s.SetsockoptInt(unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err := c.stamp(s, opts, unix.HWTSTAMP_FILTER_PTP_V2_L2_EVENT); err != nil {
		return err
	}
	if err := s.Bind(&unix.SockaddrLinklayer{Protocol: htons(c.etherType), Ifindex: c.ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// Stamped frames go out on a socket of their own, outside the Go
	// poller (see stampSocket.txFD). With protocol 0 it receives nothing;
	// the frames it sends come back to s as PACKET_OUTGOING copies, which
	// ReadFrom skips.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("transmit socket: %w", err)
	}
	return c.k.useTxSocket(fd)
}

// JoinGroup makes the interface receive frames sent to the multicast MAC
// address group (PACKET_ADD_MEMBERSHIP); the membership ends with the
// socket.
func (c *PacketConn) JoinGroup(group net.HardwareAddr) error {
	if len(group) != 6 || group[0]&1 == 0 {
		return fmt.Errorf("netstamp: join %s: not a multicast Ethernet address", group)
	}
	mreq := &unix.PacketMreq{Ifindex: int32(c.ifindex), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	copy(mreq.Address[:], group)
	return c.join(group, func(fd int) error {
		return unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq)
	})
}

// HardwareAddr returns the interface's MAC address, the source address of
// the frames this socket sends.
func (c *PacketConn) HardwareAddr() net.HardwareAddr { return c.hw }

// ReadFrom reads the payload of one frame into b, with its source MAC
// address and its receive timestamp (as MulticastConn.ReadFrom). On
// interfaces that pad short frames the padding is part of the payload.
func (c *PacketConn) ReadFrom(b []byte) (n int, from net.HardwareAddr, rx time.Time, st Stamping, err error) {
	return c.ReadFromContext(context.Background(), b)
}

// ReadFromContext is ReadFrom that also returns when ctx is done.
func (c *PacketConn) ReadFromContext(ctx context.Context, b []byte) (n int, from net.HardwareAddr, rx time.Time, st Stamping, err error) {
	for {
		n, flags, sa, rx, st, err := c.k.recv(ctx, b)
		if err != nil {
			return 0, nil, time.Time{}, StampUser, err
		}
		ll, ok := sa.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		hl := int(ll.Halen)
		if hl > len(ll.Addr) {
			hl = len(ll.Addr)
		}
		from = net.HardwareAddr(append([]byte(nil), ll.Addr[:hl]...))
		if flags&unix.MSG_TRUNC != 0 {
			return n, from, rx, st, ErrTruncated
		}
		return n, from, rx, st, nil
	}
}

func (c *PacketConn) sockaddr(to net.HardwareAddr) (unix.Sockaddr, error) {
	if len(to) != 6 {
		return nil, fmt.Errorf("netstamp: bad destination %q: want a 6-byte MAC address", to)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(c.etherType), Ifindex: c.ifindex, Halen: 6}
	copy(sa.Addr[:], to)
	return sa, nil
}

// WriteTo sends b as the payload of one frame to the MAC address to and
// returns its transmit timestamp as MulticastConn.WriteTo does.
func (c *PacketConn) WriteTo(b []byte, to net.HardwareAddr) (tx time.Time, st Stamping, err error) {
	return sendTo(c.k, b, to, c.sockaddr, c.ifname, true)
}

// WriteToUnstamped sends b as the payload of one frame to the MAC address
// to without asking for a transmit timestamp.
func (c *PacketConn) WriteToUnstamped(b []byte, to net.HardwareAddr) error {
	_, _, err := sendTo(c.k, b, to, c.sockaddr, c.ifname, false)
	return err
}
