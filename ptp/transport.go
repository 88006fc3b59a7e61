package ptp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/timed-project/timed/internal/netstamp"
)

// Network is the network a PTP port talks over, as the configuration
// names it.
type Network string

// The networks of IEEE 1588 annexes C (UDP over IPv4), D (UDP over IPv6)
// and E (Ethernet).
const (
	NetworkUDPv4 Network = "udp4"
	NetworkUDPv6 Network = "udp6"
	NetworkL2    Network = "l2"
)

// The UDP ports of PTP: event messages (Sync, Delay_Req, Pdelay_Req,
// Pdelay_Resp), which are timestamped, and general messages.
const (
	EventPort   = 319
	GeneralPort = 320
)

// EtherType is the EtherType of PTP over Ethernet.
const EtherType = 0x88F7

// Group is one of the two multicast groups of PTP.
type Group uint8

const (
	// GroupPrimary carries every message except the peer-delay ones.
	GroupPrimary Group = iota
	// GroupPeerDelay carries Pdelay_Req, Pdelay_Resp and
	// Pdelay_Resp_Follow_Up; it is link-local and never forwarded.
	GroupPeerDelay
)

// The multicast addresses of the groups on each network.
var (
	IPv4Primary   = netip.MustParseAddr("224.0.1.129")
	IPv4PeerDelay = netip.MustParseAddr("224.0.0.107")
	IPv6Primary   = netip.MustParseAddr("ff0e::181")
	IPv6PeerDelay = netip.MustParseAddr("ff02::6b")
	MACPrimary    = net.HardwareAddr{0x01, 0x1b, 0x19, 0x00, 0x00, 0x00}
	MACPeerDelay  = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
)

// Address is where a PTP message goes or came from: an IP address on the
// UDP networks, a MAC address on Ethernet.
type Address struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

func (a Address) String() string {
	if a.IP.IsValid() {
		return a.IP.String()
	}
	return a.MAC.String()
}

// GroupAddress returns the address of the multicast group g on network n.
func (n Network) GroupAddress(g Group) (Address, error) {
	peer := g == GroupPeerDelay
	if g != GroupPrimary && !peer {
		return Address{}, fmt.Errorf("ptp: unknown multicast group %d", g)
	}
	switch {
	case n == NetworkUDPv4 && peer:
		return Address{IP: IPv4PeerDelay}, nil
	case n == NetworkUDPv4:
		return Address{IP: IPv4Primary}, nil
	case n == NetworkUDPv6 && peer:
		return Address{IP: IPv6PeerDelay}, nil
	case n == NetworkUDPv6:
		return Address{IP: IPv6Primary}, nil
	case n == NetworkL2 && peer:
		return Address{MAC: MACPeerDelay}, nil
	case n == NetworkL2:
		return Address{MAC: MACPrimary}, nil
	}
	return Address{}, fmt.Errorf("ptp: unknown network %q (want udp4, udp6 or l2)", n)
}

// Received describes one message that Transport.Receive read.
type Received struct {
	// N is the message's length in the buffer.
	N int
	// From is the sender's address.
	From Address
	// RX is when the message arrived, read as Stamping says: the kernel's
	// software timestamp (system clock), the interface's hardware
	// timestamp (its PTP hardware clock) or, when neither came, the time
	// read in user space after the read.
	RX       time.Time
	Stamping netstamp.Stamping
}

// Transport sends and receives the messages of one PTP port on one
// interface, with timestamps from the kernel or the network card. It moves
// bytes: encoding and decoding messages is the caller's business. Sends
// may be called from several goroutines; one goroutine receives.
type Transport interface {
	// Network returns the network the transport talks over.
	Network() Network
	// SendEvent sends an event message (Sync, Delay_Req, Pdelay_Req,
	// Pdelay_Resp) to a group or unicast address and returns when it left:
	// its transmit timestamp, matched to this message, and where that was
	// taken.
	SendEvent(msg []byte, to Address) (tx time.Time, st netstamp.Stamping, err error)
	// SendGeneral sends a general message (Announce, Follow_Up,
	// Delay_Resp, Pdelay_Resp_Follow_Up, Signaling, Management) to a
	// group or unicast address.
	SendGeneral(msg []byte, to Address) error
	// Receive reads the next message, event or general, into buf. A
	// message longer than buf is cut and returned with an error wrapping
	// netstamp.ErrTruncated. After Close it returns an error wrapping
	// net.ErrClosed.
	Receive(ctx context.Context, buf []byte) (Received, error)
	// Close closes the transport's sockets.
	Close() error
}

// TransportConfig says which transport OpenTransport opens.
type TransportConfig struct {
	// Network is udp4, udp6 or l2.
	Network Network
	// Interface is the name of the network interface the port uses.
	Interface string
	// HardwareStamps asks for the interface's hardware timestamps.
	// Without them opening fails with an error wrapping
	// netstamp.ErrNoHardwareStamps, and the caller may open again with
	// software timestamps.
	HardwareStamps bool
	// EventPort and GeneralPort replace 319 and 320 on the UDP networks,
	// as the local ports and the ports messages are sent to (for tests and
	// unprivileged runs); zero means the standard port.
	EventPort, GeneralPort uint16
	// HopLimit is the TTL or hop limit of multicast messages over UDP;
	// zero means 1.
	HopLimit int
	// TxStampWait is how long a send waits for its transmit timestamp;
	// zero means the default of netstamp.
	TxStampWait time.Duration
}

// OpenTransport opens the sockets of a PTP port on cfg.Interface and joins
// both multicast groups of cfg.Network.
func OpenTransport(cfg TransportConfig) (Transport, error) {
	switch cfg.Network {
	case NetworkUDPv4, NetworkUDPv6, NetworkL2:
	default:
		return nil, fmt.Errorf("ptp: unknown network %q (want udp4, udp6 or l2)", cfg.Network)
	}
	if cfg.Interface == "" {
		return nil, errors.New("ptp: no interface given for the transport")
	}
	if cfg.EventPort == 0 {
		cfg.EventPort = EventPort
	}
	if cfg.GeneralPort == 0 {
		cfg.GeneralPort = GeneralPort
	}
	if cfg.Network != NetworkL2 && cfg.EventPort == cfg.GeneralPort {
		return nil, fmt.Errorf("ptp: event and general port are both %d", cfg.EventPort)
	}
	t, err := openTransport(cfg)
	if err != nil {
		return nil, fmt.Errorf("ptp: %s transport on %s: %w", cfg.Network, cfg.Interface, err)
	}
	return t, nil
}
