package netstamp

import (
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/peers"
)

// newVeth makes two network namespaces joined by a veth pair that passes
// traffic (internal/peers.NewVethPair) and returns its two ends.
func newVeth(t *testing.T) [2]peers.VethEnd {
	a, b := peers.NewVethPair(t)
	return [2]peers.VethEnd{a, b}
}

// syncMessage is a 44-byte PTPv2 Sync with sequence number seq.
func syncMessage(t *testing.T, seq uint16) []byte {
	t.Helper()
	p := &protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSync, 0),
		Version:         protocol.Version,
		MessageLength:   44,
		SourcePortIdentity: protocol.PortIdentity{
			ClockIdentity: 0x0200_00ff_fe00_0001,
			PortNumber:    1,
		},
		SequenceID: seq,
	}}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 44 {
		t.Fatalf("Sync is %d bytes, want 44", len(b))
	}
	return b
}

// checkStamps checks one exchange: tx lies within its own send call (so it
// belongs to this send), and rx follows it by less than maxOneWay.
func checkStamps(t *testing.T, before, after, tx time.Time, txst Stamping, rx time.Time, rxst Stamping) time.Duration {
	t.Helper()
	const maxOneWay = 5 * time.Millisecond
	if txst != StampKernel || rxst != StampKernel {
		t.Errorf("stamping tx %v rx %v, want kernel for both", txst, rxst)
	}
	if tx.Before(before) || tx.After(after) {
		t.Errorf("tx stamp %v outside its send call [%v, %v]", tx, before, after)
	}
	d := rx.Sub(tx)
	if d <= 0 || d > maxOneWay {
		t.Errorf("rx - tx = %v, want in (0, %v]", d, maxOneWay)
	}
	return d
}

// linkConn is a MulticastConn (G is netip.Addr) or a PacketConn (G is
// net.HardwareAddr).
type linkConn[G any] interface {
	JoinGroup(group G) error
	Close() error
}

// openPair opens a socket on each end of the veth pair p, with open
// running inside that end's namespace, joins it to the groups, and closes
// them when the test ends.
func openPair[C linkConn[G], G any](t *testing.T, p [2]peers.VethEnd, open func(side int) (C, error), groups ...G) [2]C {
	t.Helper()
	var conns [2]C
	for i := range 2 {
		var err error
		peers.InNetns(t, p[i].Netns, func() {
			if conns[i], err = open(i); err != nil {
				return
			}
			for _, g := range groups {
				if err = conns[i].JoinGroup(g); err != nil {
					conns[i].Close()
					return
				}
			}
		})
		if err != nil {
			t.Fatalf("side %d (%s in %s): %v", i, p[i].Iface, p[i].Netns, err)
		}
		t.Cleanup(func() { conns[i].Close() })
	}
	return conns
}

// openPacketPair opens a PTP Ethernet socket on each side of p, joined to
// both PTP groups.
func openPacketPair(t *testing.T, p [2]peers.VethEnd) [2]*PacketConn {
	t.Helper()
	conns := openPair(t, p, func(i int) (*PacketConn, error) {
		return ListenPacket(p[i].Iface, etherTypePTP, LinkOptions{})
	}, macPTPPrimary, macPTPPeerDelay)
	for i, c := range conns {
		if c.HardwareAddr().String() != p[i].MAC.String() {
			t.Fatalf("side %d: HardwareAddr %v, want %v", i, c.HardwareAddr(), p[i].MAC)
		}
	}
	return conns
}

// stampedConn is a MulticastConn (A is netip.AddrPort) or a PacketConn (A
// is net.HardwareAddr).
type stampedConn[A any] interface {
	WriteTo(b []byte, to A) (tx time.Time, st Stamping, err error)
	ReadFrom(b []byte) (n int, from A, rx time.Time, st Stamping, err error)
	SetReadDeadline(t time.Time) error
}

// exchange sends Sync number seq from one socket to dst, reads it on the
// other into buf and checks it and its timestamps (checkStamps). It returns
// the sender's address as read and rx - tx.
func exchange[A any](t *testing.T, seq int, from, to stampedConn[A], dst A, buf []byte) (src A, oneWay time.Duration) {
	t.Helper()
	msg := syncMessage(t, uint16(seq))
	before := time.Now()
	tx, txst, err := from.WriteTo(msg, dst)
	after := time.Now()
	if err != nil {
		t.Fatalf("seq %d: %v", seq, err)
	}
	to.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, rx, rxst, err := to.ReadFrom(buf)
	if err != nil {
		t.Fatalf("seq %d: %v", seq, err)
	}
	if string(buf[:n]) != string(msg) {
		t.Fatalf("seq %d: got %x, want %x", seq, buf[:n], msg)
	}
	return src, checkStamps(t, before, after, tx, txst, rx, rxst)
}
