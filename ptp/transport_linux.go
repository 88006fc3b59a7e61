//go:build linux

package ptp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/timed-project/timed/internal/netstamp"
)

func openTransport(cfg TransportConfig) (Transport, error) {
	opts := netstamp.LinkOptions{
		HardwareStamps: cfg.HardwareStamps,
		TxStampWait:    cfg.TxStampWait,
		HopLimit:       cfg.HopLimit,
	}
	if cfg.Network == NetworkL2 {
		return openL2(cfg.Interface, opts)
	}
	return openUDP(cfg, opts)
}

// maxMessage bounds the messages the UDP readers take in: a PTP message
// with its TLVs fits an Ethernet frame.
const maxMessage = 1500

// udpTransport is PTP over UDP: one socket on the event port, one on the
// general port, both joined to the two groups. A goroutine reads each and
// hands what it reads to Receive.
type udpTransport struct {
	network               Network
	event, general        *netstamp.MulticastConn
	eventPort, generalPrt uint16
	in                    chan udpMessage
	done                  chan struct{}
	closeOnce             sync.Once
	readers               sync.WaitGroup
}

type udpMessage struct {
	buf  []byte
	from netip.AddrPort
	rx   time.Time
	st   netstamp.Stamping
	err  error
}

func openUDP(cfg TransportConfig, opts netstamp.LinkOptions) (*udpTransport, error) {
	netw := "udp4"
	if cfg.Network == NetworkUDPv6 {
		netw = "udp6"
	}
	t := &udpTransport{network: cfg.Network, eventPort: cfg.EventPort, generalPrt: cfg.GeneralPort,
		in: make(chan udpMessage, 64), done: make(chan struct{})}
	var err error
	if t.event, err = openGroupSocket(netw, cfg.Interface, cfg.EventPort, cfg.Network, opts); err != nil {
		return nil, err
	}
	if cfg.Network == NetworkUDPv4 {
		// Event messages leave from a socket outside the Go poller (see
		// netstamp), connected to the primary group, which sends nothing.
		primary, err := cfg.Network.GroupAddress(GroupPrimary)
		if err == nil {
			err = t.event.SendStampedFromOwnSocket(netip.AddrPortFrom(primary.IP, cfg.EventPort))
		}
		if err != nil {
			t.event.Close()
			return nil, err
		}
	}
	// General messages need no hardware stamps: ask for software ones so
	// that a send never waits for a stamp from the card.
	gopts := opts
	gopts.HardwareStamps = false
	if t.general, err = openGroupSocket(netw, cfg.Interface, cfg.GeneralPort, cfg.Network, gopts); err != nil {
		t.event.Close()
		return nil, err
	}
	t.readers.Add(2)
	go t.read(t.event)
	go t.read(t.general)
	return t, nil
}

func openGroupSocket(netw, ifname string, port uint16, n Network, opts netstamp.LinkOptions) (*netstamp.MulticastConn, error) {
	c, err := netstamp.ListenMulticast(netw, ifname, port, opts)
	if err != nil {
		return nil, err
	}
	for _, g := range []Group{GroupPrimary, GroupPeerDelay} {
		a, err := n.GroupAddress(g)
		if err == nil {
			err = c.JoinGroup(a.IP)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// read hands every datagram of c to Receive until c is closed. An error
// other than a cut datagram is handed on and ends the reader.
func (t *udpTransport) read(c *netstamp.MulticastConn) {
	defer t.readers.Done()
	for {
		buf := make([]byte, maxMessage)
		n, from, rx, st, err := c.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case t.in <- udpMessage{buf: buf[:n], from: from, rx: rx, st: st, err: err}:
		case <-t.done:
			return
		}
		if err != nil && !errors.Is(err, netstamp.ErrTruncated) {
			return
		}
	}
}

func (t *udpTransport) Network() Network { return t.network }

func (t *udpTransport) dest(to Address, port uint16) (netip.AddrPort, error) {
	if !to.IP.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("ptp: destination %q is not an IP address (the transport is %s)", to, t.network)
	}
	return netip.AddrPortFrom(to.IP, port), nil
}

func (t *udpTransport) SendEvent(msg []byte, to Address) (time.Time, netstamp.Stamping, error) {
	dst, err := t.dest(to, t.eventPort)
	if err != nil {
		return time.Time{}, netstamp.StampUser, err
	}
	warm(t.event, msg)
	tx, st, err := t.event.WriteTo(msg, dst)
	if err != nil {
		return tx, st, fmt.Errorf("ptp: event message: %w", err)
	}
	return tx, st, nil
}

func (t *udpTransport) SendGeneral(msg []byte, to Address) error {
	dst, err := t.dest(to, t.generalPrt)
	if err != nil {
		return err
	}
	if err := t.general.WriteToUnstamped(msg, dst); err != nil {
		return fmt.Errorf("ptp: general message: %w", err)
	}
	return nil
}

func (t *udpTransport) Receive(ctx context.Context, buf []byte) (Received, error) {
	select {
	case m := <-t.in:
		r := Received{N: copy(buf, m.buf), From: Address{IP: m.from.Addr()}, RX: m.rx, Stamping: m.st}
		if m.err != nil {
			return r, fmt.Errorf("ptp: receive: %w", m.err)
		}
		if r.N < len(m.buf) {
			return r, fmt.Errorf("ptp: receive: %d-byte message into %d bytes: %w", len(m.buf), len(buf), netstamp.ErrTruncated)
		}
		return r, nil
	case <-ctx.Done():
		return Received{}, fmt.Errorf("ptp: receive: %w", ctx.Err())
	case <-t.done:
		return Received{}, fmt.Errorf("ptp: receive: %w", net.ErrClosed)
	}
}

func (t *udpTransport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.done)
		err = errors.Join(t.event.Close(), t.general.Close())
		t.readers.Wait()
	})
	return err
}

// l2Transport is PTP over Ethernet: one socket for event and general
// messages.
type l2Transport struct {
	c      *netstamp.PacketConn
	settle bool // software stamps: settle before event messages
}

func openL2(ifname string, opts netstamp.LinkOptions) (*l2Transport, error) {
	c, err := netstamp.ListenPacket(ifname, EtherType, opts)
	if err != nil {
		return nil, err
	}
	for _, g := range []net.HardwareAddr{MACPrimary, MACPeerDelay} {
		if err := c.JoinGroup(g); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &l2Transport{c: c, settle: !opts.HardwareStamps}, nil
}

func (t *l2Transport) Network() Network { return NetworkL2 }

func dstMAC(to Address) (net.HardwareAddr, error) {
	if len(to.MAC) != 6 {
		return nil, fmt.Errorf("ptp: destination %q is not a MAC address (the transport is l2)", to)
	}
	return to.MAC, nil
}

func (t *l2Transport) SendEvent(msg []byte, to Address) (time.Time, netstamp.Stamping, error) {
	dst, err := dstMAC(to)
	if err != nil {
		return time.Time{}, netstamp.StampUser, err
	}
	if t.settle {
		settle()
	}
	warm(t.c, msg)
	tx, st, err := t.c.WriteTo(msg, dst)
	if err != nil {
		return tx, st, fmt.Errorf("ptp: event message: %w", err)
	}
	return tx, st, nil
}

func (t *l2Transport) SendGeneral(msg []byte, to Address) error {
	dst, err := dstMAC(to)
	if err != nil {
		return err
	}
	if err := t.c.WriteToUnstamped(msg, dst); err != nil {
		return fmt.Errorf("ptp: general message: %w", err)
	}
	return nil
}

func (t *l2Transport) Receive(ctx context.Context, buf []byte) (Received, error) {
	n, from, rx, st, err := t.c.ReadFromContext(ctx, buf)
	r := Received{N: n, From: Address{MAC: from}, RX: rx, Stamping: st}
	if err != nil {
		return r, fmt.Errorf("ptp: receive: %w", err)
	}
	return r, nil
}

func (t *l2Transport) Close() error { return t.c.Close() }
