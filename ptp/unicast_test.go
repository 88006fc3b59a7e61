package ptp

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

var (
	uniA = netip.MustParseAddr("192.0.2.1")
	uniB = netip.MustParseAddr("192.0.2.2")
)

func uniAt(s float64) time.Time {
	return time.Unix(1_700_000_000, 0).Add(time.Duration(s * float64(time.Second)))
}

// grantSig is a Signaling message from a master with one GRANT TLV.
func grantSig(t protocol.MessageType, logPeriod int8, duration uint32) *protocol.Signaling {
	return &protocol.Signaling{TargetPortIdentity: wildcardPort, TLVs: []protocol.TLV{&protocol.GrantUnicastTransmissionTLV{
		TLVHead:               protocol.TLVHead{TLVType: protocol.TLVGrantUnicastTransmission, LengthField: 8},
		MsgTypeAndReserved:    protocol.NewUnicastMsgTypeAndFlags(t, 0),
		LogInterMessagePeriod: protocol.LogInterval(logPeriod),
		DurationField:         duration,
		Renewal:               1,
	}}}
}

func cancelSig(t protocol.MessageType) *protocol.Signaling {
	return &protocol.Signaling{TargetPortIdentity: wildcardPort, TLVs: []protocol.TLV{cancelRequest(uniA, t).tlv}}
}

// requested describes requests as "ADDR TYPE/LOG/DURATION" or "ADDR cancel TYPE".
func requested(reqs []unicastRequest) []string {
	var out []string
	for _, r := range reqs {
		switch t := r.tlv.(type) {
		case *protocol.RequestUnicastTransmissionTLV:
			out = append(out, r.to.String()+" request "+messageName(t.MsgTypeAndReserved.MsgType()))
		case *protocol.CancelUnicastTransmissionTLV:
			out = append(out, r.to.String()+" cancel "+messageName(t.MsgTypeAndFlags.MsgType()))
		case *protocol.AcknowledgeCancelUnicastTransmissionTLV:
			out = append(out, r.to.String()+" ack "+messageName(t.MsgTypeAndFlags.MsgType()))
		}
	}
	return out
}

// TestUnicastNegotiation runs scripts of events against a negotiation with
// two masters and checks what it sends and what its status says.
func TestUnicastNegotiation(t *testing.T) {
	type step struct {
		at     float64
		do     string // "due", "grant", "deny", "cancel", "select A", "select none", "stop"
		msg    protocol.MessageType
		sent   []string // what must be sent (nil: nothing)
		status string   // uniA's grants as "msg=state,..." after the step ("" not checked)
	}
	tests := []struct {
		name     string
		endToEnd bool
		steps    []step
	}{
		{"announce first to every master, then sync and delay_resp from the selected", true, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}, status: "announce=requesting"},
			{at: 0.5, do: "due"},
			{at: 0.6, do: "grant", msg: protocol.MessageAnnounce, status: "announce=granted"},
			{at: 2, do: "select A", status: "announce=granted,sync=requesting,delay_resp=requesting"},
			{at: 2, do: "due", sent: []string{"192.0.2.1 request sync", "192.0.2.1 request delay_resp", "192.0.2.2 request announce"}},
			{at: 2.1, do: "grant", msg: protocol.MessageSync},
			{at: 2.1, do: "grant", msg: protocol.MessageDelayResp, status: "announce=granted,sync=granted,delay_resp=granted"},
			// renewal at half the grant's duration, before it expires
			{at: 30, do: "due"},
			{at: 30.6, do: "due", sent: []string{"192.0.2.1 request announce"}, status: "announce=granted,sync=granted,delay_resp=granted"},
			{at: 32.1, do: "due", sent: []string{"192.0.2.1 request sync", "192.0.2.1 request delay_resp"}},
			{at: 40, do: "stop", sent: []string{"192.0.2.1 cancel announce", "192.0.2.1 cancel sync", "192.0.2.1 cancel delay_resp"}},
		}},
		{"peer delay: no delay_resp asked for", false, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
			{at: 0.1, do: "grant", msg: protocol.MessageAnnounce},
			{at: 1, do: "select A", status: "announce=granted,sync=requesting"},
			{at: 1, do: "due", sent: []string{"192.0.2.1 request sync"}},
		}},
		{"denied: retry with backoff", true, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
			{at: 0.1, do: "deny", msg: protocol.MessageAnnounce, status: "announce=denied"},
			{at: 1.1, do: "due", sent: []string{"192.0.2.2 request announce"}, status: "announce=denied"},
			{at: 2.1, do: "due", sent: []string{"192.0.2.1 request announce"}},
			{at: 2.2, do: "deny", msg: protocol.MessageAnnounce},
			{at: 5, do: "due"},
			{at: 6.2, do: "due", sent: []string{"192.0.2.1 request announce"}},
		}},
		{"no answer: shown and retried less and less often", true, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}, status: "announce=requesting"},
			{at: 1, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}, status: "announce=no answer"},
			{at: 2.5, do: "due"},
			{at: 3, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}, status: "announce=no answer"},
			{at: 6.9, do: "due"},
			{at: 7, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
		}},
		{"grant expires without renewal", true, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
			{at: 0, do: "grant", msg: protocol.MessageAnnounce},
			{at: 30, do: "due", sent: []string{"192.0.2.1 request announce"}, status: "announce=granted"},
			{at: 44.9, do: "due"},
			{at: 45, do: "due", sent: []string{"192.0.2.1 request announce"}},
			{at: 52.4, do: "due"},
			{at: 52.5, do: "due", sent: []string{"192.0.2.1 request announce"}, status: "announce=granted"},
			{at: 60, do: "due", sent: []string{"192.0.2.1 request announce"}, status: "announce=no answer"},
		}},
		{"cancel from the master: acknowledged, asked again later", true, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
			{at: 0, do: "grant", msg: protocol.MessageAnnounce},
			{at: 5, do: "cancel", msg: protocol.MessageAnnounce, sent: []string{"192.0.2.1 ack announce"}, status: "announce=cancelled"},
			{at: 7, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
		}},
		{"another master selected: the old one's sync cancelled", true, []step{
			{at: 0, do: "due", sent: []string{"192.0.2.1 request announce", "192.0.2.2 request announce"}},
			{at: 0, do: "grant", msg: protocol.MessageAnnounce},
			{at: 1, do: "select A"},
			{at: 1, do: "due", sent: []string{"192.0.2.1 request sync", "192.0.2.1 request delay_resp", "192.0.2.2 request announce"}},
			{at: 1, do: "grant", msg: protocol.MessageSync},
			{at: 3, do: "select none", sent: []string{"192.0.2.1 cancel sync"}, status: "announce=granted"},
			{at: 3, do: "due", sent: []string{"192.0.2.2 request announce"}},
		}},
		{"a grant for something not asked for is ignored", true, []step{
			{at: 0, do: "grant", msg: protocol.MessageSync, status: "announce=requesting"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newUnicastNegotiation([]netip.Addr{uniA, uniB}, unicastIntervals{announce: 1, sync: -3, delayResp: 0, endToEnd: tt.endToEnd})
			for i, s := range tt.steps {
				now := uniAt(s.at)
				var sent []unicastRequest
				switch s.do {
				case "due":
					sent = n.due(now)
				case "grant", "deny":
					d := uint32(60)
					if s.do == "deny" {
						d = 0
					}
					var err error
					if sent, err = n.handle(uniA, grantSig(s.msg, 0, d), now); err != nil {
						t.Fatal(err)
					}
				case "cancel":
					var err error
					if sent, err = n.handle(uniA, cancelSig(s.msg), now); err != nil {
						t.Fatal(err)
					}
				case "select A":
					sent = n.selectMaster(uniA, now)
				case "select none":
					sent = n.selectMaster(netip.Addr{}, now)
				case "stop":
					sent = n.stop()
				}
				got := requested(sent)
				if !strings.Contains(strings.Join(s.sent, ";"), uniB.String()) {
					// B never answers: its retries are checked in the
					// "no answer" case only.
					got = slices.DeleteFunc(got, func(r string) bool { return strings.HasPrefix(r, uniB.String()) })
				}
				if got := strings.Join(got, "; "); got != strings.Join(s.sent, "; ") {
					t.Errorf("step %d (%s at %v): sent %q, want %q", i, s.do, s.at, got, strings.Join(s.sent, "; "))
				}
				if s.status != "" {
					var parts []string
					for _, g := range n.status(now)[0].Grants {
						parts = append(parts, g.Message+"="+g.State)
					}
					if got := strings.Join(parts, ","); got != s.status {
						t.Errorf("step %d (%s at %v): status %q, want %q", i, s.do, s.at, got, s.status)
					}
				}
			}
		})
	}
}

func TestUnicastGrantStatus(t *testing.T) {
	n := newUnicastNegotiation([]netip.Addr{uniA}, unicastIntervals{announce: 1, sync: 0, delayResp: 0, endToEnd: true})
	n.due(uniAt(0))
	if _, err := n.handle(uniA, grantSig(protocol.MessageAnnounce, 2, 60), uniAt(0)); err != nil {
		t.Fatal(err)
	}
	id := protocol.PortIdentity{ClockIdentity: 0x0a1b2cfffe3d4e5f, PortNumber: 1}
	n.announced(uniA, id)
	if a, ok := n.addressOf(id); !ok || a != uniA {
		t.Fatalf("addressOf = %v, %v", a, ok)
	}
	n.selectMaster(uniA, uniAt(1))
	st := n.status(uniAt(10))
	tests := []struct {
		name      string
		got, want any
	}{
		{"address", st[0].Address, uniA},
		{"identity", st[0].Identity, id.String()},
		{"selected", st[0].Selected, true},
		{"grants", len(st[0].Grants), 3},
		{"announce interval as granted", st[0].Grants[0].LogInterval, int8(2)},
		{"announce left", st[0].Grants[0].Left, 50 * time.Second},
		{"sync not granted yet", st[0].Grants[1].Left, time.Duration(0)},
		{"granted announce", n.granted(uniA, protocol.MessageAnnounce, uniAt(59)), true},
		{"expired announce", n.granted(uniA, protocol.MessageAnnounce, uniAt(60)), false},
		{"sync", n.granted(uniA, protocol.MessageSync, uniAt(10)), false},
		{"unknown master", n.granted(uniB, protocol.MessageAnnounce, uniAt(10)), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if _, err := n.handle(uniB, grantSig(protocol.MessageAnnounce, 1, 60), uniAt(0)); !errors.Is(err, errNotOurMaster) {
		t.Errorf("grant from a stranger: %v, want errNotOurMaster", err)
	}
}

func TestCheckUnicastMasters(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name    string
		cfg     SourceConfig
		wantErr string
	}{
		{"none", SourceConfig{Network: NetworkL2}, ""},
		{"udp4", SourceConfig{Network: NetworkUDPv4, UnicastMasters: []netip.Addr{uniA, uniB}}, ""},
		{"udp6", SourceConfig{Network: NetworkUDPv6, UnicastMasters: []netip.Addr{v6}}, ""},
		{"l2", SourceConfig{Interface: "eth0", Network: NetworkL2, UnicastMasters: []netip.Addr{uniA}}, "over l2 is not supported"},
		{"family", SourceConfig{Network: NetworkUDPv4, UnicastMasters: []netip.Addr{v6}}, "does not fit network udp4"},
		{"multicast", SourceConfig{Network: NetworkUDPv4, UnicastMasters: []netip.Addr{IPv4Primary}}, "not a unicast IP address"},
		{"invalid", SourceConfig{Network: NetworkUDPv4, UnicastMasters: []netip.Addr{{}}}, "not a unicast IP address"},
		{"twice", SourceConfig{Network: NetworkUDPv4, UnicastMasters: []netip.Addr{uniA, uniA}}, "listed twice"},
		{"master_only", SourceConfig{Network: NetworkUDPv4, Role: RoleMasterOnly, UnicastMasters: []netip.Addr{uniA}}, "master_only"},
	}
	for _, tt := range tests {
		err := checkUnicastMasters(tt.cfg)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	_, err := NewSource(SourceConfig{Interface: "eth0", Network: NetworkL2, UnicastMasters: []netip.Addr{uniA}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "l2") {
		t.Errorf("NewSource with l2 and unicast masters: %v", err)
	}
}

// TestSignalingRoundTrip encodes each TLV the port sends in its Signaling
// message and decodes it as a master would.
func TestSignalingRoundTrip(t *testing.T) {
	s, err := NewSource(SourceConfig{Interface: "eth0", Network: NetworkUDPv4, Domain: 4, UnicastMasters: []netip.Addr{uniA}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &portRun{s: s, self: slavePort}
	n := newUnicastNegotiation([]netip.Addr{uniA}, unicastIntervals{announce: 1, sync: -2, delayResp: 0, endToEnd: true})
	n.selectMaster(uniA, uniAt(0))
	reqs := append(n.due(uniAt(0)), cancelRequest(uniA, protocol.MessageSync))
	ack, _ := n.handle(uniA, cancelSig(protocol.MessageAnnounce), uniAt(0))
	reqs = append(reqs, ack...)
	want := []string{"announce 1 60", "sync -2 60", "delay_resp 0 60", "cancel sync", "ack announce"}
	if len(reqs) != len(want) {
		t.Fatalf("%d requests, want %d", len(reqs), len(want))
	}
	for i, r := range reqs {
		b, err := p.signaling(r.tlv)
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := protocol.DecodePacket(b)
		if err != nil {
			t.Fatalf("%s: %v", want[i], err)
		}
		sig, ok := pkt.(*protocol.Signaling)
		if !ok || len(sig.TLVs) != 1 || int(sig.MessageLength) != len(b) || sig.DomainNumber != 4 ||
			sig.FlagField&protocol.FlagUnicast == 0 || sig.TargetPortIdentity != wildcardPort || sig.SourcePortIdentity != slavePort {
			t.Fatalf("%s: decoded %#v from %d bytes", want[i], pkt, len(b))
		}
		var got string
		switch tlv := sig.TLVs[0].(type) {
		case *protocol.RequestUnicastTransmissionTLV:
			got = messageName(tlv.MsgTypeAndReserved.MsgType()) + " " + strconv.Itoa(int(tlv.LogInterMessagePeriod)) + " " + strconv.Itoa(int(tlv.DurationField))
		case *protocol.CancelUnicastTransmissionTLV:
			got = "cancel " + messageName(tlv.MsgTypeAndFlags.MsgType())
		case *protocol.AcknowledgeCancelUnicastTransmissionTLV:
			got = "ack " + messageName(tlv.MsgTypeAndFlags.MsgType())
		}
		if got != want[i] {
			t.Errorf("TLV %d: %q, want %q", i, got, want[i])
		}
	}
	if _, err := p.signaling(&protocol.GrantUnicastTransmissionTLV{}); err == nil {
		t.Error("signaling with a GRANT TLV: no error")
	}
}
