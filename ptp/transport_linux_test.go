package ptp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/internal/peers"
)

// testMessage is a PTPv2 message of the given type (a Sync body, which is
// the right length for Sync, Delay_Req and Follow_Up).
func testMessage(t *testing.T, typ protocol.MessageType, seq uint16) []byte {
	t.Helper()
	p := &protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(typ, 0),
		Version:            protocol.Version,
		MessageLength:      44,
		SourcePortIdentity: protocol.PortIdentity{ClockIdentity: 0x0200_00ff_fe00_0002, PortNumber: 1},
		SequenceID:         seq,
	}}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTransportVeth(t *testing.T) {
	a, b := peers.NewVethPair(t)
	v := [2]peers.VethEnd{a, b}
	cases := []struct {
		network Network
		unicast func(side int) Address
	}{
		{NetworkUDPv4, func(i int) Address { return Address{IP: v[i].Addr.Addr()} }},
		{NetworkUDPv6, func(i int) Address { return Address{IP: v[i].Addr6.Addr()} }},
		{NetworkL2, func(i int) Address { return Address{MAC: v[i].MAC} }},
	}
	for _, tc := range cases {
		t.Run(string(tc.network), func(t *testing.T) {
			var tr [2]Transport
			for i := range 2 {
				var err error
				peers.InNetns(t, v[i].Netns, func() {
					tr[i], err = OpenTransport(TransportConfig{Network: tc.network, Interface: v[i].Iface})
				})
				if err != nil {
					t.Fatal(err)
				}
				defer tr[i].Close()
				if tr[i].Network() != tc.network {
					t.Fatalf("Network() = %q", tr[i].Network())
				}
			}
			primary, _ := tc.network.GroupAddress(GroupPrimary)
			peerDelay, _ := tc.network.GroupAddress(GroupPeerDelay)
			sends := []struct {
				name  string
				typ   protocol.MessageType
				event bool
				to    func(side int) Address // side is the receiver
			}{
				{"Sync to primary", protocol.MessageSync, true, func(int) Address { return primary }},
				{"Follow_Up to primary", protocol.MessageFollowUp, false, func(int) Address { return primary }},
				{"Pdelay_Req to peer delay", protocol.MessagePDelayReq, true, func(int) Address { return peerDelay }},
				{"Delay_Req unicast", protocol.MessageDelayReq, true, tc.unicast},
				{"Delay_Resp unicast", protocol.MessageDelayResp, false, tc.unicast},
			}
			var maxOneWay time.Duration
			buf := make([]byte, 1500)
			for seq := range 20 {
				s := sends[seq%len(sends)]
				from, to := seq%2, 1-seq%2
				msg := testMessage(t, s.typ, uint16(seq))
				before := time.Now()
				var (
					tx   time.Time
					txst netstamp.Stamping
					err  error
				)
				if s.event {
					tx, txst, err = tr[from].SendEvent(msg, s.to(to))
				} else {
					err = tr[from].SendGeneral(msg, s.to(to))
				}
				after := time.Now()
				if err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				r, err := tr[to].Receive(ctx, buf)
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if string(buf[:r.N]) != string(msg) {
					t.Fatalf("%s: got %x, want %x", s.name, buf[:r.N], msg)
				}
				wantFrom := tc.unicast(from)
				if tc.network == NetworkUDPv6 && s.to(to).String() == peerDelay.String() {
					// Link-local group: sent from the link-local address.
					if !r.From.IP.IsLinkLocalUnicast() {
						t.Errorf("%s: from %v, want a link-local address", s.name, r.From)
					}
				} else if r.From.String() != wantFrom.String() {
					t.Errorf("%s: from %v, want %v", s.name, r.From, wantFrom)
				}
				if r.Stamping != netstamp.StampKernel {
					t.Errorf("%s: rx stamping %v, want kernel", s.name, r.Stamping)
				}
				if !s.event {
					continue
				}
				if txst != netstamp.StampKernel || tx.Before(before) || tx.After(after) {
					t.Errorf("%s: tx %v (%v) not a kernel stamp within its send [%v, %v]", s.name, tx, txst, before, after)
				}
				d := r.RX.Sub(tx)
				if d <= 0 || d > 5*time.Millisecond {
					t.Errorf("%s: rx - tx = %v, want in (0, 5ms]", s.name, d)
				}
				maxOneWay = max(maxOneWay, d)
			}
			t.Logf("largest rx - tx of event messages: %v", maxOneWay)
			// Receive ends on ctx and on Close.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := tr[0].Receive(ctx, buf)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, unix.ETIMEDOUT) && !isTimeout(err) {
				t.Errorf("Receive with an expired context: %v", err)
			}
			tr[1].Close()
			if _, err := tr[1].Receive(context.Background(), buf); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestOpenTransportErrors(t *testing.T) {
	a, b := peers.NewVethPair(t)
	v := [2]peers.VethEnd{a, b}
	cases := []struct {
		name    string
		cfg     TransportConfig
		wantErr error // nil: any error
	}{
		{"unknown network", TransportConfig{Network: "udp", Interface: v[0].Iface}, nil},
		{"no interface", TransportConfig{Network: NetworkUDPv4}, nil},
		{"no such interface", TransportConfig{Network: NetworkUDPv4, Interface: "nosuch0"}, nil},
		{"same ports", TransportConfig{Network: NetworkUDPv4, Interface: v[0].Iface, EventPort: 5000, GeneralPort: 5000}, nil},
		{"hardware udp4 on veth", TransportConfig{Network: NetworkUDPv4, Interface: v[0].Iface, HardwareStamps: true}, netstamp.ErrNoHardwareStamps},
		{"hardware udp6 on veth", TransportConfig{Network: NetworkUDPv6, Interface: v[0].Iface, HardwareStamps: true}, netstamp.ErrNoHardwareStamps},
		{"hardware l2 on veth", TransportConfig{Network: NetworkL2, Interface: v[0].Iface, HardwareStamps: true}, netstamp.ErrNoHardwareStamps},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				tr  Transport
				err error
			)
			peers.InNetns(t, v[0].Netns, func() { tr, err = OpenTransport(tc.cfg) })
			if err == nil {
				tr.Close()
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v does not wrap %v", err, tc.wantErr)
			}
			t.Logf("%v", err)
		})
	}
	t.Run("wrong kind of destination", func(t *testing.T) {
		for _, n := range []Network{NetworkUDPv4, NetworkL2} {
			var (
				tr  Transport
				err error
			)
			peers.InNetns(t, v[0].Netns, func() { tr, err = OpenTransport(TransportConfig{Network: n, Interface: v[0].Iface}) })
			if err != nil {
				t.Fatal(err)
			}
			wrong := Address{MAC: v[1].MAC}
			if n == NetworkL2 {
				wrong = Address{IP: v[1].Addr.Addr()}
			}
			if _, _, err := tr.SendEvent([]byte("x"), wrong); err == nil {
				t.Errorf("%s: SendEvent to %v succeeded", n, wrong)
			}
			if err := tr.SendGeneral([]byte("x"), wrong); err == nil {
				t.Errorf("%s: SendGeneral to %v succeeded", n, wrong)
			}
			tr.Close()
		}
	})
}

func TestGroupAddress(t *testing.T) {
	cases := []struct {
		network Network
		group   Group
		want    string
	}{
		{NetworkUDPv4, GroupPrimary, "224.0.1.129"},
		{NetworkUDPv4, GroupPeerDelay, "224.0.0.107"},
		{NetworkUDPv6, GroupPrimary, "ff0e::181"},
		{NetworkUDPv6, GroupPeerDelay, "ff02::6b"},
		{NetworkL2, GroupPrimary, "01:1b:19:00:00:00"},
		{NetworkL2, GroupPeerDelay, "01:80:c2:00:00:0e"},
		{"udp", GroupPrimary, ""},
		{NetworkL2, Group(7), ""},
	}
	for _, tc := range cases {
		got, err := tc.network.GroupAddress(tc.group)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s group %d: %v, want an error", tc.network, tc.group, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s group %d: %v, %v; want %s", tc.network, tc.group, got, err, tc.want)
		}
	}
}
